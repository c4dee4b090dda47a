"""orgs.csv and academicSessions.csv: the schools, the district and the school years."""

from __future__ import annotations

from collections import Counter
from datetime import date

from sis2fhir.read.csvfile import Columns
from sis2fhir.read.dates import bad_date, parse_date
from sis2fhir.read.export import Export
from sis2fhir.read.roster_rows import LIFECYCLE, RosterRows
from sis2fhir.records import District, School, SchoolYear
from sis2fhir.report import RowReport

ORGS = Columns(
    required=("sourcedId", "type"), expected=("name",), optional=("identifier", "parentSourcedId", *LIFECYCLE)
)
SESSIONS = Columns(
    required=("sourcedId", "type", "startDate", "endDate"),
    expected=("schoolYear",),
    optional=("title", *LIFECYCLE),
)


def read_orgs(export: Export, report: RowReport) -> tuple[dict[str, School], District | None, dict[str, str]]:
    rows = RosterRows(export, "orgs.csv", report, ORGS)
    schools: dict[str, School] = {}
    districts: dict[str, District] = {}
    org_types: dict[str, str] = {}
    other: Counter[str] = Counter()
    other_line: dict[str, int] = {}
    for line, row in rows:
        sid = row["sourcedId"].strip()
        if not sid:
            rows.out.error(line, "sourcedId", "missing-id", "Org has no sourcedId; not used.")
            continue
        kind = row["type"].strip().lower()
        org_types[sid] = kind
        name = row.get("name", "").strip()
        if kind == "school":
            schools[sid] = School(sid, name, row.get("identifier", "").strip(), row.get("parentSourcedId", "").strip())
        elif kind == "district":
            districts[sid] = District(sid, name, row.get("identifier", "").strip())
        else:
            other[kind or "(blank)"] += 1
            other_line.setdefault(kind or "(blank)", line)
    for kind, count in other.items():
        rows.out.warn(
            other_line[kind],
            "type",
            "org-not-used",
            f"{count} orgs of type '{kind}' (first at line {other_line[kind]}) are neither a school nor a "
            "district; not used. Enrollments at them are reported.",
        )
    parents = Counter(s.parent_sourced_id for s in schools.values() if s.parent_sourced_id in districts)
    district: District | None = None
    if parents:
        district = districts[parents.most_common(1)[0][0]]
        if len(parents) > 1:
            rows.out.warn(
                0,
                "parentSourcedId",
                "several-districts",
                f"Schools belong to {len(parents)} districts; '{district.sourced_id}' "
                "(parent of most schools) "
                "is used as the district.",
            )
    elif len(districts) == 1:
        district = next(iter(districts.values()))
    elif len(districts) > 1:
        rows.out.warn(
            0,
            "type",
            "several-districts",
            f"{len(districts)} orgs of type district and no school names one as its parent; none is used.",
        )
    if not schools:
        rows.out.error(
            0, "type", "no-schools", "orgs.csv has no org of type 'school'; no student can be placed at a school."
        )
    return schools, district, org_types


def read_school_years(export: Export, report: RowReport) -> list[SchoolYear]:
    rows = RosterRows(export, "academicSessions.csv", report, SESSIONS)
    years: list[SchoolYear] = []
    spans: dict[int, list[date]] = {}  # schoolYear -> [min start, max end] of the other sessions
    for line, row in rows:
        start, end = parse_date(row["startDate"]), parse_date(row["endDate"])
        if start is None or end is None:
            col = "startDate" if start is None else "endDate"
            rows.out.error(line, col, "bad-date", bad_date(row[col], col) + " The session is not used.")
            continue
        if end < start:
            rows.out.error(
                line,
                "endDate",
                "bad-period",
                "endDate is before startDate; the session is not used. Correct the dates.",
            )
            continue
        raw_year = row.get("schoolYear", "").strip()
        year = int(raw_year) if raw_year.isdigit() and len(raw_year) == 4 else end.year
        if raw_year != str(year) and row["type"].strip() == "schoolYear":
            rows.out.warn(
                line,
                "schoolYear",
                "bad-school-year",
                f"schoolYear '{raw_year}' is not a 4-digit year; {year} (the year the session ends) is used.",
            )
        if row["type"].strip().lower() == "schoolyear":
            years.append(SchoolYear(row["sourcedId"].strip(), row.get("title", "").strip(), start, end, year))
        else:
            span = spans.setdefault(year, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    if not years and spans:
        years = [SchoolYear(f"derived-{y}", f"School year {y}", s, e, y) for y, (s, e) in spans.items()]
        rows.out.warn(
            0,
            "type",
            "school-year-derived",
            "academicSessions.csv has no session of type schoolYear; each school year is taken as the "
            "earliest start to the latest end of its terms. Export the schoolYear sessions.",
        )
    elif not years:
        rows.out.warn(
            0,
            "type",
            "no-school-year",
            "academicSessions.csv has no usable session, so enrollments without dates cannot be placed in "
            "a school year. Export the schoolYear sessions.",
        )
    years.sort(key=lambda y: (y.start, y.sourced_id))
    return years
