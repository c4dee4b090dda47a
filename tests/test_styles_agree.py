"""Property: an exception-only attendance file with its calendar gives the same numbers as the equivalent positive
file (whose school days come from its own rows), and the Ed-Fi XML gives the same numbers as the CSV."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sis2fhir.pipeline import choose_school_year, measure_attendance
from sis2fhir.policy import PRESETS
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.report import RowReport

GENERATOR = Path(__file__).resolve().parents[1] / "examples" / "generate_district.py"


def generate(out: Path, seed: int, students: int, *options: str) -> Path:
    subprocess.run(
        [sys.executable, str(GENERATOR), "--seed", str(seed), "--students", str(students), "--out", str(out), *options],
        check=True,
        capture_output=True,
    )
    return out


def numbers(export_path: Path, as_of: date, preset: str) -> dict[tuple[str, str], tuple[object, ...]]:
    report = RowReport()
    export = open_export(export_path)
    roster = read_roster(export, report)
    calendar = read_calendar(export, report)
    year = choose_school_year(roster, as_of)
    summaries = measure_attendance(export, roster, calendar, year, as_of, PRESETS[preset], report)
    assert report.errors == 0, [i for i in report.issues if i.severity == "error"][:3]
    return {
        (s.student_sourced_id, s.school_sourced_id): (
            s.days_in_membership,
            s.days_absent_h,
            s.excused_h,
            s.unexcused_h,
            s.illness_h,
            s.oss_h,
            s.tier,
        )
        for s in summaries
    }


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    students=st.integers(8, 25),
    as_of=st.dates(date(2025, 9, 15), date(2026, 6, 12)),
    preset=st.sampled_from(["essa", "crdc"]),
)
def test_exception_only_with_calendar_equals_positive(
    tmp_path_factory, seed: int, students: int, as_of: date, preset: str
) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("styles")
    positive = generate(tmp / "positive", seed, students, "--style", "positive")
    (positive / "calendar.csv").unlink()  # the positive file's own rows say which days were school days
    exceptions = generate(tmp / "exceptions", seed, students, "--style", "exception-only")
    edfi = generate(tmp / "edfi", seed, students, "--style", "exception-only", "--attendance-format", "edfi")
    got_positive = numbers(positive, as_of, preset)
    assert got_positive  # somebody was enrolled
    assert numbers(exceptions, as_of, preset) == got_positive
    assert numbers(edfi, as_of, preset) == got_positive
