"""What an outbox item is: its status, what it is about (its subject), its idempotency key and its stored payload."""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Engine
from tenacity import wait_random_exponential

from sis2fhir.config import OutboxSettings
from sis2fhir.deliver.base import DeliveryItem


class Status(StrEnum):
    """outbox.status (the values are stored: never change one)."""

    QUEUED = "queued"  # waiting to be sent (due at next_attempt_at)
    SENDING = "sending"  # handed to a destination, no answer recorded yet (after a crash: in doubt)
    DELIVERED = "delivered"
    PENDING = "pending"  # cannot be sent yet (no certain patient match): tried on every run
    DEAD = "dead"  # refused for good, or given up after max_age_hours
    SUPERSEDED = "superseded"  # replaced by newer content about the same subject, or withdrawn


QUEUED, SENDING, DELIVERED, PENDING, DEAD, SUPERSEDED = (
    Status.QUEUED,
    Status.SENDING,
    Status.DELIVERED,
    Status.PENDING,
    Status.DEAD,
    Status.SUPERSEDED,
)
UNDELIVERED = (QUEUED, PENDING)  # what a newer item supersedes and a withdrawal cancels
CHUNK = 500  # keys per IN (...) list


@dataclass(frozen=True, slots=True)
class Subject:
    """What an item is about: a newer item about the same subject supersedes older undelivered ones.

    FHIR items are about a student for one recipient; an HL7 v2 message about a student at one school. Stored in
    outbox.subject_key as "recipient|student" or "recipient|student|school" (and part of the idempotency key)."""

    recipient: str
    student: str
    school: str = ""

    def __str__(self) -> str:
        return "|".join((self.recipient, self.student, self.school) if self.school else (self.recipient, self.student))

    @classmethod
    def parse(cls, stored: str) -> Subject:
        recipient, _, rest = stored.partition("|")
        student, _, school = rest.partition("|")
        return cls(recipient, student, school)

    def student_wide(self) -> Subject:
        """The subject that covers this one: the student for this recipient, every school."""
        return Subject(self.recipient, self.student) if self.school else self

    def __reduce__(self) -> tuple[type[Subject], tuple[str, str, str]]:  # see DeliveryItem.__reduce__
        return Subject, (self.recipient, self.student, self.school)


class Withdrawals:
    """(destination, subject) pairs whose undelivered items must not go out (`Outbox.withdraw`), held compactly.

    A run permits few of its students for any one recipient, so it withdraws a few pairs for nearly every student:
    as (destination, Subject) tuples, about 120 bytes each, and a worker's came back with a copy of each student id
    (at 20k students 24 MB of the parent's growth while mapping, measured). Here: per destination, recipient and
    school a list of student ids, the caller's own strings; sorted in place when first asked about a pair."""

    __slots__ = ("_sorted", "_students")

    def __init__(self) -> None:
        self._students: dict[tuple[str, str, str], list[str]] = {}  # (destination, recipient, school) -> students
        self._sorted = True

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, Subject]]) -> Withdrawals:
        made = cls()
        for destination, subject in pairs:
            made.add(destination, subject)
        return made

    def add(self, destination: str, subject: Subject) -> None:
        key = (destination, subject.recipient, subject.school)
        students = self._students.get(key)
        if students is None:
            students = self._students[key] = []
        students.append(subject.student)
        self._sorted = False

    def absorb(self, other: Withdrawals, own: Callable[[str], str]) -> None:
        """Add another's pairs (a worker's), each student id as `own` gives it (the one this process holds)."""
        for key, students in other._students.items():
            self._students.setdefault(key, []).extend(map(own, students))
            self._sorted = False

    def __bool__(self) -> bool:
        return bool(self._students)

    def at(self, destination: str) -> Iterator[tuple[str, str]]:
        """The (recipient, student) pairs withdrawn at one destination, every school (`Destination.withdraw`)."""
        for (dest, recipient, _), students in self._students.items():
            if dest == destination:
                for student in students:
                    yield recipient, student

    def __contains__(self, pair: tuple[str, Subject]) -> bool:
        destination, subject = pair
        if not self._sorted:
            for students in self._students.values():
                students.sort()
            self._sorted = True
        students = self._students.get((destination, subject.recipient, subject.school), [])
        i = bisect_left(students, subject.student)
        return i < len(students) and students[i] == subject.student


def idempotency_key(destination: str, recipient: str, subject: Subject, content: bytes) -> str:
    h = hashlib.sha256()
    for part in (destination, recipient, str(subject)):
        h.update(part.encode())
        h.update(b"\x1f")
    h.update(content)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Envelope:
    """An item on its way into the outbox, with the destination it goes to and what it is about."""

    destination: str
    subject: Subject
    item: DeliveryItem

    def __reduce__(self) -> tuple[type[Envelope], tuple[str, Subject, DeliveryItem]]:  # see DeliveryItem.__reduce__
        return Envelope, (self.destination, self.subject, self.item)


def encode_payload(item: DeliveryItem) -> bytes:
    """The stored payload: the resources as a JSON array (the item's lines joined, when it has them: orjson writes
    an array as its items' bytes, comma-separated between brackets, so these are the same bytes), and the HL7 v2
    message."""
    resources = b"[" + b",".join(item.lines) + b"]" if item.lines else orjson.dumps(item.resources)
    return b'{"resources":' + resources + b',"hl7v2":' + orjson.dumps(item.hl7v2) + b"}"


def load_item(row: Any) -> DeliveryItem:
    """The item an outbox row holds (its payload decoded)."""
    payload = orjson.loads(row.payload) if row.payload else {}
    return DeliveryItem(
        key=row.key,
        recipient=row.recipient,
        student_sourced_id=row.student_sourced_id,
        state_student_id=row.state_student_id,
        consent_id=row.consent_id,
        resources=payload.get("resources") or [],
        hl7v2=payload.get("hl7v2") or "",
    )


def now_utc() -> datetime:
    return datetime.now(UTC)


class OutboxTable:
    """The store and settings every part of the outbox works on."""

    def __init__(self, engine: Engine, settings: OutboxSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or OutboxSettings()
        self._wait = wait_random_exponential(
            multiplier=self.settings.initial_backoff_seconds, max=self.settings.max_backoff_seconds
        )
