"""The `sis2fhir` command line: sync, validate, outbox, disclosures."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from sis2fhir.config import ConfigError, Settings, load_settings, parse_state_id_source, shown_store_url
from sis2fhir.deliver.base import Destination
from sis2fhir.deliver.factory import configured_routes, folder_problem, from_spec
from sis2fhir.deliver.ndjson import DISK_FULL, FolderWriteError
from sis2fhir.deliver.routing import Route
from sis2fhir.failures import INTERNAL_ERROR, GuardedGroup, StoreContext
from sis2fhir.pipeline import SyncResult, sync
from sis2fhir.read.export import ExportError
from sis2fhir.report import RowReport
from sis2fhir.store import StoreMissing, open_store
from sis2fhir.withhold import MISSING, WITHHELD


class Exit(IntEnum):
    """Exit codes (documented in the README)."""

    OK = 0  # completed: every row used, everything delivered
    UNUSABLE = 1  # the export or the configuration cannot be used; nothing was sent
    USAGE = 2  # command-line usage error
    ROWS_REJECTED = 3  # completed, but some input rows were rejected or resources quarantined (see the row report)
    NOT_ALL_DELIVERED = 4  # completed, but some deliveries wait for a retry, a patient match, or are dead
    STORE_BUSY = 5  # another sis2fhir command is writing to the same state store (sis2fhir.store.lock)
    INTERNAL = INTERNAL_ERROR  # 70: a fault in sis2fhir itself (one line, no input data; SIS2FHIR_DEBUG=1: traceback)


app = typer.Typer(
    cls=GuardedGroup,
    help="School attendance (OneRoster / Ed-Fi) to FHIR R4 and HL7 v2, gated by FERPA consent.\n\n"
    "Exit codes: 0 done; 1 the export, configuration, store or a recipient cannot be used (nothing was sent); "
    "2 usage; 3 done, but input rows were rejected or resources quarantined; 4 done, but deliveries wait or are "
    "dead; 70 internal error (please report it; SIS2FHIR_DEBUG=1 shows the traceback).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
outbox_app = typer.Typer(help="Inspect and operate the durable outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")

err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines in logs
out = Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes get wide tables, not 80 columns


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"sis2fhir {version('sis2fhir')}", highlight=False)
        except PackageNotFoundError:
            out.print("sis2fhir (version unknown: not installed as a package)", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """School attendance (OneRoster / Ed-Fi) to FHIR R4 and HL7 v2, gated by FERPA consent."""


def _fail(message: str, code: Exit = Exit.UNUSABLE) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(int(code))


def _store_url(store: str | None) -> str | None:
    """--store: a SQLAlchemy URL, or a plain path: a SQLite file, or a folder holding state.sqlite (--out DIR)."""
    if store is None or "://" in store:
        return store
    path = Path(store).expanduser()
    if path.is_dir():
        path = path / "state.sqlite"
    return f"sqlite:///{path.resolve()}"


def _settings(config: Path | None, store: str | None, policy: str | None, state_id_source: str | None) -> Settings:
    if policy is not None:
        from sis2fhir.policy import PRESETS

        if policy not in PRESETS:
            raise _fail(f"--policy must be one of {', '.join(sorted(PRESETS))}, not {policy!r}", Exit.USAGE)
    if state_id_source:
        try:
            parse_state_id_source(state_id_source)
        except ValueError as e:  # an option's value it cannot take: usage
            raise _fail(f"--state-id: {e}", Exit.USAGE) from None
    try:
        settings = load_settings(config, store_url=_store_url(store))
        if policy:
            settings.policy.preset = policy
            settings.policy.resolve()
        if state_id_source:
            settings.district.state_id_source = state_id_source
    except (ConfigError, ValueError) as e:
        raise _fail(str(e)) from None
    StoreContext.shown = shown_store_url(settings.store_url)
    return settings


AcceptOpt = Annotated[
    str | None,
    typer.Option(
        "--accept-change",
        metavar="REASON",
        help="Let an implausible change in the attendance through (a drop against the last accepted run, "
        "corrections beyond the allowed share, a school without rows), saying why; recorded with the run. "
        "Never overrides unusable attendance.",
    ),
]


def _as_of(as_of: str) -> date:
    try:
        return date.fromisoformat(as_of.strip()) if as_of else date.today()
    except ValueError:
        raise _fail(f"--as-of must be a date like 2026-03-31, not {as_of!r}", Exit.USAGE) from None


def _check_report_path(path: Path) -> None:
    """The row report must be writable before the run starts: a run whose report cannot be saved is not done."""
    if path.is_dir():
        raise _fail(f"--report {path} is a folder; give a file name such as {path / 'rows-report.csv'}", Exit.USAGE)
    if path.exists():
        if not os.access(path, os.W_OK):
            raise _fail(f"--report {path} is not writable for this user")
        return
    problem = folder_problem(path.absolute().parent)
    if problem:
        raise _fail(f"--report {path} cannot be written: {problem}")
    if path.parent.exists():  # the file itself: created and removed (a read-only mount passes os.access as root)
        try:
            path.open("x").close()
            path.unlink()
        except OSError as e:
            raise _fail(f"--report {path} cannot be written: {e.strerror}") from None


_held_locks: list[Any] = []  # the writer lock this command holds (sis2fhir.store.lock.WriterLock)


def _writes_store(command: Callable[..., None]) -> Callable[..., None]:
    """For a command that takes the writer lock: let go of it when the command ends, however it ends (tests run
    several commands in one process; a process that dies loses its locks anyway)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        finally:
            while _held_locks:
                _held_locks.pop().release()

    return run


