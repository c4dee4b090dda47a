"""The one small interface every destination implements: deliver a batch, say what happened to each item.

A destination knows nothing of attendance, consent or the outbox. The outbox hands it items that are
already validated and already permitted; it answers, per item, delivered / retry later / dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Outcome(StrEnum):
    DELIVERED = "delivered"  # the recipient has it; record the disclosure
    RETRY = "retry"  # a passing fault (network, 429, 5xx, AR): try again later, unchanged
    DEAD = "dead"  # the recipient refused it for good (400, 422, AE): dead letters, with the reason
    PENDING = "pending"  # cannot be sent yet (no certain patient match): kept, tried on the next run


@dataclass(slots=True)
class DeliveryItem:
    """One unit of disclosure: everything one recipient gets about one student in one run."""

    key: str  # idempotency key: the same content for the same recipient always has the same key
    recipient: str  # recipient organization identifier
    student_sourced_id: str
    state_student_id: str
    consent_id: str  # the consent the disclosure relies on (FERPA 99.32)
    resources: list[dict[str, Any]] = field(default_factory=list)  # FHIR R4 resources, validated
    hl7v2: str = ""  # an ER7 message (segments separated by \r), for HL7 v2 destinations


@dataclass(slots=True)
class DeliveryResult:
    key: str
    outcome: Outcome
    detail: str = ""  # a human-readable reason (no PHI): status code, OperationOutcome text, ACK text
    disclosed: list[str] = field(default_factory=list)  # "Observation/abc/_history/2", "MSG00001", a file path
    retry_after: float | None = None  # seconds, when the recipient said (Retry-After)
    operation_outcome: dict[str, Any] | None = None  # kept as the server sent it


@runtime_checkable
class Destination(Protocol):
    """Where one recipient's items go. Implementations: NDJSON folder, FHIR REST, HL7 v2 over MLLP.

    Optional attributes the pipeline looks for: `batch_size` (items per `deliver` call from the outbox),
    `local = True` (no network: items are handed over as they are made), `async check()` (asked before a run;
    raises when the recipient cannot take what we send), `linker` (told the students' demographics)."""

    name: str  # for logs and the outbox, e.g. "fhir:https://ehr.example.org/fhir"

    async def deliver(self, items: Sequence[DeliveryItem]) -> list[DeliveryResult]:
        """Deliver a batch; one result per item, in any order. Must not raise for per-item failures."""
        ...

    async def close(self) -> None: ...
