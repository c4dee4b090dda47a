"""Attendance from attendance.csv or Ed-Fi XML: style, categories, reasons, rows reported, streaming."""

from __future__ import annotations

import shutil
import tracemalloc
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from sis2fhir.read.attendance import (
    attendance_style,
    category_of,
    decide_attendance_style,
    edfi_files,
    iter_attendance,
    reason_code,
)
from sis2fhir.read.export import Export, ExportError, open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import AttendanceCategory, AttendanceEvent, Roster
from sis2fhir.report import RowReport
from tests.support import paths

EXPORTS = paths.EXPORTS
HEADER = "studentSourcedId,studentIdentifier,schoolSourcedId,date,category,duration,reason\n"


def district(tmp_path: Path, attendance: str | None = None, calendar: bool = True) -> Path:
    folder = Path(shutil.copytree(EXPORTS / "district-1.1", tmp_path / "district"))
    if attendance is None:
        (folder / "attendance.csv").unlink()
    else:
        (folder / "attendance.csv").write_text(attendance)
    if not calendar:
        (folder / "calendar.csv").unlink()
    return folder


def read_all(folder: Path) -> tuple[Roster, list[AttendanceEvent], RowReport, Export]:
    report = RowReport()
    export = open_export(folder)
    roster = read_roster(export, report, "userIds:state")
    report = RowReport()  # attendance issues only
    return roster, list(iter_attendance(export, roster, report)), report, export


def test_an_attendance_row_becomes_an_event_on_roster_keys(tmp_path: Path) -> None:
    folder = district(tmp_path, HEADER + "stu-1,,sch-elm,2025-09-02,Excused Absence,0.5,Sick\n")
    _, events, report, _ = read_all(folder)
    assert events == [
        AttendanceEvent(
            "stu-1",
            "sch-elm",
            date(2025, 9, 2),
            AttendanceCategory.EXCUSED_ABSENCE,
            0.5,
            "illness",
            "attendance.csv",
            2,
        )
    ]
    assert report.issues == []
    assert report.rows_read["attendance.csv"] == 1


def test_a_student_can_be_named_by_state_id(tmp_path: Path) -> None:
    folder = district(tmp_path, HEADER + ",9000002,sch-elm,2025-09-02,Unexcused Absence,,\n")
    _, events, _, _ = read_all(folder)
    assert [(e.student_sourced_id, e.duration, e.reason) for e in events] == [("stu-2", 1.0, "")]


@pytest.mark.parametrize(
    "text",
    [
        "Excused Absence",
        "excused absence",
        "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Excused Absence",
        "ExcusedAbsence",
        " EXCUSEDABSENCE ",
    ],
)
def test_a_category_is_accepted_bare_as_uri_or_as_the_ceds_code(text: str) -> None:
    assert category_of(text) is AttendanceCategory.EXCUSED_ABSENCE


def test_every_ed_fi_category_is_known() -> None:
    for c in AttendanceCategory:
        assert category_of(c.value) is c
    assert category_of("EarlyDeparture") is AttendanceCategory.EARLY_DEPARTURE
    assert category_of("Vacation") is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("illness", "illness"),
        ("Sick", "illness"),
        ("sick - flu", "illness"),
        ("OSS", "suspension-out-of-school"),
        ("Out of School Suspension", "suspension-out-of-school"),
        ("ISS", "suspension-in-school"),
        ("in-school suspension", "suspension-in-school"),
        ("Doctor appointment", "medical"),
        ("mental_health", "mental-health"),
        ("missed the bus", "transportation"),
        ("Religious holiday", "religious"),
        ("family emergency", "family"),
        ("", ""),
        ("overslept", None),
    ],
)
def test_a_free_text_reason_is_normalised_to_a_code(text: str, code: str | None) -> None:
    assert reason_code(text) == code