def _hold_writer_lock(settings: Settings, command: str) -> None:
    """One writer per state store: held until this command ends; exit 5 when another one keeps it too long."""
    from sis2fhir.store.lock import StoreBusy, StoreLockError, WriterLock

    wait = settings.store_lock_wait_seconds
    try:
        lock = WriterLock(settings.store_url, command, wait)
        lock.acquire(
            on_wait=lambda holder: err.print(
                f"waiting up to {wait:g} s for another sis2fhir command ({holder}) to finish writing to the state store"
            )
        )
    except StoreBusy as e:
        raise _fail(str(e), Exit.STORE_BUSY) from None
    except StoreLockError as e:
        raise _fail(str(e)) from None
    except Exception:  # an unparsable URL
        raise _fail("cannot read store_url: give a SQLAlchemy URL such as sqlite:///state.sqlite") from None
    _held_locks.append(lock)


@app.command("sync")
@_writes_store
def sync_command(
    export: Annotated[
        Path,
        typer.Argument(
            help="The district export: a folder or a .zip (OneRoster CSV + attendance).", readable=False
        ),  # an unreadable export is exit 1 with what to do (read.export), not a usage error
    ],
    as_of: Annotated[
        str, typer.Option("--as-of", help="Count attendance up to this date (YYYY-MM-DD). Default: today.")
    ] = "",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write a Bulk Data style folder: OUT/<recipient>/<ResourceType>.ndjson, plus the "
            "row report. Applies to every recipient named in consents.csv.",
        ),
    ] = None,
    destination: Annotated[
        list[str] | None,
        typer.Option(
            "--destination",
            help="For every recipient: an http(s):// FHIR base, mllp://host:port, or a folder. Repeatable.",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Chronic-absence policy preset: essa | crdc.")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="State store URL (default sqlite:///sis2fhir-state.sqlite, or OUT/state.sqlite with --out).",
        ),
    ] = None,
    state_id_source: Annotated[
        str | None,
        typer.Option(
            "--state-id",
            help="Where the state student id is: identifier | userIds:<type> | userMasterIdentifier.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=0, help="Processes for reading attendance and mapping (default 0: one per core)."
        ),
    ] = None,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Row report file (CSV: file, line, column, code, severity, message). Default: OUT/rows-report.csv.",
        ),
    ] = None,
    accept_change: AcceptOpt = None,
) -> None:
    """Read the export, measure attendance, check it (sanity gates), gate on consent, map and validate FHIR, and
    deliver.

    Exit codes: 0 done; 1 the export, configuration, store or a recipient cannot be used, or the sanity gates
    stopped the run (nothing was sent); 2 usage; 3 done, but input rows were rejected or resources quarantined (see
    the row report); 4 done, but deliveries wait in the outbox (retry, patient match) or are dead; 5 another
    sis2fhir command is writing to the same state store; 70 internal error."""
    day = _as_of(as_of)
    reason = _accept_reason(accept_change)
    settings = _settings(config, store, policy, state_id_source)
    if workers is not None:
        settings.workers = workers
    if out_dir is not None:
        problem = folder_problem(out_dir)
        if problem:
            raise _fail(f"--out {out_dir} cannot be used: {problem}")
    _check_report_path(report_path or (out_dir / "rows-report.csv" if out_dir else Path("rows-report.csv")))
    if store is None and out_dir is not None and "store_url" not in settings.model_fields_set:
        # a one-off run keeps its state next to its output, unless the config or environment names a store
        settings.store_url = f"sqlite:///{(out_dir / 'state.sqlite').resolve()}"
        StoreContext.shown = shown_store_url(settings.store_url)

    one_off: list[Route] = []
    destinations: dict[str, Destination] = {}
    try:
        for spec in [*(destination or []), *([str(out_dir)] if out_dir is not None else [])]:
            takes, dest = from_spec(spec, settings)
            route = Route(dest.name, takes)
            one_off.append(route)
            destinations[route.destination] = dest

        routes, configured = configured_routes(settings)
        destinations.update(configured)
    except ConfigError as e:
        raise _fail(str(e)) from None
    if not one_off and not routes:
        raise _fail("nowhere to deliver: give --out DIR, --destination, or recipients in --config", Exit.USAGE)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    _hold_writer_lock(settings, "sync")
    engine = open_store(settings.store_url)  # errors: a clean message naming the store (sis2fhir.failures)

    loop = asyncio.new_event_loop()  # the command's one event loop: the recipient check, then the whole run
    try:
        for problem in loop.run_until_complete(_check_recipients(destinations)):
            err.print(f"[yellow]warning:[/] {escape(problem)}; its items wait in the outbox")
        rp = report_path or (out_dir / "rows-report.csv" if out_dir else Path("rows-report.csv"))
        quarantine = (out_dir or Path(".")) / "quarantine"
        _run(export, day, settings, engine, routes, destinations, one_off, quarantine, rp, accept_change=reason,
             loop=loop)  # fmt: skip
    finally:
        loop.close()


