#!/usr/bin/env python3
"""Writes a synthetic district's SIS export (OneRoster 1.1, attendance, calendar, consents) for sis2fhir.

Standard library only, so it runs before the package is installed. Every name, id and number is made up.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO


def columns(header: str) -> list[str]:
    """A header row written as it appears in the file."""
    return header.split(",")


BUFFER = 1 << 20

# OneRoster 1.1 CSV binding: header rows in the order of the spec's tables.
ONEROSTER_HEADERS: dict[str, list[str]] = {
    "orgs.csv": columns("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId"),
    "users.csv": columns(
        "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
        "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
    ),
    "courses.csv": columns(
        "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,"
        "subjects,subjectCodes"
    ),
    "classes.csv": columns(
        "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
        "schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods"
    ),
    "enrollments.csv": columns(
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate"
    ),
    "academicSessions.csv": columns(
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear"
    ),
    "demographics.csv": columns(
        "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,"
        "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,"
        "hispanicOrLatinoEthnicity,countryOfBirthCode,stateOfBirthAbbreviation,cityOfBirth,"
        "publicSchoolResidenceStatus"
    ),
}
# OneRoster 1.1 files this export does not carry are declared "absent" in the manifest.
ABSENT_ONEROSTER_FILES = [
    "categories",
    "classResources",
    "courseResources",
    "lineItems",
    "resources",
    "results",
]

ATTENDANCE_HEADER = columns("studentSourcedId,studentIdentifier,schoolSourcedId,date,category,duration,reason")
CALENDAR_HEADER = columns("schoolSourcedId,date,instructional")
CONSENT_HEADER = columns(
    "consentId,studentSourcedId,studentIdentifier,grantorName,grantorRelationship,recipientOrganization,"
    "recipientName,purpose,dataScope,signedDate,periodStart,periodEnd,status,revokedDate,documentUrl"
)

# Ed-Fi Data Standard 5.2 bulk interchange namespace (Interchange-StudentAttendance.xsd targetNamespace).
EDFI_NAMESPACE = "http://ed-fi.org/5.2.0"
EDFI_CATEGORY_URI = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#"

GRADES = ["KG", "01", "02", "03", "04", "05", "06", "07", "08"]
SCHOOL_NAMES = [
    "Maple Grove", "Cedar Ridge", "Willow Creek", "Harbor View", "Pine Hollow", "Riverside", "Stonebridge",
    "Brookfield", "Oak Meadow", "Lakeside", "Sunset Hill", "Fox Run",
]  # fmt: skip
GIVEN_NAMES = [
    "Avery", "Jordan", "Rowan", "Quinn", "Harper", "Emerson", "Skyler", "Reese", "Finley", "Sawyer",
    "Marisol", "Kenji", "Amara", "Tobias", "Leilani", "Dmitri", "Ingrid", "Mateo", "Priya", "Oluwaseun",
    "Anaya", "Bodhi", "Celeste", "Dashiell", "Esme", "Farah", "Gideon", "Hana", "Idris", "Juniper", "Kai",
    "Lucia", "Milo", "Noor", "Orion", "Paloma", "Rafferty", "Saoirse", "Thiago", "Uma", "Vesper", "Wren",
    "Ximena", "Yusuf", "Zuri",
]  # fmt: skip
FAMILY_NAMES = [
    "Ashgrove", "Brightwater", "Calloway", "Delacroix-Finch", "Eberhardt", "Fairweather", "Galloway",
    "Hawthorne", "Ibarra-Lin", "Jablonski", "Kettleby", "Larkspur", "Moraleda", "Nakashima-Ruiz",
    "Okonkwo-Hale", "Pemberton", "Quistgaard", "Rosenthorpe", "Sandoval-Kerr", "Thistlewood",
    "Umbridge-Park", "Vantongeren", "Whitlock", "Xiong-Marsh", "Yarborough", "Zelenko",
]  # fmt: skip
# Recipient organizations: the first nine digits of a made-up NPI (check digit added) and a name.
RECIPIENTS = [
    ("158214703", "Riverbend Pediatrics"),
    ("172903416", "Lakeshore Community Health Center"),
    ("190467235", "Northfield Family Medicine"),
]

# Absence reasons (codes of docs/formats.md; "" = none recorded), weight, share excused.
ABSENCE_REASONS: list[tuple[str, int, float]] = [
    ("illness", 42, 0.95),
    ("medical", 10, 0.97),
    ("mental-health", 4, 0.9),
    ("family", 9, 0.6),
    ("transportation", 5, 0.5),
    ("religious", 2, 1.0),
    ("unknown", 11, 0.0),
    ("", 17, 0.0),
]
OSS = "suspension-out-of-school"
ISS = "suspension-in-school"
CONSENT_KINDS = {  # kind: weight
    "active": 62,
    "revoked-before-as-of": 6,
    "revoked-after-as-of": 5,
    "declined": 6,
    "expired": 6,
    "not-yet-started": 5,
    "out-of-scope": 5,
    "re-consented": 5,  # an older consent revoked, then a new one signed
}

Event = tuple[str, str, str]  # (category, duration, reason)


def npi_with_check_digit(first_nine: str) -> str:
    """A 10-digit NPI: Luhn check digit over the 80840 prefix and the first nine digits (CMS rule)."""
    total = 0
    for i, c in enumerate(reversed("80840" + first_nine)):
        d = int(c)
        if i % 2 == 0:  # the digit next to the (future) check digit is doubled
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return first_nine + str((10 - total % 10) % 10)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th given weekday (Monday = 0) of a month; n = -1 for the last."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def weekdays(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        if d.weekday() < 5:
            yield d
        d += timedelta(days=1)


@dataclass(frozen=True)
class SchoolCalendar:
    """A US school year: late August to mid June; weekends, holidays and breaks not instructional."""

    school_year: int
    start: date
    end: date
    closed: dict[date, str]
    instructional: list[date]

    @classmethod
    def for_year(cls, school_year: int) -> SchoolCalendar:
        fall, spring = school_year - 1, school_year
        start = date(fall, 8, 24) + timedelta(days=-date(fall, 8, 24).weekday() % 7)  # a Monday
        end = date(spring, 6, 10) + timedelta(days=(4 - date(spring, 6, 10).weekday()) % 7)  # a Friday
        indigenous = nth_weekday(fall, 10, 0, 2)
        thanksgiving = nth_weekday(fall, 11, 3, 4)
        mlk = nth_weekday(spring, 1, 0, 3)
        presidents = nth_weekday(spring, 2, 0, 3)
        spring_break = nth_weekday(spring, 3, 0, 3)
        closed = {
            nth_weekday(fall, 9, 0, 1): "Labor Day",
            indigenous - timedelta(days=3): "Professional development day",
            indigenous: "Indigenous Peoples' Day",
            nth_weekday(fall, 11, 0, 1) + timedelta(days=1): "Election Day",
            date(fall, 11, 11): "Veterans Day",
            nth_weekday(fall, 11, 4, 2): "Parent-teacher conferences",
            mlk - timedelta(days=3): "End of semester grading day",
            mlk: "Martin Luther King Jr. Day",
            presidents - timedelta(days=3): "Professional development day",
            presidents: "Presidents' Day",
            nth_weekday(spring, 5, 0, -1): "Memorial Day",
        }
        for k in (-1, 0, 1):
            closed[thanksgiving + timedelta(days=k)] = "Thanksgiving break"
        for d in weekdays(date(fall, 12, 22), date(spring, 1, 2)):
            closed[d] = "Winter break"
        closed[next(weekdays(date(spring, 1, 3), date(spring, 1, 9)))] = "Teacher workday"
        for d in weekdays(spring_break, spring_break + timedelta(days=4)):
            closed[d] = "Spring break"
        closed = {d: why for d, why in sorted(closed.items()) if start <= d <= end and d.weekday() < 5}
        instructional = [d for d in weekdays(start, end) if d not in closed]
        return cls(school_year, start, end, closed, instructional)


@dataclass(frozen=True)
class School:
    sourced_id: str
    name: str
    identifier: str  # also the Ed-Fi SchoolId


@dataclass
class Stay:
    """A student's membership at one school, as indexes into the instructional days (end inclusive)."""

    school: School
    first: int
    last: int
    begin_text: str  # enrollments.csv beginDate ("" = the school year)
    end_text: str


