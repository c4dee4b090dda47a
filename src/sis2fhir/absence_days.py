"""Which school days of the year a student x school was absent, and how much, as a handful of bitmasks of day offsets.

The streaming tally keeps, per student x school with any absence counted, eleven integers whatever the number of
rows: the counted absence weight of each day (hundredths, 1..100) as seven bit-planes (bit b of day d's weight is
bit d of plane b), and one mask each of the days whose absence was excused, unexcused, for illness, or an
out-of-school suspension. From them, once the tally is done, come the monthly tallies, the streaks of days absent
in a row and the absences of the last school days in membership (`day_facts`), without ever keeping a row.

An *absent day* (for streaks, docs/notifications.md) is a school day in membership whose counted absence weight is
at least half a school day (50 hundredths): under the CRDC half-day rule that is every day counted absent.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sis2fhir.measure import HUNDREDTHS, ILLNESS_REASONS, OSS, months_in_membership
from sis2fhir.records import AttendanceCategory, MonthTally, month_tally

PLANES = 7  # weights up to 100 < 2**7
EXCUSED, UNEXCUSED, ILLNESS, SUSPENSION = PLANES, PLANES + 1, PLANES + 2, PLANES + 3
MASKS = PLANES + 4
ABSENT_DAY_H = HUNDREDTHS // 2  # an absent day: at least half a school day counted absent

DayMasks = list[int]  # MASKS integers: the weight planes, then excused, unexcused, illness, suspension


def new_masks() -> DayMasks:
    return [0] * MASKS


def add_day(masks: DayMasks, offset: int, weight: int, category: AttendanceCategory, reason: str) -> None:
    """Note a counted absence of `weight` hundredths on day `offset` (at most one counted event per day)."""
    bit = 1 << offset
    for b in range(PLANES):
        if weight >> b & 1:
            masks[b] |= bit
    if category is AttendanceCategory.EXCUSED_ABSENCE:
        masks[EXCUSED] |= bit
    elif category is AttendanceCategory.UNEXCUSED_ABSENCE:
        masks[UNEXCUSED] |= bit
    if reason in ILLNESS_REASONS:
        masks[ILLNESS] |= bit
    elif reason == OSS:
        masks[SUSPENSION] |= bit


def absorb_masks(mine: DayMasks, later: DayMasks, overlap: int) -> None:
    """Add a later part's days; on `overlap` (days both parts counted a row for) the earlier part's row is the one
    that counts, so the later part's bits there are left out (nothing to take back afterwards)."""
    keep = ~overlap
    for i in range(MASKS):
        mine[i] |= later[i] & keep


def weight_on(masks: DayMasks, offset: int) -> int:
    """The hundredths counted absent on day `offset` (0: none)."""
    return sum(((masks[b] >> offset) & 1) << b for b in range(PLANES))


def _offsets(mask: int) -> list[int]:
    """The set bits of a mask, ascending."""
    found = []
    while mask:
        low = mask & -mask
        found.append(low.bit_length() - 1)
        mask ^= low
    return found


@dataclass(frozen=True, slots=True)
class DayFacts:
    """What the transitions and the chart need beyond the year-to-date totals (measure.AttendanceSummary)."""

    months: tuple[MonthTally, ...]
    # runs of at least 2 absent days in a row among the school days in membership: each run's days, ascending
    absence_runs: tuple[tuple[date, ...], ...]
    # the last of them ends on the school's last school day up to the as-of date, the student still in membership
    running: bool
    window_days: int  # the last school days in membership (at most the window asked for)
    window_absent_h: int  # hundredths absent on them


class SchoolDays:
    """A school's school days (sorted, up to the last day) with, per day offset, its index among them: made once
    per school, so that a day's month and place in the window cost a lookup, not a bisect, per absent day."""

    __slots__ = ("days", "index_of", "month_of", "runs")

    def __init__(self, days: Sequence[date], base: int) -> None:
        self.days = days
        self.runs: dict[tuple[date, ...], tuple[date, ...]] = {}  # equal runs of absent days: one tuple
        self.index_of: dict[int, int] = {}
        for i, d in enumerate(days):
            self.index_of.setdefault(d.toordinal() - base, i)  # a day listed twice: bisect_left finds the first
        self.month_of = [f"{d.year:04d}-{d.month:02d}" for d in days]

    def run(self, days: list[date]) -> tuple[date, ...]:
        """These days as a tuple, one tuple for equal runs: students of a school share many runs of two or three
        days (the table lives as long as the school's days: one summaries_of call)."""
        key = tuple(days)
        return self.runs.setdefault(key, key)