def _accept_reason(accept_change: str | None) -> str:
    if accept_change is None:
        return ""
    if not accept_change.strip():
        raise _fail('--accept-change needs a reason, e.g. --accept-change "school 12 closed in March"', Exit.USAGE)
    return accept_change.strip()


def _run(
    export: Path,
    day: date,
    settings: Settings,
    engine: Engine,
    routes: dict[str, list[Route]],
    destinations: dict[str, Destination],
    one_off: list[Route],
    quarantine: Path | None,
    report_path: Path,
    dry_run: bool = False,
    accept_change: str = "",
    baseline_store: Engine | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Run the pipeline with a progress bar, write the row report, print the summary, exit with the right code."""
    report = RowReport()
    try:
        with _progress() as progress:
            task = progress.add_task("reading", total=None)

            def tick(stage: str, n: int) -> None:
                progress.update(task, description=f"{stage}: {n:,}")

            result = sync(
                export,
                day,
                settings,
                engine,
                routes,
                destinations,
                recipients_from_consents=one_off or None,
                quarantine_dir=quarantine,
                progress=tick,
                report=report,
                accept_change=accept_change,
                baseline_store=baseline_store,
                loop=loop,
            )
    except ExportError as e:
        report.write_csv(report_path)  # what was read before the export proved unusable is still worth fixing
        raise _fail(f"{e}\n(row report of what was read: {report_path})") from None
    except FolderWriteError as e:
        raise _fail(str(e)) from None
    except (OSError, OperationalError) as e:
        if not _disk_full(e):
            raise
        raise _fail(DISK_FULL_ADVICE) from None
    result.report.write_csv(report_path)
    _print_summary(result, report_path)
    _print_acceptance(result, dry_run)
    if dry_run:
        out.print("Check only: nothing was sent and nothing was stored.")
    if result.report.errors or result.quarantined:
        raise typer.Exit(int(Exit.ROWS_REJECTED))
    if sum(result.outstanding.values()):
        raise typer.Exit(int(Exit.NOT_ALL_DELIVERED))


DISK_FULL_ADVICE = (
    "the disk is full (or a quota or file size limit was reached) where the state store, the output or the row "
    "report is written. Nothing more was recorded as delivered; free some space and run the same command again"
)


def _disk_full(e: BaseException) -> bool:
    """An OSError for a full disk, or SQLite's own words for it (sqlite3 reports SQLITE_FULL without an errno)."""
    if isinstance(e, OSError):
        return e.errno in DISK_FULL
    return "database or disk is full" in str(getattr(e, "orig", ""))


@app.command("check")
def check_command(
    export: Annotated[Path, typer.Argument(help="The district export: a folder or a .zip.", readable=False)],
    as_of: Annotated[str, typer.Option("--as-of", help="Count attendance up to this date (YYYY-MM-DD).")] = "",
    report_path: Annotated[
        Path, typer.Option("--report", help="Row report file (CSV: file, line, column, code, severity, message).")
    ] = Path("rows-report.csv"),
    config: Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Chronic-absence policy preset: essa | crdc.")] = None,
    state_id_source: Annotated[
        str | None, typer.Option("--state-id", help="identifier | userIds:<type> | userMasterIdentifier.")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="The state store sync uses (default: the config's store_url, else sqlite:///sis2fhir-state.sqlite; "
            "after `sync --out OUT`: sqlite:///OUT/state.sqlite). Only read: its last accepted run is what the "
            "sanity gates compare with.",
        ),
    ] = None,
    accept_change: AcceptOpt = None,
) -> None:
    """A dry run for the district's data staff: read, measure, check (the same sanity gates as sync, against the
    store's last accepted run), gate, map and validate everything, write the row report and the summary, and send
    and store nothing. Exit 0 clean, 3 rows rejected, 1 export unusable or stopped by a sanity gate."""
    day = _as_of(as_of)
    reason = _accept_reason(accept_change)
    settings = _settings(config, store, policy, state_id_source)
    _check_report_path(report_path)
    try:  # read only: a store that is not there is not made, and then there is no baseline
        baseline_store: Engine | None = open_store(settings.store_url, existing=True)
    except StoreMissing:
        baseline_store = None
    nowhere = Route("check:nothing-is-sent", "fhir")  # every recipient named in consents.csv, no destination
    scratch = open_store("sqlite://")  # this run's own records: an in-memory store, gone at exit
    _run(export, day, settings, scratch, {}, {}, [nowhere], None, report_path, dry_run=True, accept_change=reason,
         baseline_store=baseline_store)  # fmt: skip


