"""OneRoster 1.1 / 1.2 CSV into a Roster: schools, the district, students, memberships and school years."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date

from sis2fhir.config import parse_state_id_source
from sis2fhir.read.csvfile import Columns, open_csv
from sis2fhir.read.dates import bad_date, parse_date
from sis2fhir.read.export import Export, ExportError
from sis2fhir.records import District, Membership, Roster, School, SchoolYear, Student
from sis2fhir.report import RowReport

REQUIRED_FILES = ("orgs.csv", "users.csv", "enrollments.csv", "academicSessions.csv")
LIFECYCLE = ("status", "dateLastModified")
SEXES = frozenset({"male", "female", "other", "unspecified"})
# OneRoster 1.1 and 1.2 RoleEnum values, compared in lower case; "ext:..." roles are vendor extensions.
USER_ROLES = frozenset(
    {
        "administrator",
        "aide",
        "counselor",
        "districtadministrator",
        "guardian",
        "parent",
        "principal",
        "proctor",
        "relative",
        "siteadministrator",
        "student",
        "systemadministrator",
        "teacher",
    }
)

ORGS = Columns(
    required=("sourcedId", "type"), expected=("name",), optional=("identifier", "parentSourcedId", *LIFECYCLE)
)
SESSIONS = Columns(
    required=("sourcedId", "type", "startDate", "endDate"),
    expected=("schoolYear",),
    optional=("title", *LIFECYCLE),
)
USER_COLUMNS = (
    "identifier",
    "userIds",
    "givenName",
    "familyName",
    "middleName",
    "grades",
    "preferredGivenName",
    "preferredMiddleName",
    "preferredFamilyName",
)
ROLES = Columns(required=("userSourcedId", "role"), optional=("sourcedId", "orgSourcedId", *LIFECYCLE))
DEMOGRAPHICS = Columns(
    required=("sourcedId",),
    expected=("birthDate", "sex"),
    optional=LIFECYCLE,
    aliases={"usersourcedid": "sourcedId"},
)
ENROLLMENTS = Columns(
    required=("userSourcedId", "schoolSourcedId", "role"),
    expected=("beginDate", "endDate"),
    optional=("sourcedId", *LIFECYCLE),
)


def _users_columns(version: str, state_id_column: str) -> Columns:
    known = (*USER_COLUMNS, "userMasterIdentifier", "role", *LIFECYCLE)
    return Columns(
        required=("sourcedId", "role") if version == "1.1" else ("sourcedId",),
        expected=(state_id_column,),
        optional=tuple(c for c in known if c != state_id_column),
    )


_USER_ID = re.compile(r"\{\s*([^:{}]+?)\s*:\s*([^{}]*?)\s*\}")

Row = dict[str, str]


def state_id_reader(state_id_source: str) -> Callable[[Row], str]:
    """How to take the state student id from a users.csv row, from the configured source."""
    column, id_type = parse_state_id_source(state_id_source)
    if column != "userIds":
        return lambda row: row.get(column, "").strip()
    wanted = id_type.lower()

    def from_user_ids(row: Row) -> str:
        for kind, value in _USER_ID.findall(row.get("userIds", "")):
            if kind.lower() == wanted:
                return value
        return ""

    return from_user_ids


def _state_id_column(state_id_source: str) -> str:
    return "userIds" if state_id_source.startswith("userIds:") else state_id_source


class _Rows:
    """One roster file's rows after OneRoster bulk/delta rules (status, dateLastModified, duplicates)."""

    def __init__(self, export: Export, name: str, report: RowReport, spec: Columns, key: str = "sourcedId") -> None:
        self.name = name
        self.report = report
        self.mode = export.manifest.mode(name)
        self.table = open_csv(export, name, report, spec)
        self.file = self.table.file if self.table else name
        self.key = key

    def __iter__(self) -> Iterator[tuple[int, Row]]:
        if self.table is None:
            return
        report, file = self.report, self.file
        delta = self.mode == "delta"
        kept: dict[str, tuple[str, int, Row | None]] = {}  # key -> (stamp, line, row or None when deleted)
        unkeyed: list[tuple[int, Row]] = []
        status_in_bulk: Counter[str] = Counter()
        first_line: dict[str, int] = {}
        for line, row in self.table.dict_rows():
            status = row.get("status", "").strip().lower()
            stamp = row.get("dateLastModified", "").strip()
            if stamp and parse_date(stamp) is None:
                report.add(
                    file,
                    line,
                    "dateLastModified",
                    "bad-date",
                    bad_date(stamp, "dateLastModified") + " The row is used; in a delta it counts as oldest.",
                    "warning",
                )
                stamp = ""
            deleted = False
            if delta:
                if status == "tobedeleted":
                    deleted = True
                elif status != "active":
                    report.add(
                        file,
                        line,
                        "status",
                        "bad-status",
                        f"status '{status}' in a delta file must be active or tobedeleted; not used.",
                    )
                    continue
            elif status:
                if status == "tobedeleted":
                    report.add(
                        file,
                        line,
                        "status",
                        "deleted-in-bulk",
                        "Row is marked tobedeleted in a bulk file (a bulk file holds only current "
                        "records); not used. Leave status blank in bulk files.",
                    )
                    continue
                status_in_bulk[status] += 1
                first_line.setdefault(status, line)
            key = row.get(self.key, "").strip()
            if not key:
                unkeyed.append((line, row))
                continue
            prior = kept.get(key)
            if prior is not None:
                if not delta:
                    report.add(
                        file,
                        line,
                        self.key,
                        "duplicate-id",
                        f"{self.key} '{key}' already appears at line {prior[1]}; this row is not used.",
                    )
                    continue
                if stamp < prior[0]:
                    report.add(
                        file,
                        line,
                        self.key,
                        "superseded",
                        f"{self.key} '{key}' has a newer row at line {prior[1]}; this one is not used.",
                        "warning",
                    )
                    continue
                report.add(
                    file,
                    prior[1],
                    self.key,
                    "superseded",
                    f"{self.key} '{key}' has a newer row at line {line}; this one is not used.",
                    "warning",
                )
            kept[key] = (stamp, line, None if deleted else row)
        for status, count in status_in_bulk.items():
            report.add(
                file,
                first_line[status],
                "status",
                "status-in-bulk",
                f"{count} rows of this bulk file carry status '{status}' (first at line "
                f"{first_line[status]}); bulk rows should leave status blank. They are used.",
                "warning",
            )
        rows = [(line, row) for _, line, row in kept.values() if row is not None] + unkeyed
        rows.sort(key=lambda lr: lr[0])
        yield from rows


