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

    __slots__ = ("days", "gaps", "index_of", "mask", "month_of", "runs")

    def __init__(self, days: Sequence[date], base: int) -> None:
        self.days = days
        self.runs: dict[tuple[date, ...], tuple[date, ...]] = {}  # equal runs of absent days: one tuple
        self.index_of: dict[int, int] = {}
        for i, d in enumerate(days):
            self.index_of.setdefault(d.toordinal() - base, i)  # a day listed twice: bisect_left finds the first
        self.month_of = [f"{d.year:04d}-{d.month:02d}" for d in days]
        # the school days as a mask of offsets, and the days up to the last one but one that are not school days;
        # 0 (runs read day by day) when a day is listed twice or comes before the base
        plain = len(self.index_of) == len(days) and all(o >= 0 for o in self.index_of)
        self.mask = sum(1 << o for o in self.index_of) if plain else 0
        self.gaps = (1 << (self.mask.bit_length() + 1)) - 1 & ~self.mask

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
    month_masks: tuple[int, ...]  # per month of `months`, the day offsets of all its calendar days
    window_mask: int  # the day offsets whose absence counts in the window: after the school day before it
    covered: int  # the day offsets of the months: a counted day outside them is left to the per-day reading


def _days_from(first: int, after_last: int) -> int:
    """The mask of day offsets first..after_last - 1 (those below 0 left out: no day has a negative offset)."""
    return (1 << max(after_last, 0)) - (1 << max(first, 0)) if after_last > first else 0


