"""The per-day facts of a student x school (absence_days.py) against a brute-force count over the days themselves:
the monthly tallies, the runs of absent days in a row (non-school days neither extend nor break a run), the window
of the last school days in membership; the facts counted by bits (`facts_of`) against the same read day by day
(`facts_by_day`); and the school days left and days in membership per month (measure.py)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sis2fhir.absence_days import (
    ABSENT_DAY_H,
    EXCUSED,
    PLANES,
    SUSPENSION,
    SchoolDays,
    absorb_masks,
    add_day,
    day_facts,
    facts_by_day,
    facts_of,
    new_masks,
    span_of,
    weight_on,
)
from sis2fhir.measure import months_in_membership, school_days_left
from sis2fhir.records import AttendanceCategory

START = date(2025, 8, 25)
KINDS = [AttendanceCategory.EXCUSED_ABSENCE, AttendanceCategory.UNEXCUSED_ABSENCE]
REASONS = ["", "illness", "suspension-out-of-school"]


@st.composite
def a_student(draw: st.DrawFn) -> tuple[list[date], date, date, date, dict[date, tuple[int, int, int]], int]:
    span = draw(st.integers(20, 300))
    every = [START + timedelta(days=k) for k in range(span)]
    school_days = sorted(d for d in every if (d.weekday() < 5 and draw(st.booleans())) or d.weekday() == 0)
    begin = START + timedelta(days=draw(st.integers(0, span // 2)))
    end = begin + timedelta(days=draw(st.integers(0, span)))
    last_day = START + timedelta(days=draw(st.integers(0, span)))
    in_membership = [d for d in school_days if begin <= d <= min(end, last_day)]
    absent: dict[date, tuple[int, int, int]] = {}
    for d in in_membership:
        if draw(st.integers(0, 3)) == 0:
            absent[d] = (
                draw(st.sampled_from([100, 100, 50, 49, 25, 1])),
                draw(st.integers(0, 1)),
                draw(st.integers(0, 2)),
            )
    return school_days, begin, end, last_day, absent, draw(st.integers(1, 30))


@settings(max_examples=300, deadline=None)
@given(a_student())
def test_the_day_facts_are_a_count_of_the_days(student: tuple) -> None:
    school_days, begin, end, last_day, absent, window = student
    base = START.toordinal()
    masks = new_masks()
    for d, (w, kind, reason) in absent.items():
        add_day(masks, d.toordinal() - base, w, KINDS[kind], REASONS[reason])
    upto = [d for d in school_days if d <= last_day]
    facts = day_facts(masks, upto, begin, end, last_day, base, window)

    in_membership = [d for d in upto if begin <= d <= end]
    months = sorted({d.strftime("%Y-%m") for d in in_membership})
    assert [m.month for m in facts.months] == months
    for m in facts.months:
        days = [d for d in in_membership if d.strftime("%Y-%m") == m.month]
        assert m.days_in_membership == len(days)
        assert m.absent_h == sum(absent[d][0] for d in days if d in absent)
        assert m.excused_h == sum(absent[d][0] for d in days if d in absent and absent[d][1] == 0)
        assert m.unexcused_h == sum(absent[d][0] for d in days if d in absent and absent[d][1] == 1)
        assert m.illness_h == sum(absent[d][0] for d in days if d in absent and absent[d][2] == 1)
        assert m.oss_h == sum(absent[d][0] for d in days if d in absent and absent[d][2] == 2)
    assert months_in_membership(upto, begin, end, last_day) == [(m.month, m.days_in_membership) for m in facts.months]

    last_window = in_membership[-window:] if in_membership else []
    assert facts.window_days == len(last_window)
    assert facts.window_absent_h == sum(absent[d][0] for d in last_window if d in absent)

    runs, run = [], []  # absent days in a row among the school days in membership
    for d in in_membership:
        if d in absent and absent[d][0] >= ABSENT_DAY_H:
            run.append(d)
        else:
            if run:
                runs.append(run)
            run = []
    if run:
        runs.append(run)
    assert facts.absence_runs == tuple(tuple(r) for r in runs if len(r) >= 2)
    still = bool(run) and len(run) >= 2 and bool(upto) and run[-1] == upto[-1]
    assert facts.running is still


@st.composite
def masks_of_a_year(draw: st.DrawFn) -> tuple[list[date], date, date, date, list[int], int]:
    """School days (now and then one listed twice), a membership, and masks with weights around the absent-day
    threshold and random kinds, mostly on school days but also on other days of the membership's months."""
    span = draw(st.integers(10, 300))
    every = [START + timedelta(days=k) for k in range(span)]
    school_days = sorted(d for d in every if d.weekday() < 5 and draw(st.integers(0, 5)) > 0)
    if school_days and draw(st.integers(0, 9)) == 0:
        school_days = sorted([*school_days, draw(st.sampled_from(school_days))])
    begin = START + timedelta(days=draw(st.integers(0, span // 2)))
    end = begin + timedelta(days=draw(st.integers(0, span)))
    last_day = START + timedelta(days=draw(st.integers(0, span)))
    in_membership = [d for d in school_days if begin <= d <= min(end, last_day)]
    months = {(d.year, d.month) for d in in_membership}
    other_days = [d for d in every if (d.year, d.month) in months and d not in in_membership]
    masks = new_masks()
    for d in in_membership + other_days:
        if draw(st.integers(0, 3 if d in in_membership else 30)) != 0:
            continue
        offset = d.toordinal() - START.toordinal()
        weight = draw(st.sampled_from([100, 100, 50, 50, 51, 49, 25, 1]) | st.integers(1, 100))
        for b in range(PLANES):
            masks[b] |= (weight >> b & 1) << offset
        for kind in range(EXCUSED, SUSPENSION + 1):
            masks[kind] |= draw(st.integers(0, 1)) << offset
    return school_days, begin, end, last_day, masks, draw(st.integers(1, 30))


@settings(max_examples=500, deadline=None)
@given(masks_of_a_year())
def test_the_facts_counted_by_bits_are_those_read_day_by_day(year: tuple) -> None:
    school_days, begin, end, last_day, masks, window = year
    base = START.toordinal()
    school = SchoolDays([d for d in school_days if d <= last_day], base)
    span = span_of(school, begin, end, last_day, window, base)
    assert facts_of(masks, school, span, base) == facts_by_day(masks, school, span, base)


def test_a_school_day_listed_twice_is_read_as_the_day_by_day_reading_has_it() -> None:
    base = START.toordinal()
    days = [START + timedelta(days=k) for k in range(12) if (START + timedelta(days=k)).weekday() < 5]
    school = SchoolDays(sorted([*days, days[2]]), base)  # Wednesday 27 August twice
    span = span_of(school, START, days[-1], days[-1], 5, base)
    masks = new_masks()
    for d in (days[2], days[3]):  # Wednesday and Thursday
        add_day(masks, d.toordinal() - base, 100, KINDS[0], "")
    assert facts_of(masks, school, span, base) == facts_by_day(masks, school, span, base)
    assert facts_by_day(masks, school, span, base).absence_runs == ()  # the second listing is between them


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.integers(0, 299), st.integers(1, 100)), st.dictionaries(st.integers(0, 299), st.integers(1, 100))
)
def test_absorbing_a_later_part_keeps_the_earlier_row_of_a_day_both_counted(
    first: dict[int, int], later: dict[int, int]
) -> None:
    mine, theirs = new_masks(), new_masks()
    for offset, w in first.items():
        add_day(mine, offset, w, KINDS[0], "")
    for offset, w in later.items():
        add_day(theirs, offset, w, KINDS[1], "illness")
    overlap = sum(1 << o for o in set(first) & set(later))
    absorb_masks(mine, theirs, overlap)
    for offset in range(300):
        assert weight_on(mine, offset) == first.get(offset, later.get(offset, 0))


def test_school_days_left_from_the_calendar_or_the_weekdays() -> None:
    calendar = [date(2026, 6, d) for d in (1, 2, 3, 4, 5, 8, 9)]
    assert school_days_left(calendar, date(2026, 6, 2), date(2026, 6, 30)) == 5
    assert school_days_left(calendar, date(2026, 6, 2), date(2026, 6, 8)) == 4  # the membership ends on the 8th
    assert school_days_left(calendar, date(2026, 6, 9), date(2026, 6, 30)) == 0
    # no calendar: Monday to Friday, holidays not known; Wed 3 June to Fri 12 June: 7 weekdays after the 3rd
    assert school_days_left(None, date(2026, 6, 3), date(2026, 6, 12)) == 7
    assert school_days_left(None, date(2026, 6, 5), date(2026, 6, 7)) == 0  # a weekend
    for after in range(0, 20):
        a = date(2026, 6, 1) + timedelta(days=after)
        for span in range(0, 30):
            u = a + timedelta(days=span)
            brute = sum(1 for k in range(1, span + 1) if (a + timedelta(days=k)).weekday() < 5)
            assert school_days_left(None, a, u) == brute
