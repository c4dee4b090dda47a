"""What one run's attendance says, in counts (schools x days and students, never rows, no student identifiers):
the sanity gates (plausibility.py) judge these, and the store keeps them with the run (store/verdicts.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sis2fhir.engine import AttendanceCounts, Rules, is_positive


@dataclass(frozen=True, slots=True)
class SchoolCounts:
    school_days: int  # school days of the year up to the as-of date (calendar.csv, else the days the rows show)
    rows: int  # attendance rows counted for the school
    students_absent: int  # students with any absence counted
    enrolled: int  # students enrolled at some time between the year's start and the as-of date
    # calendar school days up to the as-of date, within the school's enrolment, on which it has no row at all
    days_without_rows: tuple[date, ...] = ()


@dataclass(frozen=True, slots=True)
class Measures:
    """What this run's attendance says, in counts (no student identifiers): stored with the run."""

    as_of: date
    school_year: int
    style: str  # positive | exception-only | edfi
    calendar: bool  # calendar.csv gives the school days
    files: tuple[str, ...]  # the attendance files read
    unreadable: tuple[str, ...]  # of those, the ones a reader could not read whole
    rows_read: int  # data rows in the attendance files
    rows_used: int  # rows counted
    presence_rows: int  # counted rows that say In Attendance / Present
    outside_year: int
    after_as_of: int
    schools: dict[str, SchoolCounts] = field(default_factory=dict)

    @property
    def school_days(self) -> int:
        return sum(c.school_days for c in self.schools.values())

    @property
    def rows_per_school_day(self) -> float | None:
        days = self.school_days
        return self.rows_used / days if days else None

    @property
    def students_absent(self) -> int:
        return sum(c.students_absent for c in self.schools.values())

    @property
    def positive(self) -> bool:
        """A file with a row for every student and school day (so a school without rows is missing data)."""
        return is_positive(self.style, self.presence_rows, self.rows_used)

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "school_year": self.school_year,
            "style": self.style,
            "calendar": self.calendar,
            "files": list(self.files),
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "presence_rows": self.presence_rows,
            "school_days": self.school_days,
            "rows_per_school_day": self.rows_per_school_day,
            "students_absent": self.students_absent,
            "schools": {
                s: {
                    "school_days": c.school_days,
                    "rows": c.rows,
                    "students_absent": c.students_absent,
                    "enrolled": c.enrolled,
                }
                for s, c in sorted(self.schools.items())
            },
        }


def measures_of(
    tallies: AttendanceCounts,
    rules: Rules,
    school_days: Mapping[str, list[date]],
    *,
    style: str,
    calendar: bool,
    files: Iterable[str],
    unreadable: Iterable[str],
    rows_read: int,
) -> Measures:
    """The counts of one run's attendance, per school, from an attendance engine's counts."""
    year = rules.year
    last_day = min(rules.as_of, year.end)
    enrolled: dict[str, int] = {}
    span: dict[str, tuple[date, date]] = {}  # the first and last day any student is enrolled at the school
    for (_, school), m in rules.memberships.items():
        if m.begin <= last_day and m.end >= year.start:
            enrolled[school] = enrolled.get(school, 0) + 1
            first, last = span.get(school, (m.begin, m.end))
            span[school] = (min(first, m.begin), max(last, m.end))
    base = rules.base

    def days_without_rows(school: str) -> tuple[date, ...]:
        if not calendar or school not in span:
            return ()
        by_day = tallies.rows_by_school.get(school, {})
        first, last = span[school]
        return tuple(
            d for d in school_days.get(school, ()) if first <= d <= last and not by_day.get(d.toordinal() - base)
        )

    absent = tallies.students_absent()
    schools = set(school_days) | set(tallies.rows_by_school)
    counts = {
        s: SchoolCounts(
            school_days=len(school_days.get(s, ())),
            rows=sum(tallies.rows_by_school.get(s, {}).values()),  # adds up to tallies.rows_counted
            students_absent=absent.get(s, 0),
            enrolled=enrolled.get(s, 0),
            days_without_rows=days_without_rows(s),
        )
        for s in schools
    }
    return Measures(
        as_of=rules.as_of,
        school_year=year.year,
        style=style,
        calendar=calendar,
        files=tuple(files),
        unreadable=tuple(unreadable),
        rows_read=rows_read,
        rows_used=sum(c.rows for c in counts.values()),
        presence_rows=tallies.presence_rows,
        outside_year=tallies.outside_year,
        after_as_of=tallies.after_as_of,
        schools=counts,
    )
