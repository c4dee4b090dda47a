"""The contract of an attendance engine (engine.py): what any engine must give, parametrised over the engines.

The engines: the streaming tally, on one core and on several (a file cut in parts), and the columnar engine
(DuckDB, columnar/) on one thread and two; each must pass the same tests: the hand-computed numbers of the known
district, the same numbers from an exception-only file with its calendar, the equivalent positive file and the
Ed-Fi XML, and exactly what the reference engine gives (summaries, withheld students, the row report, the gates'
counts) on a district with duplicate rows across the parts of its file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sis2fhir.columnar import ColumnarTally
from sis2fhir.engine import AttendanceEngine, MeasuredAttendance, Rules, choose_school_year
from sis2fhir.policy import PRESETS, Policy
from sis2fhir.read.attendance import attendance_style
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.report import RowReport
from sis2fhir.tally import StreamingTally
from tests.end_to_end.test_sync import KNOWN, expected_rows, known_as_of
from tests.measure.test_tally import AS_OF, district_with_duplicates  # noqa: F401 (a fixture)
from tests.support import paths

GENERATOR = paths.GENERATOR

ENGINES: dict[str, Callable[[], AttendanceEngine]] = {
    "streaming": lambda: StreamingTally(workers=1),
    "streaming-2-cores": lambda: StreamingTally(workers=2, min_bytes=1),
    "streaming-3-cores": lambda: StreamingTally(workers=3, min_bytes=1),
    "columnar": lambda: ColumnarTally(workers=1),  # DuckDB; Ed-Fi XML: it hands the files to the streaming one
    "columnar-2-threads": lambda: ColumnarTally(workers=2),
}
REFERENCE = ENGINES["streaming"]


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> AttendanceEngine:
    return ENGINES[request.param]()


def measure(
    engine: AttendanceEngine, path: Path, as_of: date, policy: Policy, compare_until: date | None = None
) -> tuple[MeasuredAttendance, RowReport]:
    report = RowReport()
    with open_export(path) as export:
        roster = read_roster(export, report)
        calendar = read_calendar(export, report)
        year = choose_school_year(roster, as_of)
        rules = Rules.of(roster, calendar, year, as_of, policy, attendance_style(export), compare_until)
        return engine.measure(export, roster, rules, report), report


def numbers(measured: MeasuredAttendance) -> dict[tuple[str, str], tuple[object, ...]]:
    return {
        (s.student_sourced_id, s.school_sourced_id): (
            s.days_in_membership,
            s.days_absent_h,
            s.excused_h,
            s.unexcused_h,
            s.illness_h,
            s.oss_h,
            s.tier,
            s.months,
            s.absence_runs,
            s.run_is_running,
            s.window_days,
            s.window_absent_h,
        )
        for s in measured.every_summary
    }


def assert_months_add_up(measured: MeasuredAttendance) -> None:
    """The monthly tallies of every summary add up to its year-to-date totals, one per month in membership."""
    for s in measured.every_summary:
        where = f"{s.student_sourced_id} at {s.school_sourced_id}"
        assert s.months, where
        assert [m.month for m in s.months] == sorted({m.month for m in s.months}), where
        assert all(m.days_in_membership > 0 for m in s.months), where
        for month_field, total in (
            ("days_in_membership", s.days_in_membership),
            ("absent_h", s.days_absent_h),
            ("excused_h", s.excused_h),
            ("unexcused_h", s.unexcused_h),
            ("illness_h", s.illness_h),
            ("oss_h", s.oss_h),
        ):
            assert sum(getattr(m, month_field) for m in s.months) == total, (where, month_field)
        assert all(m.month <= s.as_of.isoformat()[:7] for m in s.months), where
        assert s.window_days == min(20, s.days_in_membership), where
        assert 0 <= s.window_absent_h <= min(s.days_absent_h, s.window_days * 100), where
        for run in s.absence_runs:
            assert len(run) >= 2 and list(run) == sorted(set(run)), where


# -- the known district: numbers computed by hand ------------------------------------------------------------


@pytest.mark.parametrize(("preset", "expected_file"), [("essa", "expected.csv"), ("crdc", "expected-crdc.csv")])
def test_hand_computed_numbers(engine: AttendanceEngine, preset: str, expected_file: str) -> None:
    measured, _ = measure(engine, KNOWN, known_as_of(), PRESETS[preset])
    assert_months_add_up(measured)
    got = {(s.student_sourced_id, s.school_sourced_id): s for s in measured.every_summary}
    expected = expected_rows(expected_file)
    assert set(got) == {(r["student_sourced_id"], r["school_sourced_id"]) for r in expected}
    for r in expected:
        s = got[(r["student_sourced_id"], r["school_sourced_id"])]
        where = f"{r['student_sourced_id']} at {r['school_sourced_id']}"
        assert s.days_in_membership == int(r["days_in_membership"]), where
        assert s.days_absent == pytest.approx(float(r["days_absent"])), where
        assert s.excused_h / 100 == pytest.approx(float(r["excused"])), where
        assert s.unexcused_h / 100 == pytest.approx(float(r["unexcused"])), where
        assert s.illness_h / 100 == pytest.approx(float(r["illness"])), where
        assert s.oss_h / 100 == pytest.approx(float(r["oss"])), where
        assert s.rate is not None
        assert round(s.rate * 100, 2) == pytest.approx(float(r["rate_percent"])), where
        assert s.tier == r["tier"], where
        chronic = {"true": True, "false": False, "": None}[r["chronic"].strip().lower()]
        assert s.chronic is chronic, where


# -- three styles of the same attendance: the same numbers ----------------------------------------------------


def generate(out: Path, seed: int, students: int, *options: str) -> Path:
    subprocess.run(
        [sys.executable, str(GENERATOR), "--seed", str(seed), "--students", str(students), "--out", str(out), *options],
        check=True,
        capture_output=True,
    )
    return out


def style_numbers(engine: AttendanceEngine, path: Path, as_of: date, preset: str) -> dict[Any, Any]:
    measured, report = measure(engine, path, as_of, PRESETS[preset])
    assert report.errors == 0, [i for i in report.issues if i.severity == "error"][:3]
    assert_months_add_up(measured)
    return numbers(measured)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    students=st.integers(8, 25),
    as_of=st.dates(date(2025, 9, 15), date(2026, 6, 12)),
    preset=st.sampled_from(["essa", "crdc"]),
)
def test_exception_only_with_calendar_and_ed_fi_equal_positive(
    engine: AttendanceEngine,
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    students: int,
    as_of: date,
    preset: str,
) -> None:
    tmp = tmp_path_factory.mktemp("styles")
    positive = generate(tmp / "positive", seed, students, "--style", "positive")
    (positive / "calendar.csv").unlink()  # the positive file's own rows say which days were school days
    exceptions = generate(tmp / "exceptions", seed, students, "--style", "exception-only")
    edfi = generate(tmp / "edfi", seed, students, "--style", "exception-only", "--attendance-format", "edfi")
    got_positive = style_numbers(engine, positive, as_of, preset)
    assert got_positive  # somebody was enrolled
    assert style_numbers(engine, exceptions, as_of, preset) == got_positive
    assert style_numbers(engine, edfi, as_of, preset) == got_positive


# -- exactly what the reference gives, duplicates across the parts of a file included --------------------------


def everything(measured: MeasuredAttendance, report: RowReport) -> dict[str, Any]:
    counts = measured.counts
    return {
        "summaries": measured.every_summary,
        "sent": measured.summaries,
        "withheld": measured.withheld,
        "school_days": measured.school_days,
        "files": measured.files,
        "rows_by_school": {s: dict(days) for s, days in counts.rows_by_school.items()},
        "with_rows": sorted(k for k, mask in counts.seen.items() if mask),
        "absent_until": dict(counts.absent_until),
        "presence_rows": counts.presence_rows,
        "rows_counted": counts.rows_counted,
        "outside_year": counts.outside_year,
        "after_as_of": counts.after_as_of,
        "events": counts.events,
        "students_absent": counts.students_absent(),
        "report": sorted(report.issues, key=lambda i: (i.file, i.line, i.code, i.message)),
        "rows_read": dict(report.rows_read),
    }


def test_it_gives_exactly_what_the_reference_gives(
    engine: AttendanceEngine,
    district_with_duplicates: Path,  # noqa: F811
) -> None:
    until = date(2025, 12, 1)  # a last accepted run's as-of date: days absent up to it are kept apart
    measured = measure(engine, district_with_duplicates, AS_OF, PRESETS["essa"], until)
    got = everything(*measured)
    want = everything(*measure(REFERENCE(), district_with_duplicates, AS_OF, PRESETS["essa"], until))
    assert got == want  # the monthly tallies, streaks and window of every summary included
    assert_months_add_up(measured[0])
    summaries = got["summaries"]
    assert any(s.absence_runs for s in summaries) and any(s.window_absent_h for s in summaries)
    assert sum(1 for i in got["report"] if i.code == "conflicting-event") >= 50  # the duplicates are reported
    assert 0 < got["presence_rows"] < got["rows_counted"]  # the duplicates taken back are not counted twice
    absent = {(s.student_sourced_id, s.school_sourced_id): s.days_absent_h for s in got["summaries"]}
    assert got["absent_until"] and all(0 < h <= absent[k] for k, h in got["absent_until"].items())
    assert any(h < absent[k] for k, h in got["absent_until"].items())  # absences after Dec 1 are not in it
