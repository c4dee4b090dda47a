"""Variants of kind row-defect: one row whose bytes are fine but whose content is wrong.

Each names the file, the line and the column(s) the row report must show, and the students allowed to change:
the row's own student (both students, when the row names two).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

from tests.fuzz import damage as dm
from tests.fuzz.district import District
from tests.fuzz.files import folder_with
from tests.fuzz.model import Expect, RowRef, Variant

Change = dict[str, str | Callable[[dict[str, str]], str]]  # column -> new value (or from the row)


def _edit_row(d: District, name: str, line: int, change: Change) -> Callable[[bytes], bytes]:
    f = d.file(name)
    new_line = f.lines[line - 1]
    row = f.row(line)
    for column, value in change.items():
        v = value(row) if callable(value) else value
        new_line = dm.set_field(new_line, f.col(column), v)

    def edit(data: bytes) -> bytes:
        return dm.with_lines(data, lambda ls: dm.replace_line(ls, line, new_line))

    return edit


def defect(
    d: District,
    tag: str,
    name: str,
    line: int,
    change: Change,
    columns: tuple[str, ...],
    why: str,
    exits: frozenset[int] = frozenset({3}),
    also: frozenset[str] = frozenset(),
    named: bool = True,
) -> Variant:
    affected = d.affected(name, line)
    expect = Expect(
        "row",
        exits,
        (RowRef(name, line, columns),) if named else (),
        None if affected is None else affected | also,
        why=why,
    )
    shown = ", ".join(f"{c}={v if isinstance(v, str) else '...'}" for c, v in change.items())
    return Variant(
        f"row-{name.removesuffix('.csv')}-{tag}-l{line}",
        "row-defect",
        f"{name} line {line}: {shown}",
        folder_with({name: _edit_row(d, name, line, change)}),
        expect,
    )


def _shift(days: int, column: str) -> Callable[[dict[str, str]], str]:
    return lambda row: (date.fromisoformat(row[column]) + timedelta(days=days)).isoformat()


def row_defects(d: District, rng: random.Random) -> list[Variant]:
    out: list[Variant] = []
    att_all = d.attendance_lines()
    absences = d.attendance_lines(absences=True)
    half_days = [n for n in absences if d.file("attendance.csv").row(n)["duration"] == "0.5"]
    ids = ("studentSourcedId", "studentIdentifier")

    def att(k: int, pool: list[int] = att_all) -> list[int]:
        return rng.sample(pool, k)

    for n in att(2):
        out.append(
            defect(
                d,
                "unknown-student",
                "attendance.csv",
                n,
                {"studentSourcedId": "stu-9999999", "studentIdentifier": "9999999999"},
                ids,
                "a row for a student not in users.csv is rejected and named",
            )
        )
    for n in att(1):
        out.append(
            defect(
                d,
                "blank-student",
                "attendance.csv",
                n,
                {"studentSourcedId": "", "studentIdentifier": ""},
                ids,
                "a row naming no student is rejected and named",
            )
        )
    for n in att(1, absences):
        out.append(
            defect(
                d,
                "unknown-school",
                "attendance.csv",
                n,
                {"schoolSourcedId": "org-school-99"},
                ("schoolSourcedId",),
                "a row at a school not in orgs.csv is rejected",
            )
        )
    bad_dates = ("03/15/2026", "2026-3-5", "2026.03.05", "", "tomorrow", "2026-03-05x")
    for value, n in zip(bad_dates, att(len(bad_dates), absences), strict=True):
        out.append(
            defect(
                d,
                f"bad-date-{len(value)}",
                "attendance.csv",
                n,
                {"date": value},
                ("date",),
                f"date {value!r} is not ISO 8601: rejected",
            )
        )
    impossible = ("2025-02-30", "2026-02-29", "2025-13-01", "2025-11-31", "2025-10-00")
    for value, n in zip(impossible, att(len(impossible), absences), strict=True):
        out.append(
            defect(
                d,
                f"impossible-date-{value}",
                "attendance.csv",
                n,
                {"date": value},
                ("date",),
                f"{value} does not exist: rejected",
            )
        )
    for value, n in zip(("2031-05-04", "2024-01-10"), att(2, absences), strict=True):
        out.append(
            defect(
                d,
                f"date-outside-year-{value}",
                "attendance.csv",
                n,
                {"date": value},
                ("date",),
                f"{value} lies outside the school year in academicSessions.csv: the row is not counted and must be "
                "named at its line (not only counted in a file-wide warning); a warning (exit 0), since multi-year "
                "exports carry rows of other school years as a matter of course, or an error (exit 3)",
                frozenset({0, 3}),
            )
        )
    durations = ("-0.5", "1.5", "0", "abc", "NaN", "inf", "2", "1e400")
    for value, n in zip(durations, att(len(durations), absences), strict=True):
        out.append(
            defect(
                d,
                f"bad-duration-{value}",
                "attendance.csv",
                n,
                {"duration": value},
                ("duration",),
                f"duration {value} is not a fraction of a day in (0, 1]: rejected",
            )
        )
    for value, n in zip(("Absent-ish", "XYZ", "Excused Absense"), att(3, absences), strict=True):
        out.append(
            defect(
                d,
                f"unknown-category-{len(value)}",
                "attendance.csv",
                n,
                {"category": value},
                ("category",),
                f"category {value!r} is no Ed-Fi attendance category: rejected",
            )
        )
    for n in att(2, half_days or absences):
        out.append(
            defect(
                d,
                "unknown-reason",
                "attendance.csv",
                n,
                {"reason": f"fuzz reason {n}"},
                ("reason",),
                "an unrecognised reason is read as 'unknown' with a warning (exit 0) or rejected (exit 3); named",
                frozenset({0, 3}),
            )
        )
    for n in att(3):
        row = d.file("attendance.csv").row(n)
        other = rng.choice(sorted(d.students - {row["studentSourcedId"]}))
        out.append(
            defect(
                d,
                "mismatched-ids",
                "attendance.csv",
                n,
                {"studentIdentifier": d.by_sourced_id[other]},
                ids,
                "studentSourcedId and studentIdentifier name two different students: neither can be trusted, "
                "the row is rejected",
                also=frozenset({other}),
            )
        )
    out += _consent_defects(d, rng)
    out += _roster_defects(d, rng)
    return out


def _consent_defects(d: District, rng: random.Random) -> list[Variant]:
    out: list[Variant] = []
    f = d.file("consents.csv")
    lines = list(d.consent_lines)
    active = [n for n in lines if f.row(n)["status"] == "active"]
    revoked = [n for n in lines if f.row(n)["status"] == "revoked"]
    ids = ("studentSourcedId", "studentIdentifier")

    def one(
        tag: str,
        change: Change,
        columns: tuple[str, ...],
        why: str,
        pool: list[int] = active,
        k: int = 2,
        exits: frozenset[int] = frozenset({3}),
    ):
        for n in rng.sample(pool, k):
            out.append(defect(d, tag, "consents.csv", n, change, columns, why, exits))

    one(
        "unknown-student",
        {"studentSourcedId": "stu-9999999", "studentIdentifier": ""},
        ids,
        "a consent for a student not in users.csv",
    )
    one(
        "revoked-before-start",
        {"status": "revoked", "revokedDate": _shift(-10, "periodStart")},
        ("revokedDate",),
        "a consent revoked before it started is not a real consent record, but it is kept with a warning (exit 0) "
        "or rejected (exit 3): keeping the row means its revocation is never dropped (read/consents.py, by design); "
        "either way it is named",
        exits=frozenset({0, 3}),
    )
    one(
        "signed-in-future",
        {"signedDate": "2030-01-15"},
        ("signedDate",),
        "a consent signed after the run's as-of date and after today cannot have been signed: named, and kept with "
        "a warning (exit 0) or rejected (exit 3); the reader keeps it so that a revocation in it is never dropped",
        exits=frozenset({0, 3}),
    )
    one("bad-status", {"status": "pending"}, ("status",), "status must be active, revoked or declined")
    one(
        "revoked-without-date",
        {"revokedDate": ""},
        ("revokedDate",),
        "revoked with no date: when did disclosures stop?",
        revoked,
    )
    one(
        "end-before-start",
        {"periodEnd": _shift(-1, "periodStart")},
        ("periodEnd",),
        "periodEnd before periodStart",
    )
    one("impossible-signed-date", {"signedDate": "2025-02-30"}, ("signedDate",), "2025-02-30 does not exist")
    one("blank-grantor", {"grantorName": ""}, ("grantorName",), "FERPA 34 CFR 99.30 needs who signed")
    for n in rng.sample(active, 2):
        mine = d.consent_student(n)
        other = rng.choice(sorted(d.students - {mine}))
        out.append(
            defect(
                d,
                "mismatched-ids",
                "consents.csv",
                n,
                {"studentSourcedId": mine, "studentIdentifier": d.by_sourced_id[other]},
                ids,
                "studentSourcedId and studentIdentifier name different students: whose consent is it? rejected",
                also=frozenset({other}),
            )
        )
    for n in rng.sample(lines[5:], 2):
        earlier = f.row(rng.randrange(2, n))["consentId"]
        out.append(
            defect(
                d,
                "duplicate-id",
                "consents.csv",
                n,
                {"consentId": earlier},
                ("consentId",),
                f"consentId {earlier} is already used on an earlier line: the later row is rejected",
            )
        )
    return out


def _roster_defects(d: District, rng: random.Random) -> list[Variant]:
    out: list[Variant] = []
    users, enr = d.file("users.csv"), d.file("enrollments.csv")
    students = [n for n in users.data_lines if users.row(n)["role"] == "student"]
    enrolled = [n for n in enr.data_lines if enr.row(n)["role"] == "student"]
    dated = [n for n in enrolled if enr.row(n)["beginDate"]]
    for value in ("", "pupil", "Student "):
        n = rng.choice(students)
        out.append(
            defect(
                d,
                f"role-{value.strip() or 'blank'}",
                "users.csv",
                n,
                {"role": value},
                ("role",),
                "a user whose role is blank or unknown is named at its line (issue 6, item 4)"
                if value.strip() != "Student"
                else "'Student ' (case, a trailing space) is the student role: used, or named if not",
                frozenset({0, 3}) if value.strip() == "Student" else frozenset({3}),
                named=value.strip() != "Student",
            )
        )
    for n in rng.sample(students[5:], 2):
        earlier_line = rng.choice([m for m in students if m < n])
        earlier = users.row(earlier_line)["sourcedId"]
        out.append(
            defect(
                d,
                "duplicate-id",
                "users.csv",
                n,
                {"sourcedId": earlier},
                ("sourcedId",),
                f"sourcedId {earlier} is already used at line {earlier_line}: the later row is rejected",
                also=frozenset({earlier}),
            )
        )
    n = rng.choice(students)
    out.append(defect(d, "blank-id", "users.csv", n, {"sourcedId": ""}, ("sourcedId",), "a user with no sourcedId"))
    for tag, change, columns, why in (
        ("impossible-begin", {"beginDate": "2025-02-30"}, ("beginDate",), "2025-02-30 does not exist"),
        ("end-before-begin", {"endDate": _shift(-1, "beginDate")}, ("endDate",), "endDate before beginDate"),
    ):
        n = rng.choice(dated)
        out.append(defect(d, tag, "enrollments.csv", n, change, columns, why))
    for tag, change, columns, why in (
        ("unknown-user", {"userSourcedId": "stu-9999999"}, ("userSourcedId",), "enrollment of a user not in users.csv"),
        ("unknown-school", {"schoolSourcedId": "org-school-99"}, ("schoolSourcedId",), "enrollment at no known org"),
        ("blank-role", {"role": ""}, ("role",), "an enrollment with a blank role: the student loses membership"),
        ("duplicate-id", {"sourcedId": lambda r: enr.row(2)["sourcedId"]}, ("sourcedId",), "sourcedId of line 2"),
    ):
        n = rng.choice(enrolled)
        out.append(defect(d, tag, "enrollments.csv", n, change, columns, why))
    cal = d.file("calendar.csv")
    counted = [n for n in cal.data_lines if d.affected("calendar.csv", n)]
    for tag, change, columns, why in (
        ("impossible-date", {"date": "2025-11-31"}, ("date",), "2025-11-31 does not exist"),
        ("bad-flag", {"instructional": "maybe"}, ("instructional",), "instructional must be true or false"),
    ):
        n = rng.choice(counted)
        out.append(defect(d, tag, "calendar.csv", n, change, columns, why))
    out.append(
        defect(
            d,
            "end-before-start",
            "academicSessions.csv",
            4,
            {"endDate": "2025-12-01"},
            ("endDate",),
            "a term ending before it starts is rejected (the school year row still gives the year)",
        )
    )
    out.append(
        defect(
            d,
            "type-campus",
            "orgs.csv",
            4,
            {"type": "campus"},
            ("type",),
            "a school whose type is not school: named at its line; only its students are affected",
            frozenset({3}),
        )
    )
    demo = d.file("demographics.csv")
    for tag, change in (
        ("impossible-birth", {"birthDate": "2015-02-30"}),
        ("future-birth", {"birthDate": "2030-01-01"}),
        ("bad-sex", {"sex": "x"}),
    ):
        n = rng.choice(list(demo.data_lines))
        out.append(
            defect(
                d,
                tag,
                "demographics.csv",
                n,
                change,
                tuple(change),
                "a birth date that does not exist or lies in the future, or an unknown sex, is named (a warning: "
                "demographics only feed Patient matching)",
                frozenset({0, 3}),
            )
        )
    return out
