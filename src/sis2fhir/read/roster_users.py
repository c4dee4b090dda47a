"""users.csv, roles.csv and demographics.csv: the students, their state ids, birth dates and sex."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date

from sis2fhir.config import parse_state_id_source
from sis2fhir.read.csvfile import Columns
from sis2fhir.read.dates import bad_date, parse_date
from sis2fhir.read.export import Export, ExportError
from sis2fhir.read.file_report import FileReport
from sis2fhir.read.roster_rows import LIFECYCLE, RosterRows, Row
from sis2fhir.records import Student
from sis2fhir.report import RowReport

SEXES = frozenset({"male", "female", "other", "unspecified"})
_SEX = {s: s for s in SEXES}  # each row's value replaced by one string object per sex
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


def _users_columns(version: str, state_id_column: str) -> Columns:
    known = (*USER_COLUMNS, "userMasterIdentifier", "role", *LIFECYCLE)
    return Columns(
        required=("sourcedId", "role") if version == "1.1" else ("sourcedId",),
        expected=(state_id_column,),
        optional=tuple(c for c in known if c != state_id_column),
    )


_USER_ID = re.compile(r"\{\s*([^:{}]+?)\s*:\s*([^{}]*?)\s*\}")


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


def state_id_column(state_id_source: str) -> str:
    return "userIds" if state_id_source.startswith("userIds:") else state_id_source


def read_students(
    export: Export, report: RowReport, state_id_of: Callable[[Row], str], state_id_column: str
) -> tuple[dict[str, Student], set[str]]:
    v12 = export.version == "1.2"
    users = RosterRows(export, "users.csv", report, _users_columns(export.version, state_id_column))
    # every user as the Student they would be and the role users.csv gives, not the row (with the rows held, the
    # roster of 100k students peaked at 189 MB of Python objects, 80 MB now; measured with tracemalloc); names,
    # grades and roles repeat and are kept once (sys.intern)
    user_rows: dict[str, tuple[Student, str]] = {}
    for line, row in users:
        sid = row["sourcedId"].strip()
        if not sid:
            users.out.error(line, "sourcedId", "missing-id", "User has no sourcedId; not used.")
            continue
        user_rows[sid] = (_student(sid, row, state_id_of, line), sys.intern(row.get("role", "")))

    roles_of: dict[str, set[str]] = {}
    if v12 and export.has("roles.csv"):
        roles = RosterRows(export, "roles.csv", report, ROLES)
        for line, row in roles:
            uid = row["userSourcedId"].strip()
            if uid not in user_rows:
                roles.out.error(
                    line, "userSourcedId", "unknown-user", f"Role for user '{uid}', who is not in users.csv; not used."
                )
                continue
            role = _role(row["role"], roles.out, line, f"Role row for user '{uid}'")
            if role:
                roles_of.setdefault(uid, set()).add(role)
    else:
        if v12:
            if users.table is None or "role" not in users.table.names:
                raise ExportError(
                    "The export is OneRoster 1.2 but has no roles.csv, and users.csv has no role column, so "
                    "students cannot be told from staff. Export roles.csv."
                )
            users.out.warn(
                0,
                "role",
                "no-roles-file",
                "OneRoster 1.2 keeps roles in roles.csv, which is missing; users.csv 'role' is used.",
            )
        for uid, (user, raw_role) in user_rows.items():
            role = _role(raw_role, users.out, user.line, f"User '{uid}'")
            if role:
                roles_of[uid] = {role}

    students: dict[str, Student] = {}
    others: Counter[str] = Counter()
    for uid, (user, _) in user_rows.items():
        roles_here = roles_of.get(uid, set())
        if not roles_here:
            if v12 and export.has("roles.csv"):  # (else the blank or unknown role is reported already)
                users.out.error(
                    user.line,
                    "sourcedId",
                    "missing-role",
                    f"User '{uid}' has no usable role in roles.csv; not used (it cannot be told whether they "
                    "are a student). Export their roles.",
                )
            continue
        if "student" not in roles_here:
            others[", ".join(sorted(roles_here))] += 1
            continue
        students[uid] = user
    for roles_text, count in sorted(others.items()):
        users.out.warn(0, "role", "not-a-student", f"{count} users with role {roles_text} are not students; not used.")
    return students, set(user_rows)


def _student(sid: str, row: Row, state_id_of: Callable[[Row], str], line: int) -> Student:
    intern = sys.intern
    return Student(
        sourced_id=sid,
        state_id=state_id_of(row),
        given_name=intern(row.get("preferredGivenName", "").strip() or row.get("givenName", "").strip()),
        family_name=intern(row.get("familyName", "").strip()),
        middle_name=intern(row.get("middleName", "").strip()),
        grades=intern(row.get("grades", "").strip()),
        line=line,
    )


def _role(raw: str, out: FileReport, line: int, who: str) -> str:
    """The role in lower case, or "" (reported) when it is blank or not a OneRoster role."""
    role = raw.strip().lower()
    if role in USER_ROLES or (role.startswith("ext:") and len(role) > 4):
        return role
    if not role:
        out.error(
            line,
            "role",
            "missing-role",
            f"{who} has no role; not used (it cannot be told whether they are a student). Fill in role.",
        )
    else:
        out.error(
            line,
            "role",
            "unknown-role",
            f"{who} has role '{raw.strip()}', which is not a OneRoster role (student, teacher, parent, "
            "guardian, aide, administrator ...); not used. Correct the role.",
        )
    return ""


def read_demographics(export: Export, report: RowReport, students: dict[str, Student], as_of: date) -> None:
    rows = RosterRows(export, "demographics.csv", report, DEMOGRAPHICS)
    not_students = 0
    first = 0
    births: dict[str, date | None] = {}  # one date object per distinct birth date (a few thousand per district)
    for line, row in rows:
        sid = row["sourcedId"].strip()
        student = students.get(sid)
        if student is None:
            not_students += 1
            first = first or line
            continue
        raw_birth = row.get("birthDate", "").strip()
        if raw_birth:
            if raw_birth not in births:
                births[raw_birth] = parse_date(raw_birth)
            birth = births[raw_birth]
            if birth is None:
                rows.out.warn(
                    line,
                    "birthDate",
                    "bad-date",
                    bad_date(raw_birth, "birthDate", show_value=False) + " The birth date is left blank.",
                )
            elif birth > as_of:  # a birth date is sent for patient matching: an impossible one could mismatch
                rows.out.warn(
                    line,
                    "birthDate",
                    "future-birth-date",
                    f"birthDate is after {as_of.isoformat()}, so it cannot be right; the birth date is left "
                    "blank (it is used only to match the patient). Correct it in the SIS.",
                )
                birth = None
            student.birth_date = birth
        sex = row.get("sex", "").strip().lower()
        if sex and sex not in SEXES:
            rows.out.warn(line, "sex", "bad-sex", f"sex '{sex}' is not male, female, other or unspecified; left blank.")
            sex = ""
        student.sex = _SEX.get(sex, sex)
    if not_students:
        rows.out.warn(
            first,
            "sourcedId",
            "not-a-student",
            f"{not_students} demographics rows (first at line {first}) are for users who are not students "
            "in this export; not used.",
        )
