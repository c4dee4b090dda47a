"""Which attendance an export carries: positive, exception-only (with a calendar) or Ed-Fi XML, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sis2fhir.read.attendance_csv import ATTENDANCE, ATTENDANCE_FILE
from sis2fhir.read.csvfile import open_csv
from sis2fhir.read.edfi import broken_xml, edfi_files
from sis2fhir.read.export import Export, ExportError
from sis2fhir.read.vocabulary import PRESENCE, category_of
from sis2fhir.report import RowReport

AttendanceStyle = Literal["positive", "exception-only", "edfi"]
CALENDAR_FILE = "calendar.csv"


@dataclass(frozen=True, slots=True)
class StyleDecision:
    style: AttendanceStyle
    reason: str  # how it was decided, for the run log


_STYLE_SAMPLE = 20_000  # rows read to decide the style (without a style column)
_POSITIVE_SHARE = 0.5  # of them In Attendance/Present: a positive file


def decide_attendance_style(export: Export) -> StyleDecision:
    """Positive, exception-only or Ed-Fi, and why: the `style` column if given, else what the rows show."""
    if not export.has(ATTENDANCE_FILE):
        if edfi_files(export) or broken_xml(export):
            return StyleDecision("edfi", "no attendance.csv; Ed-Fi InterchangeStudentAttendance XML is read.")
        raise ExportError(
            "The export has neither attendance.csv nor an Ed-Fi InterchangeStudentAttendance .xml file. "
            "Add the attendance export."
        )
    table = open_csv(export, ATTENDANCE_FILE, RowReport(), ATTENDANCE, stop_if_unreadable=False)
    assert table is not None
    i_style = table.columns.get("style")
    i_cat = table.columns.get("category")
    rows = presence = 0
    try:
        for _, row in table.rows():
            if i_style is not None and row[i_style].strip():
                style = row[i_style].strip().lower().replace("_", "-")
                if style in ("positive", "exception-only"):
                    return StyleDecision(style, f"attendance.csv says style '{style}'.")  # type: ignore[arg-type]
            rows += 1
            if i_cat is not None and category_of(row[i_cat]) in PRESENCE:
                presence += 1
            if rows >= _STYLE_SAMPLE and i_style is None:
                break
    finally:
        table.close()
    # A positive file has a row per student and school day, so In Attendance/Present is most of it (absence rates
    # are a few per cent). Exception-only exports still carry a few presence rows: SIS exports list in-school
    # suspensions as In Attendance with a reason, for example.
    if rows and presence >= rows * _POSITIVE_SHARE:
        return StyleDecision("positive", "most attendance.csv rows are In Attendance/Present, so every day has a row.")
    if export.has(CALENDAR_FILE):
        return StyleDecision(
            "exception-only",
            "attendance.csv rows are mostly not In Attendance/Present (exceptions only); calendar.csv gives the school "
            "days.",
        )
    return StyleDecision(
        "exception-only",
        "attendance.csv rows are mostly not In Attendance/Present, so it lists exceptions only, and there is no "
        "calendar.csv to give the school days: add calendar.csv (or a style column saying positive).",
    )


def attendance_style(export: Export) -> AttendanceStyle:
    """positive | exception-only | edfi (see decide_attendance_style for why)."""
    return decide_attendance_style(export).style