def test_each_bad_row_is_reported_with_its_column_and_not_yielded() -> None:
    _, events, report, _ = read_all(EXPORTS / "district-1.1")
    assert [e.line for e in events] == [2, 3, 4, 5, 11, 12]
    errors = [(i.line, i.column, i.code) for i in report.issues if i.severity == "error"]
    assert errors == [
        (6, "studentSourcedId", "unknown-student"),
        (7, "schoolSourcedId", "unknown-school"),
        (8, "date", "bad-date"),
        (9, "category", "unknown-category"),
        (10, "duration", "bad-duration"),
    ]
    assert report.rows_read["attendance.csv"] == 11
    assert sum(report.rows_rejected().values()) + len(events) == report.rows_read["attendance.csv"]


def test_an_unrecognised_reason_is_reported_once_per_distinct_value_not_per_row(tmp_path: Path) -> None:
    rows = "".join(
        f"stu-1,,sch-elm,2025-09-{d:02d},Excused Absence,1,{r}\n"
        for d, r in [(2, "overslept"), (3, "Overslept"), (4, "overslept "), (5, "zoo trip"), (8, "zoo trip")]
    )
    _, events, report, _ = read_all(district(tmp_path, HEADER + rows))
    assert [e.reason for e in events] == ["unknown"] * 5
    assert [(i.line, i.code, i.severity) for i in report.issues] == [
        (2, "unknown-reason", "warning"),
        (5, "unknown-reason", "warning"),
    ]


def test_a_file_naming_students_by_neither_column_is_reported_once(tmp_path: Path) -> None:
    folder = district(tmp_path, "pupil,schoolSourcedId,date,category\nstu-1,sch-elm,2025-09-02,Present\n")
    _, events, report, _ = read_all(folder)
    assert events == []
    assert [(i.line, i.code) for i in report.issues] == [(1, "missing-column")]
    assert "studentSourcedId" in report.issues[0].message


def test_style_is_positive_when_presence_rows_are_most_rows(tmp_path: Path) -> None:
    rows = "stu-1,,sch-elm,2025-09-02,Present,1,\nstu-1,,sch-elm,2025-09-03,In Attendance,1,\n"
    rows += "stu-1,,sch-elm,2025-09-04,Excused Absence,1,Sick\n"
    decision = decide_attendance_style(open_export(district(tmp_path, HEADER + rows)))
    assert decision.style == "positive"
    assert "In Attendance/Present" in decision.reason


def test_exception_only_is_detected_with_a_calendar(tmp_path: Path) -> None:
    folder = district(tmp_path, HEADER + "stu-1,,sch-elm,2025-09-02,Excused Absence,1,\n")
    decision = decide_attendance_style(open_export(folder))
    assert decision.style == "exception-only"
    assert "calendar.csv" in decision.reason


def test_without_a_calendar_absences_only_are_exception_only_and_the_reason_asks_for_a_calendar(
    tmp_path: Path,
) -> None:
    folder = district(tmp_path, HEADER + "stu-1,,sch-elm,2025-09-02,Excused Absence,1,\n", calendar=False)
    decision = decide_attendance_style(open_export(folder))
    assert decision.style == "exception-only"  # the sanity gate then refuses it: school days cannot be guessed
    assert "add calendar.csv" in decision.reason


def test_a_few_presence_rows_do_not_make_an_exception_only_file_positive(tmp_path: Path) -> None:
    # SIS exports list an in-school suspension as In Attendance with a reason, beside the absences
    rows = "stu-1,,sch-elm,2025-09-02,Excused Absence,1,\nstu-1,,sch-elm,2025-09-03,Unexcused Absence,1,\n"
    rows += "stu-1,,sch-elm,2025-09-04,In Attendance,1,suspension-in-school\n"
    decision = decide_attendance_style(open_export(district(tmp_path, HEADER + rows)))
    assert decision.style == "exception-only"


def test_a_style_column_is_believed(tmp_path: Path) -> None:
    text = "style," + HEADER + "exception-only,stu-1,,sch-elm,2025-09-02,Present,1,\n"
    assert attendance_style(open_export(district(tmp_path, text))) == "exception-only"


def edfi_district(tmp_path: Path) -> Path:
    folder = district(tmp_path, None)
    shutil.copy(EXPORTS / "edfi" / "StudentAttendance-2025-09.xml", folder)
    return folder


