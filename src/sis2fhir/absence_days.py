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
from sis2fhir.records import AttendanceCategory, MonthTally

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


def day_facts(
    masks: DayMasks | None, school_days: Sequence[date], begin: date, end: date, last_day: date, base: int, window: int
) -> DayFacts:
    """The facts of one student x school: `school_days` the school's (sorted, up to `last_day`), the membership from
    `begin` to `end`, `base` the ordinal of the school year's first day, `window` the school days of the window."""
    months = months_in_membership(school_days, begin, end, last_day)
    lo = bisect_left(school_days, begin)
    hi = bisect_right(school_days, min(end, last_day))
    in_membership = hi - lo
    window_days = min(window, in_membership)
    if masks is None or not any(masks[:PLANES]):
        zero = tuple(MonthTally(m, n, 0, 0, 0, 0, 0) for m, n in months)
        return DayFacts(zero, (), False, window_days, 0)
    by_month: dict[str, list[int]] = {m: [0, 0, 0, 0, 0] for m, _ in months}
    window_from = hi - window_days  # index of the window's first school day
    window_absent = 0
    runs: list[list[date]] = []
    run: list[date] = []
    last_index = -2
    union = 0
    for b in range(PLANES):
        union |= masks[b]
    for offset in _offsets(union):
        w = weight_on(masks, offset)
        day = date.fromordinal(base + offset)
        kinds = by_month[f"{day.year:04d}-{day.month:02d}"]
        kinds[0] += w
        bit = 1 << offset
        for k, mask in enumerate((EXCUSED, UNEXCUSED, ILLNESS, SUSPENSION), start=1):
            if masks[mask] & bit:
                kinds[k] += w
        index = bisect_left(school_days, day)  # counted days are school days in membership: found
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
    last_school_day = school_days[-1] if school_days else None
    running = len(run) >= 2 and last_index == hi - 1 and school_days[hi - 1] == last_school_day
    tallies = tuple(MonthTally(m, n, *by_month[m]) for m, n in months)
    return DayFacts(tallies, tuple(tuple(r) for r in runs if len(r) >= 2), running, window_days, window_absent)
