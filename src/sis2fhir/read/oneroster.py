"""OneRoster 1.1 / 1.2 CSV into a Roster: schools, the district, students, memberships and school years."""

from __future__ import annotations

from datetime import date

from sis2fhir.read.export import Export, ExportError
from sis2fhir.read.file_report import FileReport
from sis2fhir.read.roster_enrollments import read_enrollments
from sis2fhir.read.roster_orgs import read_orgs, read_school_years
from sis2fhir.read.roster_users import read_demographics, read_students, state_id_column, state_id_reader
from sis2fhir.records import Roster
from sis2fhir.report import RowReport

REQUIRED_FILES = ("orgs.csv", "users.csv", "enrollments.csv", "academicSessions.csv")


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
    schools, district, org_types = read_orgs(export, report)
    school_years = read_school_years(export, report)
    students, user_ids = read_students(export, report, state_id_of, state_id_column(state_id_source))
    read_demographics(export, report, students, as_of or date.today())
    memberships = read_enrollments(export, report, students, user_ids, schools, org_types, school_years)
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


def _check_students(roster: Roster, report: RowReport, users_file: str, state_id_source: str) -> None:
    out = FileReport(report, users_file)
    placed = {s for s, _ in roster.memberships}
    seen: dict[str, str] = {}
    for s in roster.students.values():
        if not s.state_id:
            out.warn(
                s.line,
                state_id_column(state_id_source),
                "missing-state-id",
                f"Student '{s.sourced_id}' has no state id in {state_id_source}; kept, but files that name "
                "students by state id cannot be linked to them. Fill in the state id.",
            )
        elif s.state_id in seen:
            out.warn(
                s.line,
                state_id_column(state_id_source),
                "duplicate-state-id",
                f"Students '{seen[s.state_id]}' and '{s.sourced_id}' share one state id; rows naming it "
                "are linked to the second. Correct the state id.",
            )
        else:
            seen[s.state_id] = s.sourced_id
        if s.sourced_id not in placed:
            out.warn(
                s.line,
                "",
                "no-school",
                f"Student '{s.sourced_id}' has no usable student enrollment at a school; kept, but no "
                "attendance can be counted for them. Export their enrollment.",
            )
