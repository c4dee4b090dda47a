"""calendar.csv: each school's instructional days (the school days of exception-only attendance)."""

from __future__ import annotations

from datetime import date

from sis2fhir.read.csvfile import Columns, open_csv
from sis2fhir.read.dates import bad_date, parse_date
from sis2fhir.read.export import Export
from sis2fhir.report import RowReport

CALENDAR = Columns(required=("schoolSourcedId", "date", "instructional"))
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def read_calendar(export: Export, report: RowReport) -> dict[str, list[date]] | None:
    """School sourcedId -> sorted instructional days; None when the export has no calendar.csv."""
    table = open_csv(export, "calendar.csv", report, CALENDAR)
    if table is None:
        return None
    file = table.file
    i_school, i_date, i_instr = (table.columns.get(c, 0) for c in CALENDAR.required)
    seen: dict[tuple[str, date], tuple[bool, int]] = {}
    for line, row in table.rows():
        school = row[i_school].strip()
        if not school:
            report.add(file, line, "schoolSourcedId", "missing-school", "Row names no school; not used.")
            continue
        day = parse_date(row[i_date])
        if day is None:
            report.add(file, line, "date", "bad-date", bad_date(row[i_date], "date") + " Row not used.")
            continue
        flag = row[i_instr].strip().lower()
        if flag in _TRUE:
            instructional = True
        elif flag in _FALSE:
            instructional = False
        else:
            report.add(
                file,
                line,
                "instructional",
                "bad-flag",
                f"instructional '{row[i_instr]}' is neither true nor false; row not used.",
            )
            continue
        prior = seen.get((school, day))
        if prior is not None:
            if prior[0] != instructional:
                report.add(
                    file,
                    line,
                    "instructional",
                    "calendar-conflict",
                    f"{day} at school '{school}' is also given at line {prior[1]} with the other value; "
                    "the first is kept. Remove one of the two rows.",
                )
            else:
                report.add(
                    file,
                    line,
                    "date",
                    "duplicate-day",
                    f"{day} at school '{school}' is already given at line {prior[1]}.",
                    "warning",
                )
            continue
        seen[(school, day)] = (instructional, line)
    days: dict[str, list[date]] = {}
    for (school, day), (instructional, _) in seen.items():
        school_days = days.setdefault(school, [])
        if instructional:
            school_days.append(day)
    for school_days in days.values():
        school_days.sort()
    return days
