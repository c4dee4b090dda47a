"""The clean example district as the fuzz generator sees it: each file's lines, parsed rows, and who a row is about.

Read once from `examples/district` (as of 2026-03-31). Everything a variant needs to say which students a damaged row
may affect is answered here from the clean files, so the expectation never depends on the code under test.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

from tests.support import paths

REPO = paths.ROOT
EXAMPLE = REPO / "examples" / "district"
GENERATOR = REPO / "examples" / "generate_district.py"
AS_OF = date(2026, 3, 31)
CSV_FILES = (
    "manifest.csv",
    "orgs.csv",
    "users.csv",
    "enrollments.csv",
    "academicSessions.csv",
    "demographics.csv",
    "classes.csv",
    "courses.csv",
    "calendar.csv",
    "attendance.csv",
    "consents.csv",
)


def parse_line(line: bytes) -> list[str]:
    """One physical line of the example (no field of it spans lines) as CSV fields."""
    return next(csv.reader([line.decode("utf-8").rstrip("\r\n")]))


def write_line(fields: list[str], ending: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=ending).writerow(fields)
    return buf.getvalue()


@dataclass
class CsvFile:
    """One file of the example: its raw lines (line n is lines[n - 1]) and its header."""

    name: str
    lines: list[bytes]
    header: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.header = parse_line(self.lines[0])

    def col(self, name: str) -> int:
        return self.header.index(name)

    def row(self, line: int) -> dict[str, str]:
        return dict(zip(self.header, parse_line(self.lines[line - 1]), strict=False))

    @property
    def data_lines(self) -> range:
        """Line numbers of the data rows (the header is line 1)."""
        return range(2, len(self.lines) + 1)

    def unquoted(self, line: int, column: str) -> bool:
        """True when the column's value is written without quotes on that line (a quote can be put before it)."""
        raw = self.lines[line - 1].decode("utf-8")
        value = self.row(line)[column]
        return '"' not in raw or ("," + value + ",") in ("," + raw.rstrip("\n") + ",")


class District:
    """The clean export, with the facts the expectations need (students, schools, consents, calendar)."""

    def __init__(self, folder: Path = EXAMPLE) -> None:
        self.folder = folder
        self.files = {name: CsvFile(name, (folder / name).read_bytes().splitlines(keepends=True)) for name in CSV_FILES}

    def file(self, name: str) -> CsvFile:
        return self.files[name]

    @cached_property
    def students(self) -> set[str]:
        users = self.files["users.csv"]
        return {users.row(n)["sourcedId"] for n in users.data_lines if users.row(n)["role"] == "student"}

    @cached_property
    def state_ids(self) -> dict[str, str]:
        """State id -> student sourcedId."""
        users = self.files["users.csv"]
        rows = (users.row(n) for n in users.data_lines)
        return {r["identifier"]: r["sourcedId"] for r in rows if r["role"] == "student"}

    @cached_property
    def by_sourced_id(self) -> dict[str, str]:
        """Student sourcedId -> state id."""
        return {v: k for k, v in self.state_ids.items()}

    @cached_property
    def school_students(self) -> dict[str, set[str]]:
        enr = self.files["enrollments.csv"]
        found: dict[str, set[str]] = defaultdict(set)
        for n in enr.data_lines:
            r = enr.row(n)
            if r["role"] == "student":
                found[r["schoolSourcedId"]].add(r["userSourcedId"])
        return dict(found)

    @cached_property
    def school_ids(self) -> dict[str, str]:
        """orgs.identifier (the Ed-Fi SchoolId) -> school sourcedId."""
        orgs = self.files["orgs.csv"]
        rows = (orgs.row(n) for n in orgs.data_lines)
        return {r["identifier"]: r["sourcedId"] for r in rows if r["type"] == "school"}

    @cached_property
    def consent_students(self) -> dict[str, str]:
        """consentId -> student sourcedId."""
        return {self.files["consents.csv"].row(n)["consentId"]: self.consent_student(n) for n in self.consent_lines}

    @property
    def consent_lines(self) -> range:
        return self.files["consents.csv"].data_lines

    def consent_student(self, line: int) -> str:
        r = self.files["consents.csv"].row(line)
        return r["studentSourcedId"] or self.state_ids.get(r["studentIdentifier"], "")

    def affected(self, name: str, line: int) -> frozenset[str] | None:
        """The students whose resources may change when row `line` of file `name` is lost (None: everyone)."""
        if name not in self.files or line < 2:
            return frozenset()
        r = self.files[name].row(line)
        if name == "attendance.csv":
            return frozenset({r["studentSourcedId"]})
        if name == "consents.csv":
            return frozenset({self.consent_student(line)})
        if name in ("users.csv", "demographics.csv"):
            return frozenset({r["sourcedId"]} & self.students)
        if name == "enrollments.csv":
            return frozenset({r["userSourcedId"]} & self.students)
        if name == "calendar.csv":
            counted = r["instructional"] == "true" and date.fromisoformat(r["date"]) <= AS_OF
            return frozenset(self.school_students.get(r["schoolSourcedId"], set())) if counted else frozenset()
        if name == "orgs.csv":
            return frozenset(self.school_students[r["sourcedId"]]) if r["type"] == "school" else None
        if name == "academicSessions.csv":
            return frozenset() if r["type"] != "schoolYear" else None
        return frozenset()  # manifest, classes, courses: not about any one student

    def attendance_lines(self, counted_only: bool = True, absences: bool | None = None) -> list[int]:
        """Lines of attendance.csv dated up to the as-of date (the ones that count), optionally only absences."""
        att = self.files["attendance.csv"]
        i_date, i_cat = att.col("date"), att.col("category")
        found = []
        for n in att.data_lines:
            f = parse_line(att.lines[n - 1])
            if counted_only and f[i_date] > AS_OF.isoformat():
                continue
            if absences is not None and ("Absence" in f[i_cat]) != absences:
                continue
            found.append(n)
        return found
