"""The facts of the year of each membership (absence_days.DayFacts), its span made once per school, begin and end.

Both engines end with a summary per student x school (tally.summaries_of) that needs, beyond the year-to-date
totals, the monthly tallies, streaks and window read from its day masks. The columnar engine reads them while a
pass of students' masks is in hand (columnar/engine.py), so that the masks of the whole district are never held;
the streaming engine keeps its masks and reads them at the end. Both read them here, the same way.
"""

from __future__ import annotations

from datetime import date

from sis2fhir.absence_days import DayFacts, DayMasks, SchoolDays, Span, facts_of, span_of
from sis2fhir.engine import Key, Rules
from sis2fhir.measure import days_in_membership, school_days_left


def school_days_of(rules: Rules, derived_days: dict[str, set[int]]) -> dict[str, list[date]]:
    """Per school of a membership, its school days of the year up to the as-of date: from calendar.csv, or (no
    calendar) the days the attendance rows show (`derived_days`: per school, their day offsets)."""
    year, calendar = rules.year, rules.calendar
    last_day = min(rules.as_of, year.end)
    base = rules.base

    def school_days(school: str) -> list[date]:
        if calendar is not None:
            return [d for d in calendar.get(school, []) if year.start <= d <= last_day]
        return sorted(date.fromordinal(base + o) for o in derived_days.get(school, ()))

    return {s: school_days(s) for s in {sc for _, sc in rules.memberships}}


Membership = tuple[int, Span | None, int]  # school days in membership, the span (None: none yet), days left


class YearFacts:
    """The school days of each school (`days_by_school`, as school_days_of gives them) and, per school, begin
    and end of a membership, what the facts of its students share (most memberships share them)."""

    __slots__ = ("days_by_school", "last_day", "rules", "schools", "spans")

    def __init__(self, rules: Rules, days_by_school: dict[str, list[date]]) -> None:
        self.rules = rules
        self.days_by_school = days_by_school
        self.last_day = min(rules.as_of, rules.year.end)
        self.schools = {school: SchoolDays(days, rules.base) for school, days in days_by_school.items()}
        self.spans: dict[tuple[str, date, date], Membership] = {}

    def membership(self, school: str, begin: date, end: date) -> Membership:
        """Of a membership at `school` from `begin` to `end` (its dates as enrolled): the school days in it up to
        the last day, its span (None: not in membership on any school day yet) and the school days left."""
        rules, last_day = self.rules, self.last_day
        year, calendar = rules.year, rules.calendar
        begin, end = max(begin, year.start), min(end, year.end)
        found = self.spans.get((school, begin, end))
        if found is None:
            dim = days_in_membership(self.days_by_school[school], begin, end, last_day)
            left = school_days_left(None if calendar is None else calendar.get(school, []), last_day, end)
            span = span_of(self.schools[school], begin, end, last_day, rules.window, rules.base) if dim else None
            found = self.spans[(school, begin, end)] = (dim, span, left)
        return found

    def facts(self, key: Key, masks: DayMasks) -> DayFacts | None:
        """The facts of student x school `key` from its day masks; None: it has no summary (no membership on a
        school day), or no absence (its summary has the span's `no_absence`)."""
        m = self.rules.memberships.get(key)
        if m is None:
            return None
        span = self.membership(key[1], m.begin, m.end)[1]
        if span is None:
            return None
        facts = facts_of(masks, self.schools[key[1]], span, self.rules.base)
        return None if facts is span.no_absence else facts
