"""consent_book.ConsentBook: the consents a sync holds packed give back exactly the records read, in file order."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sis2fhir.consent_book import ConsentBook
from sis2fhir.read.consents import read_consents
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import ConsentRecord
from sis2fhir.report import RowReport
from tests.support import paths

FILE = "consents.csv"
# free text as exports have it: any character, the separators of other packings and lone surrogates included
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
DAY = st.dates(date(2024, 1, 1), date(2027, 12, 31))


@st.composite
def records(draw: st.DrawFn, student: str) -> ConsentRecord:
    start = draw(DAY)
    return ConsentRecord(
        consent_id=draw(TEXT),
        student_sourced_id=student,
        grantor_name=draw(TEXT),
        grantor_relationship=draw(st.sampled_from(["parent", "guardian", ""])),
        recipient_organization=draw(st.sampled_from(["1234567893", "1904672353", "Ünïcode Clinic"])),
        recipient_name=draw(TEXT),
        purpose=draw(st.sampled_from(["treatment-and-care-coordination", "care"])),
        data_scope=tuple(draw(st.lists(st.sampled_from(["attendance", "absence-reasons"]), min_size=1, max_size=2))),
        signed=start,
        period_start=start,
        period_end=draw(st.none() | st.builds(lambda d: start + timedelta(days=d), st.integers(0, 400))),
        status=draw(st.sampled_from(["active", "revoked", "declined"])),
        revoked=draw(st.none() | DAY),
        document_url=draw(TEXT),
        file=FILE,
        line=draw(st.integers(2, 10**9)),
    )


@given(st.lists(st.tuples(st.sampled_from(["stu-1", "stu-2", "stu-é"]), st.data()), max_size=12))
def test_every_record_added_comes_back_equal_and_in_order(adds: list[tuple[str, st.DataObject]]) -> None:
    book, expected, added = ConsentBook(FILE), {}, []
    for student, data in adds:
        record = data.draw(records(student))
        book.add(record)
        expected.setdefault(student, []).append(record)
        added.append(record)
    assert {s: list(cs) for s, cs in book.items()} == expected
    assert list(book) == list(expected) and len(book) == len(expected)  # students in the order first added
    assert all(s in book for s in expected) and "stu-none" not in book and book.get("stu-none", ()) == ()
    assert book.recipients() == list(dict.fromkeys(c.recipient_organization for c in added))
    revoked = [(c.student_sourced_id, c.recipient_organization) for c in added if c.status == "revoked"]
    assert book.revoked() == revoked


@pytest.mark.parametrize("district", [paths.EXAMPLE, paths.FIXTURES / "known_district"], ids=["example", "known"])
def test_the_consents_read_into_the_book_are_the_rows_of_consents_csv_not_rejected(district: Path) -> None:
    """Every consents.csv row the reader keeps is in the book under its student, with its line, in file order."""
    with open_export(district) as export:
        report = RowReport()
        roster = read_roster(export, report, "userIds:state")
        book = read_consents(export, roster, report, date(2026, 3, 31))
    lines = [c.line for cs in book.values() for c in cs]
    rejected = {i.line for i in report.issues if i.file == "consents.csv" and i.severity == "error"}
    with (district / "consents.csv").open(encoding="utf-8", newline="") as f:
        reader, starts, end = csv.reader(f), [], 1
        next(reader)  # the header
        for _ in reader:
            starts.append(end + 1)  # a row starts on the line after the last one's end (quoted newlines span lines)
            end = reader.line_num
    assert lines
    assert sorted(lines) == [n for n in starts if n not in rejected]
    for student, theirs in book.items():
        assert all(c.student_sourced_id == student and c.file == "consents.csv" for c in theirs)
        assert [c.line for c in theirs] == sorted(c.line for c in theirs)
        assert student in roster.students
