"""`sis2fhir population` and `sis2fhir evaluate`: de-identified figures for public health and program evaluation
(sis2fhir.service.population, sis2fhir.service.evaluate; docs/population.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from sis2fhir.cli.failures import StoreContext
from sis2fhir.cli.options import (
    ConfigOpt,
    PolicyOpt,
    as_of_date,
    check_report_path,
    fail,
    failing,
    lock_waiting,
    out,
    settings_for,
)
from sis2fhir.config import Settings, shown_store_url
from sis2fhir.errors import Exit
from sis2fhir.report import RowReport
from sis2fhir.service.evaluate import EvaluateRequest, evaluate
from sis2fhir.service.population import PopulationRequest, population

ExportArg = Annotated[Path, typer.Argument(help="The district export: a folder or a .zip.", readable=False)]
AsOfOpt = Annotated[str, typer.Option("--as-of", help="Count attendance up to this date (YYYY-MM-DD). Default: today.")]
OutOpt = Annotated[Path, typer.Option("--out", help="The folder the files are written to (made if need be).")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="State store URL the run is recorded in (default: the configuration's store_url, else "
        "sqlite:///OUT/state.sqlite).",
    ),
]
ReportOpt = Annotated[
    Path,
    typer.Option(
        "--report",
        help="Row report (CSV). It names rows by file and line and may name students by sourcedId: it is for the "
        "district's data staff, not for publication, so it is not written into OUT.",
    ),
]


def _settings(config: Path | None, store: str | None, policy: str | None, out_dir: Path) -> Settings:
    settings = settings_for(config, store, policy, None)
    if store is None and "store_url" not in settings.model_fields_set:
        settings.store_url = f"sqlite:///{(out_dir / 'state.sqlite').resolve()}"
        StoreContext.shown = shown_store_url(settings.store_url)
        out_dir.mkdir(parents=True, exist_ok=True)
    return settings


def _exit(report: RowReport, report_path: Path) -> None:
    if report.errors:
        out.print(f"Rows rejected: {report.errors:,} (see {report_path}).")
        raise typer.Exit(int(Exit.ROWS_REJECTED))


def population_command(
    export: ExportArg,
    out_dir: OutOpt,
    as_of: AsOfOpt = "",
    config: ConfigOpt = None,
    policy: PolicyOpt = None,
    store: StoreOpt = None,
    report_path: ReportOpt = Path("rows-report.csv"),
) -> None:
    """Chronic absence per district, school, grade and month, de-identified: population.csv, MeasureReport.ndjson
    (summary reports against the chronic-absence Measure), population.html. Counts below population.min_cell and
    the rates computed from them are withheld, with complementary suppression. Exit codes: 0 done; 1 the export,
    configuration or store cannot be used, or the sanity gates stopped the run (nothing written); 2 usage; 3 done,
    but input rows were rejected (see the row report); 5 the store is busy; 70 internal error."""
    day = as_of_date(as_of)
    check_report_path(report_path)
    settings = _settings(config, store, policy, out_dir)
    with failing():
        result = population(PopulationRequest(export, day, settings, out_dir, report_path), lock_waiting(settings))
    out.print(
        f"Population figures, school year {result.school_year} up to {result.as_of}: {result.students:,} students, "
        f"{result.groups:,} groups; {result.cells_withheld:,} of {result.cells:,} cells withheld "
        f"(min_cell {settings.population.min_cell})."
    )
    if result.withheld_stays:
        out.print(f"Not counted: {result.withheld_stays:,} student x school stays whose attendance rows were rejected.")
    out.print(f"Written to {out_dir}: " + ", ".join(p.name for p in result.files))
    _exit(result.report, report_path)


def evaluate_command(
    export: ExportArg,
    cohort: Annotated[
        Path,
        typer.Option(
            "--cohort",
            help="CSV of the cohort's students: studentIdentifier (state id) or studentSourcedId, and cohort (label).",
            readable=False,
        ),
    ],
    program_start: Annotated[str, typer.Option("--program-start", help="The program's first day (YYYY-MM-DD).")],
    out_dir: OutOpt,
    as_of: AsOfOpt = "",
    label: Annotated[
        str, typer.Option("--label", help="The cohort label to evaluate (when the file has several).")
    ] = "",
    config: ConfigOpt = None,
    policy: PolicyOpt = None,
    store: StoreOpt = None,
    report_path: ReportOpt = Path("rows-report.csv"),
) -> None:
    """A cohort against the other students of its schools and grades, before and after the program start: days
    absent per 100 school days (illness apart too) and the chronic-absence rate, the difference in differences and
    a 95 % bootstrap interval. Aggregate only, suppressed as `population`. Runs only when population.agreement names
    the written agreement (e.g. the FERPA studies exception, 34 CFR 99.31(a)(6)); the run is recorded. Exit codes:
    0 done; 1 no agreement configured, or the export, cohort file or store cannot be used; 2 usage; 3 done, but
    rows were rejected; 5 the store is busy; 70 internal error."""
    day = as_of_date(as_of)
    try:
        start = date.fromisoformat(program_start.strip())
    except ValueError:
        raise fail(f"--program-start must be a date like 2026-01-05, not {program_start!r}", Exit.USAGE) from None
    check_report_path(report_path)
    settings = _settings(config, store, policy, out_dir)
    request = EvaluateRequest(export, cohort, start, day, settings, out_dir, report_path, label.strip())
    with failing():
        result = evaluate(request, lock_waiting(settings))
    e = result.evaluation
    out.print(
        f"Evaluation of {e.label!r} (program start {start}, as of {day}): cohort and comparison measured; "
        f"{'figures withheld: the cohort is smaller than min_cell' if e.small_cohort() else 'see the files'}."
    )
    for row in (r for r in _did(result) if r):
        out.print(row, highlight=False)
    out.print(f"Written to {out_dir}: " + ", ".join(p.name for p in result.files))
    _exit(result.report, report_path)


def _did(result: object) -> list[str]:
    from sis2fhir.population.evaluation import did_rows
    from sis2fhir.service.evaluate import EvaluateResult

    assert isinstance(result, EvaluateResult)
    lines = []
    for r in did_rows(result.evaluation):
        if r["estimate"]:
            lines.append(f"  {r['metric']}: {r['estimate']} per 100 (95 % interval {r['ci_low']} to {r['ci_high']})")
        else:
            lines.append(f"  {r['metric']}: withheld")
    return lines
