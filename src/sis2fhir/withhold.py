"""Attendance withheld for one student x school: numbers this run knows to be incomplete are not sent at all.

A rejected attendance row (a bad date, category, duration or school, two students named in one row, a line that
cannot be read) is a school day this run cannot count. Sent without it, the student's days absent would be too
few, and a chronically absent student could read "satisfactory" in a pediatrician's chart: a wrong "satisfactory"
is worse than none. So the readers note whose row each rejected one was, when that can be told (the student's
sourcedId or state id is readable and names a student of the roster), and the run builds nothing for that
student x school; what a recipient already holds stays, carrying its own as-of date. In a positive file (a row
for every student and school day) a student with no row at all would read 0 days absent: withheld the same way.

Memory: a few integers per student x school with a rejected row, never the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sis2fhir.measure import AttendanceSummary
from sis2fhir.records import ANY_SCHOOL, RejectedAttendance
from sis2fhir.report import RowReport

Key = tuple[str, str]  # (student sourcedId, school sourcedId)

WITHHELD = "attendance-withheld"
MISSING = "attendance-missing-for-student"


@dataclass(frozen=True, slots=True)
class Withheld:
    """One student x school whose attendance summary is not sent in this run, and why."""

    student: str
    school: str
    code: str  # WITHHELD (rows rejected) or MISSING (a positive file without any row for them)
    count: int  # rows rejected, or school days in membership without a row
    file: str
    line: int  # the first rejected row (0: the file as a whole)


def withhold(
    summaries: Iterable[AttendanceSummary],
    rejected: RejectedAttendance | None,
    seen: Mapping[Key, int] | None = None,
    attendance_file: str = "",
) -> tuple[list[AttendanceSummary], list[Withheld]]:
    """The summaries that may be sent, and the ones withheld (in the summaries' order).

    `seen`: for a positive file only, the school days counted per student x school (a bitmask, tally.Tallies.seen);
    a student x school with school days in membership and no counted row at all is withheld as MISSING."""
    rows = rejected.rows if rejected is not None else {}

    kept: list[AttendanceSummary] = []
    held: list[Withheld] = []
    for s in summaries:
        key = (s.student_sourced_id, s.school_sourced_id)
        here, anywhere = rows.get(key), rows.get((key[0], ANY_SCHOOL))
        if here is not None or anywhere is not None:
            found = [r for r in (here, anywhere) if r is not None]
            _, file, line = min(found, key=lambda r: r[2])
            held.append(Withheld(key[0], key[1], WITHHELD, sum(r[0] for r in found), file, line))
        elif seen is not None and not seen.get(key):
            held.append(Withheld(key[0], key[1], MISSING, s.days_in_membership, attendance_file, 0))
        else:
            kept.append(s)
    return kept, held


def report_withheld(report: RowReport, held: Iterable[Withheld]) -> None:
    """One warning per withheld student x school, naming the student by sourcedId only."""
    for w in held:
        if w.code == WITHHELD:
            rows = "1 of their attendance rows was" if w.count == 1 else f"{w.count} of their attendance rows were"
            message = (
                f"Attendance of student '{w.student}' at school '{w.school}' is withheld in this run: {rows} "
                f"rejected (first at line {w.line}; see the errors there), so their days absent cannot be counted "
                "in full. Nothing is built or sent for this student x school; what a recipient already holds stays, "
                "with its own as-of date. Their attendance goes out once the rows are fixed."
            )
        else:
            days = "1 school day" if w.count == 1 else f"{w.count} school days"
            message = (
                f"Student '{w.student}' is enrolled at school '{w.school}' on {days} up to the as-of date, but the "
                "attendance file, which has a row for every student and school day (positive style), has no row "
                "for them at all: they would read 0 days absent. Their attendance is withheld in this run; add "
                "their rows to the export."
            )
        report.add(w.file, w.line, "studentSourcedId", w.code, message, "warning")


def withhold_incomplete(
    summaries: list[AttendanceSummary],
    rejected: RejectedAttendance | None,
    seen: Mapping[Key, int],
    positive: bool,
    attendance_file: str,
    report: RowReport,
) -> tuple[list[AttendanceSummary], list[Withheld]]:
    """The summaries that may be sent; those of students with rejected attendance rows (or, in a positive file,
    without any row) are withheld, each reported once."""
    kept, held = withhold(summaries, rejected, seen if positive else None, attendance_file if positive else "")
    report_withheld(report, held)
    return kept, held
