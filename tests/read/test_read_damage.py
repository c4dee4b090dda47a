"""A damaged row costs only its row: bad bytes, NULs, stray quotes and oversized fields in every CSV reader.

Each defect is put into a copy of the example district; the row report must name its file, line, column and code,
and every other row (every other student) must read exactly as in the clean export.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from sis2fhir.engine import Rules, choose_school_year
from sis2fhir.policy import PRESETS
from sis2fhir.read.attendance import attendance_style, iter_attendance
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.consents import read_consents
from sis2fhir.read.export import ExportError, open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import AttendanceEvent, ConsentRecord, Roster
from sis2fhir.report import RowReport
from sis2fhir.tally import StreamingTally
from tests.support import paths

EXAMPLE = paths.EXAMPLE
AS_OF = date(2026, 3, 31)
Edit = Callable[[list[bytes]], None]


@dataclasses.dataclass
class Read:
    roster: Roster
    consents: dict[str, ConsentRecord]  # consentId -> record, line set to 0 (lines shift when a row gains one)
    events: dict[int, AttendanceEvent]  # line -> event
    report: RowReport

    def issues(self, *codes: str) -> list[tuple[str, int, str, str]]:
        return [(i.file, i.line, i.column, i.code) for i in self.report.issues if i.code in codes]


def read(folder: Path) -> Read:
    report = RowReport()
    with open_export(folder) as export:
        roster = read_roster(export, report)
        consents = read_consents(export, roster, report, as_of=AS_OF)
        events = {e.line: e for e in iter_attendance(export, roster, report)}
    flat = {c.consent_id: dataclasses.replace(c, line=0) for cs in consents.values() for c in cs}
    return Read(roster, flat, events, report)


@pytest.fixture(scope="module")
def clean() -> Read:
    return read(EXAMPLE)


def damaged(tmp_path: Path, name: str, edit: Edit) -> Path:
    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "district"))
    lines = (folder / name).read_bytes().splitlines(keepends=True)
    edit(lines)
    (folder / name).write_bytes(b"".join(lines))
    return folder


def set_field(line: int, column: int, value: bytes) -> Edit:
    """Line `line` (1-based) gets `value` (raw bytes, written as they are) as its field number `column` (0-based)."""

    def edit(lines: list[bytes]) -> None:
        fields = next(csv.reader([lines[line - 1].decode()]))
        before = ",".join(_quoted(f) for f in fields[:column])
        after = "".join("," + _quoted(f) for f in fields[column + 1 :])
        lines[line - 1] = (before + "," if column else "").encode() + value + (after + "\n").encode()

    return edit


def _quoted(value: str) -> str:
    return f'"{value}"' if "," in value else value


def field(name: str, line: int, column: int) -> bytes:
    return next(csv.reader([(EXAMPLE / name).read_text().splitlines()[line - 1]]))[column].encode()


def position(name: str, line: int, column: int) -> int:
    """The 1-based character where field `column` of that line starts."""
    fields = next(csv.reader([(EXAMPLE / name).read_text().splitlines()[line - 1]]))
    return len(",".join(_quoted(f) for f in fields[:column])) + 2


def only_error_rows(report: RowReport, file: str) -> list[int]:
    return sorted({i.line for i in report.issues if i.file == file and i.severity == "error"})


def same_except(clean: dict, got: dict, lost: set) -> None:
    """Every record of the clean run is read the same, except those in `lost`, which are not read at all."""
    assert set(clean) - set(got) == lost
    assert set(got) <= set(clean)
    assert {k: v for k, v in clean.items() if k not in lost} == got


# --- consents.csv: fields 0 consentId, 3 grantorName, 6 recipientName, 7 purpose ---


def test_a_stray_quote_in_consents_costs_its_row_not_the_150_after_it(tmp_path: Path, clean: Read) -> None:
    folder = damaged(tmp_path, "consents.csv", set_field(40, 3, b'"' + field("consents.csv", 40, 3)))
    got = read(folder)
    assert got.issues("unclosed-quote") == [("consents.csv", 40, "grantorName", "unclosed-quote")]
    assert "end of the file" in next(i.message for i in got.report.issues if i.code == "unclosed-quote")
    assert len(clean.consents) - 40 >= 150
    same_except(clean.consents, got.consents, {"CNS-2026-0000039"})
    assert only_error_rows(got.report, "consents.csv") == [40]
    assert got.report.rows_read["consents.csv"] == clean.report.rows_read["consents.csv"]


def test_a_stray_quote_closed_by_a_later_quoted_value_costs_only_its_row(tmp_path: Path, clean: Read) -> None:
    def edit(lines: list[bytes]) -> None:
        set_field(40, 3, b'"' + field("consents.csv", 40, 3))(lines)
        set_field(45, 6, b'"' + field("consents.csv", 45, 6) + b'"')(lines)  # a well-quoted value 5 lines on

    got = read(damaged(tmp_path, "consents.csv", edit))
    assert got.issues("unclosed-quote") == [("consents.csv", 40, "grantorName", "unclosed-quote")]
    same_except(clean.consents, got.consents, {"CNS-2026-0000039"})


def test_a_quoted_value_with_a_line_break_is_valid_csv(tmp_path: Path, clean: Read) -> None:
    value = field("consents.csv", 60, 6)
    got = read(damaged(tmp_path, "consents.csv", set_field(60, 6, b'"' + value + b'\r\nSuite 2, East Wing"')))
    assert not [i for i in got.report.issues if i.file == "consents.csv"]
    assert got.consents["CNS-2026-0000059"].recipient_name == value.decode() + "\r\nSuite 2, East Wing"
    assert {k: v for k, v in got.consents.items() if k != "CNS-2026-0000059"} == {
        k: v for k, v in clean.consents.items() if k != "CNS-2026-0000059"
    }


@pytest.mark.parametrize(
    ("byte", "code"),
    [(b"\xe9", "invalid-utf8"), (b"\x00", "nul-byte")],
    ids=["latin-1", "nul"],
)
def test_a_bad_byte_in_consents_costs_only_its_row(tmp_path: Path, clean: Read, byte: bytes, code: str) -> None:
    got = read(damaged(tmp_path, "consents.csv", set_field(70, 3, b"Ren" + byte + b"e Moreau")))
    assert got.issues(code) == [("consents.csv", 70, "grantorName", code)]
    message = next(i.message for i in got.report.issues if i.code == code)
    assert "Moreau" not in message  # where, never what (a name)
    assert f"character {position('consents.csv', 70, 3) + 3}" in message
    same_except(clean.consents, got.consents, {"CNS-2026-0000069"})


def test_an_oversized_field_costs_only_its_row(tmp_path: Path, clean: Read) -> None:
    got = read(damaged(tmp_path, "consents.csv", set_field(90, 7, b"x" * 200_000)))
    assert got.issues("field-too-large") == [("consents.csv", 90, "purpose", "field-too-large")]
    same_except(clean.consents, got.consents, {"CNS-2026-0000089"})


def test_a_line_over_a_megabyte_is_reported_at_the_column_of_its_oversized_value(tmp_path: Path, clean: Read) -> None:
    got = read(damaged(tmp_path, "consents.csv", set_field(90, 6, b"x" * 1_500_000)))  # recipientName
    assert got.issues("field-too-large") == [("consents.csv", 90, "recipientName", "field-too-large")]
    same_except(clean.consents, got.consents, {"CNS-2026-0000089"})


def test_a_consent_revoked_before_it_started_is_reported_and_still_withholds(tmp_path: Path, clean: Read) -> None:
    line = next(c.line for c in clean_consent_lines() if c.status == "revoked")
    folder = damaged(tmp_path, "consents.csv", set_field(line, 13, b"2024-01-02"))  # revokedDate
    got = read(folder)
    assert got.issues("revoked-before-start") == [("consents.csv", line, "revokedDate", "revoked-before-start")]
    consent_id = next(c.consent_id for c in clean_consent_lines() if c.line == line)
    assert got.consents[consent_id].status == "revoked"  # kept, so its revocation is still sent on
    same_except(clean.consents, {k: v for k, v in got.consents.items() if k != consent_id}, {consent_id})


def test_a_consent_signed_after_the_as_of_date_is_reported(tmp_path: Path, clean: Read) -> None:
    got = read(damaged(tmp_path, "consents.csv", set_field(100, 9, b"2026-05-01")))  # signedDate
    assert got.issues("signed-in-future") == [("consents.csv", 100, "signedDate", "signed-in-future")]
    assert "2026-03-31" in next(i.message for i in got.report.issues if i.code == "signed-in-future")
    assert not clean.issues("signed-in-future", "revoked-before-start")


def clean_consent_lines() -> list[ConsentRecord]:
    with open_export(EXAMPLE) as export:
        roster = read_roster(export, RowReport())
        return [c for cs in read_consents(export, roster, RowReport(), AS_OF).values() for c in cs]


# --- users.csv: field 5 role, 8 givenName ---


def test_a_latin_1_byte_in_users_costs_only_that_student(tmp_path: Path, clean: Read) -> None:
    got = read(damaged(tmp_path, "users.csv", set_field(30, 8, "Jos\u00e9".encode("latin-1"))))
    assert got.issues("invalid-utf8") == [("users.csv", 30, "givenName", "invalid-utf8")]
    lost = {s for s, st in clean.roster.students.items() if st.line == 30}
    assert len(lost) == 1
    same_except(clean.roster.students, got.roster.students, lost)


def test_a_stray_quote_closed_later_on_its_line_is_reported_where_the_quoted_value_starts(
    tmp_path: Path, clean: Read
) -> None:
    # users.csv rows quote userIds ("{state:..},{district:..}"): a stray quote before sourcedId closes there
    assert b'"' in (EXAMPLE / "users.csv").read_bytes().splitlines()[29]

    def edit(lines: list[bytes]) -> None:
        lines[29] = b'"' + lines[29]

    got = read(damaged(tmp_path, "users.csv", edit))
    assert got.issues("unclosed-quote") == [("users.csv", 30, "sourcedId", "unclosed-quote")]
    assert not [i for i in got.report.issues if i.file == "users.csv" and i.line == 30 and i.code != "unclosed-quote"]
    lost = {s for s, st in clean.roster.students.items() if st.line == 30}
    same_except(clean.roster.students, got.roster.students, lost)


@pytest.mark.parametrize(("role", "code"), [(b"", "missing-role"), (b"studnet", "unknown-role")])
def test_a_user_whose_role_is_blank_or_unknown_is_reported(tmp_path: Path, clean: Read, role: bytes, code: str) -> None:
    got = read(damaged(tmp_path, "users.csv", set_field(30, 5, role)))
    assert got.issues(code) == [("users.csv", 30, "role", code)]
    lost = {s for s, st in clean.roster.students.items() if st.line == 30}
    same_except(clean.roster.students, got.roster.students, lost)


# --- attendance.csv: 0 studentSourcedId, 1 studentIdentifier, 6 reason ---


@pytest.mark.parametrize(
    ("value", "code", "column"),
    [
        (b"ill\xe9", "invalid-utf8", "reason"),
        (b"ill\x00", "nul-byte", "reason"),
        (b'"sick', "unclosed-quote", "reason"),
        (b"y" * 140_000, "field-too-large", "reason"),
        (b"z" * (3 << 20), "field-too-large", "reason"),  # a line of 3 MB: skipped before csv sees it
    ],
    ids=["latin-1", "nul", "stray-quote", "oversized-field", "overlong-line"],
)
def test_a_damaged_attendance_row_costs_only_its_row(
    tmp_path: Path, clean: Read, value: bytes, code: str, column: str
) -> None:
    got = read(damaged(tmp_path, "attendance.csv", set_field(1000, 6, value)))
    assert [i[:2] + i[3:] for i in got.issues(code)] == [("attendance.csv", 1000, code)]
    assert got.issues(code)[0][2] == column
    same_except(clean.events, got.events, {1000})
    assert only_error_rows(got.report, "attendance.csv") == [1000]
    assert got.report.rows_read["attendance.csv"] == clean.report.rows_read["attendance.csv"]


def test_an_attendance_row_naming_two_students_is_reported(tmp_path: Path, clean: Read) -> None:
    other = next(st for st in clean.roster.students.values() if st.sourced_id != clean.events[500].student_sourced_id)
    got = read(damaged(tmp_path, "attendance.csv", set_field(500, 1, other.state_id.encode())))
    assert got.issues("student-mismatch") == [("attendance.csv", 500, "studentIdentifier", "student-mismatch")]
    message = next(i.message for i in got.report.issues if i.code == "student-mismatch")
    assert other.sourced_id in message and other.state_id not in message
    same_except(clean.events, got.events, {500})


def test_the_students_of_damaged_attendance_rows_are_the_only_ones_whose_numbers_change(
    tmp_path: Path, clean: Read
) -> None:
    absences = [line for line, e in clean.events.items() if "Absence" in e.category.value][:3]

    def edit(lines: list[bytes]) -> None:
        set_field(absences[0], 6, b"ill\xe9")(lines)
        set_field(absences[1], 6, b'"sick')(lines)
        set_field(absences[2], 6, b"ill\x00")(lines)

    folder = damaged(tmp_path, "attendance.csv", edit)
    hit = {clean.events[line].student_sourced_id for line in absences}
    before, after = summaries(EXAMPLE), summaries(folder)
    assert {k for k in before if before[k] != after.get(k)} == {k for k in before if k[0] in hit}
    assert set(before) == set(after)


def summaries(folder: Path) -> dict[tuple[str, str], object]:
    report = RowReport()
    with open_export(folder) as export:
        roster = read_roster(export, report)
        calendar = read_calendar(export, report)
        year = choose_school_year(roster, AS_OF)
        rules = Rules.of(roster, calendar, year, AS_OF, PRESETS["essa"], attendance_style(export))
        found = StreamingTally(workers=1).measure(export, roster, rules, report).every_summary
    return {(s.student_sourced_id, s.school_sourced_id): s for s in found}


# --- files that are not text at all ---


@pytest.mark.parametrize(
    "content",
    [b"PK\x03\x04" + bytes(range(256)) * 8, "studentSourcedId,schoolSourcedId\n".encode("utf-16")],
    ids=["xlsx", "utf-16"],
)
def test_attendance_that_is_not_text_is_file_unreadable_for_the_gate(
    tmp_path: Path, clean: Read, content: bytes
) -> None:
    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "district"))
    (folder / "attendance.csv").write_bytes(content)
    got = read(folder)
    assert got.events == {}
    [issue] = [i for i in got.report.issues if i.file == "attendance.csv"]
    assert (issue.line, issue.code, issue.severity) == (0, "file-unreadable", "error")


def test_a_roster_file_that_is_not_text_refuses_the_export_with_the_report(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "district"))
    (folder / "users.csv").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(2000))
    report = RowReport()
    with open_export(folder) as export, pytest.raises(ExportError, match=r"users\.csv cannot be read"):
        read_roster(export, report)
    assert [(i.file, i.line, i.code) for i in report.issues if i.severity == "error"] == [
        ("users.csv", 0, "file-unreadable")
    ]


def test_an_empty_file_and_a_header_only_file_are_not_unreadable(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "district"))
    header = (folder / "attendance.csv").read_bytes().splitlines(keepends=True)[0]
    for content, codes in ((b"", ["empty-file"]), (header, [])):
        (folder / "attendance.csv").write_bytes(content)
        got = read(folder)
        assert got.events == {}
        assert [i.code for i in got.report.issues if i.file == "attendance.csv"] == codes


def test_line_ends_of_every_kind_count_lines_alike(tmp_path: Path, clean: Read) -> None:
    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "district"))
    text = (folder / "consents.csv").read_bytes()
    for end in (b"\r\n", b"\r"):
        (folder / "consents.csv").write_bytes(b"\xef\xbb\xbf" + text.replace(b"\n", end))
        got = read(folder)
        assert got.consents == clean.consents
        assert not [i for i in got.report.issues if i.file == "consents.csv"]
