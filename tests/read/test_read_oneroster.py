"""OneRoster 1.1 / 1.2 into a Roster: students, schools, memberships, school years, and what is reported."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import Roster
from sis2fhir.report import RowReport
from tests.support import paths

EXPORTS = paths.EXPORTS


def roster_of(path: Path, state_id_source: str = "userIds:state") -> tuple[Roster, RowReport]:
    report = RowReport()
    with open_export(path) as export:
        return read_roster(export, report, state_id_source), report


def issues(report: RowReport, code: str) -> list[tuple[str, int, str]]:
    return [(i.file, i.line, i.column) for i in report.issues if i.code == code]


def edit(folder: Path, name: str, old: str, new: str) -> None:
    f = folder / name
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new))


def test_students_schools_and_district_of_a_1_1_export() -> None:
    roster, _ = roster_of(EXPORTS / "district-1.1")
    assert roster.version == "1.1"
    assert sorted(roster.students) == ["stu-1", "stu-2", "stu-3", "stu-4"]  # the teacher is not a student
    assert sorted(roster.schools) == ["sch-elm", "sch-oak"]  # the department is not a school
    assert roster.district is not None and roster.district.sourced_id == "dist-1"
    assert roster.schools["sch-elm"].identifier == "061234500001"


def test_the_state_id_is_taken_from_quoted_comma_separated_user_ids() -> None:
    roster, _ = roster_of(EXPORTS / "district-1.1", "userIds:state")
    assert roster.students["stu-1"].state_id == "9000001"  # "{state:9000001},{LDAP:aavery}"
    assert roster.student_by_state_id()["9000004"] == "stu-4"


def test_the_state_id_can_come_from_identifier_instead() -> None:
    roster, _ = roster_of(EXPORTS / "district-1.1", "identifier")
    assert roster.students["stu-3"].state_id == "LOC-3"


def test_a_student_without_a_state_id_is_kept_and_reported() -> None:
    roster, report = roster_of(EXPORTS / "district-1.1", "userIds:state")
    assert roster.students["stu-3"].state_id == ""
    assert issues(report, "missing-state-id") == [("users.csv", 4, "userIds")]
    assert all(i.severity == "warning" for i in report.issues if i.code == "missing-state-id")


def test_an_unknown_state_id_source_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="userIds:<type>"):
        roster_of(EXPORTS / "district-1.1", "ssn")


def test_a_1_2_export_takes_students_from_roles_csv() -> None:
    roster, report = roster_of(EXPORTS / "district-1.2", "userMasterIdentifier")
    assert roster.version == "1.2"
    assert sorted(roster.students) == ["u-10", "u-11"]  # u-12 is a teacher in roles.csv
    assert roster.students["u-10"].state_id == "SSID-10"
    assert issues(report, "unknown-user") == [("roles.csv", 5, "userSourcedId")]


def test_preferred_name_typos_are_mapped() -> None:
    roster, report = roster_of(EXPORTS / "district-1.2", "userMasterIdentifier")
    assert roster.students["u-10"].given_name == "Frank"  # prefferedGivenName
    assert ("users.csv", 1, "prefferedGivenName") in issues(report, "header-typo")


def test_membership_runs_from_earliest_begin_to_latest_end_of_the_enrollments() -> None:
    roster, _ = roster_of(EXPORTS / "district-1.1")
    m = roster.memberships[("stu-1", "sch-elm")]  # two enrollments: fall and spring
    assert (m.begin, m.end) == (date(2025, 8, 18), date(2026, 6, 5))


def test_blank_enrollment_dates_fall_back_to_the_school_year() -> None:
    roster, _ = roster_of(EXPORTS / "district-1.1")
    both_blank = roster.memberships[("stu-2", "sch-elm")]
    assert (both_blank.begin, both_blank.end) == (date(2025, 8, 18), date(2026, 6, 5))
    end_blank = roster.memberships[("stu-3", "sch-oak")]
    assert (end_blank.begin, end_blank.end) == (date(2025, 9, 2), date(2026, 6, 5))


def test_an_enrollment_for_an_unknown_user_is_reported_with_its_line() -> None:
    _, report = roster_of(EXPORTS / "district-1.1")
    assert issues(report, "unknown-user") == [("enrollments.csv", 8, "userSourcedId")]
    assert next(i for i in report.issues if i.code == "unknown-user").severity == "error"


def test_an_enrollment_at_an_unknown_school_is_reported_with_its_line() -> None:
    roster, report = roster_of(EXPORTS / "district-1.1")
    assert issues(report, "unknown-school") == [("enrollments.csv", 9, "schoolSourcedId")]
    assert ("stu-4", "sch-nowhere") not in roster.memberships
    assert report.rows_rejected()["enrollments.csv"] == 2


def test_an_enrollment_at_a_department_is_not_a_school_membership(tmp_path: Path) -> None:
    folder = shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e")
    edit(folder, "enrollments.csv", "enr-8,,,cls-sci,sch-nowhere", "enr-8,,,cls-sci,dept-sci")
    _, report = roster_of(folder)
    assert issues(report, "not-a-school") == [("enrollments.csv", 9, "schoolSourcedId")]
    assert "department" in next(i.message for i in report.issues if i.code == "not-a-school")


def test_a_student_with_no_school_is_kept_and_reported(tmp_path: Path) -> None:
    folder = shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e")
    edit(folder, "enrollments.csv", "enr-4,,,cls-oak-7,sch-oak,stu-3", "enr-4,,,cls-oak-7,sch-oak,tch-1")
    roster, report = roster_of(folder)
    assert "stu-3" in roster.students
    assert ("users.csv", 4, "") in issues(report, "no-school")


def test_birth_date_and_sex_come_from_demographics_and_a_bad_birth_date_is_not_echoed() -> None:
    roster, report = roster_of(EXPORTS / "district-1.1")
    assert roster.students["stu-1"].birth_date == date(2016, 4, 2)  # header spelled 'birthdate'
    assert roster.students["stu-1"].sex == "female"
    assert roster.students["stu-2"].birth_date is None  # 04/09/2016 is ambiguous
    bad = [i for i in report.issues if i.code == "bad-date" and i.file == "demographics.csv"]
    assert [(i.line, i.column) for i in bad] == [(3, "birthDate")]
    assert "04/09/2016" not in bad[0].message and "2016" not in bad[0].message


def test_no_names_or_birth_dates_appear_in_any_message() -> None:
    _, report = roster_of(EXPORTS / "district-1.1")
    text = " ".join(i.message for i in report.issues)
    for phi in ("Alex", "Avery", "Blair", "Casey", "Cole", "Dana", "2016-04-02", "2012-11-30", "04/09/2016"):
        assert phi not in text


def test_school_years_are_derived_from_terms_when_there_is_no_school_year_session() -> None:
    roster, report = roster_of(EXPORTS / "district-1.2", "userMasterIdentifier")
    [year] = roster.school_years
    assert (year.start, year.end, year.year) == (date(2025, 8, 25), date(2026, 6, 12), 2026)
    assert issues(report, "school-year-derived") == [("academicSessions.csv", 0, "type")]


def test_non_iso_date_last_modified_is_a_warning_and_the_row_is_used() -> None:
    roster, report = roster_of(EXPORTS / "district-1.2", "userMasterIdentifier")
    assert "u-10" in roster.students
    bad = [i for i in report.issues if i.code == "bad-date" and i.file == "users.csv"]
    assert [(i.line, i.column, i.severity) for i in bad] == [(2, "dateLastModified", "warning")]
    assert "1/05/2023" in bad[0].message


def test_status_in_a_bulk_file_is_a_warning_and_tobedeleted_is_not_used(tmp_path: Path) -> None:
    folder = shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e")
    edit(folder, "users.csv", "stu-1,,,true", "stu-1,active,,true")
    edit(folder, "users.csv", "stu-2,,,true", "stu-2,tobedeleted,,true")
    roster, report = roster_of(folder)
    assert "stu-1" in roster.students and "stu-2" not in roster.students
    assert [(i.line, i.severity) for i in report.issues if i.code == "status-in-bulk"] == [(2, "warning")]
    assert [(i.line, i.severity) for i in report.issues if i.code == "deleted-in-bulk"] == [(3, "error")]


def test_a_bulk_file_uses_the_first_row_of_an_id_and_reports_its_own_issues_before_the_readers(
    tmp_path: Path,
) -> None:
    folder = shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e")
    users = (folder / "users.csv").read_text().splitlines()
    again = users[1].replace("Alex", "Alexis")  # stu-1 a second time, below stu-4: not used
    stu_3 = users[3].replace(",,,true", ",active,,true").replace(",student,", ",studnet,")  # status, bad role
    (folder / "users.csv").write_text("\n".join([*users[:3], stu_3, *users[4:], again]) + "\n")
    roster, report = roster_of(folder)
    assert roster.students["stu-1"].given_name == "Alex"
    assert "stu-3" not in roster.students
    users_issues = [(i.code, i.line) for i in report.issues if i.file == "users.csv" and i.line > 1]
    assert users_issues == [("duplicate-id", len(users) + 1), ("status-in-bulk", 4), ("unknown-role", 4)]


def test_a_delta_honours_tobedeleted_and_the_latest_date_last_modified(tmp_path: Path) -> None:
    folder = shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e")
    edit(folder, "manifest.csv", "file.users,bulk", "file.users,delta")
    users = (folder / "users.csv").read_text().splitlines()
    header, rows = users[0], [r.replace(",,,true", ",active,2025-08-01,true", 1) for r in users[1:]]
    rows[1] = rows[1].replace("active,2025-08-01", "tobedeleted,2025-08-02")  # stu-2 deleted
    newer = rows[0].replace("2025-08-01", "2025-09-01").replace("{state:9000001}", "{state:9000111}")
    (folder / "users.csv").write_text("\n".join([header, newer, *rows, "stu-7,inactive,,true"]) + "\n")
    roster, report = roster_of(folder)
    assert "stu-2" not in roster.students
    assert roster.students["stu-1"].state_id == "9000111"  # the newer of the two stu-1 rows
    assert [(i.line, i.code) for i in report.issues if i.code == "superseded"] == [(3, "superseded")]
    assert [(i.line, i.column) for i in report.issues if i.code == "bad-status"] == [(8, "status")]


def test_a_header_only_file_gives_an_empty_roster_part_without_failing(tmp_path: Path) -> None:
    folder = shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e")
    (folder / "demographics.csv").write_text("sourcedId,status,dateLastModified,birthDate,sex\n")
    roster, report = roster_of(folder)
    assert all(s.birth_date is None for s in roster.students.values())
    assert report.rows_read["demographics.csv"] == 0


def test_a_1_2_role_that_is_not_a_oneroster_role_is_reported_and_its_user_not_a_student(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(EXPORTS / "district-1.2", tmp_path / "d"))
    edit(folder, "roles.csv", "r-10,,2025-08-01,u-10,primary,student,", "r-10,,2025-08-01,u-10,primary,studnet,")
    roster, report = roster_of(folder)
    clean, _ = roster_of(EXPORTS / "district-1.2")
    assert issues(report, "unknown-role") == [("roles.csv", 2, "role")]
    assert [(f, c) for f, _, c in issues(report, "missing-role")] == [("users.csv", "sourcedId")]
    assert sorted(roster.students) == sorted(set(clean.students) - {"u-10"})


def test_a_birth_date_after_the_as_of_date_is_not_used_for_matching_and_is_reported(tmp_path: Path) -> None:
    folder = shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e")
    edit(folder, "demographics.csv", "stu-4,,,2012-11-30", "stu-4,,,2026-06-01")
    for as_of, future in ((date(2026, 3, 31), True), (date(2026, 9, 1), False)):
        report = RowReport()
        with open_export(folder) as export:
            roster = read_roster(export, report, "userIds:state", as_of=as_of)
        found = [(i.file, i.line, i.column, i.severity) for i in report.issues if i.code == "future-birth-date"]
        assert found == ([("demographics.csv", 4, "birthDate", "warning")] if future else [])
        assert roster.students["stu-4"].birth_date == (None if future else date(2026, 6, 1))
        assert roster.students["stu-4"].sex == "unspecified"  # the rest of the row is used
    edit(folder, "demographics.csv", "stu-4,,,2026-06-01", "stu-4,,,2999-01-01")
    roster, report = roster_of(folder)  # no as-of date: after today
    assert roster.students["stu-4"].birth_date is None
    assert ("demographics.csv", 4, "birthDate") in issues(report, "future-birth-date")
    assert "2999" not in next(i.message for i in report.issues if i.code == "future-birth-date")
