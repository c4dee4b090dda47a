"""The numbers clinicians see: days in membership, days absent, absence rate, tier, chronic flag.

Everything here is a pure function of its arguments (dates, counts, policy), so each number can be
tested without I/O. Days are counted in hundredths (ints) so that 0.33 + 0.33 + 0.34 is exactly 1 and
a rate of exactly 10 % is chronic on every machine.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from functools import lru_cache

from sis2fhir.policy import Policy
from sis2fhir.records import AttendanceCategory, MonthTally
from sis2fhir.terminology import CHRONIC_TIERS, Tier

HUNDREDTHS = 100  # one school day

OSS = "suspension-out-of-school"
ISS = "suspension-in-school"
ILLNESS_REASONS = frozenset({"illness"})


def day_hundredths(duration: float) -> int:
    """An event's duration (fraction of the school day) in hundredths of a day, within 1..100."""
    return max(1, min(HUNDREDTHS, round(duration * HUNDREDTHS)))


def absence_weight(category: AttendanceCategory, duration_h: int, reason: str, policy: Policy) -> int:
    """How much of a school day (in hundredths) one attendance event makes absent under `policy`."""
    if reason == ISS and not policy.in_school_suspension_counts:
        return 0  # in school: the student was there (CALPADS counts it as expected attendance)
    counts = category in policy.absence_categories or (reason == OSS and policy.out_of_school_suspension_counts)
    if reason == OSS and not policy.out_of_school_suspension_counts:
        counts = False
    if not counts:
        return 0
    if policy.partial_days == "half-day":
        return HUNDREDTHS if duration_h >= HUNDREDTHS // 2 else 0
    return duration_h


@dataclass(slots=True)
class AbsenceTally:
    """Running totals for one student at one school, in hundredths of a day."""

    absent: int = 0
    excused: int = 0
    unexcused: int = 0
    illness: int = 0
    oss: int = 0

    def add(self, category: AttendanceCategory, duration_h: int, reason: str, policy: Policy) -> int:
        """Count one event; returns the hundredths it made absent (0: none)."""
        w = absence_weight(category, duration_h, reason, policy)
        if not w:
            return 0
        self.absent += w
        if category is AttendanceCategory.EXCUSED_ABSENCE:
            self.excused += w
        elif category is AttendanceCategory.UNEXCUSED_ABSENCE:
            self.unexcused += w
        if reason in ILLNESS_REASONS:
            self.illness += w
        elif reason == OSS:
            self.oss += w
        return w


def days_in_membership(school_days: Sequence[date], begin: date, end: date, as_of: date) -> int:
    """Instructional days of the school (sorted) from `begin` to the earlier of `end` and `as_of`."""
    last = min(end, as_of)
    if last < begin:
        return 0
    return bisect_right(school_days, last) - bisect_left(school_days, begin)


