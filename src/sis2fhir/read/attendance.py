"""Attendance events streamed from attendance.csv or Ed-Fi StudentAttendance XML, on roster keys."""

from __future__ import annotations

from collections.abc import Iterator

from sis2fhir.read.attendance_csv import ATTENDANCE, ATTENDANCE_FILE, iter_csv
from sis2fhir.read.attendance_style import AttendanceStyle, StyleDecision, attendance_style, decide_attendance_style
from sis2fhir.read.attendance_values import Resolver
from sis2fhir.read.cutting import FilePart, line_parts
from sis2fhir.read.edfi import broken_xml, edfi_files, iter_edfi, xml_unreadable
from sis2fhir.read.export import Export, ExportError
from sis2fhir.read.vocabulary import category_of, reason_code
from sis2fhir.records import AttendanceEvent, RejectedAttendance, Roster
from sis2fhir.report import RowReport

__all__ = [
    "ATTENDANCE",
    "ATTENDANCE_FILE",
    "AttendanceStyle",
    "StyleDecision",
    "attendance_parts",
    "attendance_style",
    "category_of",
    "decide_attendance_style",
    "edfi_files",
    "iter_attendance",
    "reason_code",
]


def iter_attendance(
    export: Export,
    roster: Roster,
    report: RowReport,
    part: FilePart | None = None,
    rejected: RejectedAttendance | None = None,
) -> Iterator[AttendanceEvent]:
    """Every usable attendance event, streamed; unusable rows go to `report` (file, line, column).

    `part`: only that byte range of attendance.csv (see `attendance_parts`). `rejected`: where the students of
    rejected rows are noted (when the row still tells whose it was), so that their attendance is withheld."""
    if part is not None:
        yield from iter_csv(export, roster, report, part, rejected)
        return
    xml = edfi_files(export)
    if export.has(ATTENDANCE_FILE):
        if xml:
            report.add(
                xml[0],
                0,
                "",
                "edfi-ignored",
                f"attendance.csv is read, so the Ed-Fi files {', '.join(xml)} are not (two sources would "
                "double-count). Give one of the two.",
                "warning",
            )
        yield from iter_csv(export, roster, report, None, rejected)
        return
    broken = broken_xml(export)
    for head in broken:  # perhaps attendance: a gate stops the run on file-unreadable attendance
        xml_unreadable(report, head.name, head.line, head.problem, "nothing in it is read")
        report.count_read(head.name, 0)
    if not xml and not broken:
        raise ExportError(
            "The export has neither attendance.csv nor an Ed-Fi InterchangeStudentAttendance .xml file. "
            "Add the attendance export."
        )
    resolver = Resolver(roster, report, rejected)
    for name in xml:
        yield from iter_edfi(export, name, resolver, report)


def attendance_parts(export: Export, parts: int, min_bytes: int = 64 << 20) -> list[FilePart] | None:
    """attendance.csv cut at line starts into `parts` byte ranges of about equal size, for several processes.

    None when that is not safe or not worth it: a zip (no random access), a small file, Ed-Fi XML, or a file with
    quotes (a quoted field may hold a line break, so a cut could fall inside a row)."""
    if parts < 2 or export.is_zip or not export.has(ATTENDANCE_FILE):
        return None
    return line_parts(export, ATTENDANCE_FILE, parts, min_bytes)