def test_an_ed_fi_file_gives_the_same_events_as_the_equivalent_csv(tmp_path: Path) -> None:
    edfi = edfi_district(tmp_path / "x")
    csv = district(
        tmp_path / "c",
        HEADER + "stu-1,,sch-elm,2025-09-02,Excused Absence,1,Sick\n"
        ",9000002,sch-elm,2025-09-02,Unexcused Absence,,\n"
        ",9000004,sch-oak,2025-09-03,Excused Absence,0.5,out of school suspension\n",
    )
    _, from_xml, xml_report, xml_export = read_all(edfi)
    _, from_csv, _, _ = read_all(csv)
    assert attendance_style(xml_export) == "edfi"
    assert [e[:6] for e in from_xml] == [e[:6] for e in from_csv]
    assert [(e.file, e.line) for e in from_xml] == [
        ("StudentAttendance-2025-09.xml", 4),
        ("StudentAttendance-2025-09.xml", 33),
        ("StudentAttendance-2025-09.xml", 49),
    ]
    assert [(i.line, i.column, i.code) for i in xml_report.issues if i.severity == "error"] == [
        (67, "StudentUniqueId", "unknown-student")
    ]


def test_section_attendance_is_counted_and_reported_once_not_per_element(tmp_path: Path) -> None:
    folder = edfi_district(tmp_path)
    xml = folder / "StudentAttendance-2025-09.xml"
    section = xml.read_text().split("<StudentSectionAttendanceEvent>")[1].split("</StudentSectionAttendanceEvent>")[0]
    extra = f"<StudentSectionAttendanceEvent>{section}</StudentSectionAttendanceEvent>\n" * 3
    xml.write_text(
        xml.read_text().replace("</InterchangeStudentAttendance>", extra + "</InterchangeStudentAttendance>")
    )
    _, _, report, _ = read_all(folder)
    sections = [i for i in report.issues if i.code == "section-attendance"]
    assert len(sections) == 1
    assert sections[0].line == 22 and sections[0].message.startswith("4 StudentSectionAttendanceEvent")
    assert report.rows_read["StudentAttendance-2025-09.xml"] == 8


def test_a_truncated_ed_fi_file_is_reported_not_raised(tmp_path: Path) -> None:
    folder = edfi_district(tmp_path)
    xml = folder / "StudentAttendance-2025-09.xml"
    xml.write_text(xml.read_text()[:2000])
    _, events, report, _ = read_all(folder)
    assert len(events) == 2
    broken = [(i.file, i.code) for i in report.issues if i.severity == "error"]
    assert broken == [("StudentAttendance-2025-09.xml", "file-unreadable")]


def test_ed_fi_xml_broken_part_way_is_file_unreadable_at_its_line_and_column(tmp_path: Path) -> None:
    folder = edfi_district(tmp_path)
    xml = folder / "StudentAttendance-2025-09.xml"
    lines = xml.read_text().splitlines(keepends=True)
    lines[40] = lines[40].replace("</", "</Broken", 1)  # a mismatched end tag on line 41
    xml.write_text("".join(lines))
    _, events, report, _ = read_all(folder)
    assert events and all(e.line < 41 for e in events)  # what came before the break is still read
    [broken] = [i for i in report.issues if i.severity == "error"]
    assert (broken.file, broken.line, broken.code) == ("StudentAttendance-2025-09.xml", 41, "file-unreadable")
    assert "line 41, column " in broken.message


