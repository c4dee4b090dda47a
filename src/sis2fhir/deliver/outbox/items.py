"""What an outbox item is: its status, what it is about (its subject), its idempotency key and its stored payload."""

from __future__ import annotations

import hashlib
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