def _require_files(export: Export) -> None:
    missing = [n for n in REQUIRED_FILES if not export.has(n)]
    if missing:
        raise ExportError(
            f"The export {export.source} has no {', '.join(missing)}. A OneRoster export needs "
            f"{', '.join(REQUIRED_FILES)}; export them from the SIS (header-only files are fine)."
        )


def read_roster(
    export: Export, report: RowReport, state_id_source: str = "identifier", as_of: date | None = None
) -> Roster:
    """The OneRoster part of `export` as a Roster; rows not used or used with a caveat go to `report`.

    `as_of`: the run's as-of date (a birth date after it, or after today when not given, is not used)."""
    state_id_of = state_id_reader(state_id_source)
    export.add_manifest_issues(report)
    _require_files(export)
    schools, district, org_types = _read_orgs(export, report)
    school_years = _read_school_years(export, report)
    students, user_ids = _read_students(export, report, state_id_of, _state_id_column(state_id_source))
    _read_demographics(export, report, students, as_of or date.today())
    memberships = _read_enrollments(export, report, students, user_ids, schools, org_types, school_years)
    roster = Roster(
        version=export.version,
        district=district,
        schools=schools,
        students=students,
        memberships=memberships,
        school_years=school_years,
    )
    _check_students(roster, report, export.actual_name("users.csv"), state_id_source)
    return roster