def _print_acceptance(result: SyncResult, dry_run: bool) -> None:
    """What --accept-change let through, and the findings that did not stop the run."""
    verdict = result.verdict
    if verdict is None:
        return
    overridden = verdict.overridden
    for f in verdict.findings:
        if f not in overridden and not f.stops:
            err.print(f"[yellow]warning:[/] {escape(f.code)}: {escape(f.message)}")
    if overridden:
        said = "would be accepted (check only: nothing recorded)" if dry_run else "accepted and recorded with the run"
        err.print(f"[yellow]change {said}:[/] {escape(verdict.accept_reason)}")
        for f in overridden:
            err.print(f"  - {escape(f.code)}: {escape(f.message)}")
    elif verdict.accept_reason:
        err.print("--accept-change: nothing needed accepting (the sanity gates found no implausible change)")


async def _check_recipients(destinations: dict[str, Destination]) -> list[str]:
    """Ask each recipient (`Destination.check`: a FHIR server's CapabilityStatement) before anything is read or
    sent. A server that is not FHIR 4.0.1 or takes no transactions stops the run (exit 1); one that cannot be
    reached now is only a warning. Network connections are closed again (reading the export takes a while);
    a folder is left alone (closing it merges its files, which the run does)."""
    from sis2fhir.deliver.base import RecipientMisconfigured, RecipientUnreachable

    unreachable: list[str] = []
    for name, dest in destinations.items():
        try:
            await dest.check()
        except RecipientMisconfigured as e:
            raise _fail(f"{name}: {e}. Nothing was sent; fix the destination in the configuration.") from None
        except RecipientUnreachable as e:
            unreachable.append(f"{name}: {e}")
        finally:
            if not dest.local:
                await dest.close()
    return unreachable


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _print_summary(result: SyncResult, report_path: Path) -> None:
    year = result.school_year
    t = Table(
        title=f"as of {result.as_of}" + (f", school year {year.start} to {year.end}" if year else ""),
        show_header=False,
        title_justify="left",
    )
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("students in roster", f"{result.students:,}")
    t.add_row("student x school summaries", f"{len(result.summaries):,}")
    withheld = Counter(w.code for w in result.withheld)
    t.add_row("students withheld (attendance rows rejected)", f"{withheld.get(WITHHELD, 0):,}")
    if withheld.get(MISSING):
        t.add_row("students withheld (no attendance row at all)", f"{withheld[MISSING]:,}")
    for tier in ("satisfactory", "at-risk", "moderate-chronic", "severe-chronic", "insufficient-data"):
        t.add_row(f"  tier {tier}", f"{result.tiers.get(tier, 0):,}")
    t.add_row("students consented (any recipient)", f"{result.consented_students:,}")
    for decision, n in sorted(result.decisions.items()):
        t.add_row(f"  consent {decision} (student x recipient)", f"{n:,}")
    for rtype, n in sorted(result.resources_built.items()):
        t.add_row(f"{rtype} resources built and valid", f"{n:,}")
    t.add_row("resources quarantined (invalid)", f"{result.quarantined:,}")
    # the resources in this run's items, per destination: for an NDJSON folder, the lines of DIR/*/<Type>.ndjson
    for rtype, n in sorted(result.to_recipients.items()):
        t.add_row(f"{rtype} resources for recipients (new + unchanged, per destination)", f"{n:,}")
    for rtype in sorted(result.to_recipients):
        t.add_row(f"  of which new or changed in this run: {rtype}", f"{result.to_recipients_new.get(rtype, 0):,}")
    t.add_row("changes (student x recipient deliveries queued)", f"{result.changes:,}")
    t.add_row("unchanged since last delivery (student x recipient)", f"{result.unchanged:,}")
    if result.revocation_notices:
        t.add_row("revoked Consents sent to recipients holding data", f"{result.revocation_notices:,}")
    if result.withdrawn:
        t.add_row("undelivered items withdrawn (consent ended)", f"{result.withdrawn:,}")
    for outcome, n in sorted(result.delivery.items()):
        t.add_row(f"deliveries {outcome}", f"{n:,}")
    for status, n in sorted(result.outstanding.items()):
        t.add_row(f"waiting in the outbox: {status}", f"{n:,}")
    errors = Counter(i.code for i in result.report.issues if i.severity == "error")
    warnings = Counter(i.code for i in result.report.issues if i.severity != "error")
    t.add_row("input rows rejected (not used)", f"{sum(result.report.rows_rejected().values()):,}")
    for code, n in errors.most_common():
        t.add_row(f"  error {code}", f"{n:,}")
    t.add_row("warnings (rows used, or notes on a whole file)", f"{sum(warnings.values()):,}")
    for code, n in warnings.most_common():
        t.add_row(f"  warning {code}", f"{n:,}")
    for stage, seconds in result.timings.items():
        t.add_row(f"time: {stage}", f"{seconds:,.1f} s")
    out.print(t)
    if result.changes:
        said = f"{result.changes} changes."
    else:
        said = "0 changes: nothing new to deliver since the last run" + (
            f" ({result.unchanged:,} deliveries unchanged)." if result.unchanged else "."
        )
    out.print(f"{said} Row report: {report_path}", highlight=False)


