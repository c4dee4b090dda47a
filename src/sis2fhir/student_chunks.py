"""The students of a run in chunks for the mappers: each chunk's students, and their summaries that may be sent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter

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