def _read_orgs(export: Export, report: RowReport) -> tuple[dict[str, School], District | None, dict[str, str]]:
    rows = _Rows(export, "orgs.csv", report, ORGS)
    schools: dict[str, School] = {}
    districts: dict[str, District] = {}
    org_types: dict[str, str] = {}
    other: Counter[str] = Counter()
    other_line: dict[str, int] = {}
    for line, row in rows:
        sid = row["sourcedId"].strip()
        if not sid:
            report.add(rows.file, line, "sourcedId", "missing-id", "Org has no sourcedId; not used.")
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
        report.add(
            rows.file,
            other_line[kind],
            "type",
            "org-not-used",
            f"{count} orgs of type '{kind}' (first at line {other_line[kind]}) are neither a school nor a "
            "district; not used. Enrollments at them are reported.",
            "warning",
        )
    parents = Counter(s.parent_sourced_id for s in schools.values() if s.parent_sourced_id in districts)
    district: District | None = None
    if parents:
        district = districts[parents.most_common(1)[0][0]]
        if len(parents) > 1:
            report.add(
                rows.file,
                0,
                "parentSourcedId",
                "several-districts",
                f"Schools belong to {len(parents)} districts; '{district.sourced_id}' "
                "(parent of most schools) "
                "is used as the district.",
                "warning",
            )
    elif len(districts) == 1:
        district = next(iter(districts.values()))
    elif len(districts) > 1:
        report.add(
            rows.file,
            0,
            "type",
            "several-districts",
            f"{len(districts)} orgs of type district and no school names one as its parent; none is used.",
            "warning",
        )
    if not schools:
        report.add(
            rows.file,
            0,
            "type",
            "no-schools",
            "orgs.csv has no org of type 'school'; no student can be placed at a school.",
        )
    return schools, district, org_types


