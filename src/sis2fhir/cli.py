"""The `sis2fhir` command line: sync, validate, outbox, disclosures."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from enum import IntEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, select

from sis2fhir.config import ConfigError, Settings, load_settings
from sis2fhir.deliver.base import Destination
from sis2fhir.deliver.factory import configured_routes, from_spec
from sis2fhir.disclosure import Route
from sis2fhir.pipeline import SyncResult, sync
from sis2fhir.read.export import ExportError
from sis2fhir.report import RowReport
from sis2fhir.store import open_store


class Exit(IntEnum):
    """Exit codes (documented in the README)."""

    OK = 0  # completed: every row used, everything delivered
    UNUSABLE = 1  # the export or the configuration cannot be used; nothing was sent
    USAGE = 2  # command-line usage error
    ROWS_REJECTED = 3  # completed, but some input rows were rejected or resources quarantined (see the row report)
    NOT_ALL_DELIVERED = 4  # completed, but some deliveries wait for a retry, a patient match, or are dead


app = typer.Typer(
    help="School attendance (OneRoster / Ed-Fi) to FHIR R4 and HL7 v2, gated by FERPA consent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
outbox_app = typer.Typer(help="Inspect and operate the durable outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")

err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes get wide tables, not 80 columns


def _fail(message: str, code: Exit = Exit.UNUSABLE) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(int(code))


def _settings(config: Path | None, store: str | None, policy: str | None, state_id_source: str | None) -> Settings:
    try:
        settings = load_settings(config, store_url=store)
        if policy:
            settings.policy.preset = policy
            settings.policy.resolve()
        if state_id_source:
            settings.district.state_id_source = state_id_source
    except (ConfigError, ValueError) as e:
        raise _fail(str(e)) from None
    return settings


@app.command("sync")
def sync_command(
    export: Annotated[
        Path, typer.Argument(help="The district export: a folder or a .zip (OneRoster CSV + attendance).")
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
        typer.Option("--workers", help="Processes for reading attendance and mapping (default: one per core)."),
    ] = None,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Row report file (CSV: file, line, column, code, severity, message). Default: OUT/rows-report.csv.",
        ),
    ] = None,
) -> None:
    """Read the export, measure attendance, gate on consent, map and validate FHIR, and deliver.

    Exit codes: 0 done; 1 the export or configuration cannot be used; 2 usage; 3 done, but input rows were
    rejected or resources quarantined (see the row report); 4 done, but deliveries wait in the outbox (retry,
    patient match) or are dead."""
    try:
        day = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError:
        raise _fail(f"--as-of must be a date like 2026-03-31, not {as_of!r}", Exit.USAGE) from None
    settings = _settings(config, store, policy, state_id_source)
    if workers is not None:
        settings.workers = max(0, workers)
    if store is None and out_dir is not None and "store_url" not in settings.model_fields_set:
        # a one-off run keeps its state next to its output, unless the config or environment names a store
        settings.store_url = f"sqlite:///{(out_dir / 'state.sqlite').resolve()}"
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    try:
        engine = open_store(settings.store_url)
    except Exception as e:  # a bad URL or an unreachable database
        raise _fail(f"cannot open the state store {settings.store_url!r}: {e}") from None

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

    for problem in asyncio.run(_check_recipients(destinations)):
        err.print(f"[yellow]warning:[/] {problem}; its items wait in the outbox")
    rp = report_path or (out_dir / "rows-report.csv" if out_dir else Path("rows-report.csv"))
    _run(export, day, settings, engine, routes, destinations, one_off, (out_dir or Path(".")) / "quarantine", rp)


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
            )
    except ExportError as e:
        report.write_csv(report_path)  # what was read before the export proved unusable is still worth fixing
        raise _fail(f"{e}\n(row report of what was read: {report_path})") from None
    result.report.write_csv(report_path)
    _print_summary(result, report_path)
    if dry_run:
        out.print("Check only: nothing was sent and nothing was stored.")
    if result.report.errors or result.quarantined:
        raise typer.Exit(int(Exit.ROWS_REJECTED))
    if sum(result.outstanding.values()):
        raise typer.Exit(int(Exit.NOT_ALL_DELIVERED))


@app.command("check")
def check_command(
    export: Annotated[Path, typer.Argument(help="The district export: a folder or a .zip.")],
    as_of: Annotated[str, typer.Option("--as-of", help="Count attendance up to this date (YYYY-MM-DD).")] = "",
    report_path: Annotated[
        Path, typer.Option("--report", help="Row report file (CSV: file, line, column, code, severity, message).")
    ] = Path("rows-report.csv"),
    config: Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Chronic-absence policy preset: essa | crdc.")] = None,
    state_id_source: Annotated[
        str | None, typer.Option("--state-id", help="identifier | userIds:<type> | userMasterIdentifier.")
    ] = None,
) -> None:
    """A dry run for the district's data staff: read, measure, gate, map and validate everything, write the row
    report and the summary, and send and store nothing. Exit 0 clean, 3 rows rejected, 1 export unusable."""
    try:
        day = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError:
        raise _fail(f"--as-of must be a date like 2026-03-31, not {as_of!r}", Exit.USAGE) from None
    settings = _settings(config, "sqlite://", policy, state_id_source)  # an in-memory store, gone at exit
    nowhere = Route("check:nothing-is-sent", "fhir")  # every recipient named in consents.csv, no destination
    _run(export, day, settings, open_store(settings.store_url), {}, {}, [nowhere], None, report_path, dry_run=True)


async def _check_recipients(destinations: dict[str, Destination]) -> list[str]:
    """Ask each FHIR recipient for its CapabilityStatement before anything is read or sent. A server that is not
    FHIR 4.0.1 or takes no transactions stops the run (exit 1); one that cannot be reached now is only a warning."""
    from sis2fhir.deliver.fhir_rest import RecipientMisconfigured, RecipientUnreachable

    unreachable: list[str] = []
    for name, dest in destinations.items():
        check = getattr(dest, "check", None)
        if check is None:
            continue
        try:
            await check()
        except RecipientMisconfigured as e:
            raise _fail(f"{name}: {e}. Nothing was sent; fix the destination in the configuration.") from None
        except RecipientUnreachable as e:
            unreachable.append(f"{name}: {e}")
        finally:
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
    for tier in ("satisfactory", "at-risk", "moderate-chronic", "severe-chronic", "insufficient-data"):
        t.add_row(f"  tier {tier}", f"{result.tiers.get(tier, 0):,}")
    t.add_row("students consented (any recipient)", f"{result.consented_students:,}")
    for decision, n in sorted(result.decisions.items()):
        t.add_row(f"  consent {decision} (student x recipient)", f"{n:,}")
    for rtype, n in sorted(result.resources_built.items()):
        t.add_row(f"{rtype} resources built and valid", f"{n:,}")
    t.add_row("resources quarantined (invalid)", f"{result.quarantined:,}")
    t.add_row("changes (new deliveries queued)", f"{result.changes:,}")
    t.add_row("unchanged since last delivery", f"{result.unchanged:,}")
    if result.revocation_notices:
        t.add_row("revoked Consents sent to recipients holding data", f"{result.revocation_notices:,}")
    if result.withdrawn:
        t.add_row("undelivered items withdrawn (consent ended)", f"{result.withdrawn:,}")
    for outcome, n in sorted(result.delivery.items()):
        t.add_row(f"deliveries {outcome}", f"{n:,}")
    for status, n in sorted(result.outstanding.items()):
        t.add_row(f"waiting in the outbox: {status}", f"{n:,}")
    rejected = result.report.rows_rejected()
    t.add_row("input rows rejected", f"{sum(rejected.values()):,}")
    for code, n in result.report.by_code().most_common():
        t.add_row(f"  {code}", f"{n:,}")
    for stage, seconds in result.timings.items():
        t.add_row(f"time: {stage}", f"{seconds:,.1f} s")
    out.print(t)
    out.print(f"{result.changes} changes. Row report: {report_path}")


@app.command("validate")
def validate_command(
    paths: Annotated[list[Path], typer.Argument(help="FHIR JSON, NDJSON or Bundle files, or folders of them.")],
) -> None:
    """Check FHIR resources against the project's profiles and the R4 core definitions; exit 1 on any error."""
    from sis2fhir.validate import run_validate_command

    raise typer.Exit(run_validate_command(paths))