BILLION_LAUGHS = (
    b'<!DOCTYPE InterchangeStudentAttendance [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    + b"".join(f'<!ENTITY {n} "{("&" + p + ";") * 10}">'.encode() for p, n in zip("bcdefgh", "cdefghi", strict=True))
    + b"]>\n"
)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda t: t.replace(b"http://ed-fi.org/5.2.0", b"http://example.org/not-ed-fi", 1), "not an Ed-Fi namespace"),
        (
            lambda t: (
                t.replace(b"<InterchangeStudentAttendance", BILLION_LAUGHS + b"<InterchangeStudentAttendance", 1)
                .replace(b"<EventDuration>1</EventDuration>", b"<EventDuration>&i;</EventDuration>", 1)
                .replace(b"<InterchangeStudentAttendance ", b'<InterchangeStudentAttendance a="&i;" ', 1)
            ),
            "has a DOCTYPE with entity declarations; Ed-Fi XML has none",
        ),
    ],
    ids=["wrong-namespace", "entity-expansion"],
)
def test_ed_fi_xml_that_is_not_a_plain_ed_fi_interchange_is_refused_unread(
    tmp_path: Path, edit: Callable[[bytes], bytes], says: str
) -> None:
    folder = edfi_district(tmp_path)
    xml = folder / "StudentAttendance-2025-09.xml"
    xml.write_bytes(edit(xml.read_bytes()))
    assert attendance_style(open_export(folder)) == "edfi"
    _, events, report, export = read_all(folder)  # 10**9 a's if the entities were expanded: never
    assert events == [] and edfi_files(export) == []
    assert [(i.file, i.code, i.severity) for i in report.issues] == [
        ("StudentAttendance-2025-09.xml", "file-unreadable", "error")
    ]
    assert says in report.issues[0].message


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01\x02 not xml", b"<?xml version='1.0'?>\n<InterchangeStudentAttendance\n<oops>"],
    ids=["binary", "broken-root"],
)
def test_ed_fi_xml_that_does_not_parse_from_the_start_is_file_unreadable(tmp_path: Path, content: bytes) -> None:
    folder = district(tmp_path, None)
    (folder / "StudentAttendance.xml").write_bytes(content)
    assert attendance_style(open_export(folder)) == "edfi"
    _, events, report, _ = read_all(folder)  # reported, not raised: the attendance gate stops the run
    assert events == []
    assert [(i.file, i.code, i.severity) for i in report.issues] == [
        ("StudentAttendance.xml", "file-unreadable", "error")
    ]
    assert report.issues[0].line >= 1 and "column" in report.issues[0].message


def test_an_export_with_no_attendance_at_all_is_refused(tmp_path: Path) -> None:
    folder = district(tmp_path, None)
    with pytest.raises(ExportError, match=r"neither attendance\.csv nor an Ed-Fi"):
        attendance_style(open_export(folder))


def _big_attendance(folder: Path, rows: int) -> None:
    start = date(2025, 8, 18)
    with (folder / "attendance.csv").open("w") as f:
        f.write(HEADER)
        for i in range(rows):
            f.write(f"stu-{1 + i % 2},,sch-elm,{start + timedelta(i % 180)},In Attendance,,\n")


def test_a_50k_row_attendance_file_streams_without_holding_the_rows(tmp_path: Path) -> None:
    folder = district(tmp_path, HEADER)
    _big_attendance(folder, 50_000)
    report = RowReport()
    export = open_export(folder)
    roster = read_roster(export, report, "userIds:state")
    tracemalloc.start()
    count = 0
    for event in iter_attendance(export, roster, report):
        count += event.duration == 1.0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 50_000
    # Holding 50k events would take well over 10 MB; streaming keeps a few rows and the date cache.
    assert peak < 2_000_000, peak


def test_a_large_ed_fi_file_streams_with_flat_memory(tmp_path: Path) -> None:
    folder = edfi_district(tmp_path)
    xml = folder / "StudentAttendance-2025-09.xml"
    one = "<StudentSchoolAttendanceEvent>" + xml.read_text().split("<StudentSchoolAttendanceEvent>")[1]
    one = one.split("</InterchangeStudentAttendance>")[0].split("<StudentSectionAttendanceEvent>")[0]
    xml.write_text(
        '<?xml version="1.0"?>\n<InterchangeStudentAttendance xmlns="http://ed-fi.org/5.2.0">\n'
        + one * 3_000
        + "</InterchangeStudentAttendance>\n"
    )
    report = RowReport()
    export = open_export(folder)
    roster = read_roster(export, report, "userIds:state")
    tracemalloc.start()
    count = sum(1 for _ in iter_attendance(export, roster, report))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 3_000
    assert peak < 2_000_000, peak
