"""Opening a district export: folders, zips, BOM/CRLF text, the manifest, exports that are not OneRoster."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from sis2fhir.read.csvfile import Columns, read_csv
from sis2fhir.read.export import ExportError, open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.report import RowReport
from tests.support import paths

EXPORTS = paths.EXPORTS


def copy_export(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(EXPORTS / name, target)
    return target


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, prefix + f.name)
    return zip_path


def as_bom_crlf(folder: Path) -> None:
    for f in folder.glob("*.csv"):
        text = f.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\n", "\r\n")
        f.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))


def roster_summary(path: Path) -> tuple[object, ...]:
    report = RowReport()
    with open_export(path) as export:
        roster = read_roster(export, report, "userIds:state")
    codes = sorted((i.file, i.line, i.code) for i in report.issues)
    return roster.students, roster.schools, roster.memberships, roster.school_years, roster.district, codes


def test_a_bom_and_crlf_line_endings_are_read_like_plain_lf(tmp_path: Path) -> None:
    plain = copy_export("district-1.1", tmp_path / "plain")
    windows = copy_export("district-1.1", tmp_path / "windows")
    as_bom_crlf(windows)
    assert (windows / "users.csv").read_bytes().startswith(b"\xef\xbb\xbfsourcedId")
    assert roster_summary(windows) == roster_summary(plain)


def test_a_zip_and_the_same_folder_give_the_same_roster(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    archive = zip_folder(folder, tmp_path / "export.zip")
    assert roster_summary(archive) == roster_summary(folder)


def test_a_zip_with_the_files_inside_one_folder_is_read(tmp_path: Path) -> None:
    folder = copy_export("district-1.2", tmp_path)
    archive = zip_folder(folder, tmp_path / "nested.zip", prefix="export-2026-01-15/")
    with open_export(archive) as export:
        assert export.version == "1.2"
        assert export.has("roles.csv")


def test_file_names_are_matched_whatever_their_case(tmp_path: Path) -> None:
    with open_export(EXPORTS / "district-1.2") as export:
        assert export.has("userProfiles.csv")  # the file is spelled userprofiles.csv
        assert export.actual_name("userProfiles.csv") == "userprofiles.csv"
        assert export.has("USERS.CSV")
        assert not export.has("demographics.csv")


def test_the_sds_folder_is_refused_naming_what_was_found_and_what_is_expected() -> None:
    with pytest.raises(ExportError) as refused:
        open_export(EXPORTS / "sds-2.1")
    message = str(refused.value)
    assert "School Data Sync" in message
    assert "relationships.csv" in message and "userFlags.csv" in message
    assert "OneRoster 1.1 or 1.2" in message


def test_a_folder_without_manifest_is_refused_with_what_to_do(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    (folder / "manifest.csv").unlink()
    with pytest.raises(ExportError, match=r"no manifest\.csv"):
        open_export(folder)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "export.zip"
    bogus.write_text("not a zip")
    with pytest.raises(ExportError, match=r"neither a folder nor a readable \.zip"):
        open_export(bogus)


def test_an_unsupported_oneroster_version_is_refused(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    manifest = folder / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("oneroster.version,1.1", "oneroster.version,1.0"))
    with pytest.raises(ExportError, match=r"version 1\.0"):
        open_export(folder)


def test_a_manifest_key_typo_is_read_as_meant_and_reported_as_a_warning() -> None:
    report = RowReport()
    with open_export(EXPORTS / "district-1.1") as export:
        assert export.manifest.mode("demographics") == "bulk"  # from 'fiel.demographics'
        assert export.manifest.mode("classes") == "absent"
        read_roster(export, report)
    typo = [i for i in report.issues if i.code == "manifest-typo"]
    assert len(typo) == 1
    assert typo[0].severity == "warning" and typo[0].line == 8 and "fiel.demographics" in typo[0].message


def test_a_blank_manifest_mode_is_a_warning_not_a_failure() -> None:
    report = RowReport()
    with open_export(EXPORTS / "district-1.2") as export:
        read_roster(export, report)
        assert export.manifest.mode("scoreScales") == "absent"
    bad = [i for i in report.issues if i.code == "manifest-bad-mode"]
    assert [(i.line, i.severity) for i in bad] == [(10, "warning")]


def manifest_issues(folder: Path) -> list[tuple[int, str, str, str]]:
    report = RowReport()
    with open_export(folder) as export:
        export.add_manifest_issues(report)
    return [(i.line, i.column, i.code, i.severity) for i in report.issues if i.file == "manifest.csv"]


def test_a_manifest_cut_short_in_its_last_line_is_named_at_that_line(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    manifest = folder / "manifest.csv"
    assert manifest.read_bytes().endswith(b"\n")
    assert "manifest-cut-short" not in {code for _, _, code, _ in manifest_issues(folder)}
    lines = manifest.read_bytes().splitlines()
    manifest.write_bytes(b"\n".join(lines)[:-2])  # a transfer cut two characters into the last value
    assert (len(lines), "value", "manifest-cut-short", "warning") in manifest_issues(folder)


def test_a_damaged_manifest_line_costs_only_its_row_and_a_bad_value_is_named(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    manifest = folder / "manifest.csv"
    lines = manifest.read_bytes().splitlines(keepends=True)
    users = next(i for i, ln in enumerate(lines) if ln.startswith(b"file.users,"))
    lines[users] = b"file.users,bu\xe9lk\n"
    lines.append(b"manifest.version,1\n")
    manifest.write_bytes(b"".join(lines))
    issues = manifest_issues(folder)
    assert (users + 1, "value", "invalid-utf8", "error") in issues
    assert (len(lines), "value", "manifest-bad-value", "warning") in issues
    with open_export(folder) as export:
        assert export.manifest.version == "1.1"  # the other rows are read


def test_a_byte_that_is_not_utf8_costs_only_its_row(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    users = folder / "users.csv"
    users.write_bytes(users.read_bytes().replace(b"Casey", "C\u00e1s".encode("cp1252")))
    clean_report, report = RowReport(), RowReport()
    with open_export(EXPORTS / "district-1.1") as export:
        clean = read_roster(export, clean_report)
    with open_export(folder) as export:
        damaged = read_roster(export, report)
    bad = [(i.file, i.line, i.column, i.code, i.severity) for i in report.issues if i.code == "invalid-utf8"]
    assert bad == [("users.csv", 4, "givenName", "invalid-utf8", "error")]
    assert "0xE1 at character" in next(i.message for i in report.issues if i.code == "invalid-utf8")
    assert "stu-3" in clean.students and "stu-3" not in damaged.students
    assert {k: v for k, v in clean.students.items() if k != "stu-3"} == damaged.students
    assert report.rows_read["users.csv"] == clean_report.rows_read["users.csv"]


def test_a_header_typo_is_mapped_and_reported() -> None:
    report = RowReport()
    with open_export(EXPORTS / "district-1.2") as export:
        rows = list(read_csv(export, "roles.csv", report, Columns(required=("userSourcedId", "dateLastModified"))))
    assert rows[0][1]["dateLastModified"] == "2025-08-01"
    typo = [(i.file, i.line, i.column, i.code) for i in report.issues]
    assert typo == [("roles.csv", 1, "dataLastModified", "header-typo")]


def test_extra_columns_are_kept_and_trailing_empty_header_columns_ignored() -> None:
    report = RowReport()
    with open_export(EXPORTS / "district-1.1") as export:
        rows = dict(read_csv(export, "users.csv", report, Columns(required=("sourcedId",))))
    assert rows[2]["ext_district_homeroom"] == "H1"
    assert "" not in rows[2]
    assert not [i for i in report.issues if i.code in ("ragged-row", "short-row")]


def test_a_missing_required_column_is_reported_once_and_its_rows_counted(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    (folder / "calendar.csv").write_text("schoolSourcedId,day\nsch-elm,2025-09-02\nsch-elm,2025-09-03\n")
    report = RowReport()
    with open_export(folder) as export:
        rows = list(read_csv(export, "calendar.csv", report, Columns(required=("schoolSourcedId", "date"))))
    assert rows == []
    assert [(i.line, i.column, i.code) for i in report.issues] == [(1, "date", "missing-column")]
    assert "2 rows cannot be used" in report.issues[0].message
    assert report.rows_read["calendar.csv"] == 2


def test_ragged_rows_are_reported_by_line_and_quoted_commas_are_fine(tmp_path: Path) -> None:
    folder = copy_export("district-1.1", tmp_path)
    (folder / "calendar.csv").write_text(
        'schoolSourcedId,date,note\nsch-elm,2025-09-02,"a, b"\nsch-elm,2025-09-03,a, b\n\nsch-elm,2025-09-04\n'
    )
    report = RowReport()
    with open_export(folder) as export:
        rows = list(read_csv(export, "calendar.csv", report, Columns(required=("schoolSourcedId", "date"))))
    assert [(line, row["note"]) for line, row in rows] == [(2, "a, b"), (5, "")]
    assert [(i.line, i.code, i.severity) for i in report.issues] == [
        (3, "ragged-row", "error"),
        (5, "short-row", "warning"),
    ]
    assert report.rows_read["calendar.csv"] == 3