def _read_school_years(export: Export, report: RowReport) -> list[SchoolYear]:
    rows = _Rows(export, "academicSessions.csv", report, SESSIONS)
    years: list[SchoolYear] = []
    spans: dict[int, list[date]] = {}  # schoolYear -> [min start, max end] of the other sessions
    for line, row in rows:
        start, end = parse_date(row["startDate"]), parse_date(row["endDate"])
        if start is None or end is None:
            col = "startDate" if start is None else "endDate"
            report.add(rows.file, line, col, "bad-date", bad_date(row[col], col) + " The session is not used.")
            continue
        if end < start:
            report.add(
                rows.file,
                line,
                "endDate",
                "bad-period",
                "endDate is before startDate; the session is not used. Correct the dates.",
            )
            continue
        raw_year = row.get("schoolYear", "").strip()
        year = int(raw_year) if raw_year.isdigit() and len(raw_year) == 4 else end.year
        if raw_year != str(year) and row["type"].strip() == "schoolYear":
            report.add(
                rows.file,
                line,
                "schoolYear",
                "bad-school-year",
                f"schoolYear '{raw_year}' is not a 4-digit year; {year} (the year the session ends) is used.",
                "warning",
            )
        if row["type"].strip().lower() == "schoolyear":
            years.append(SchoolYear(row["sourcedId"].strip(), row.get("title", "").strip(), start, end, year))
        else:
            span = spans.setdefault(year, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    if not years and spans:
        years = [SchoolYear(f"derived-{y}", f"School year {y}", s, e, y) for y, (s, e) in spans.items()]
        report.add(
            rows.file,
            0,
            "type",
            "school-year-derived",
            "academicSessions.csv has no session of type schoolYear; each school year is taken as the "
            "earliest start to the latest end of its terms. Export the schoolYear sessions.",
            "warning",
        )
    elif not years:
        report.add(
            rows.file,
            0,
            "type",
            "no-school-year",
            "academicSessions.csv has no usable session, so enrollments without dates cannot be placed in "
            "a school year. Export the schoolYear sessions.",
            "warning",
        )
    years.sort(key=lambda y: (y.start, y.sourced_id))
    return years


def _read_students(
    export: Export, report: RowReport, state_id_of: Callable[[Row], str], state_id_column: str
) -> tuple[dict[str, Student], set[str]]:
    v12 = export.version == "1.2"
    users = _Rows(export, "users.csv", report, _users_columns(export.version, state_id_column))
    user_rows: dict[str, tuple[int, Row]] = {}
    for line, row in users:
        sid = row["sourcedId"].strip()
        if not sid:
            report.add(users.file, line, "sourcedId", "missing-id", "User has no sourcedId; not used.")
            continue
        user_rows[sid] = (line, row)

    roles_of: dict[str, set[str]] = {}
    if v12 and export.has("roles.csv"):
        roles = _Rows(export, "roles.csv", report, ROLES)
        for line, row in roles:
            uid = row["userSourcedId"].strip()
            if uid not in user_rows:
                report.add(
                    roles.file,
                    line,
                    "userSourcedId",
                    "unknown-user",
                    f"Role for user '{uid}', who is not in users.csv; not used.",
                )
                continue
            role = _role(row["role"], roles.file, line, report, f"Role row for user '{uid}'")
            if role:
                roles_of.setdefault(uid, set()).add(role)
    else:
        if v12:
            if users.table is None or "role" not in users.table.names:
                raise ExportError(
                    "The export is OneRoster 1.2 but has no roles.csv, and users.csv has no role column, so "
                    "students cannot be told from staff. Export roles.csv."
                )
            report.add(
                users.file,
                0,
                "role",
                "no-roles-file",
                "OneRoster 1.2 keeps roles in roles.csv, which is missing; users.csv 'role' is used.",
                "warning",
            )
        for uid, (line, row) in user_rows.items():
            role = _role(row.get("role", ""), users.file, line, report, f"User '{uid}'")
            if role:
                roles_of[uid] = {role}

    students: dict[str, Student] = {}
    others: Counter[str] = Counter()
    for uid, (line, row) in user_rows.items():
        roles_here = roles_of.get(uid, set())
        if not roles_here:
            if v12 and export.has("roles.csv"):  # (else the blank or unknown role is reported already)
                report.add(
                    users.file,
                    line,
                    "sourcedId",
                    "missing-role",
                    f"User '{uid}' has no usable role in roles.csv; not used (it cannot be told whether they "
                    "are a student). Export their roles.",
                )
            continue
        if "student" not in roles_here:
            others[", ".join(sorted(roles_here))] += 1
            continue
        students[uid] = Student(
            sourced_id=uid,
            state_id=state_id_of(row),
            given_name=row.get("preferredGivenName", "").strip() or row.get("givenName", "").strip(),
            family_name=row.get("familyName", "").strip(),
            middle_name=row.get("middleName", "").strip(),
            grades=row.get("grades", "").strip(),
            line=line,
        )
    for roles_text, count in sorted(others.items()):
        report.add(
            users.file,
            0,
            "role",
            "not-a-student",
            f"{count} users with role {roles_text} are not students; not used.",
            "warning",
        )
    return students, set(user_rows)


def _role(raw: str, file: str, line: int, report: RowReport, who: str) -> str:
    """The role in lower case, or "" (reported) when it is blank or not a OneRoster role."""
    role = raw.strip().lower()
    if role in USER_ROLES or (role.startswith("ext:") and len(role) > 4):
        return role
    if not role:
        report.add(
            file,
            line,
            "role",
            "missing-role",
            f"{who} has no role; not used (it cannot be told whether they are a student). Fill in role.",
        )
    else:
        report.add(
            file,
            line,
            "role",
            "unknown-role",
            f"{who} has role '{raw.strip()}', which is not a OneRoster role (student, teacher, parent, "
            "guardian, aide, administrator ...); not used. Correct the role.",
        )
    return ""


def _read_demographics(export: Export, report: RowReport, students: dict[str, Student], as_of: date) -> None:
    rows = _Rows(export, "demographics.csv", report, DEMOGRAPHICS)
    not_students = 0
    first = 0
    for line, row in rows:
        sid = row["sourcedId"].strip()
        student = students.get(sid)
        if student is None:
            not_students += 1
            first = first or line
            continue
        raw_birth = row.get("birthDate", "").strip()
        if raw_birth:
            birth = parse_date(raw_birth)
            if birth is None:
                report.add(
                    rows.file,
                    line,
                    "birthDate",
                    "bad-date",
                    bad_date(raw_birth, "birthDate", show_value=False) + " The birth date is left blank.",
                    "warning",
                )
            elif birth > as_of:  # a birth date is sent for patient matching: an impossible one could mismatch
                report.add(
                    rows.file,
                    line,
                    "birthDate",
                    "future-birth-date",
                    f"birthDate is after {as_of.isoformat()}, so it cannot be right; the birth date is left "
                    "blank (it is used only to match the patient). Correct it in the SIS.",
                    "warning",
                )
                birth = None
            student.birth_date = birth
        sex = row.get("sex", "").strip().lower()
        if sex and sex not in SEXES:
            report.add(
                rows.file,
                line,
                "sex",
                "bad-sex",
                f"sex '{sex}' is not male, female, other or unspecified; left blank.",
                "warning",
            )
            sex = ""
        student.sex = sex
    if not_students:
        report.add(
            rows.file,
            first,
            "sourcedId",
            "not-a-student",
            f"{not_students} demographics rows (first at line {first}) are for users who are not students "
            "in this export; not used.",
            "warning",
        )


def _year_of(day: date, years: list[SchoolYear]) -> SchoolYear | None:
    for y in years:
        if y.start <= day <= y.end:
            return y
    return None


def _read_enrollments(
    export: Export,
    report: RowReport,
    students: dict[str, Student],
    user_ids: set[str],
    schools: dict[str, School],
    org_types: dict[str, str],
    years: list[SchoolYear],
) -> dict[tuple[str, str], Membership]:
    rows = _Rows(export, "enrollments.csv", report, ENROLLMENTS)
    file = rows.file
    spans: dict[tuple[str, str], tuple[date, date]] = {}
    other_roles: Counter[str] = Counter()
    other_first: dict[str, int] = {}
    latest = years[-1] if years else None
    for line, row in rows:
        role = row["role"].strip().lower()
        if role != "student":
            other_roles[role or "(blank)"] += 1
            other_first.setdefault(role or "(blank)", line)
            continue
        uid, school = row["userSourcedId"].strip(), row["schoolSourcedId"].strip()
        if uid not in students:
            if uid in user_ids:
                report.add(
                    file,
                    line,
                    "userSourcedId",
                    "not-a-student",
                    f"Student enrollment for user '{uid}', whose role is not student; not used. "
                    "Correct the user's role or the enrollment.",
                )
            else:
                report.add(
                    file,
                    line,
                    "userSourcedId",
                    "unknown-user",
                    f"Student enrollment for user '{uid}', who is not in users.csv; not used. "
                    "Export the user or correct userSourcedId.",
                )
            continue
        if school not in schools:
            if school in org_types:
                report.add(
                    file,
                    line,
                    "schoolSourcedId",
                    "not-a-school",
                    f"Enrollment at org '{school}', which is of type '{org_types[school]}', not a school; "
                    "not used. Give the school's sourcedId.",
                )
            else:
                report.add(
                    file,
                    line,
                    "schoolSourcedId",
                    "unknown-school",
                    f"Enrollment at school '{school}', which is not in orgs.csv; not used.",
                )
            continue
        raw_begin, raw_end = row.get("beginDate", "").strip(), row.get("endDate", "").strip()
        begin, end = parse_date(raw_begin), parse_date(raw_end)
        if (raw_begin and begin is None) or (raw_end and end is None):
            col = "beginDate" if raw_begin and begin is None else "endDate"
            report.add(file, line, col, "bad-date", bad_date(row[col], col) + " The enrollment is not used.")
            continue
        if begin is None or end is None:
            known = begin or end
            year = _year_of(known, years) if known else None
            year = year or latest
            if year is None:
                report.add(
                    file,
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
            report.add(
                file,
                line,
                "endDate",
                "bad-period",
                "endDate is before beginDate; the enrollment is not used. Correct the dates.",
            )
            continue
        key = (uid, school)
        prior = spans.get(key)
        spans[key] = (min(prior[0], begin), max(prior[1], end)) if prior else (begin, end)
    for role, count in sorted(other_roles.items()):
        report.add(
            file,
            other_first[role],
            "role",
            "not-a-student",
            f"{count} enrollments with role '{role}' (first at line {other_first[role]}) are not student "
            "enrollments; not used.",
            "warning",
        )
    return {k: Membership(k[0], k[1], b, e) for k, (b, e) in spans.items()}


def _check_students(roster: Roster, report: RowReport, users_file: str, state_id_source: str) -> None:
    placed = {s for s, _ in roster.memberships}
    seen: dict[str, str] = {}
    for s in roster.students.values():
        if not s.state_id:
            report.add(
                users_file,
                s.line,
                _state_id_column(state_id_source),
                "missing-state-id",
                f"Student '{s.sourced_id}' has no state id in {state_id_source}; kept, but files that name "
                "students by state id cannot be linked to them. Fill in the state id.",
                "warning",
            )
        elif s.state_id in seen:
            report.add(
                users_file,
                s.line,
                _state_id_column(state_id_source),
                "duplicate-state-id",
                f"Students '{seen[s.state_id]}' and '{s.sourced_id}' share one state id; rows naming it "
                "are linked to the second. Correct the state id.",
                "warning",
            )
        else:
            seen[s.state_id] = s.sourced_id
        if s.sourced_id not in placed:
            report.add(
                users_file,
                s.line,
                "",
                "no-school",
                f"Student '{s.sourced_id}' has no usable student enrollment at a school; kept, but no "
                "attendance can be counted for them. Export their enrollment.",
                "warning",
            )
