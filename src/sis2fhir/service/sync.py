"""sync and check: the routes to the recipients, the recipients' own check, the run, the row report, and what the
run's result means for the exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from sis2fhir.config import Settings
from sis2fhir.deliver.base import Destination, RecipientMisconfigured, RecipientUnreachable
from sis2fhir.deliver.factory import configured_routes, from_spec
from sis2fhir.deliver.ndjson import DISK_FULL
from sis2fhir.deliver.routing import Route
from sis2fhir.errors import Exit, ExportError, StoreMissing, Unusable, UsageError
from sis2fhir.pipeline import Progress, SyncResult
from sis2fhir.pipeline import sync as run_pipeline
from sis2fhir.report import RowReport
from sis2fhir.service import rerun
from sis2fhir.service.fingerprint import run_fingerprint
from sis2fhir.service.state import LockWait, writer_lock
from sis2fhir.store import open_store

DISK_FULL_ADVICE = (
    "the disk is full (or a quota or file size limit was reached) where the state store, the output or the row "
    "report is written. Nothing more was recorded as delivered; free some space and run the same command again"
)

CHECK_ROUTE = Route("check:nothing-is-sent", "fhir")  # `check`: every recipient named in consents.csv, no destination


@dataclass
class Routing:
    """Where this run delivers: the configured recipients' routes, and one-off routes (`--out`, `--destination`)
    that apply to every recipient named in consents.csv."""

    routes: dict[str, list[Route]] = field(default_factory=dict)
    destinations: dict[str, Destination] = field(default_factory=dict)
    one_off: list[Route] = field(default_factory=list)


@dataclass
class SyncRequest:
    export: Path
    as_of: date
    settings: Settings
    report_path: Path  # the row report (CSV)
    out_dir: Path | None = None  # a Bulk Data style folder for every recipient; holds quarantine/ too
    destinations: Sequence[str] = ()  # one-off destination specs for every recipient
    accept_change: str = ""  # the operator's reason for letting an implausible change through


def routing(settings: Settings, specs: Sequence[str]) -> Routing:
    """The destinations of one-off specs and of the configuration; ConfigError for one that cannot be built,
    UsageError when there is nowhere to deliver."""
    plan = Routing()
    for spec in specs:
        takes, dest = from_spec(spec, settings)
        route = Route(dest.name, takes, self_contained=dest.self_contained, reads_resources=dest.reads_resources)
        plan.one_off.append(route)
        plan.destinations[route.destination] = dest
    plan.routes, configured = configured_routes(settings)
    plan.destinations.update(configured)
    if not plan.one_off and not plan.routes:
        raise UsageError("nowhere to deliver: give --out DIR, --destination, or recipients in --config")
    return plan


async def check_recipients(destinations: dict[str, Destination]) -> list[str]:
    """Ask each recipient (`Destination.check`: a FHIR server's CapabilityStatement) before anything is read or
    sent. A server that is not FHIR 4.0.1 or takes no transactions raises Unusable; one that cannot be reached now
    is returned (a warning: its items wait in the outbox). Network connections are closed again (reading the
    export takes a while); a folder is left alone (closing it merges its files, which the run does)."""
    unreachable: list[str] = []
    for name, dest in destinations.items():
        try:
            await dest.check()
        except RecipientMisconfigured as e:
            raise Unusable(f"{name}: {e}. Nothing was sent; fix the destination in the configuration.") from None
        except RecipientUnreachable as e:
            unreachable.append(f"{name}: {e}")
        finally:
            if not dest.local:
                await dest.close()
    return unreachable


def sync(
    request: SyncRequest,
    *,
    progress: Progress | None = None,
    on_lock_wait: LockWait | None = None,
    on_unreachable: Callable[[str], None] | None = None,
) -> SyncResult:
    """Read, measure, check, gate, map, validate and deliver, holding the store's writer lock; the row report is
    written to `request.report_path`. A re-run of input identical to the district's last completed run reads
    nothing again and delivers what waits in the outbox (service/rerun.py). Raises ExportError (the export or a
    sanity gate: nothing was sent), ConfigError, UsageError, Unusable, StoreBusy, DestinationUnusable."""
    settings = request.settings
    specs = [*request.destinations, *([str(request.out_dir)] if request.out_dir is not None else [])]
    plan = routing(settings, specs)
    if request.out_dir is not None:
        request.out_dir.mkdir(parents=True, exist_ok=True)
    with writer_lock(settings, "sync", on_lock_wait):
        engine = open_store(settings.store_url)
        loop = asyncio.new_event_loop()  # the command's one event loop: the recipient check, then the whole run
        try:
            for problem in loop.run_until_complete(check_recipients(plan.destinations)):
                if on_unreachable is not None:
                    on_unreachable(problem)
            fingerprint = run_fingerprint(
                request.export, request.as_of, settings, plan.routes, plan.one_off, plan.destinations
            )
            try:
                skipped = rerun.stand_on_last(request, engine, fingerprint, plan.destinations, loop)
            except (OSError, OperationalError) as e:
                if not disk_full(e):
                    raise
                raise Unusable(DISK_FULL_ADVICE) from None
            if skipped is not None:  # the input is identical to the last completed run's: nothing read again
                return skipped
            quarantine = (request.out_dir or Path(".")) / "quarantine"
            result = _run(request, engine, plan, quarantine, progress, loop=loop)
            rerun.remember(request, engine, fingerprint, result)
            return result
        finally:
            loop.close()


def check(request: SyncRequest, *, progress: Progress | None = None) -> SyncResult:
    """The dry run: everything sync does up to delivery, against the store's last accepted run (only read: a
    store that is not there is not made, and then there is no baseline); nothing sent, nothing stored."""
    try:
        baseline_store: Engine | None = open_store(request.settings.store_url, existing=True)
    except StoreMissing:
        baseline_store = None
    scratch = open_store("sqlite://")  # this run's own records: an in-memory store, gone at exit
    return _run(request, scratch, Routing(one_off=[CHECK_ROUTE]), None, progress, baseline_store=baseline_store)


def _run(
    request: SyncRequest,
    engine: Engine,
    plan: Routing,
    quarantine: Path | None,
    progress: Progress | None,
    baseline_store: Engine | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> SyncResult:
    report = RowReport()
    try:
        result = run_pipeline(
            request.export,
            request.as_of,
            request.settings,
            engine,
            plan.routes,
            plan.destinations,
            recipients_from_consents=plan.one_off or None,
            quarantine_dir=quarantine,
            progress=progress,
            report=report,
            accept_change=request.accept_change,
            baseline_store=baseline_store,
            loop=loop,
        )
    except ExportError as e:
        report.write_csv(request.report_path)  # what was read before the export proved unusable is worth fixing
        raise ExportError(f"{e}\n(row report of what was read: {request.report_path})") from None
    except (OSError, OperationalError) as e:
        if not disk_full(e):
            raise
        raise Unusable(DISK_FULL_ADVICE) from None
    result.report.write_csv(request.report_path)
    return result


def disk_full(e: BaseException) -> bool:
    """An OSError for a full disk, or SQLite's own words for it (sqlite3 reports SQLITE_FULL without an errno)."""
    if isinstance(e, OSError):
        return e.errno in DISK_FULL
    return "database or disk is full" in str(getattr(e, "orig", ""))


def exit_code(result: SyncResult) -> Exit:
    """3 when rows were rejected or resources quarantined, else 4 while deliveries wait or are dead, else 0."""
    if result.report.errors or result.quarantined:
        return Exit.ROWS_REJECTED
    if sum(result.outstanding.values()):
        return Exit.NOT_ALL_DELIVERED
    return Exit.OK
