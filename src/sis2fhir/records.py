"""The district's data as the readers hand it on: plain records, no CSV and no FHIR.

Readers (sis2fhir.read) build these; measure, gate and map consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import NamedTuple


class AttendanceCategory(StrEnum):
    """Ed-Fi AttendanceEventCategoryDescriptor values (uri://ed-fi.org/AttendanceEventCategoryDescriptor)."""

    IN_ATTENDANCE = "In Attendance"
    PRESENT = "Present"
    EXCUSED_ABSENCE = "Excused Absence"
    UNEXCUSED_ABSENCE = "Unexcused Absence"
    TARDY = "Tardy"
    EARLY_DEPARTURE = "Early departure"
    PARTIAL = "Partial"


@dataclass(frozen=True, slots=True, init=False)
class MonthTally:
    """One calendar month of a student x school's school year, up to the as-of date: measure.py makes them, the store
    keeps them (attendance_summaries.months), the chart and the population views read them. Hundredths of a day.

    Equal tallies are one object: most students' months repeat (a month with no absence at a school is the same
    for all its full-year students), and every summary holds about ten of them, each with its own "YYYY-MM"
    string: at 20k students they were 33 MB of the 186 MB after the tally (measured). A value cannot change, so
    sharing it is safe; the table of them is bounded (`_SHARED_MAX`)."""

    month: str  # "YYYY-MM"
    days_in_membership: int
    absent_h: int
    excused_h: int
    unexcused_h: int
    illness_h: int
    oss_h: int  # out-of-school suspension

    def __new__(
        cls,
        month: str,
        days_in_membership: int,
        absent_h: int,
        excused_h: int,
        unexcused_h: int,
        illness_h: int,
        oss_h: int,
    ) -> MonthTally:
        key = (month, days_in_membership, absent_h, excused_h, unexcused_h, illness_h, oss_h)
        shared = _SHARED.get(key)
        if shared is not None:
            return shared
        made = object.__new__(cls)
        for name, value in zip(_MONTH_FIELDS, key, strict=True):
            object.__setattr__(made, name, value)
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        _SHARED[key] = made
        return made

    def __reduce__(self) -> tuple[type[MonthTally], tuple[str | int, ...]]:
        return MonthTally, tuple(getattr(self, name) for name in _MONTH_FIELDS)


def month_tally(key: tuple[str, int, int, int, int, int, int]) -> MonthTally:
    """The MonthTally of these fields (in MonthTally's order), looked up before one is made: most are shared."""
    shared = _SHARED.get(key)
    return shared if shared is not None else MonthTally(*key)


_MONTH_FIELDS = ("month", "days_in_membership", "absent_h", "excused_h", "unexcused_h", "illness_h", "oss_h")
_SHARED: dict[tuple[str | int, ...], MonthTally] = {}
_SHARED_MAX = 1 << 16  # distinct month tallies kept for sharing; beyond it the table starts again


@dataclass(frozen=True, slots=True)
class School:
    sourced_id: str
    name: str
    identifier: str = ""  # the org's own identifier (e.g. NCES or state school id), may be blank
    parent_sourced_id: str = ""  # the district (LEA) org, when given


@dataclass(frozen=True, slots=True)
class District:
    sourced_id: str
    name: str
    identifier: str = ""


@dataclass(slots=True)
class Student:
    sourced_id: str
    state_id: str  # the state student id, taken from the configured field; "" when the user has none
    given_name: str = ""
    family_name: str = ""
    middle_name: str = ""
    birth_date: date | None = None
    sex: str = ""  # OneRoster demographics: male | female | other | unspecified (1.2), "" when unknown
    grades: str = ""
    line: int = 0  # users.csv line, for reports


@dataclass(frozen=True, slots=True)
class Membership:
    """A student's stay at one school: earliest enrollment begin to latest enrollment end.

    Keyed by (student, school) in `Roster.memberships`, so it holds only the dates; most students share theirs,
    and equal memberships are one object (read_enrollments): at 100k students an object per stay was 64 of the
    roster's 468 bytes a student; 325 objects serve the 101k stays (measured)."""

    begin: date
    end: date


@dataclass(frozen=True, slots=True)
class SchoolYear:
    sourced_id: str
    title: str
    start: date
    end: date
    year: int  # OneRoster schoolYear, e.g. 2026 for 2025-26


@dataclass(slots=True)
class Roster:
    """Everything the OneRoster part of an export says that sis2fhir uses."""

    version: str
    district: District | None
    schools: dict[str, School] = field(default_factory=dict)
    students: dict[str, Student] = field(default_factory=dict)  # by sourcedId
    memberships: dict[tuple[str, str], Membership] = field(default_factory=dict)  # (student, school)
    school_years: list[SchoolYear] = field(default_factory=list)

    def student_by_state_id(self) -> dict[str, str]:
        """state id -> sourcedId, for files that name students by their state id."""
        return {s.state_id: s.sourced_id for s in self.students.values() if s.state_id}


class AttendanceEvent(NamedTuple):
    """One attendance row (CSV or Ed-Fi), resolved to roster keys. A tuple: millions of these stream by."""

    student_sourced_id: str
    school_sourced_id: str
    day: date
    category: AttendanceCategory
    duration: float  # fraction of the school day, 0 < d <= 1
    reason: str  # a code of terminology.ABSENCE_REASONS, or "" when none was given
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One row of consents.csv: a signed FERPA consent (34 CFR 99.30) for one recipient."""

    consent_id: str
    student_sourced_id: str
    grantor_name: str
    grantor_relationship: str
    recipient_organization: str
    recipient_name: str
    purpose: str
    data_scope: tuple[str, ...]
    signed: date
    period_start: date
    period_end: date | None
    status: str  # active | revoked | declined
    revoked: date | None
    document_url: str
    file: str
    line: int


ANY_SCHOOL = ""  # a rejected row whose school cannot be told: it may belong to any of the student's schools


@dataclass(slots=True)
class RejectedAttendance:
    """The students (x schools) of rejected attendance rows dated in the school year up to the as-of date.

    A row without a readable date counts (it may be any day); one dated outside [first_day, last_day] would not
    have counted anyway and withholds nothing. Parts of a file read in other processes add up with `absorb`."""

    first_day: date
    last_day: date
    # (student, school or ANY_SCHOOL) -> [rows rejected, file and line of the first one]
    rows: dict[tuple[str, str], tuple[int, str, int]] = field(default_factory=dict)

    def add(self, student: str, school: str | None, day: date | None, file: str, line: int) -> None:
        if day is not None and not self.first_day <= day <= self.last_day:
            return
        self._note((student, school or ANY_SCHOOL), 1, file, line)

    def _note(self, key: tuple[str, str], n: int, file: str, line: int) -> None:
        # a damaged line is found when its block is decoded, before the rows above it are: keep the lowest line
        had = self.rows.get(key)
        if had is None:
            self.rows[key] = (n, file, line)
        elif had[1] == file:
            self.rows[key] = (had[0] + n, file, min(had[2], line))
        else:
            self.rows[key] = (had[0] + n, had[1], had[2])

    def absorb(self, later: RejectedAttendance) -> None:
        """Add another part's rows."""
        for key, (n, file, line) in later.rows.items():
            self._note(key, n, file, line)
