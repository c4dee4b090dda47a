"""The students of a run in chunks for the mappers: each chunk's students, and their summaries that may be sent;
what the mapping reads, until this process lets go of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import TypeVar

from sis2fhir.consent_book import ConsentBook
from sis2fhir.measure import AttendanceSummary


@dataclass(frozen=True, slots=True)
class StudentChunk:
    """Students mapped together, and their summaries in the same order (`student_chunks`)."""

    students: list[str]
    summaries: list[AttendanceSummary]

    def each(self) -> Iterator[tuple[str, list[AttendanceSummary]]]:
        summaries, n, i = self.summaries, len(self.summaries), 0
        for sid in self.students:
            j = i
            while j < n and summaries[j].student_sourced_id == sid:
                j += 1
            yield sid, summaries[i:j]
            i = j


MAP_CHUNK = 500  # students per chunk: a task when mapping on several cores


def student_chunks(every: list[AttendanceSummary], sent: list[AttendanceSummary], size: int = 0) -> list[StudentChunk]:
    """Every student with a summary, in sourcedId order, `size` (0: MAP_CHUNK) to a chunk, each with the summaries
    that may be `sent` (a withheld student keeps their Consent, with fewer summaries or none). No object per
    student (the dict of per-student lists this replaced held an entry and a list each: with it gone and the
    transition state keyed by the ids' own strings, the map stage's RSS at 1M fell from 2,040 to 1,964 MB)."""
    key, size = attrgetter("student_sourced_id"), size or MAP_CHUNK
    sent = sorted(sent, key=key)  # stable: a student's schools in the order measured
    chunks: list[StudentChunk] = []
    students: list[str] = []
    j = 0
    for sid in map(key, sorted(every, key=key)):
        if students and students[-1] == sid:
            continue
        if len(students) == size:
            chunks.append(StudentChunk(students, sent[j : (j := _past(sent, students[-1], j))]))
            students = []
        students.append(sid)
    if students:
        chunks.append(StudentChunk(students, sent[j : _past(sent, students[-1], j)]))
    return chunks


def _past(summaries: list[AttendanceSummary], last: str, j: int) -> int:
    """The index after the summaries from `j` up to those of student `last`, in sourcedId order."""
    while j < len(summaries) and summaries[j].student_sourced_id <= last:
        j += 1
    return j


class StudentsToMap:
    """What the mapping reads: the students in chunks, their summaries that may be sent (in measured order, for the
    store) and the district's consents, held by this process only until the workers have their own.

    After the roster they are the largest things a sync holds (at 1M students about 440 MB of summaries and 230 MB
    of consents). Forked mappers inherit them, so once the workers are forked this process drops its references
    (`let_go_after`: the chunks and consents at once, the summaries once its own work before the first chunk,
    recording them, is done) and what it does next (the transitions, the results the workers send back, the
    outbox's writes) reuses the memory. Read after that, they raise rather than give a mapper no students or no
    consents (a worker that the pool forks later, to replace one that died, cannot map: the run fails instead of
    withdrawing consents)."""

    __slots__ = ("_chunks", "_consents", "_summaries", "chunk_count")

    def __init__(self, chunks: list[StudentChunk], summaries: list[AttendanceSummary], consents: ConsentBook) -> None:
        self._chunks: list[StudentChunk] | None = chunks
        self._summaries: list[AttendanceSummary] | None = summaries
        self._consents: ConsentBook | None = consents
        self.chunk_count = len(chunks)

    @property
    def chunks(self) -> list[StudentChunk]:
        return _held(self._chunks)

    @property
    def summaries(self) -> list[AttendanceSummary]:
        return _held(self._summaries)

    @property
    def consents(self) -> ConsentBook:
        return _held(self._consents)

    def let_go(self) -> None:
        self._chunks = self._summaries = self._consents = None

    def let_go_after(self, work: Callable[[], None] | None) -> Callable[[], None]:
        """What the parent runs once its mapping workers are forked: the chunks and consents let go, `work` (none:
        nothing; it may read the summaries), then `let_go` (at 1M students the parent held 1,671 MB at its peak,
        recording the transitions, when all three were let go after `work`; letting go of them gave back 267 MB)."""

        def then_let_go() -> None:
            self._chunks = self._consents = None
            if work is not None:
                work()
            self.let_go()

        return then_let_go


H = TypeVar("H")


def _held(value: H | None) -> H:
    if value is None:
        raise RuntimeError("the students to map were let go by this process once its mapping workers held them")
    return value
