"""The verdicts as pure functions: where each gate's boundary lies, and what a finding may say."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from sis2fhir.config import PlausibilitySettings
from sis2fhir.plausibility import Baseline, Measures, judge
from sis2fhir.school_counts import SchoolCounts
from sis2fhir.store.verdicts import encode_digest

LIMITS = PlausibilitySettings()  # 25 % drops, 2 % corrections


def measures(rows: int = 1000, absent: int = 40, **changes: object) -> Measures:
    """Two schools, 10 school days each; `rows` and `absent` split between them."""
    m = Measures(
        as_of=date(2026, 3, 31),
        school_year=2026,
        style="positive",
        calendar=True,
        files=("attendance.csv",),
        unreadable=(),
        rows_read=rows,
        rows_used=rows,
        presence_rows=rows - absent,
        outside_year=0,
        after_as_of=0,
        schools={
            "sch-a": SchoolCounts(school_days=10, rows=rows // 2, students_absent=absent // 2, enrolled=50),
            "sch-b": SchoolCounts(school_days=10, rows=rows - rows // 2, students_absent=absent - absent // 2,
                                  enrolled=50),
        },
    )  # fmt: skip
    return replace(m, **changes)  # type: ignore[arg-type]


def baseline(rows_per_day: float = 50.0, absent: int = 40, digest: dict | None = None) -> Baseline:
    """digest: (student, school) -> hundredths absent, stored the way store/verdicts.record stores them."""
    stored = encode_digest((student, school, h) for (student, school), h in (digest or {}).items())
    return Baseline(run_id=7, as_of=date(2026, 3, 15), rows_per_school_day=rows_per_day, students_absent=absent,
                    digest=stored)  # fmt: skip


def codes(m: Measures, b: Baseline | None = None, absent_until: dict | None = None, keys: list | None = None) -> list:
    return [(f.code, f.stops) for f in judge(m, b, absent_until or {}, keys or [], LIMITS).findings]


def test_a_clean_first_run_has_no_finding() -> None:
    assert codes(measures()) == []


def test_unusable_attendance_is_reported_alone_and_cannot_be_accepted() -> None:
    empty = measures(rows_read=0, rows_used=0, presence_rows=0, schools={})
    verdict = judge(empty, baseline(), {}, [], LIMITS, accept_reason="deliberate")
    assert [f.code for f in verdict.findings] == ["attendance-empty"]
    assert verdict.status == "stopped" and verdict.overridden == []


def test_rows_read_but_none_counted_says_why() -> None:
    m = measures(rows_read=30, rows_used=0, presence_rows=0, after_as_of=20, schools={})
    [finding] = judge(m, None, {}, [], LIMITS).findings
    assert finding.code == "attendance-unusable" and "20 dated after the as-of date" in finding.message
    assert "10 rejected" in finding.message


def test_an_unreadable_file_stops_even_if_rows_were_counted() -> None:
    assert codes(measures(unreadable=("StudentAttendance.xml",))) == [("attendance-unreadable", True)]


@pytest.mark.parametrize("style", ["positive", "exception-only", "edfi"])
def test_absences_only_without_a_calendar_are_refused(style: str) -> None:
    m = measures(style=style, calendar=False, presence_rows=0)
    assert codes(m) == [("exception-only-without-calendar", True)]


def test_a_positive_file_without_calendar_is_fine() -> None:
    assert codes(measures(calendar=False)) == []


def test_a_school_without_rows_stops_only_in_a_positive_file() -> None:
    schools = {"sch-a": SchoolCounts(10, 1000, 40, 50), "sch-b": SchoolCounts(10, 0, 0, 50)}
    assert codes(measures(schools=schools)) == [("school-without-attendance", True)]
    assert codes(measures(schools=schools, style="exception-only")) == []
    no_days_yet = {"sch-a": SchoolCounts(10, 1000, 40, 50), "sch-b": SchoolCounts(0, 0, 0, 50)}
    assert codes(measures(schools=no_days_yet)) == []  # its calendar has not started
    nobody = {"sch-a": SchoolCounts(10, 1000, 40, 50), "sch-b": SchoolCounts(10, 0, 0, 0)}
    assert codes(measures(schools=nobody)) == []


def test_a_drop_in_rows_per_school_day_stops_beyond_the_limit() -> None:
    # 1000 rows over 20 school days = 50 a day; the baseline had 50 / 0.75 = 66.67: exactly a 25 % drop
    assert codes(measures(), baseline(rows_per_day=50 / 0.75)) == []
    assert codes(measures(), baseline(rows_per_day=50 / 0.74)) == [("rows-per-school-day-dropped", True)]
    assert codes(measures(), baseline(rows_per_day=20)) == []  # more rows than before is not a drop


def test_a_drop_in_students_with_an_absence_stops_beyond_the_limit() -> None:
    assert codes(measures(absent=30), baseline(absent=40)) == []  # 25 %
    assert codes(measures(absent=29), baseline(absent=40)) == [("students-absent-dropped", True)]


def test_corrections_are_allowed_up_to_the_share() -> None:
    keys = [(f"stu-{i}", "sch-a") for i in range(100)]
    before = dict.fromkeys(keys, 300)
    two = {k: (200 if i < 2 else 300) for i, k in enumerate(keys)}
    three = {k: (200 if i < 3 else 300) for i, k in enumerate(keys)}
    verdict = judge(measures(), baseline(digest=before), two, keys, LIMITS)
    assert [(f.code, f.stops) for f in verdict.findings] == [("days-absent-shrank", False)]
    assert [(c.student, c.before_h, c.now_h) for c in verdict.corrections] == [("stu-0", 300, 200), ("stu-1", 300, 200)]
    assert codes(measures(), baseline(digest=before), three, keys) == [("days-absent-shrank", True)]
    more = {k: 400 for k in keys}
    assert codes(measures(), baseline(digest=before), more, keys) == []


def test_students_not_in_the_baseline_or_not_in_this_run_are_not_compared() -> None:
    before = {("stu-left", "sch-a"): 500, ("stu-1", "sch-a"): 100}
    verdict = judge(measures(), baseline(digest=before), {("stu-1", "sch-a"): 100}, [("stu-1", "sch-a"),
                    ("stu-new", "sch-a")], LIMITS)  # fmt: skip
    assert verdict.findings == [] and verdict.corrections == []


def test_an_accepted_change_lists_what_it_overrode() -> None:
    verdict = judge(measures(), baseline(rows_per_day=200), {}, [], LIMITS, accept_reason="  new SIS  ")
    assert verdict.status == "accepted" and verdict.accept_reason == "new SIS"
    assert [f.code for f in verdict.overridden] == ["rows-per-school-day-dropped"] and verdict.stopping == []


def test_an_earlier_as_of_than_the_baseline_stops_and_skips_the_comparison() -> None:
    b = replace(baseline(digest={("stu-1", "sch-a"): 500}), as_of=date(2026, 4, 15))
    verdict = judge(measures(), b, {}, [("stu-1", "sch-a")], LIMITS)
    assert [f.code for f in verdict.findings] == ["as-of-before-baseline"] and verdict.corrections == []


def test_findings_name_no_student() -> None:
    keys = [(f"stu-{i}", "sch-a") for i in range(10)]
    verdict = judge(measures(absent=2), baseline(rows_per_day=500, digest=dict.fromkeys(keys, 300)), {}, keys, LIMITS)
    assert {f.code for f in verdict.findings} == {"rows-per-school-day-dropped", "students-absent-dropped",
                                                  "days-absent-shrank"}  # fmt: skip
    assert not any("stu-" in f.message for f in verdict.findings)


def test_school_days_without_any_row_stop_a_positive_file_with_a_calendar() -> None:
    gap = (date(2026, 2, 25), date(2026, 2, 26))
    m = measures()
    m = replace(m, schools={**m.schools, "sch-a": replace(m.schools["sch-a"], days_without_rows=gap)})
    assert codes(m) == [("school-days-without-attendance", True)]
    [finding] = judge(m, None, {}, [], LIMITS).findings
    assert "2026-02-25, 2026-02-26" in finding.message and "sch-a" in finding.message
    assert codes(replace(m, style="exception-only")) == []  # a day without absences has no row there
    accepted = judge(m, None, {}, [], LIMITS, accept_reason="snow days missing from calendar.csv")
    assert accepted.status == "accepted"
