"""The students handed to the mappers in chunks: each student once, with exactly their summaries that may be sent."""

from __future__ import annotations

import random
from datetime import date

import pytest

from sis2fhir.consent_book import ConsentBook
from sis2fhir.measure import AttendanceSummary
from sis2fhir.student_chunks import StudentsToMap, student_chunks
from sis2fhir.terminology import Tier


def _summary(student: str, school: str) -> AttendanceSummary:
    return AttendanceSummary(student, school, 2026, date(2025, 8, 25), date(2026, 3, 31), 100, 0, 0, 0, 0, 0,
                             Tier.SATISFACTORY)  # fmt: skip


def test_every_student_once_in_sourced_id_order_with_their_sent_summaries() -> None:
    rng = random.Random(7)
    every = [_summary(f"stu-{rng.randrange(40):03d}", f"sch-{k}") for k in range(60)]
    every += [_summary("stu-001", "sch-x"), _summary("stu-017", "sch-y")]
    every = list({(s.student_sourced_id, s.school_sourced_id): s for s in every}.values())
    rng.shuffle(every)
    withheld = {"stu-001", "stu-017"}  # withheld entirely: still chunked (their Consent goes), with no summary
    sent = [s for s in every if s.student_sourced_id not in withheld and rng.random() < 0.8]
    chunks = student_chunks(every, sent, size=4)
    students = [sid for c in chunks for sid in c.students]
    assert students == sorted({s.student_sourced_id for s in every})
    assert all(len(c.students) == 4 for c in chunks[:-1]) and 1 <= len(chunks[-1].students) <= 4
    got = {sid: theirs for c in chunks for sid, theirs in c.each()}
    for sid in students:
        assert got[sid] == [s for s in sent if s.student_sourced_id == sid]  # their schools in the order measured
    assert got["stu-001"] == got["stu-017"] == []


def test_no_summaries_no_chunks() -> None:
    assert student_chunks([], []) == []


def test_the_students_to_map_are_let_go_after_the_parents_own_work_and_cannot_be_read_after() -> None:
    every = [_summary(f"stu-{n}", "sch-1") for n in range(5)]
    book = ConsentBook("consents.csv")
    to_map = StudentsToMap(student_chunks(every, every, size=2), every, book)
    seen: list[int] = []

    def work() -> None:  # the parent's own work reads the summaries only: the chunks and consents are gone by then
        seen.append(len(to_map.summaries))
        for gone in (lambda: to_map.chunks, lambda: to_map.consents):
            with pytest.raises(RuntimeError, match="let go"):
                gone()

    run = to_map.let_go_after(work)
    assert to_map.chunk_count == 3 and to_map.consents is book and len(to_map.chunks) == 3
    run()
    assert seen == [5] and to_map.chunk_count == 3
    for read in (lambda: to_map.chunks, lambda: to_map.summaries, lambda: to_map.consents):
        with pytest.raises(RuntimeError, match="let go"):  # a mapper forked now fails: it never maps "no consent"
            read()
