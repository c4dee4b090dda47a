"""What a sync or check prints: the progress while it runs, the summary table, the sanity gates' findings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sis2fhir.cli.options import err, out
from sis2fhir.pipeline import SyncResult
from sis2fhir.terminology import TIERS
from sis2fhir.withhold import MISSING, WITHHELD


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def print_summary(result: SyncResult, report_path: Path) -> None:
    year = result.school_year
    t = Table(
        title=f"as of {result.as_of}" + (f", school year {year.start} to {year.end}" if year else ""),
        show_header=False,
        title_justify="left",
    )
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("students in roster", f"{result.students:,}")
    t.add_row("student x school summaries", f"{result.summary_count():,}")
    withheld = result.withheld_counts()
    t.add_row("students withheld (attendance rows rejected)", f"{withheld.get(WITHHELD, 0):,}")
    if withheld.get(MISSING):
        t.add_row("students withheld (no attendance row at all)", f"{withheld[MISSING]:,}")
    for tier in TIERS:  # the code system's order: satisfactory ... severe-chronic, insufficient-data
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
    for trigger, n in sorted(result.events.items()):  # store.attendance_events: what notifications fan out from
        t.add_row(f"attendance events recorded: {trigger}", f"{n:,}")
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
    if result.identical_to is not None:  # nothing read again (service/rerun.py)
        said = f"0 changes: the input is identical to run {result.identical_to}; nothing new to deliver."
    elif result.changes:
        said = f"{result.changes} changes."
    else:
        said = "0 changes: nothing new to deliver since the last run" + (
            f" ({result.unchanged:,} deliveries unchanged)." if result.unchanged else "."
        )
    out.print(f"{said} Row report: {report_path}", highlight=False)


def print_acceptance(result: SyncResult, dry_run: bool) -> None:
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
