"""An independent recount of a generated district (examples/generate_district.py), with the test's own arithmetic:
plain csv reading, no sis2fhir code. The generator writes one row per school day in membership (or per exception),
only inside a stay, so the counting rules reduce to: a stay's days in membership are its school's calendar days
from its begin (blank: the year's start) to the earlier of its end and the as-of date; its absences are the rows up
to the as-of date with an absence category (an out-of-school suspension is one; an in-school one is "In
Attendance"), each its duration (blank: a whole day). ESSA: at least 10 days; at risk from 5 %, chronic from 10 %,
severe from 20 % of the days in membership."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tests.support.paths import GENERATOR

ABSENT = {"Excused Absence", "Unexcused Absence"}


def generate(out: Path, *args: str) -> Path:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), *args], check=True, capture_output=True)
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


@dataclass
class Unit:
    """A stay, a student, or a month of either: days in membership and hundredths of days absent (and of them,
    for illness)."""

    days: int = 0
    absent: int = 0
    illness: int = 0
    excused: int = 0

    def tier(self) -> str:
        if self.days < 10:
            return "insufficient"
        share = self.absent  # hundredths of a day; 10 % of `days` days is 10 * days hundredths
        if share >= 20 * self.days:
            return "severe"
        if share >= 10 * self.days:
            return "moderate"
        if share >= 5 * self.days:
            return "at_risk"
        return "satisfactory"


@dataclass
class District:
    grade: dict[str, str] = field(default_factory=dict)  # student -> grade
    state_id: dict[str, str] = field(default_factory=dict)
    stays: dict[tuple[str, str], Unit] = field(default_factory=lambda: defaultdict(Unit))
    stay_months: dict[tuple[str, str, str], Unit] = field(default_factory=lambda: defaultdict(Unit))
    school_days: dict[str, list[date]] = field(default_factory=dict)

    def students(self) -> dict[str, Unit]:
        out: dict[str, Unit] = defaultdict(Unit)
        for (student, _), u in self.stays.items():
            _add(out[student], u)
        return out

    def student_months(self) -> dict[tuple[str, str], Unit]:
        out: dict[tuple[str, str], Unit] = defaultdict(Unit)
        for (student, _, month), u in self.stay_months.items():
            _add(out[(student, month)], u)
        return out


def _add(into: Unit, u: Unit) -> None:
    into.days += u.days
    into.absent += u.absent
    into.illness += u.illness
    into.excused += u.excused


def recount(export: Path, as_of: date, upto: date | None = None) -> District:
    """The district's stays measured up to `upto` (default: the as-of date)."""
    last = upto or as_of
    d = District()
    year = next(r for r in rows(export / "academicSessions.csv") if r["type"] == "schoolYear")
    start, end = date.fromisoformat(year["startDate"]), date.fromisoformat(year["endDate"])
    for r in rows(export / "calendar.csv"):
        if r["instructional"] == "true":
            d.school_days.setdefault(r["schoolSourcedId"], []).append(date.fromisoformat(r["date"]))
    for r in rows(export / "users.csv"):
        if r["role"] == "student":
            d.grade[r["sourcedId"]] = r["grades"]
            d.state_id[r["sourcedId"]] = r["identifier"]
    for r in rows(export / "enrollments.csv"):
        if r["role"] != "student":
            continue
        begin = date.fromisoformat(r["beginDate"]) if r["beginDate"] else start
        stop = min(date.fromisoformat(r["endDate"]) if r["endDate"] else end, last)
        key = (r["userSourcedId"], r["schoolSourcedId"])
        for day in d.school_days[r["schoolSourcedId"]]:
            if begin <= day <= stop:
                d.stays[key].days += 1
                d.stay_months[(*key, day.isoformat()[:7])].days += 1
    for r in rows(export / "attendance.csv"):
        day = date.fromisoformat(r["date"])
        if day > last or r["category"] not in ABSENT:
            continue
        h = round(float(r["duration"] or 1) * 100)
        for unit in (
            d.stays[(r["studentSourcedId"], r["schoolSourcedId"])],
            d.stay_months[(r["studentSourcedId"], r["schoolSourcedId"], r["date"][:7])],
        ):
            unit.absent += h
            unit.illness += h if r["reason"] == "illness" else 0
            unit.excused += h if r["category"] == "Excused Absence" else 0
    return d


@dataclass
class Cell:
    enrolled: int = 0
    students: int = 0
    chronic: int = 0
    tiers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    days: int = 0
    absent: int = 0


def cells(d: District) -> dict[tuple[str, str, str, str], Cell]:
    """(level, school, grade, month) -> the expected figures, as population.csv names its rows."""
    out: dict[tuple[str, str, str, str], Cell] = defaultdict(Cell)

    def put(key: tuple[str, str, str, str], u: Unit) -> None:
        if u.days <= 0:
            return
        c = out[key]
        c.enrolled += 1
        c.days += u.days
        c.absent += u.absent
        tier = u.tier()
        if tier != "insufficient":
            c.students += 1
            c.tiers[tier] += 1
            c.chronic += tier in ("moderate", "severe")

    for (student, school), u in d.stays.items():
        put(("school", school, "", ""), u)
        put(("grade", school, d.grade[student], ""), u)
    for student, u in d.students().items():
        put(("district", "", "", ""), u)
        put(("grade", "", d.grade[student], ""), u)
    for (_, school, month), u in d.stay_months.items():
        put(("month", school, "", month), u)
    for (_, month), u in d.student_months().items():
        put(("month", "", "", month), u)
    return dict(out)


def rate_hundredths(part: int, whole: int) -> int:
    """part / whole in hundredths of a percent, rounded half up (the test's own rounding)."""
    return (2 * part * 10_000 + whole) // (2 * whole)