@dataclass(frozen=True, slots=True)
class Span:
    """What the facts of the memberships of one school with the same begin and end share (most memberships do)."""

    months: list[tuple[str, int]]
    hi: int  # index after the last school day in membership
    window_days: int
    window_from: int  # index of the window's first school day
    no_absence: DayFacts  # the facts of a membership without any absence (equal MonthTally values are one object)


def span_of(school: SchoolDays, begin: date, end: date, last_day: date, window: int) -> Span:
    """The span of a membership from `begin` to `end` at `school`, up to `last_day`, with a window of `window` days."""
    days = school.days
    months = months_in_membership(days, begin, end, last_day)
    lo = bisect_left(days, begin)
    hi = bisect_right(days, min(end, last_day))
    window_days = min(window, hi - lo)
    zero = tuple(MonthTally(m, n, 0, 0, 0, 0, 0) for m, n in months)
    return Span(months, hi, window_days, hi - window_days, DayFacts(zero, (), False, window_days, 0))


def day_facts(
    masks: DayMasks | None, school_days: Sequence[date], begin: date, end: date, last_day: date, base: int, window: int
) -> DayFacts:
    """The facts of one student x school: `school_days` the school's (sorted, up to `last_day`), the membership from
    `begin` to `end`, `base` the ordinal of the school year's first day, `window` the school days of the window."""
    school = SchoolDays(school_days, base)
    return facts_of(masks, school, span_of(school, begin, end, last_day, window), base)


def facts_of(masks: DayMasks | None, school: SchoolDays, span: Span, base: int) -> DayFacts:
    """`day_facts` with the school's days and the membership's span made beforehand (`SchoolDays`, `span_of`)."""
    if masks is None:
        return span.no_absence
    planes = [(masks[b], 1 << b) for b in range(PLANES) if masks[b]]
    if not planes:
        return span.no_absence
    kinds = [
        (masks[mask], k) for k, mask in enumerate((EXCUSED, UNEXCUSED, ILLNESS, SUSPENSION), start=1) if masks[mask]
    ]
    school_days, index_of, month_of = school.days, school.index_of, school.month_of
    by_month: dict[str, list[int]] = {m: [0, 0, 0, 0, 0] for m, _ in span.months}
    window_from = span.window_from
    window_absent = 0
    runs: list[list[date]] = []
    run: list[date] = []
    last_index = -2
    union = 0
    for plane, _ in planes:
        union |= plane
    for offset in _offsets(union):
        w = 0
        for plane, value in planes:
            if plane >> offset & 1:
                w += value
        index = index_of.get(offset)
        if index is None:  # not one of the school's days (not counted by the tallies): as bisect places it
            day = date.fromordinal(base + offset)
            index = bisect_left(school_days, day)
            month = f"{day.year:04d}-{day.month:02d}"
        else:
            day = school_days[index]
            month = month_of[index]
        totals = by_month[month]
        totals[0] += w
        for mask, k in kinds:
            if mask >> offset & 1:
                totals[k] += w
        if index >= window_from:
            window_absent += w
        if w < ABSENT_DAY_H:
            continue
        if index != last_index + 1 and run:  # a school day in membership between: the run ended
            runs.append(run)
            run = []
        run.append(day)
        last_index = index
    if run:
        runs.append(run)
    hi = span.hi
    last_school_day = school_days[-1] if school_days else None
    running = len(run) >= 2 and last_index == hi - 1 and school_days[hi - 1] == last_school_day
    tallies = []
    for m, n in span.months:  # equal tallies are one object (records.MonthTally)
        t = by_month[m]
        tallies.append(month_tally((m, n, t[0], t[1], t[2], t[3], t[4])))
    found = tuple([school.run(r) for r in runs if len(r) >= 2])
    return DayFacts(tuple(tallies), found, running, span.window_days, window_absent)