def span_of(school: SchoolDays, begin: date, end: date, last_day: date, window: int, base: int) -> Span:
    """The span of a membership from `begin` to `end` at `school`, up to `last_day`, with a window of `window` days;
    `base` the ordinal of the school year's first day (day offset 0)."""
    days = school.days
    months = months_in_membership(days, begin, end, last_day)
    lo = bisect_left(days, begin)
    hi = bisect_right(days, min(end, last_day))
    window_days = min(window, hi - lo)
    window_from = hi - window_days
    zero = tuple(MonthTally(m, n, 0, 0, 0, 0, 0) for m, n in months)
    month_masks = []
    for m, _ in months:
        y, mo = int(m[:4]), int(m[5:])
        first = date(y, mo, 1).toordinal() - base
        month_masks.append(_days_from(first, date(y + mo // 12, mo % 12 + 1, 1).toordinal() - base))
    covered = 0
    for mask in month_masks:
        covered |= mask
    # a day counts in the window when bisect places it at window_from or later: after the school day before it
    window_mask = -1 if window_from == 0 else -1 << max(days[window_from - 1].toordinal() - base + 1, 0)
    no_absence = DayFacts(zero, (), False, window_days, 0)
    return Span(months, hi, window_days, window_from, no_absence, tuple(month_masks), window_mask, covered)


def day_facts(
    masks: DayMasks | None, school_days: Sequence[date], begin: date, end: date, last_day: date, base: int, window: int
) -> DayFacts:
    """The facts of one student x school: `school_days` the school's (sorted, up to `last_day`), the membership from
    `begin` to `end`, `base` the ordinal of the school year's first day, `window` the school days of the window."""
    school = SchoolDays(school_days, base)
    return facts_of(masks, school, span_of(school, begin, end, last_day, window, base), base)


def _weight_groups(masks: DayMasks, union: int) -> list[tuple[int, int]]:
    """The days with any absence by their weight: (hundredths, mask of the days with that weight), one per distinct
    weight (a handful: most days count 100 or 50), each plane splitting the groups by its bit."""
    groups = [(0, union)]
    for b in range(PLANES):
        plane = masks[b]
        if not plane:
            continue
        value = 1 << b
        split = []
        for w, days in groups:
            on = days & plane
            if on:
                split.append((w + value, on))
                if on != days:
                    split.append((w, days ^ on))
            else:
                split.append((w, days))
        groups = split
    return groups


def facts_of(masks: DayMasks | None, school: SchoolDays, span: Span, base: int) -> DayFacts:
    """`day_facts` with the school's days and the membership's span made beforehand (`SchoolDays`, `span_of`):
    the days counted by their weight, each weight's days per month, kind and window by counting bits."""
    if masks is None:
        return span.no_absence
    union = masks[0] | masks[1] | masks[2] | masks[3] | masks[4] | masks[5] | masks[6]
    if not union:
        return span.no_absence
    if union & ~span.covered:  # a day outside the membership's months: as the per-day reading has it
        return facts_by_day(masks, school, span, base)
    groups = _weight_groups(masks, union)
    kinds = [
        (k, masks[mask]) for k, mask in enumerate((EXCUSED, UNEXCUSED, ILLNESS, SUSPENSION), start=1) if masks[mask]
    ]
    tallies = []
    for (m, n), month, zero in zip(span.months, span.month_masks, span.no_absence.months, strict=True):
        if not union & month:
            tallies.append(zero)
            continue
        t = [0, 0, 0, 0, 0]
        for w, days in groups:
            here = days & month
            if here:
                t[0] += w * here.bit_count()
                for k, kind in kinds:
                    t[k] += w * (here & kind).bit_count()
        tallies.append(month_tally((m, n, t[0], t[1], t[2], t[3], t[4])))
    window = span.window_mask
    window_absent = sum(w * (days & window).bit_count() for w, days in groups)
    absent = 0
    for w, days in groups:
        if w >= ABSENT_DAY_H:
            absent |= days
    if not absent & (absent - 1):  # at most one absent day: no run
        return DayFacts(tuple(tallies), (), False, span.window_days, window_absent)
    school_days, days_mask = school.days, school.mask
    if absent & ~days_mask:  # an absent day not one of the school's days (or no mask): day by day
        found, running = _runs(absent, school, span, base)
        return DayFacts(tuple(tallies), found, running, span.window_days, window_absent)
    # the school day after each absent day: a carry from the day after it through the days that are not school days
    after = ((absent << 1) + school.gaps) & days_mask
    later = after & absent  # the absent days whose school day before was absent: a run's days but its first
    if not later:
        return DayFacts(tuple(tallies), (), False, span.window_days, window_absent)
    index_of = school.index_of
    runs: list[list[date]] = []
    run: list[date] = []
    last_index = -2
    for offset in _offsets(later):
        index = index_of[offset]
        if index == last_index + 1:
            run.append(school_days[index])
        else:
            if run:
                runs.append(run)
            run = [school_days[index - 1], school_days[index]]
        last_index = index
    runs.append(run)
    last, hi = absent.bit_length() - 1, span.hi
    running = bool(later >> last & 1) and last_index == hi - 1 and school_days[hi - 1] == school_days[-1]
    found = tuple([school.run(r) for r in runs])
    return DayFacts(tuple(tallies), found, running, span.window_days, window_absent)


def _chains(absent: int, school: SchoolDays, base: int) -> tuple[list[list[date]], int]:
    """The absent days (`absent`: their mask) in chains of school days in a row, and the last one's index."""
    school_days, index_of = school.days, school.index_of
    runs: list[list[date]] = []
    run: list[date] = []
    last_index = -2
    for offset in _offsets(absent):
        index = index_of.get(offset)
        if index is None:  # not one of the school's days (not counted by the tallies): as bisect places it
            day = date.fromordinal(base + offset)
            index = bisect_left(school_days, day)
        else:
            day = school_days[index]
        if index != last_index + 1 and run:  # a school day in membership between: the run ended
            runs.append(run)
            run = []
        run.append(day)
        last_index = index
    if run:
        runs.append(run)
    return runs, last_index


def _runs(absent: int, school: SchoolDays, span: Span, base: int) -> tuple[tuple[tuple[date, ...], ...], bool]:
    """The runs of at least 2 absent days in a row (`absent`: their mask) and whether the last one is running."""
    runs, last_index = _chains(absent, school, base)
    school_days, hi = school.days, span.hi
    last_school_day = school_days[-1] if school_days else None
    running = bool(runs) and len(runs[-1]) >= 2 and last_index == hi - 1 and school_days[hi - 1] == last_school_day
    return tuple([school.run(r) for r in runs if len(r) >= 2]), running


def facts_by_day(masks: DayMasks, school: SchoolDays, span: Span, base: int) -> DayFacts:
    """`facts_of` read day by day: each day's weight from the planes, added to its month, kinds and the window."""
    planes = [(masks[b], 1 << b) for b in range(PLANES) if masks[b]]
    kinds = [
        (masks[mask], k) for k, mask in enumerate((EXCUSED, UNEXCUSED, ILLNESS, SUSPENSION), start=1) if masks[mask]
    ]
    school_days, index_of, month_of = school.days, school.index_of, school.month_of
    by_month: dict[str, list[int]] = {m: [0, 0, 0, 0, 0] for m, _ in span.months}
    window_from = span.window_from
    window_absent = 0
    absent = 0
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
            month = month_of[index]
        totals = by_month[month]
        totals[0] += w
        for mask, k in kinds:
            if mask >> offset & 1:
                totals[k] += w
        if index >= window_from:
            window_absent += w
        if w >= ABSENT_DAY_H:
            absent |= 1 << offset
    tallies = []
    for m, n in span.months:  # equal tallies are one object (records.MonthTally)
        t = by_month[m]
        tallies.append(month_tally((m, n, t[0], t[1], t[2], t[3], t[4])))
    found, running = _runs(absent, school, span, base)
    return DayFacts(tuple(tallies), found, running, span.window_days, window_absent)