def _open_outbox(config: Path | None, store: str | None):  # type: ignore[no-untyped-def]
    from sis2fhir.deliver.outbox import Outbox

    settings = _settings(config, store, None, None)
    return Outbox(open_store(settings.store_url), settings.outbox), settings


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="State store URL.")]


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
    import asyncio

    from sis2fhir.deliver.factory import destinations_for_outbox
    from sis2fhir.pipeline import drain_and_close

    dests = destinations_for_outbox(settings, ob)
    counts = asyncio.run(drain_and_close(ob, dests)) if dests else {}
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing was due")


@outbox_app.command("retry")
def outbox_retry(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Try every queued and pending item now."""
    ob, settings = _open_outbox(config, store)
    n = ob.make_due()
    out.print(f"{n} items due now")
    _drain(ob, settings)


@outbox_app.command("replay")
def outbox_replay(
    key: Annotated[
        list[str] | None,
        typer.Argument(help="Keys (or prefixes shown by `outbox list`); all dead letters when none given."),
    ] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Give dead letters another go (after the recipient fixed what it refused)."""
    from sis2fhir.deliver.outbox import DEAD

    ob, settings = _open_outbox(config, store)
    keys = ob.expand_keys(key) if key else None
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
    engine = open_store(settings.store_url)
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