@app.command("validate")
def validate_command(
    paths: Annotated[list[Path], typer.Argument(help="FHIR JSON, NDJSON or Bundle files, or folders of them.")],
) -> None:
    """Check FHIR resources against the project's profiles and the R4 core definitions; exit 1 on any error."""
    from sis2fhir.validate import run_validate_command

    raise typer.Exit(run_validate_command(paths))


def _open_outbox(config: Path | None, store: str | None, writer: str = ""):  # type: ignore[no-untyped-def]
    """The outbox of the configured store; `writer`: the command's name, when it writes (takes the writer lock)."""
    from sis2fhir.deliver.outbox import Outbox

    settings = _settings(config, store, None, None)
    engine = open_store(settings.store_url, existing=True)  # first: a store that is not there gets no lock file
    if writer:
        _hold_writer_lock(settings, writer)
    return Outbox(engine, settings.outbox), settings


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The state store the sync used: a URL, a SQLite file, or the --out folder of a one-off sync "
        "(default: the configuration's store_url, SIS2FHIR_STORE_URL, else sqlite:///sis2fhir-state.sqlite). "
        "A store that does not exist is refused, never created.",
    ),
]


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option(help="queued | pending | delivered | dead | superseded")] = None,
    limit: int = 50,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines (one item per line) instead of tables.")] = False,
) -> None:
    """Counts by destination and status, then the latest items."""
    ob, _ = _open_outbox(config, store)
    if as_json:
        for r in ob.list(status, limit):
            sys.stdout.write(orjson.dumps({str(k): v for k, v in r._asdict().items()}, default=str).decode() + "\n")
        return
    t = Table("destination", "status", "items")
    for (dest, st), n in sorted(ob.counts().items()):
        t.add_row(dest, st, str(n))
    out.print(t)
    items = Table("key", "recipient", "student", "status", "attempts", "next attempt", "last error")
    for r in ob.list(status, limit):
        items.add_row(
            r.key[:12],
            r.recipient,
            r.student_sourced_id,
            r.status,
            str(r.attempts),
            str(r.next_attempt_at)[:19],
            (r.last_error or "")[:80],
        )
    out.print(items)


