"""`sis2fhir sync` and `sis2fhir check`: the options, the run (sis2fhir.service.sync), the summary, the exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sis2fhir.cli.failures import StoreContext
from sis2fhir.cli.options import (
    AcceptOpt,
    accept_reason,
    as_of_date,
    check_report_path,
    err,
    fail,
    failing,
    lock_waiting,
    out,
    settings_for,
)
from sis2fhir.cli.summary import print_acceptance, print_summary, progress_bar
from sis2fhir.config import shown_store_url
from sis2fhir.deliver.factory import folder_problem
from sis2fhir.errors import Exit
from sis2fhir.pipeline import SyncResult
from sis2fhir.service import sync as service
from sis2fhir.service.sync import SyncRequest


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
            "--workers", min=0, max=256, help="Processes for reading attendance and mapping (default 0: one per core)."
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
    day = as_of_date(as_of)
    reason = accept_reason(accept_change)
    settings = settings_for(config, store, policy, state_id_source)
    if workers is not None:
        settings.workers = workers
    if out_dir is not None:
        problem = folder_problem(out_dir)
        if problem:
            raise fail(f"--out {out_dir} cannot be used: {problem}")
    rp = report_path or (out_dir / "rows-report.csv" if out_dir else Path("rows-report.csv"))
    check_report_path(rp)
    if store is None and out_dir is not None and "store_url" not in settings.model_fields_set:
        # a one-off run keeps its state next to its output, unless the config or environment names a store
        settings.store_url = f"sqlite:///{(out_dir / 'state.sqlite').resolve()}"
        StoreContext.shown = shown_store_url(settings.store_url)
    request = SyncRequest(export, day, settings, rp, out_dir, destination or [], reason)
    with failing(), progress_bar() as progress:
        task = progress.add_task("reading", total=None)

        def tick(stage: str, n: int) -> None:
            progress.update(task, description=f"{stage}: {n:,}")

        def unreachable(problem: str) -> None:
            err.print(f"[yellow]warning:[/] {escape(problem)}; its items wait in the outbox")

        result = service.sync(request, progress=tick, on_lock_wait=lock_waiting(settings), on_unreachable=unreachable)
    _finish(result, rp, dry_run=False)


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
    day = as_of_date(as_of)
    reason = accept_reason(accept_change)
    settings = settings_for(config, store, policy, state_id_source)
    check_report_path(report_path)
    request = SyncRequest(export, day, settings, report_path, accept_change=reason)
    with failing(), progress_bar() as progress:
        task = progress.add_task("reading", total=None)

        def tick(stage: str, n: int) -> None:
            progress.update(task, description=f"{stage}: {n:,}")

        result = service.check(request, progress=tick)
    _finish(result, report_path, dry_run=True)


def _finish(result: SyncResult, report_path: Path, dry_run: bool) -> None:
    """The summary, what --accept-change let through, and the exit code."""
    print_summary(result, report_path)
    print_acceptance(result, dry_run)
    if dry_run:
        out.print("Check only: nothing was sent and nothing was stored.")
    code = service.exit_code(result)
    if code != Exit.OK:
        raise typer.Exit(int(code))
