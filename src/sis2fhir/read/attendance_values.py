"""An attendance row's values resolved onto roster keys and vocabulary, once per distinct value."""

from __future__ import annotations

from datetime import date

from sis2fhir.read.dates import parse_date
from sis2fhir.read.vocabulary import category_of, reason_code
from sis2fhir.records import AttendanceCategory, RejectedAttendance, Roster
from sis2fhir.report import RowReport
from sis2fhir.terminology import ABSENCE_REASONS


class Resolver:
    """Per-distinct-value caches: 18M rows hold a few hundred dates, a handful of categories and reasons."""

    def __init__(self, roster: Roster, report: RowReport, rejected: RejectedAttendance | None = None) -> None:
        self.report = report
        self.rejected = rejected
        self.students = roster.students
        self.by_state_id = roster.student_by_state_id()
        self.schools: dict[str, str] = {}
        for s in roster.schools.values():
            if s.identifier:
                self.schools.setdefault(s.identifier, s.sourced_id)
        for s in roster.schools.values():
            self.schools[s.sourced_id] = s.sourced_id
        self.dates: dict[str, date | None] = {}
        self.categories: dict[str, AttendanceCategory | None] = {}
        self.durations: dict[str, float | None] = {"": 1.0}
        self.reasons: dict[str, str] = {"": ""}
        self.reasons_reported: set[str] = set()

    def day(self, text: str) -> date | None:
        d = parse_date(text)
        self.dates[text] = d
        return d

    def category(self, text: str) -> AttendanceCategory | None:
        c = category_of(text)
        self.categories[text] = c
        return c

    def duration(self, text: str) -> float | None:
        try:
            d: float | None = float(text.strip() or "1")
        except ValueError:
            d = None
        if d is not None and not 0 < d <= 1:
            d = None
        self.durations[text] = d
        return d

    def reason(self, text: str, file: str, line: int, column: str) -> str:
        code = reason_code(text)
        if code is None:
            code = "unknown"
            key = " ".join(text.split()).lower()
            if key not in self.reasons_reported:
                self.reasons_reported.add(key)
                self.report.add(
                    file,
                    line,
                    column,
                    "unknown-reason",
                    f"Absence reason '{text.strip()}' is not recognised; read as 'unknown' "
                    f"(reported once, first "
                    f"at line {line}). Use one of: {', '.join(ABSENCE_REASONS)}.",
                    "warning",
                )
        self.reasons[text] = code
        return code

    def reject(self, who: tuple[str, ...], school: str, day: str, file: str, line: int) -> None:
        """Note that a row of these students (school and date as the row gives them) was rejected."""
        if self.rejected is None:
            return
        found = self.schools.get(school)
        if found is None:
            found = self.schools.get(school.strip())
        d = self.dates[day] if day in self.dates else self.day(day)
        for student in who:
            self.rejected.add(student, found, d, file, line)

    def damaged_row(self, file: str, line: int, fields: dict[str, str]) -> None:
        """A row the CSV layer rejected (damaged line, broken quote, ragged): whose it was, if that can be read.

        A value is taken only when it holds no replaced byte and names a student of the roster."""
        who: list[str] = []
        sid = fields.get("studentSourcedId", "").strip()
        if sid in self.students and "\ufffd" not in sid:
            who.append(sid)
        state = fields.get("studentIdentifier", "").strip()
        other = self.by_state_id.get(state) if state and "\ufffd" not in state else None
        if other is not None and other not in who:
            who.append(other)  # two students named: it cannot be told whose day it is, so both
        if who:
            self.reject(tuple(who), fields.get("schoolSourcedId", ""), fields.get("date", ""), file, line)