def months_in_membership(school_days: Sequence[date], begin: date, end: date, as_of: date) -> list[tuple[str, int]]:
    """Per calendar month ("YYYY-MM", ascending), the school's instructional days (sorted) from `begin` to the earlier
    of `end` and `as_of`; only months with at least one such day. The counts add up to `days_in_membership`."""
    last = min(end, as_of)
    lo, hi = bisect_left(school_days, begin), bisect_right(school_days, last)
    months: list[tuple[str, int]] = []
    i = lo
    while i < hi:
        d = school_days[i]
        first_of_next = date(d.year + d.month // 12, d.month % 12 + 1, 1)
        j = min(hi, bisect_left(school_days, first_of_next, i, hi))
        months.append((f"{d.year:04d}-{d.month:02d}", j - i))
        i = j
    return months


def school_days_left(calendar_days: Sequence[date] | None, after: date, until: date) -> int:
    """The school days after `after` up to `until`: from the school's calendar.csv days (sorted), or, without a
    calendar, the weekdays (a school calendar is not known, so holidays are not taken off)."""
    if until <= after:
        return 0
    if calendar_days is not None:
        return bisect_right(calendar_days, until) - bisect_right(calendar_days, after)
    first, last = after.toordinal() + 1, until.toordinal()  # Monday..Friday: isoweekday 1..5
    weeks, rest = divmod(last - first + 1, 7)
    start = date.fromordinal(first).isoweekday()
    return weeks * 5 + sum(1 for k in range(rest) if (start + k - 1) % 7 < 5)


def last_instructional_day(calendar_days: Sequence[date] | None, year_start: date, year_end: date) -> date:
    """A school's last instructional day of the school year: the last calendar.csv day in the year, else (no
    calendar, or none of its days in the year) the year's end date."""
    days = [d for d in calendar_days or () if year_start <= d <= year_end]
    return max(days) if days else year_end


def absence_rate(days_absent_h: int, days_in_membership: int) -> float | None:
    """Share of the days in membership missed, in [0, 1]; None without any day in membership."""
    if days_in_membership <= 0:
        return None
    return min(1.0, days_absent_h / (days_in_membership * HUNDREDTHS))


def rate_percent_hundredths(days_absent_h: int, days_in_membership: int) -> int | None:
    """The absence rate in hundredths of a percent, rounded half up in exact integers (the figure shown to
    clinicians, in FHIR and HL7 v2 alike); None without any day in membership."""
    if days_in_membership <= 0:
        return None
    numerator = days_absent_h * 10_000 // HUNDREDTHS  # exact: HUNDREDTHS divides 10 000
    return min((2 * numerator + days_in_membership) // (2 * days_in_membership), 100 * 100)


def chronic_absence_tier(days_absent_h: int, days_in_membership: int, policy: Policy) -> Tier:
    """The tier for these totals under `policy`."""
    if days_in_membership < max(1, policy.minimum_days_in_membership):
        return Tier.INSUFFICIENT_DATA
    # exact: 18 of 180 days is 10 %, not 9.999999999 % (no floats on the way). The value is a / b and a bound
    # n / d (b, d > 0), so value >= bound is a * d >= n * b in integers, as Fraction compares them
    if policy.measure == "percent":
        a, b = days_absent_h * 100, days_in_membership * HUNDREDTHS
    else:
        a, b = days_absent_h, HUNDREDTHS
    for bound, tier in (
        (policy.severe_bound, Tier.SEVERE_CHRONIC),
        (policy.chronic_bound, Tier.MODERATE_CHRONIC),
        (policy.at_risk_bound, Tier.AT_RISK),
    ):
        n, d = _as_written(bound)
        if a * d >= n * b:
            return tier
    return Tier.SATISFACTORY


@lru_cache(maxsize=64)  # a run has a policy or two: three bounds each
def _as_written(bound: float) -> tuple[int, int]:
    """A policy's bound as the configuration writes it: 10.1 is 101/10, not its binary neighbour (numerator,
    denominator > 0)."""
    return Fraction(str(bound)).as_integer_ratio()


def is_chronic(tier: str) -> bool | None:
    """True or False; None when the data cannot say (too few days in membership)."""
    if tier == Tier.INSUFFICIENT_DATA:
        return None
    return tier in CHRONIC_TIERS


@dataclass(frozen=True, slots=True)
class AttendanceSummary:
    """Year-to-date attendance of one student at one school, as of a date."""

    student_sourced_id: str
    school_sourced_id: str
    school_year: int
    period_start: date  # start of the school year
    as_of: date  # end of the period (the run's as-of date, or the school year's end if earlier)
    days_in_membership: int
    days_absent_h: int
    excused_h: int
    unexcused_h: int
    illness_h: int
    oss_h: int
    tier: Tier  # a plain code string (as read back from the store) compares equal
    # what notifications and the chart need besides the totals (absence_days.py; docs/notifications.md)
    months: tuple[MonthTally, ...] = ()  # one per calendar month with a school day in membership; they add up
    absence_runs: tuple[tuple[date, ...], ...] = ()  # runs of 2+ absent days in a row among the days in membership
    run_is_running: bool = False  # the last run goes on up to the last school day up to the as-of date
    window_days: int = 0  # the last school days in membership (up to notify.early_warning_window_days)
    window_absent_h: int = 0  # hundredths absent on them
    days_left: int = 0  # school days after the as-of date up to the earlier of the membership's and the year's end
    projected_rate: float | None = None  # transitions.projected_rate: the year-end rate projected from the window

    @property
    def days_absent(self) -> float:
        return self.days_absent_h / HUNDREDTHS

    @property
    def rate(self) -> float | None:
        return absence_rate(self.days_absent_h, self.days_in_membership)

    @property
    def chronic(self) -> bool | None:
        return is_chronic(self.tier)


def summarize(
    student_sourced_id: str,
    school_sourced_id: str,
    school_year: int,
    period_start: date,
    as_of: date,
    membership_days: int,
    tally: AbsenceTally,
    policy: Policy,
    *,
    months: tuple[MonthTally, ...] = (),
    absence_runs: tuple[tuple[date, ...], ...] = (),
    run_is_running: bool = False,
    window_days: int = 0,
    window_absent_h: int = 0,
    days_left: int = 0,
    projected_rate: float | None = None,
) -> AttendanceSummary:
    """The summary for one student at one school from the membership count and the absence tally (and the per-day
    facts the engine found: AttendanceSummary's fields of the same names)."""
    return AttendanceSummary(
        student_sourced_id=student_sourced_id,
        school_sourced_id=school_sourced_id,
        school_year=school_year,
        period_start=period_start,
        as_of=as_of,
        days_in_membership=membership_days,
        days_absent_h=tally.absent,
        excused_h=tally.excused,
        unexcused_h=tally.unexcused,
        illness_h=tally.illness,
        oss_h=tally.oss,
        tier=chronic_absence_tier(tally.absent, membership_days, policy),
        months=months,
        absence_runs=absence_runs,
        run_is_running=run_is_running,
        window_days=window_days,
        window_absent_h=window_absent_h,
        days_left=days_left,
        projected_rate=projected_rate,
    )
