"""The attendance stage in a process of its own (attendance_stage.py): the same summaries, withheld students, gate
findings and row report as the engine and the sanity gates give in this process."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from sis2fhir.attendance_stage import measure_and_judge
from sis2fhir.columnar import ColumnarTally
from sis2fhir.config import Settings
from sis2fhir.engine import AttendanceEngine, MeasuredAttendance, Rules, choose_school_year
from sis2fhir.errors import ExportError
from sis2fhir.parallel import can_fork
from sis2fhir.plausibility import sanity_gates
from sis2fhir.policy import PRESETS
from sis2fhir.read.attendance import attendance_style
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.export import Export, open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import Roster
from sis2fhir.report import RowReport
from sis2fhir.tally import StreamingTally
from tests.measure.test_tally import AS_OF, district_with_duplicates  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(not can_fork(), reason="the stage runs apart only where fork exists")


def _read(path: Path, as_of: date) -> tuple[Export, Roster, Rules, RowReport]:
    report = RowReport()
    export = open_export(path)
    roster = read_roster(export, report)
    calendar = read_calendar(export, report)
    year = choose_school_year(roster, as_of)
    return export, roster, Rules.of(roster, calendar, year, as_of, PRESETS["essa"], attendance_style(export)), report


@pytest.mark.parametrize("engine", [StreamingTally(workers=2, min_bytes=1), ColumnarTally(workers=2)],
                         ids=["streaming-2-cores", "columnar"])  # fmt: skip
def test_the_stage_apart_gives_what_the_engine_and_the_gates_give_here(
    district_with_duplicates: Path,  # noqa: F811 (the fixture)
    engine: AttendanceEngine,
) -> None:
    settings = Settings()
    export, roster, rules, here = _read(district_with_duplicates, AS_OF)
    measured = engine.measure(export, roster, rules, here)
    measures, verdict = sanity_gates(measured, rules, None, settings, here)

    export, roster, rules, report = _read(district_with_duplicates, AS_OF)
    stage = measure_and_judge(engine, export, roster, rules, None, settings, report)

    assert stage.every_summary == measured.every_summary and stage.summaries == measured.summaries
    assert stage.withheld == measured.withheld
    assert (stage.engine, stage.fallback, stage.events) == (measured.engine, measured.fallback, measured.counts.events)
    assert (stage.measures, stage.verdict) == (measures, verdict)
    assert report.issues == here.issues and any(i.code == "conflicting-event" for i in report.issues)
    assert report.rows_read == here.rows_read and report.rows_rejected() == here.rows_rejected()


class _BrokenEngine:
    """An engine that reports a row and then finds the export unusable."""

    def measure(self, export: Export, roster: Roster, rules: Rules, report: RowReport) -> MeasuredAttendance:
        report.add("attendance.csv", 7, "date", "bad-date", "not a date")
        raise ExportError("attendance.csv cannot be used")


def test_an_export_error_apart_is_raised_here_after_the_report_has_what_was_read(
    district_with_duplicates: Path,  # noqa: F811 (the fixture)
) -> None:
    export, roster, rules, report = _read(district_with_duplicates, AS_OF)
    before = list(report.issues)
    with pytest.raises(ExportError, match="cannot be used"):
        measure_and_judge(_BrokenEngine(), export, roster, rules, None, Settings(), report)
    assert report.issues[: len(before)] == before
    assert [(i.line, i.code) for i in report.issues[len(before) :]] == [(7, "bad-date")]


def test_the_summaries_from_apart_name_students_by_the_rosters_own_strings(
    district_with_duplicates: Path,  # noqa: F811 (the fixture)
) -> None:
    export, roster, rules, report = _read(district_with_duplicates, AS_OF)
    stage = measure_and_judge(StreamingTally(workers=1), export, roster, rules, None, Settings(), report)
    assert stage.every_summary
    assert all(s.student_sourced_id is roster.students[s.student_sourced_id].sourced_id for s in stage.every_summary)
