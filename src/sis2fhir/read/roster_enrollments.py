"""enrollments.csv: each student's membership at a school, its dates from the enrollment or the school year."""

from __future__ import annotations

from collections import Counter
from datetime import date

from sis2fhir.read.csvfile import Columns
from sis2fhir.read.dates import bad_date, parse_date
from sis2fhir.read.export import Export
from sis2fhir.read.roster_rows import LIFECYCLE, RosterRows
from sis2fhir.records import Membership, School, SchoolYear, Student
from sis2fhir.report import RowReport

ENROLLMENTS = Columns(
    required=("userSourcedId", "schoolSourcedId", "role"),
    expected=("beginDate", "endDate"),
    optional=("sourcedId", *LIFECYCLE),
)


def _year_of(day: date, years: list[SchoolYear]) -> SchoolYear | None:
    for y in years:
        if y.start <= day <= y.end:
            return y
    return None


def _day(days: dict[str, date | None], raw: str) -> date | None:
    if raw not in days:
        days[raw] = parse_date(raw)
    return days[raw]


def read_enrollments(
    export: Export,
    report: RowReport,
    students: dict[str, Student],
    user_ids: set[str],
    schools: dict[str, School],
    org_types: dict[str, str],
    years: list[SchoolYear],
) -> dict[tuple[str, str], Membership]:
    rows = RosterRows(export, "enrollments.csv", report, ENROLLMENTS)
    out = rows.out
    spans: dict[tuple[str, str], tuple[date, date]] = {}
    other_roles: Counter[str] = Counter()
    other_first: dict[str, int] = {}
    latest = years[-1] if years else None
    days: dict[str, date | None] = {}  # one date object per distinct date (every row repeats a few)
    for line, row in rows:
        role = row["role"].strip().lower()
        if role != "student":
            other_roles[role or "(blank)"] += 1
            other_first.setdefault(role or "(blank)", line)
            continue
        uid, school = row["userSourcedId"].strip(), row["schoolSourcedId"].strip()
        if uid not in students:
            if uid in user_ids:
                out.error(
                    line,
                    "userSourcedId",
                    "not-a-student",
                    f"Student enrollment for user '{uid}', whose role is not student; not used. "
                    "Correct the user's role or the enrollment.",
                )
            else:
                out.error(
                    line,
                    "userSourcedId",
                    "unknown-user",
                    f"Student enrollment for user '{uid}', who is not in users.csv; not used. "
                    "Export the user or correct userSourcedId.",
                )
            continue
        if school not in schools:
            if school in org_types:
                out.error(
                    line,
                    "schoolSourcedId",
                    "not-a-school",
                    f"Enrollment at org '{school}', which is of type '{org_types[school]}', not a school; "
                    "not used. Give the school's sourcedId.",
                )
            else:
                out.error(
                    line,
                    "schoolSourcedId",
                    "unknown-school",
                    f"Enrollment at school '{school}', which is not in orgs.csv; not used.",
                )
            continue
        raw_begin, raw_end = row.get("beginDate", "").strip(), row.get("endDate", "").strip()
        begin, end = _day(days, raw_begin), _day(days, raw_end)
        if (raw_begin and begin is None) or (raw_end and end is None):
            col = "beginDate" if raw_begin and begin is None else "endDate"
            out.error(line, col, "bad-date", bad_date(row[col], col) + " The enrollment is not used.")
            continue
        if begin is None or end is None:
            known = begin or end
            year = _year_of(known, years) if known else None
            year = year or latest
            if year is None:
                out.error(
                    line,
                    "beginDate",
                    "no-membership-dates",
                    "Enrollment has no beginDate/endDate and academicSessions.csv gives no school year to "
                    "fall back to; not used. Export the dates or the schoolYear session.",
                )
                continue
            begin = begin or year.start
            end = end or year.end
        if end < begin:
            out.error(
                line,
                "endDate",
                "bad-period",
                "endDate is before beginDate; the enrollment is not used. Correct the dates.",
            )
            continue
        key = (students[uid].sourced_id, schools[school].sourced_id)  # the roster's own strings, not the row's
        prior = spans.get(key)
        spans[key] = (min(prior[0], begin), max(prior[1], end)) if prior else (begin, end)
    for role, count in sorted(other_roles.items()):
        out.warn(
            other_first[role],
            "role",
            "not-a-student",
            f"{count} enrollments with role '{role}' (first at line {other_first[role]}) are not student "
            "enrollments; not used.",
        )
    shared: dict[tuple[date, date], Membership] = {}  # one object per distinct stay (a value: safe to share)
    return {k: shared.get(span) or shared.setdefault(span, Membership(*span)) for k, span in spans.items()}
