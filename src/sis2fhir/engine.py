"""The attendance engine's interface: (export, roster, rules) in; (summaries, row report, the gates' counts) out.

An engine reads the attendance events of an export and measures, per student x school in membership up to the
as-of date, the school days and days absent (measure.py does the arithmetic). Which rows count is decided here,
once, for every engine: a row counts when it is dated in the school year up to the as-of date, the student is
enrolled at the school on that day, the day is a school day (calendar.csv, else the days the rows show), and no
earlier row counted for the same student, school and day. The streaming tally (tally.py, `StreamingTally`) is the
first engine; tests/measure/test_engine_contract.py is the contract any other engine (a columnar one) must pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple, Protocol

from sis2fhir.measure import AttendanceSummary
from sis2fhir.policy import Policy
from sis2fhir.read.attendance import ATTENDANCE_FILE, edfi_files
from sis2fhir.read.export import Export, ExportError
from sis2fhir.records import AttendanceCategory, Membership, RejectedAttendance, Roster, SchoolYear
from sis2fhir.report import RowReport
from sis2fhir.withhold import Withheld

Key = tuple[str, str]  # (student sourcedId, school sourcedId)


def choose_school_year(roster: Roster, as_of: date) -> SchoolYear:
    """The school year that contains the as-of date, else the latest one that started before it."""
    containing = [y for y in roster.school_years if y.start <= as_of <= y.end]
    if containing:
        return max(containing, key=lambda y: y.start)
    started = [y for y in roster.school_years if y.start <= as_of]
    if started:
        return max(started, key=lambda y: y.start)
    if not roster.school_years:
        raise ExportError("academicSessions.csv gives no school year: add a row of type schoolYear (or terms)")
    first = min(y.start for y in roster.school_years)
    raise ExportError(f"the as-of date {as_of} is before every school year in academicSessions.csv (first: {first})")


@dataclass(frozen=True, slots=True)
class Rules:
    """What decides whether an event counts: the year, the as-of date, memberships, the calendar, the policy."""

    year: SchoolYear
    as_of: date
    policy: Policy
    memberships: dict[Key, Membership]
    calendar_days: dict[str, set[int]] | None  # school -> instructional day offsets; None: learn from the rows
    # the day offset of the last accepted run's as-of date: days absent up to it are kept apart, to compare
    compare_until: int | None = None
    calendar: dict[str, list[date]] | None = None  # calendar.csv as read (school -> sorted days)
    style: str = ""  # positive | exception-only | edfi (read.attendance.attendance_style)
    window: int = 20  # school days of the early-warning window (notify.early_warning_window_days)

    @classmethod
    def of(
        cls,
        roster: Roster,
        calendar: dict[str, list[date]] | None,
        year: SchoolYear,
        as_of: date,
        policy: Policy,
        style: str = "",
        compare_until: date | None = None,
        window: int = 20,
    ) -> Rules:
        """The rules of one run; `compare_until`: the last accepted run's as-of date, if any; `window`: the school
        days whose absences are projected to the year's end (notify.early_warning_window_days)."""
        base = year.start.toordinal()
        return cls(
            year=year,
            as_of=as_of,
            policy=policy,
            memberships=roster.memberships,
            calendar_days=None
            if calendar is None
            else {s: {d.toordinal() - base for d in ds} for s, ds in calendar.items()},
            compare_until=None if compare_until is None else compare_until.toordinal() - base,
            calendar=calendar,
            style=style,
            window=window,
        )

    @property
    def base(self) -> int:
        return self.year.start.toordinal()

    @property
    def last_day(self) -> date:
        return min(self.as_of, self.year.end)

    def rejected(self) -> RejectedAttendance:
        """An empty record of the rows rejected that would have counted (dated in the year, up to the as-of date)."""
        return RejectedAttendance(self.year.start, self.last_day)


# -- the row checks: what every engine reports for a row that does not count -------------------------------


class RowCheck(NamedTuple):
    column: str
    code: str
    message: str


NOT_ENROLLED = RowCheck(
    "schoolSourcedId",
    "not-enrolled",
    "the student has no student enrollment at this school in enrollments.csv; row not counted",
)
OUTSIDE_MEMBERSHIP = RowCheck(
    "date",
    "outside-membership",
    "the date is outside the student's enrollment at this school ({begin} to {end}); row not counted",
)
NOT_A_SCHOOL_DAY = RowCheck(
    "date",
    "not-a-school-day",
    "calendar.csv does not list this date as instructional for this school; row not counted",
)
CONFLICTING_EVENT = RowCheck(
    "date",
    "conflicting-event",
    "a second row for the same student, school and date; the first row was used and this one was not "
    "(rows are not summed): correct the export so each school day has one row",
)
OUTSIDE_YEAR, AFTER_AS_OF = -1, -2  # day offsets of rows dated outside the year, or after the as-of date
PRESENCE = frozenset({AttendanceCategory.IN_ATTENDANCE, AttendanceCategory.PRESENT})


