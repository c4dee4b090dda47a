"""consents.csv and calendar.csv: FERPA consents by student, instructional days by school, bad rows."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.consents import read_consents
from sis2fhir.read.export import ExportError, open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import ConsentRecord
from sis2fhir.report import RowReport
from tests.support import paths

EXPORTS = paths.EXPORTS


def consents_of(folder: Path) -> tuple[dict[str, tuple[ConsentRecord, ...]], RowReport]:
    with open_export(folder) as export:
        roster = read_roster(export, RowReport(), "userIds:state")
        report = RowReport()
        return read_consents(export, roster, report, date(2026, 3, 31)), report


def test_a_signed_consent_is_read_with_defaults_for_purpose_and_scope() -> None:
    consents, _ = consents_of(EXPORTS / "district-1.1")
    [c] = consents["stu-1"]
    assert (c.consent_id, c.status, c.recipient_organization) == ("c-1", "active", "1234567893")
    assert c.purpose == "treatment-and-care-coordination"
    assert c.data_scope == ("attendance",)
    assert (c.signed, c.period_start, c.period_end) == (
        date(2025, 8, 20),
        date(2025, 8, 20),
        date(2026, 6, 30),
    )
    assert (c.file, c.line) == ("consents.csv", 2)


def test_a_revoked_consent_named_by_state_id_keeps_its_revocation_date_and_split_scope() -> None:
    consents, _ = consents_of(EXPORTS / "district-1.1")
    [c] = consents["stu-2"]  # named by studentIdentifier 9000002
    assert c.status == "revoked" and c.revoked == date(2025, 10, 1)
    assert c.data_scope == ("attendance", "immunizations")  # "attendance; immunizations"
    assert c.document_url.endswith("c-2.pdf")


def test_each_unusable_consent_is_reported_with_its_line_and_column() -> None:
    consents, report = consents_of(EXPORTS / "district-1.1")
    assert [(i.line, i.column, i.code) for i in report.issues] == [
        (4, "revokedDate", "missing-value"),
        (5, "consentId", "duplicate-consent"),
        (6, "studentSourcedId", "unknown-student"),
        (7, "status", "bad-status"),
        (8, "signedDate", "bad-date"),
    ]
    assert all(i.severity == "error" for i in report.issues)
    used = sum(len(v) for v in consents.values())
    assert used + sum(report.rows_rejected().values()) == report.rows_read["consents.csv"] == 8


def test_consent_messages_do_not_carry_the_grantor_name() -> None:
    _, report = consents_of(EXPORTS / "district-1.1")
    assert not any("Parent" in i.message or "Guardian" in i.message for i in report.issues)


def test_a_period_ending_before_it_starts_is_refused(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e"))
    f = folder / "consents.csv"
    f.write_text(f.read_text().replace("2025-08-20,2025-08-20,2026-06-30", "2025-08-20,2025-08-20,2024-06-30"))
    consents, report = consents_of(folder)
    assert "stu-1" not in consents
    assert (2, "periodEnd", "bad-period") in [(i.line, i.column, i.code) for i in report.issues]


def test_an_export_without_consents_gives_none() -> None:
    consents, report = consents_of(EXPORTS / "district-1.2")
    assert consents == {} and report.issues == []


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda lines: [], "is empty"),
        (lambda lines: lines[1:], "has no 'consentId'"),
        (lambda lines: [lines[0].replace("status", "state"), *lines[1:]], "has no 'status' column"),
    ],
    ids=["empty", "deleted-header", "missing-status"],
)
def test_a_consents_file_that_cannot_be_read_as_consents_stops_the_run(
    tmp_path: Path, edit: Callable[[list[str]], list[str]], says: str
) -> None:
    folder = Path(shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e"))
    f = folder / "consents.csv"
    f.write_text("".join(edit(f.read_text().splitlines(keepends=True))))
    with pytest.raises(ExportError, match="revoked consent could not be honoured") as caught:
        consents_of(folder)
    assert says in str(caught.value)
    assert "Parent" not in str(caught.value)  # a row taken for the header: its grantor name is not repeated


def test_a_header_only_consents_file_is_no_consent_yet(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(EXPORTS / "district-1.1", tmp_path / "e"))
    f = folder / "consents.csv"
    f.write_text(f.read_text().splitlines(keepends=True)[0])
    consents, report = consents_of(folder)
    assert consents == {} and [i for i in report.issues if i.severity == "error"] == []


def test_the_calendar_gives_sorted_instructional_days_per_school() -> None:
    report = RowReport()
    with open_export(EXPORTS / "district-1.1") as export:
        days = read_calendar(export, report)
    assert days == {
        "sch-elm": [date(2025, 9, 2), date(2025, 9, 3)],  # 2025-09-01 is not instructional
        "sch-oak": [date(2025, 9, 2), date(2025, 9, 3)],
    }
    assert [(i.line, i.column, i.code) for i in report.issues] == [
        (7, "instructional", "calendar-conflict"),
        (8, "date", "bad-date"),
    ]


def test_no_calendar_file_gives_none() -> None:
    with open_export(EXPORTS / "district-1.2") as export:
        assert read_calendar(export, RowReport()) is None
