"""`sis2fhir evaluate`: a cohort file's students against the other students of their schools and grades, before
and after a program start. Refuses without `population.agreement` (cohort files are individual-level data, used
only under a written agreement); the run, the agreement and the cohort file's SHA-256 are recorded in the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sis2fhir.config import Settings
from sis2fhir.errors import ConfigError, UsageError
from sis2fhir.map.measure_report import evaluation_reports
from sis2fhir.population.evaluate import (
    bootstrap,
    comparison_students,
    group_figures,
    periods,
    split,
)
from sis2fhir.population.evaluation import DID_COLUMNS, GROUP_COLUMNS, Evaluation, as_csv, did_rows, group_rows
from sis2fhir.population.html import evaluation_html
from sis2fhir.population_config import AGREEMENT_SETTING
from sis2fhir.read.cohort import read_cohort
from sis2fhir.report import RowReport
from sis2fhir.service.population import (
    MEASURE_FILE,
    measure_definition,
    measure_district,
    ndjson,
    student_identifiers,
    write_outputs,
)
from sis2fhir.service.state import LockWait, writer_lock
from sis2fhir.store import open_store
from sis2fhir.store import population_runs as recorded

NO_AGREEMENT = (
    f"{AGREEMENT_SETTING} is not set: a cohort file is individual-level data, and `sis2fhir evaluate` runs only "
    'under a written agreement. Name it in the configuration, e.g. population: {agreement: "FERPA studies '
    'exception, 34 CFR 99.31(a)(6); agreement 2026-014 with the county health department"}; nothing was read'
)


@dataclass
class EvaluateRequest:
    export: Path
    cohort_file: Path
    program_start: date
    as_of: date
    settings: Settings
    out_dir: Path
    report_path: Path
    label: str = ""  # the cohort label to evaluate; "" when the file has one only


@dataclass
class EvaluateResult:
    evaluation: Evaluation
    cohort_students: int
    comparison_students: int
    files: list[Path]
    report: RowReport
    run_id: int


def evaluate(request: EvaluateRequest, on_lock_wait: LockWait | None = None) -> EvaluateResult:
    """Raises ConfigError without the agreement (before anything is read), UsageError for a start date outside
    the school year up to the as-of date or a label the file lacks, ExportError, Unusable, StoreBusy."""
    settings = request.settings
    agreement = settings.population.agreement
    if not agreement:
        raise ConfigError(NO_AGREEMENT)
    if request.program_start > request.as_of:
        raise UsageError(f"--program-start {request.program_start} is after --as-of {request.as_of}")
    report = RowReport()
    try:
        day_before = request.program_start - timedelta(days=1)
        district = measure_district(request.export, request.as_of, settings, report, also=[day_before])
        year = district.year
        if not year.start < request.program_start <= min(request.as_of, year.end):
            raise UsageError(
                f"--program-start {request.program_start} must fall after the first day of the school year "
                f"({year.start}) and on or before the as-of date: there must be days before and after it"
            )
        cohorts = read_cohort(request.cohort_file, district.roster, report)
    finally:
        report.write_csv(request.report_path)
    label = _label(cohorts.members, request.label)
    whole = district.summaries[request.as_of]
    cohort = cohorts.members.get(label, set()) & {s.student_sourced_id for s in whole}
    comparison = comparison_students(whole, cohort, district.grades)
    student_periods = periods(district.summaries[day_before], whole)
    cohort_p, comparison_p = split(student_periods, cohort, comparison)
    policy, cfg = district.policy, settings.population
    e = Evaluation(
        label=label,
        groups={"cohort": group_figures(cohort_p, policy), "comparison": group_figures(comparison_p, policy)},
        intervals=bootstrap(cohort_p, comparison_p, policy, cfg.bootstrap_replicates, cfg.seed),
        min_cell=cfg.min_cell,
        replicates=cfg.bootstrap_replicates,
        seed=cfg.seed,
    )
    last = min(request.as_of, year.end)
    reports = evaluation_reports(
        e, settings.district.system("population-report"), (year.start, last), request.program_start, request.as_of
    )
    texts = {
        "evaluation.csv": as_csv(group_rows(e), GROUP_COLUMNS),
        "difference-in-differences.csv": as_csv(did_rows(e), DID_COLUMNS),
        "MeasureReport.ndjson": ndjson(reports),
        MEASURE_FILE: measure_definition(),
        "evaluation.html": evaluation_html(e, policy, request.program_start, request.as_of, agreement),
    }
    with writer_lock(settings, "evaluate", on_lock_wait):
        engine = open_store(settings.store_url)
        run_id = recorded.start(
            engine,
            "evaluate",
            settings.district.namespace,
            request.as_of,
            str(request.export),
            str(request.out_dir),
            program_start=request.program_start,
            agreement=agreement,
            cohort=label,
            cohort_sha256=cohorts.sha256,
        )
        files = write_outputs(request.out_dir, texts, student_identifiers(district.roster))
        result = EvaluateResult(e, len(cohort_p), len(comparison_p), files, report, run_id)
        recorded.finish(
            engine,
            run_id,
            {
                "cohort_rows_used": cohorts.rows_used,
                "cohort_students_published": not e.small_cohort(),
                "min_cell": cfg.min_cell,
                "replicates": cfg.bootstrap_replicates,
                "seed": cfg.seed,
                "files": [p.name for p in files],
                "rows_rejected": dict(report.rows_rejected()),
            },
        )
    return result


def _label(members: dict[str, set[str]], wanted: str) -> str:
    if wanted:
        if wanted not in members:
            raise UsageError(f"--label {wanted!r}: the cohort file has no row with that cohort label")
        return wanted
    if len(members) != 1:
        if not members:
            raise UsageError("the cohort file has no usable row (see the row report)")
        raise UsageError(f"the cohort file has {len(members)} cohort labels; choose one with --label")
    return next(iter(members))