@dataclass
class Student:
    number: int
    sourced_id: str
    state_id: str
    given: str
    middle: str
    family: str
    grade: str
    birth: date
    sex: str
    stays: list[Stay] = field(default_factory=list)


@dataclass
class Totals:
    students: int = 0
    teachers: int = 0
    attendance_rows: int = 0
    consents: int = 0
    chronic: int = 0
    measured: int = 0


class Table:
    """One CSV file with its header; rows are dicts, unnamed columns stay blank."""

    def __init__(self, folder: Path, name: str, header: list[str]) -> None:
        self.file: IO[str] = open(folder / name, "w", encoding="utf-8", newline="", buffering=BUFFER)  # noqa: SIM115
        self.writer = csv.DictWriter(self.file, header, restval="", lineterminator="\n")
        self.writer.writeheader()

    def row(self, **values: str) -> None:
        self.writer.writerow(values)

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.file.close()


def state_id(n: int) -> str:
    # 104729 is prime to 10**9, so n -> n * 104729 mod 10**9 is one-to-one: unique, not sequential-looking.
    return str(1_000_000_000 + (n * 104_729) % 1_000_000_000)


class DistrictWriter:
    """Generates students one at a time and streams their rows to every file."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.rng = random.Random(args.seed)
        self.calendar = SchoolCalendar.for_year(args.school_year)
        self.days = self.calendar.instructional
        self.date_text = [d.isoformat() for d in self.days]
        sy = args.school_year
        self.sy_text = f"{sy - 1}-{sy}"
        self.sy_id = f"sy-{sy}"
        self.term_ids = (f"term-{sy}-fall", f"term-{sy}-spring")
        new_year = date(sy, 1, 1)
        self.fall_end = max(d for d in self.days if d < new_year)
        self.spring_start = min(d for d in self.days if d >= new_year)
        self.district_id = "org-district"
        self.schools = [
            School(f"org-school-{k + 1:02d}", f"{SCHOOL_NAMES[k]} K-8 School", str(480_010_001 + 1000 * k))
            for k in range(args.schools)
        ]
        self.recipients = [(npi_with_check_digit(n), name) for n, name in RECIPIENTS]
        self.totals = Totals()

    # ---- small files ---------------------------------------------------------------------------

    def write_manifest(self) -> None:
        with Table(self.folder, "manifest.csv", ["propertyName", "value"]) as t:
            t.row(propertyName="manifest.version", value="1.0")
            t.row(propertyName="oneroster.version", value="1.1")
            for name in sorted(ONEROSTER_HEADERS):
                t.row(propertyName=f"file.{name.removesuffix('.csv')}", value="bulk")
            for name in ABSENT_ONEROSTER_FILES:
                t.row(propertyName=f"file.{name}", value="absent")
            t.row(propertyName="source.systemName", value="sis2fhir example generator")
            t.row(propertyName="source.systemCode", value=f"seed-{self.args.seed}")

    def write_orgs(self) -> None:
        with Table(self.folder, "orgs.csv", ONEROSTER_HEADERS["orgs.csv"]) as t:
            t.row(
                sourcedId=self.district_id,
                name="Brightwater Unified School District",
                type="district",
                identifier="4800100",
            )
            for s in self.schools:
                t.row(
                    sourcedId=s.sourced_id,
                    name=s.name,
                    type="school",
                    identifier=s.identifier,
                    parentSourcedId=self.district_id,
                )

    def write_sessions(self) -> None:
        sy = str(self.args.school_year)
        with Table(self.folder, "academicSessions.csv", ONEROSTER_HEADERS["academicSessions.csv"]) as t:
            for sid, title, kind, first, last, parent in [
                (self.sy_id, "School Year", "schoolYear", self.calendar.start, self.calendar.end, ""),
                (self.term_ids[0], "Fall Semester", "term", self.calendar.start, self.fall_end, self.sy_id),
                (
                    self.term_ids[1],
                    "Spring Semester",
                    "term",
                    self.spring_start,
                    self.calendar.end,
                    self.sy_id,
                ),
            ]:
                t.row(
                    sourcedId=sid,
                    title=f"{self.sy_text} {title}",
                    type=kind,
                    startDate=first.isoformat(),
                    endDate=last.isoformat(),
                    parentSourcedId=parent,
                    schoolYear=sy,
                )

    def write_calendar(self) -> None:
        with Table(self.folder, "calendar.csv", CALENDAR_HEADER) as t:
            for s in self.schools:
                # weekends are left out; weekdays without school are listed as not instructional
                for d in weekdays(self.calendar.start, self.calendar.end):
                    closed = d in self.calendar.closed
                    t.row(
                        schoolSourcedId=s.sourced_id,
                        date=d.isoformat(),
                        instructional=str(not closed).lower(),
                    )

    def write_homerooms(self, users: Table, enrollments: Table) -> None:
        """One homeroom course, class and teacher per grade and school."""
        rng = random.Random(self.args.seed * 7 + 1)
        with (
            Table(self.folder, "courses.csv", ONEROSTER_HEADERS["courses.csv"]) as courses,
            Table(self.folder, "classes.csv", ONEROSTER_HEADERS["classes.csv"]) as classes,
        ):
            for k, s in enumerate(self.schools):
                for g in GRADES:
                    tid, course_id = f"tch-{k + 1:02d}-{g}", f"crs-{k + 1:02d}-{g}"
                    given, family = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
                    users.row(
                        sourcedId=tid,
                        enabledUser="true",
                        orgSourcedIds=s.sourced_id,
                        role="teacher",
                        username=f"{given}.{family}.{k + 1}{g}".lower(),
                        userIds=f"{{district:T{k + 1:02d}{g}}}",
                        givenName=given,
                        familyName=family,
                        identifier=f"T{k + 1:02d}{g}",
                        email=f"{tid}@staff.example.org",
                        grades=g,
                    )
                    courses.row(
                        sourcedId=course_id,
                        schoolYearSourcedId=self.sy_id,
                        title=f"Homeroom Grade {g}",
                        courseCode=f"HR-{g}",
                        grades=g,
                        orgSourcedId=s.sourced_id,
                        subjects="Homeroom",
                    )
                    classes.row(
                        sourcedId=self.class_id(k, g),
                        title=f"Homeroom Grade {g}",
                        grades=g,
                        courseSourcedId=course_id,
                        classCode=f"HR{g}",
                        classType="homeroom",
                        location=f"Room {100 + GRADES.index(g)}",
                        schoolSourcedId=s.sourced_id,
                        termSourcedIds=",".join(self.term_ids),
                        subjects="Homeroom",
                        periods="1",
                    )
                    enrollments.row(
                        sourcedId=f"enr-{tid}",
                        classSourcedId=self.class_id(k, g),
                        schoolSourcedId=s.sourced_id,
                        userSourcedId=tid,
                        role="teacher",
                        primary="true",
                    )
                    self.totals.teachers += 1

    @staticmethod
    def class_id(k: int, grade: str) -> str:
        return f"cls-{k + 1:02d}-{grade}"

    # ---- students ------------------------------------------------------------------------------

    def new_student(self, n: int, movers: set[int]) -> Student:
        rng = self.rng
        grade = rng.choice(GRADES)
        age = 5 + GRADES.index(grade)  # age on September 1 of the fall
        birth = date(self.args.school_year - 2 - age, 9, 2) + timedelta(days=rng.randrange(365))
        st = Student(
            number=n,
            sourced_id=f"stu-{n:07d}",
            state_id=state_id(n),
            given=rng.choice(GIVEN_NAMES),
            middle=rng.choice(GIVEN_NAMES) if rng.random() < 0.6 else "",
            family=rng.choice(FAMILY_NAMES),
            grade=grade,
            birth=birth,
            sex=rng.choice(["female", "male"]),
        )
        n_days = len(self.days)
        year_start, year_end = self.calendar.start.isoformat(), self.calendar.end.isoformat()
        home = self.schools[rng.randrange(len(self.schools))]
        if n in movers:  # moves to another school of the district mid-year
            other = self.schools[1] if home is self.schools[0] else self.schools[0]
            move = rng.randrange(n_days // 3, 2 * n_days // 3)
            st.stays.append(Stay(home, 0, move, year_start, self.date_text[move]))
            st.stays.append(Stay(other, move + 1, n_days - 1, self.date_text[move + 1], year_end))
            return st
        first, last = 0, n_days - 1
        u = rng.random()
        if u < 0.04:  # enrolled late (some so late that fewer than 10 days are in membership)
            first = rng.randrange(5, n_days - 3)
        elif u < 0.07:  # withdrew early
            last = rng.randrange(20, n_days - 10)
        if first == 0 and last == n_days - 1 and rng.random() < 0.1:
            # SIS exports often leave a full-year enrollment's dates blank (OneRoster: the school year).
            begin_text, end_text = "", ""
        else:
            begin_text = year_start if first == 0 else self.date_text[first]
            end_text = year_end if last == n_days - 1 else self.date_text[last]
        st.stays.append(Stay(home, first, last, begin_text, end_text))
        return st

    def exceptions(self, st: Student) -> dict[int, Event]:
        """Day index -> (category, duration, reason) for every day that was not plain presence."""
        rng = self.rng
        first, last = st.stays[0].first, st.stays[-1].last
        # Absence propensity: lognormal around 4.5 % of days; about a fifth of students reach 10 %.
        rate = min(0.6, math.exp(rng.gauss(math.log(0.045), 0.75)))
        tardy_rate = min(0.25, math.exp(rng.gauss(math.log(0.025), 0.8)))
        reasons = [r for r, _, _ in ABSENCE_REASONS]
        weights = [w for _, w, _ in ABSENCE_REASONS]
        excused_share = {r: e for r, _, e in ABSENCE_REASONS}
        events: dict[int, Event] = {}
        i = first
        while i <= last:
            if rng.random() < rate:
                reason = rng.choices(reasons, weights)[0]
                category = "Excused Absence" if rng.random() < excused_share[reason] else "Unexcused Absence"
                half = rng.random() < (0.4 if reason == "medical" else 0.07)
                events[i] = (category, "0.5" if half else "1", reason)
                while reason == "illness" and i < last and rng.random() < 0.35:  # illnesses last days
                    i += 1
                    events[i] = (category, "1", reason)
            elif rng.random() < tardy_rate:
                if rng.random() < 0.85:
                    events[i] = ("Tardy", "", rng.choice(["", "", "transportation"]))
                else:
                    events[i] = ("Early departure", "0.25", rng.choice(["medical", "family"]))
            i += 1
        u = rng.random()
        span = last - first + 1
        if u < 0.03 and span > 5:  # out-of-school suspension, 1 to 3 days: absent
            at = first + rng.randrange(span - 3)
            for k in range(rng.randint(1, 3)):
                events[at + k] = ("Excused Absence", "1", OSS)
        elif u < 0.06 and span > 5:  # in-school suspension: in the building, so in attendance
            at = first + rng.randrange(span - 2)
            for k in range(rng.randint(1, 2)):
                events[at + k] = ("In Attendance", "1", ISS)
        return events

    def write_consents(self, consents: Table, st: Student) -> None:
        rng = self.rng
        as_of = self.args.as_of
        sy_start, sy_end = self.calendar.start, date(self.args.school_year, 6, 30)
        if rng.random() < 0.15:
            return  # no consent on file
        grantor = f"{rng.choice(GIVEN_NAMES)} {st.family}"
        relationship = "parent" if rng.random() < 0.85 else "guardian"
        n_recipients = 1 if rng.random() < 0.75 else 2
        for recipient, recipient_name in rng.sample(self.recipients, n_recipients):
            kind = rng.choices(list(CONSENT_KINDS), list(CONSENT_KINDS.values()))[0]
            if rng.random() < 0.6:  # signed with the back-to-school forms
                signed = sy_start - timedelta(days=rng.randrange(0, 20))
            else:
                signed = sy_start + timedelta(days=rng.randrange(0, max(1, (as_of - sy_start).days - 30)))
            start, end, status, revoked, scope = signed, sy_end, "active", None, "attendance"
            if rng.random() < 0.15:
                scope = ""  # blank: the contract's default, attendance
            elif rng.random() < 0.1:
                scope = "education-records"
            if rng.random() < 0.1:
                end = None  # open-ended until revoked
            if kind == "revoked-before-as-of":
                status = "revoked"
                revoked = signed + timedelta(days=rng.randrange(1, max(2, (as_of - signed).days)))
            elif kind == "revoked-after-as-of":
                status, revoked = "revoked", as_of + timedelta(days=rng.randrange(1, 60))
            elif kind == "declined":
                status = "declined"
            elif kind == "expired":
                signed = sy_start - timedelta(days=365 + rng.randrange(0, 20))
                start, end = signed, as_of - timedelta(days=rng.randrange(30, 300))
            elif kind == "not-yet-started":
                signed = as_of - timedelta(days=rng.randrange(0, 10))
                start = as_of + timedelta(days=rng.randrange(1, 45))
            elif kind == "out-of-scope":
                scope = rng.choice(["immunizations", "health-screenings"])
            elif kind == "re-consented":
                old_signed = signed - timedelta(days=400)
                self.write_consent(
                    consents, st, grantor, relationship, recipient, recipient_name, scope or "attendance",
                    (old_signed, old_signed, None), "revoked", signed - timedelta(days=30),
                )  # fmt: skip
            self.write_consent(
                consents, st, grantor, relationship, recipient, recipient_name, scope, (signed, start, end),
                status, revoked,
            )  # fmt: skip

    def write_consent(
        self,
        consents: Table,
        st: Student,
        grantor: str,
        relationship: str,
        recipient: str,
        recipient_name: str,
        scope: str,
        dates: tuple[date, date, date | None],
        status: str,
        revoked: date | None,
    ) -> None:
        signed, start, end = dates
        self.totals.consents += 1
        cid = f"CNS-{self.args.school_year}-{self.totals.consents:07d}"
        by_state_id = self.rng.random() < 0.2  # some consent systems know only the state id
        consents.row(
            consentId=cid,
            studentSourcedId="" if by_state_id else st.sourced_id,
            studentIdentifier=st.state_id if by_state_id else "",
            grantorName=grantor,
            grantorRelationship=relationship,
            recipientOrganization=recipient,
            recipientName=recipient_name,
            purpose=self.rng.choice(["treatment-and-care-coordination"] * 4 + ["care-coordination", ""]),
            dataScope=scope,
            signedDate=signed.isoformat(),
            periodStart=start.isoformat(),
            periodEnd=end.isoformat() if end else "",
            status=status,
            revokedDate=revoked.isoformat() if revoked else "",
            documentUrl=f"https://consents.example.org/forms/{cid}.pdf",
        )

    def write_demographics(self, demographics: Table, st: Student) -> None:
        rng = self.rng
        race = rng.choices(
            ["americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
             "nativeHawaiianOrOtherPacificIslander", "white"],
            [1, 6, 14, 1, 50],
        )[0]  # fmt: skip
        flags = {c: "false" for c in ONEROSTER_HEADERS["demographics.csv"][5:12]}
        flags[race] = "true"
        flags["demographicRaceTwoOrMoreRaces"] = str(rng.random() < 0.05).lower()
        flags["hispanicOrLatinoEthnicity"] = str(rng.random() < 0.27).lower()
        demographics.row(
            sourcedId=st.sourced_id,
            birthDate=st.birth.isoformat(),
            sex=st.sex,
            countryOfBirthCode="US",
            **flags,
        )

    # ---- attendance ----------------------------------------------------------------------------

    def write_csv_attendance(self, out: IO[str], st: Student, stay: Stay, events: dict[int, Event]) -> None:
        prefix = f"{st.sourced_id},{st.state_id},{stay.school.sourced_id},"
        positive = self.args.style == "positive"
        dates = self.date_text
        rows = []
        for i in range(stay.first, stay.last + 1):
            ev = events.get(i)
            if ev is not None:
                rows.append(f"{prefix}{dates[i]},{ev[0]},{ev[1]},{ev[2]}\n")
            elif positive:
                rows.append(f"{prefix}{dates[i]},Present,1,\n")
        out.write("".join(rows))
        self.totals.attendance_rows += len(rows)

    def write_edfi_attendance(self, out: IO[str], st: Student, stay: Stay, events: dict[int, Event]) -> None:
        school = (
            f"<SchoolReference><SchoolIdentity><SchoolId>{stay.school.identifier}</SchoolId>"
            "</SchoolIdentity></SchoolReference>"
        )
        student = (
            f"<StudentReference><StudentIdentity><StudentUniqueId>{st.state_id}</StudentUniqueId>"
            "</StudentIdentity></StudentReference>"
        )
        fall, spring = (
            f"<SessionReference><SessionIdentity><SessionName>{self.sy_text} {term} Semester</SessionName>"
            f"<SchoolYear>{self.sy_text}</SchoolYear>{school}</SessionIdentity></SessionReference>"
            for term in ("Fall", "Spring")
        )
        positive = self.args.style == "positive"
        parts = []
        for i in range(stay.first, stay.last + 1):
            ev = events.get(i)
            if ev is None:
                if not positive:
                    continue
                ev = ("In Attendance", "1", "")
            category, duration, reason = ev
            inner = (
                f"<EventDate>{self.date_text[i]}</EventDate>"
                f"<AttendanceEventCategory>{EDFI_CATEGORY_URI}{category}</AttendanceEventCategory>"
            )
            if reason:
                inner += f"<AttendanceEventReason>{reason}</AttendanceEventReason>"
            if duration:
                inner += f"<EventDuration>{duration}</EventDuration>"
            session = fall if self.days[i] <= self.fall_end else spring
            parts.append(
                f"  <StudentSchoolAttendanceEvent>\n    <AttendanceEvent>{inner}</AttendanceEvent>\n"
                f"    {student}\n    {school}\n    {session}\n  </StudentSchoolAttendanceEvent>\n"
            )
        out.write("".join(parts))
        self.totals.attendance_rows += len(parts)

    def tally(self, st: Student, events: dict[int, Event]) -> None:
        """Full-year chronic absence per stay, for the closing summary (ESSA 10 %, fractions add)."""
        for stay in st.stays:
            members = stay.last - stay.first + 1
            if members < 10:
                continue
            absent = sum(
                float(duration or 1)
                for i, (category, duration, reason) in events.items()
                if stay.first <= i <= stay.last and category.endswith("Absence") and reason != ISS
            )
            self.totals.measured += 1
            self.totals.chronic += absent * 10 >= members

    # ---- the run -------------------------------------------------------------------------------

    def run(self) -> Totals:
        a = self.args
        self.write_manifest()
        self.write_orgs()
        self.write_sessions()
        self.write_calendar()
        edfi = a.attendance_format == "edfi"
        attendance_name = "StudentAttendance.xml" if edfi else "attendance.csv"
        h = ONEROSTER_HEADERS
        with (
            Table(self.folder, "users.csv", h["users.csv"]) as users,
            Table(self.folder, "enrollments.csv", h["enrollments.csv"]) as enrollments,
            Table(self.folder, "demographics.csv", h["demographics.csv"]) as demographics,
            Table(self.folder, "consents.csv", CONSENT_HEADER) as consents,
            open(self.folder / attendance_name, "w", encoding="utf-8", newline="", buffering=BUFFER) as att,
        ):
            if edfi:
                att.write('<?xml version="1.0" encoding="UTF-8"?>\n')
                att.write(f'<InterchangeStudentAttendance xmlns="{EDFI_NAMESPACE}">\n')
            else:
                att.write(",".join(ATTENDANCE_HEADER) + "\n")
            self.write_homerooms(users, enrollments)
            n_movers = max(1, a.students // 100) if a.schools > 1 and a.students > 1 else 0
            movers = set(random.Random(a.seed * 7 + 2).sample(range(1, a.students + 1), n_movers))
            for n in range(1, a.students + 1):
                st = self.new_student(n, movers)
                events = self.exceptions(st)
                self.tally(st, events)
                users.row(
                    sourcedId=st.sourced_id,
                    enabledUser="true",
                    orgSourcedIds=",".join(s.school.sourced_id for s in st.stays),
                    role="student",
                    username=f"s{st.state_id}",
                    userIds=f"{{state:{st.state_id}}},{{district:{st.number:07d}}}",
                    givenName=st.given,
                    familyName=st.family,
                    middleName=st.middle,
                    identifier=st.state_id,
                    grades=st.grade,
                )
                for j, stay in enumerate(st.stays):
                    enrollments.row(
                        sourcedId=f"enr-{st.sourced_id}-{j + 1}",
                        classSourcedId=self.class_id(self.schools.index(stay.school), st.grade),
                        schoolSourcedId=stay.school.sourced_id,
                        userSourcedId=st.sourced_id,
                        role="student",
                        primary="true",
                        beginDate=stay.begin_text,
                        endDate=stay.end_text,
                    )
                self.write_demographics(demographics, st)
                self.write_consents(consents, st)
                for stay in st.stays:
                    if edfi:
                        self.write_edfi_attendance(att, st, stay, events)
                    else:
                        self.write_csv_attendance(att, st, stay, events)
                self.totals.students += 1
            if edfi:
                att.write("</InterchangeStudentAttendance>\n")
        return self.totals


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="generate_district.py",
        description=(
            "Write a synthetic school district's SIS export for sis2fhir: a OneRoster 1.1 CSV bulk export "
            "(manifest.csv, orgs.csv, users.csv, courses.csv, classes.csv, enrollments.csv, "
            "academicSessions.csv, demographics.csv), attendance (attendance.csv, or an Ed-Fi "
            "InterchangeStudentAttendance XML), calendar.csv and consents.csv. All names and ids are "
            "made up. The same arguments always give the same bytes."
        ),
        epilog=(
            "Rows are streamed to the files as students are generated, so memory stays flat: 100,000 "
            "students in the positive style (about 17 million attendance rows) take well under a minute. "
            "Each student gets an absence propensity so that roughly a fifth end up absent 10 %% or more of "
            "their days in membership; a few enrol late, withdraw early or move between the first two "
            "schools mid-year. Consents name one or two of three recipient organizations by NPI and mix "
            "active, revoked (before and after --as-of), declined, expired, not yet started and "
            "out-of-scope consents; about 15 %% of students have none. Exit status: 0 written, 1 cannot "
            "write, 2 bad arguments or --out holds something else."
        ),
    )
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default: 2026)")
    parser.add_argument("--students", type=int, default=200, help="number of students (default: 200)")
    parser.add_argument("--schools", type=int, default=2, help="number of K-8 schools in the one district (default: 2)")
    parser.add_argument(
        "--school-year",
        type=int,
        default=2026,
        help="OneRoster schoolYear, the year it ends: 2026 runs 2025-08-25 to 2026-06-12 with 180 "
        "instructional days (default: 2026)",
    )
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        help="the date the consent mix is arranged around (revoked before or after it, expired, not yet "
        "started); default: March 31 of the school year",
    )
    parser.add_argument(
        "--style",
        choices=["positive", "exception-only"],
        default="positive",
        help="positive: a row for every student for every school day in membership; exception-only: rows "
        "only for days that were not plain presence, calendar.csv gives the school days (default: positive)",
    )
    parser.add_argument(
        "--attendance-format",
        choices=["csv", "edfi"],
        default="csv",
        help="csv: attendance.csv; edfi: StudentAttendance.xml, an Ed-Fi 5.2 InterchangeStudentAttendance "
        "of StudentSchoolAttendanceEvent elements (StudentUniqueId = the state id, SchoolId = "
        "orgs.identifier), and no attendance.csv (default: csv)",
    )
    parser.add_argument("--zip", action="store_true", help="write one OUT.zip instead of the folder OUT")
    parser.add_argument("--out", type=Path, default=Path("district"), help="output folder (default: district)")
    args = parser.parse_args(argv)
    if args.students < 1:
        parser.error("--students must be at least 1")
    if not 1 <= args.schools <= len(SCHOOL_NAMES):
        parser.error(f"--schools must be between 1 and {len(SCHOOL_NAMES)}")
    if not 1901 <= args.school_year <= 9999:
        parser.error("--school-year is the calendar year the school year ends in, e.g. 2026")
    if args.as_of is None:
        args.as_of = date(args.school_year, 3, 31)
    return args


def zip_folder(folder: Path, target: Path) -> None:
    """A reproducible zip: sorted names, fixed timestamps."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with path.open("rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, BUFFER)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    if args.zip:
        target = out if out.suffix == ".zip" else out.with_name(out.name + ".zip")
        folder = target.with_name(target.stem + ".generating")
    else:
        target = folder = out
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / "manifest.csv").exists())):
        print(f"error: {folder} exists and is not a generated district; choose another --out", file=sys.stderr)
        return 2
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in ("attendance.csv", "StudentAttendance.xml"):
            (folder / stale).unlink(missing_ok=True)
        totals = DistrictWriter(args, folder).run()
        if args.zip:
            zip_folder(folder, target)
            shutil.rmtree(folder)
    except OSError as exc:
        print(f"error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    share = 100 * totals.chronic / totals.measured if totals.measured else 0.0
    kind = "events" if args.attendance_format == "edfi" else "rows"
    print(
        f"wrote {target}: {totals.students} students, {totals.teachers} teachers, {args.schools} schools, "
        f"{len(SchoolCalendar.for_year(args.school_year).instructional)} instructional days, "
        f"{totals.attendance_rows} attendance {kind} ({args.style}), {totals.consents} consents; "
        f"{share:.1f} % of student-school stays with 10 days or more are absent 10 % or more of the year",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