def day_offset(rules: Rules, day: date) -> int:
    """The day's offset in the school year; OUTSIDE_YEAR or AFTER_AS_OF for a row that does not count."""
    if day < rules.year.start or day > rules.year.end:
        return OUTSIDE_YEAR
    if day > rules.as_of:
        return AFTER_AS_OF
    return day.toordinal() - rules.base


def report_undated(report: RowReport, counts: AttendanceCounts, rules: Rules) -> None:
    """One warning per file for the rows dated after the as-of date, and for those outside the year beyond the ones
    reported at their lines (not counted)."""
    year = rules.year
    if counts.outside_year > counts.outside_listed:  # the first ones are reported at their lines (tally.py)
        message = (
            f"{counts.outside_year - counts.outside_listed} more rows (after the {counts.outside_listed} listed by "
            f"line) are dated outside the school year {year.start} to {year.end}; not counted"
        )
        report.add(counts.file, 0, "date", "outside-school-year", message, severity="warning")
    if counts.after_as_of:
        message = f"{counts.after_as_of} rows are dated after the as-of date {rules.as_of}; not counted in this run"
        report.add(counts.file, 0, "date", "after-as-of", message, severity="warning")


def is_positive(style: str, presence_rows: int, rows_used: int) -> bool:
    """Attendance with a row for every student and school day: not exception-only, and most rows say present (as
    read.attendance decides the style of a CSV file; Ed-Fi files are judged the same way here)."""
    return style != "exception-only" and presence_rows * 2 >= rows_used > 0


def attendance_files(export: Export, style: str) -> list[str]:
    """The files the attendance is read from: the Ed-Fi XML files, or attendance.csv."""
    return edfi_files(export) if style == "edfi" else [export.actual_name(ATTENDANCE_FILE)]


# -- what an engine gives back --------------------------------------------------------------------------------


class AttendanceCounts(Protocol):
    """The counts the sanity gates and the withholding read (schools x days and students, never rows)."""

    @property
    def rows_by_school(self) -> Mapping[str, Mapping[int, int]]:
        """Rows counted per school and day offset (a day without rows has no entry)."""
        ...

    @property
    def seen(self) -> Mapping[Key, int]:
        """Per student x school: non-zero when any row counted (the streaming tally keeps a bitmask of days)."""
        ...

    @property
    def absent_until(self) -> Mapping[Key, int]:
        """Per student x school: hundredths of days absent up to `Rules.compare_until` (none: no entry)."""
        ...

    @property
    def presence_rows(self) -> int: ...  # counted rows that say In Attendance / Present

    @property
    def outside_year(self) -> int: ...  # rows dated outside the school year

    @property
    def outside_listed(self) -> int: ...  # of them, the ones reported at their lines

    @property
    def after_as_of(self) -> int: ...  # rows dated after the as-of date

    @property
    def events(self) -> int: ...  # events read

    @property
    def file(self) -> str: ...  # the file named in warnings about undated rows

    @property
    def rows_counted(self) -> int: ...

    def students_absent(self) -> dict[str, int]:
        """Per school: students with any absence counted."""
        ...


@dataclass(slots=True)
class MeasuredAttendance:
    """An engine's result. `summaries` may be sent; `withheld` may not (withhold.py); the row report got the rest."""

    every_summary: list[AttendanceSummary]  # per student x school with a school day in membership
    summaries: list[AttendanceSummary]  # of those, the ones that may be sent
    withheld: list[Withheld]
    school_days: dict[str, list[date]]  # per school of a membership, its school days up to the as-of date
    counts: AttendanceCounts
    files: list[str] = field(default_factory=list)  # the attendance files read
    engine: str = "streaming"  # the engine that read them: streaming | columnar
    fallback: str = ""  # why the columnar engine, asked, left them to the streaming one


class AttendanceEngine(Protocol):
    """Reads an export's attendance and measures it under the rules; rows that do not count go to the report."""

    def measure(self, export: Export, roster: Roster, rules: Rules, report: RowReport) -> MeasuredAttendance: ...