@outbox_app.command("dead")
def outbox_dead(limit: int = 50, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """The dead letters with their last error."""
    ob, _ = _open_outbox(config, store)
    t = Table("key", "recipient", "student", "attempts", "last error")
    for r in ob.list("dead", limit):
        t.add_row(r.key[:12], r.recipient, r.student_sourced_id, str(r.attempts), r.last_error or "")
    out.print(t)


def _drain(ob, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """Deliver what is due, say what it came to, and exit 4 while anything still waits or is dead."""
    from sis2fhir.deliver.factory import destinations_for_outbox
    from sis2fhir.deliver.outbox import DEAD, PENDING, QUEUED
    from sis2fhir.pipeline import drain_and_close

    dests = destinations_for_outbox(settings, ob)
    try:
        counts = asyncio.run(drain_and_close(ob, dests)) if dests else {}
    except FolderWriteError as e:  # merging a folder's delivered segments did not fit: they stay, merged next time
        raise _fail(str(e)) from None
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing was due")
    left: dict[str, int] = {}
    for (_dest, status), n in ob.counts().items():
        if status in (QUEUED, PENDING, DEAD):
            left[status] = left.get(status, 0) + n
    if left:
        out.print(
            "still in the outbox: "
            + ", ".join(f"{n} {status}" for status, n in sorted(left.items()))
            + " (sis2fhir outbox list)"
        )
        raise typer.Exit(int(Exit.NOT_ALL_DELIVERED))


@outbox_app.command("retry")
@_writes_store
def outbox_retry(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Try every queued and pending item now. Exit 0 when nothing waits any more, 4 while items still wait
    (queued, pending) or are dead."""
    ob, settings = _open_outbox(config, store, writer="outbox retry")
    n = ob.make_due()
    out.print(f"{n} items due now")
    _drain(ob, settings)


def _dead_keys(ob, prefixes: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """The full keys of the dead letters named by `prefixes`; exit 2 for a prefix that names none, several, or an
    item that is not a dead letter (replaying it would mean nothing)."""
    from sis2fhir.deliver.outbox import DEAD
    from sis2fhir.store.schema import outbox

    keys: list[str] = []
    for p in prefixes:
        status_of: dict[str, str] = {}
        if p.strip():
            with ob.engine.connect() as conn:
                q = select(outbox.c.key, outbox.c.status).where(outbox.c.key.startswith(p.strip(), autoescape=True))
                status_of = {k: st for k, st in conn.execute(q.limit(50))}
        found = list(status_of)
        if not found:
            raise _fail(f"no outbox item has a key starting with {p!r}: see `sis2fhir outbox dead`", Exit.USAGE)
        if len(found) > 1 and p.strip() not in found:
            raise _fail(f"the key prefix {p!r} matches {len(found)} items: give more of the key", Exit.USAGE)
        key = p.strip() if p.strip() in found else found[0]
        if status_of[key] != DEAD:
            raise _fail(f"the item {key[:12]} is {status_of[key]}, not a dead letter: nothing to replay", Exit.USAGE)
        keys.append(key)
    return keys


@outbox_app.command("replay")
@_writes_store
def outbox_replay(
    key: Annotated[
        list[str] | None,
        typer.Argument(help="Keys (or prefixes shown by `outbox list`); all dead letters when none given."),
    ] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Give dead letters another go (after the recipient fixed what it refused). A key or prefix that names no
    dead letter, or several items, is refused (exit 2); exit 4 while items still wait or are dead."""
    from sis2fhir.deliver.outbox import DEAD

    ob, settings = _open_outbox(config, store, writer="outbox replay")
    keys = _dead_keys(ob, key) if key else None
    n = ob.make_due((DEAD,), keys)
    out.print(f"{n} dead letters queued again")
    _drain(ob, settings)


@app.command("pending")
def pending_command(limit: int = 200, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Students waiting for a certain patient match at a recipient: never sent, tried again on every run."""
    from sis2fhir.deliver.outbox import PENDING

    ob, _ = _open_outbox(config, store)
    rows = ob.list(PENDING, limit)
    t = Table("student", "recipient", "destination", "attempts", "why")
    for r in rows:
        t.add_row(r.student_sourced_id, r.recipient, r.destination, str(r.attempts), r.last_error or "")
    out.print(t)
    out.print(f"{len(rows)} pending")


@app.command("disclosures")
def disclosures_command(
    student: Annotated[str, typer.Option("--student", help="The student's sourcedId or state id.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table.")] = False,
) -> None:
    """What was disclosed about a student, to whom, when, under which consent (FERPA 34 CFR 99.32). Rows whose
    delivery was never confirmed (a crash, a timeout after sending) are shown as in doubt: possibly disclosed."""
    from sis2fhir.store.schema import disclosures

    settings = _settings(config, store, None, None)
    engine = open_store(settings.store_url, existing=True)
    with engine.connect() as conn:
        rows = conn.execute(
            select(disclosures)
            .where((disclosures.c.student_sourced_id == student) | (disclosures.c.state_student_id == student))
            .order_by(disclosures.c.disclosed_at)
        ).all()
    if as_json:
        for r in rows:
            record = {str(k): v for k, v in r._asdict().items()} | {"disclosed": orjson.loads(r.disclosed)}
            sys.stdout.write(orjson.dumps(record, default=str).decode() + "\n")
        return
    # "sending": handed over, no answer yet (or the process stopped); "in-doubt": no answer ever came
    certainty = {"confirmed": "confirmed", "sending": "in doubt (in flight)", "in-doubt": "in doubt (possibly)"}
    t = Table("when (UTC)", "recipient", "destination", "consent", "disclosed", "what")
    for r in rows:
        t.add_row(
            str(r.disclosed_at)[:19],
            r.recipient,
            r.destination,
            r.consent_id,
            certainty.get(r.certainty, r.certainty),
            "\n".join(orjson.loads(r.disclosed)),
        )
    out.print(t)
    if not rows:
        out.print(f"no disclosure recorded for {student}")
    elif any(r.certainty != "confirmed" for r in rows):
        out.print(
            "in doubt: sent, but the recipient's answer was never recorded (a crash or a timeout); treated as "
            "disclosed: the recipient counts as holding it, and a revocation sends it the inactive Consent"
        )


def main() -> None:  # pragma: no cover
    app()
