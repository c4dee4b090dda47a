"""`sis2fhir population`: read and measure the export as a sync does (the same readers, engine and sanity gates),
aggregate, suppress, and write population.csv, the MeasureReports and the HTML report; the run is recorded in the
store. Shared with `evaluate` (service/evaluate.py): the measuring, the privacy check and the writing of files."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from sis2fhir.config import Settings
from sis2fhir.deliver.factory import folder_problem
from sis2fhir.engine import Rules, choose_school_year
from sis2fhir.errors import Unusable
from sis2fhir.map.measure_report import population_reports
from sis2fhir.measure import AttendanceSummary
from sis2fhir.plausibility import GateStopped, sanity_gates
from sis2fhir.policy import Policy
from sis2fhir.population.aggregate import aggregate, grade_of
from sis2fhir.population.html import population_html
from sis2fhir.population.publish import Published, publish
from sis2fhir.population.table import population_csv
from sis2fhir.read.attendance import attendance_style
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import Roster, SchoolYear
from sis2fhir.report import RowReport
from sis2fhir.service.state import LockWait, writer_lock
from sis2fhir.store import open_store
from sis2fhir.store import population_runs as recorded
from sis2fhir.tally import StreamingTally
from sis2fhir.validate import validate_resource

MEASURE_FILE = "Measure-chronic-absence.json"


@dataclass(slots=True)
class District:
    """The export as measured: the roster, the school year, and per as-of date the summaries that may be used."""

    roster: Roster
    year: SchoolYear
    policy: Policy
    summaries: dict[date, list[AttendanceSummary]] = field(default_factory=dict)
    withheld: int = 0  # student x school stays not counted (rows of theirs rejected: withhold.py), at the as-of date

    @property
    def grades(self) -> dict[str, str]:
        return {sid: grade_of(s.grades) for sid, s in self.roster.students.items()}

    @property
    def school_names(self) -> dict[str, str]:
        return {sid: s.name for sid, s in self.roster.schools.items()}


def measure_district(
    export_path: Path, as_of: date, settings: Settings, report: RowReport, also: Iterable[date] = ()
) -> District:
    """Read and measure as `sync` does (pipeline.py): the roster, the calendar, the attendance with the streaming
    engine, and the sanity gates on the as-of measurement (no baseline: the absolute checks). GateStopped when the
    attendance cannot be trusted. `also`: earlier as-of dates measured the same way (the evaluation's start)."""
    policy = settings.policy.resolve()
    export = open_export(export_path, settings.export.zip_limits())
    roster = read_roster(export, report, settings.district.state_id_source, as_of=as_of)
    calendar = read_calendar(export, report)
    style = attendance_style(export)
    year = choose_school_year(roster, as_of)
    district = District(roster, year, policy)
    rules = Rules.of(roster, calendar, year, as_of, policy, style)
    measured = StreamingTally(settings.workers).measure(export, roster, rules, report)
    _, verdict = sanity_gates(measured, rules, None, settings, report)
    if verdict.stopping:
        raise GateStopped(verdict)
    district.summaries[as_of] = measured.summaries
    district.withheld = len(measured.withheld)
    keep = {(s.student_sourced_id, s.school_sourced_id) for s in measured.summaries}
    for day in also:
        earlier = Rules.of(roster, calendar, year, day, policy, style)
        quiet = RowReport()  # the rows were reported by the as-of measurement
        found = StreamingTally(settings.workers).measure(export, roster, earlier, quiet).every_summary
        # the stays counted at the as-of date only: a stay withheld then is withheld in every period
        district.summaries[day] = [s for s in found if (s.student_sourced_id, s.school_sourced_id) in keep]
    return district


def student_identifiers(roster: Roster) -> set[str]:
    """Every sourcedId and state id of the district's students: none may appear in an output."""
    ids = {s.sourced_id for s in roster.students.values()}
    ids |= {s.state_id for s in roster.students.values() if s.state_id}
    return {i for i in ids if i}


_TOKEN = re.compile(r"[^\s,;\"'<>=/|{}\[\]():]+")


def check_no_identifiers(texts: Mapping[str, str], ids: set[str]) -> None:
    """A last guard, fail closed: an output holding a student identifier is not written (RuntimeError: a fault
    here, exit 70). Tokens of the text are compared, so an id is found wherever it stands alone."""
    for name, text in texts.items():
        for token in _TOKEN.findall(text):
            if token in ids:
                raise RuntimeError(f"{name} would hold a student identifier; nothing was written")


def write_outputs(out_dir: Path, texts: Mapping[str, str], ids: set[str]) -> list[Path]:
    """Check every text, then write them all (into OUT, created if need be)."""
    check_no_identifiers(texts, ids)
    problem = folder_problem(out_dir)
    if problem:
        raise Unusable(f"--out {out_dir} cannot be used: {problem}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def ndjson(resources: Iterable[dict[str, Any]]) -> str:
    """Validated resources, one per line; a resource the validator finds an error in is a fault (exit 70)."""
    lines = []
    for r in resources:
        errors = [i for i in validate_resource(r) if i.severity in ("error", "fatal")]
        if errors:
            raise RuntimeError(f"a {r['resourceType']} failed validation: {errors[0].message}")
        lines.append(orjson.dumps(r).decode())
    return "".join(line + "\n" for line in lines)


def measure_definition() -> str:
    from importlib.resources import files

    return (files("sis2fhir") / "data" / "profiles" / MEASURE_FILE).read_text(encoding="utf-8")


@dataclass
class PopulationRequest:
    export: Path
    as_of: date
    settings: Settings
    out_dir: Path
    report_path: Path


@dataclass
class PopulationResult:
    as_of: date
    school_year: int
    students: int  # the district's students counted (with a day in membership)
    withheld_stays: int
    groups: int
    cells: int
    cells_withheld: int
    files: list[Path]
    report: RowReport
    run_id: int


def population(request: PopulationRequest, on_lock_wait: LockWait | None = None) -> PopulationResult:
    """Measure, aggregate, suppress, write and record. Raises ExportError (GateStopped), ConfigError, Unusable,
    StoreBusy; the row report is written to `request.report_path` in every case."""
    settings = request.settings
    report = RowReport()
    try:
        district = measure_district(request.export, request.as_of, settings, report)
    finally:
        report.write_csv(request.report_path)
    summaries = district.summaries[request.as_of]
    figures = aggregate(summaries, district.grades, district.policy)
    published = publish(figures, settings.population.min_cell)
    texts = population_texts(published, district, request.as_of, settings)
    ids = student_identifiers(district.roster)
    with writer_lock(settings, "population", on_lock_wait):
        engine = open_store(settings.store_url)
        run_id = recorded.start(
            engine, "population", settings.district.namespace, request.as_of, str(request.export), str(request.out_dir)
        )
        files = write_outputs(request.out_dir, texts, ids)
        result = PopulationResult(
            as_of=request.as_of,
            school_year=district.year.year,
            students=len({s.student_sourced_id for s in summaries if s.days_in_membership > 0}),
            withheld_stays=district.withheld,
            groups=len(figures),
            cells=sum(len(f) for f in figures.values()),
            cells_withheld=len(published.withheld),
            files=files,
            report=report,
            run_id=run_id,
        )
        recorded.finish(engine, run_id, _counts(result, settings.population.min_cell))
    return result


def population_texts(published: Published, district: District, as_of: date, settings: Settings) -> dict[str, str]:
    year = district.year
    reports = population_reports(
        published, settings.district.system("population-report"), year.start, min(as_of, year.end), year.year
    )
    return {
        "population.csv": population_csv(published),
        "MeasureReport.ndjson": ndjson(reports),
        MEASURE_FILE: measure_definition(),
        "population.html": population_html(published, district.school_names, district.policy, year.year, as_of),
    }


def _counts(result: PopulationResult, min_cell: int) -> dict[str, Any]:
    return {
        "school_year": result.school_year,
        "students": result.students,
        "withheld_stays": result.withheld_stays,
        "groups": result.groups,
        "cells": result.cells,
        "cells_withheld": result.cells_withheld,
        "min_cell": min_cell,
        "files": [p.name for p in result.files],
        "rows_rejected": dict(result.report.rows_rejected()),
    }
