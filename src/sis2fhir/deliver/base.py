"""The one small interface every destination implements: deliver a batch, report each item as it is confirmed.

A destination knows nothing of attendance, consent or the outbox. The outbox hands it items that are already
validated and already permitted, and already marked in flight (and in the disclosure log as possibly disclosed);
the destination yields results as the recipient answers: a FHIR transaction-response, an HL7 v2 ACK, a flushed
file. The outbox records each answer at once, in one database transaction with its disclosure-log row, so a crash
between two answers loses no record of what was confirmed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple

from sis2fhir.errors import DestinationUnusable as DestinationUnusable  # raised by destinations; defined in errors
from sis2fhir.records import Student


class RecipientError(RuntimeError):
    """The recipient cannot take deliveries now; the message says why (raised by `Destination.check`)."""


class RecipientMisconfigured(RecipientError):
    """The recipient answers, but not as the destination needs (e.g. not FHIR R4 4.0.1 with transactions): the
    configuration or the server must be fixed; the run stops before anything is sent."""


class RecipientUnreachable(RecipientError):
    """The recipient could not be asked now (network, timeout, 5xx): its items wait in the outbox."""


class Outcome(StrEnum):
    DELIVERED = "delivered"  # the recipient confirmed it; record the disclosure
    RETRY = "retry"  # it did not reach the recipient (no connection, 429, 5xx, AR): try again later, unchanged
    IN_DOUBT = "in-doubt"  # it was sent but no answer came (timeout, connection lost): maybe held; retried, logged
    DEAD = "dead"  # the recipient refused it for good (400, 422, AE): dead letters, with the reason
    PENDING = "pending"  # cannot be sent yet (no certain patient match): kept, tried on the next run


class Head(NamedTuple):
    """What a destination reads of a resource without its content: its type, its id, and what the disclosure log
    names it by while the recipient's answer is not in (`Destination.sent_references`)."""

    type: str
    id: str
    sent: str  # "Observation?identifier=<system>|<value>" (the first identifier with both), else "Observation/<id>"


def head_of(resource: dict[str, Any]) -> Head:
    rtype, rid = resource.get("resourceType", ""), resource.get("id", "")
    for ident in resource.get("identifier") or ():  # the first with a system and a value
        if ident.get("system") and ident.get("value"):
            return Head(rtype, rid, f"{rtype}?identifier={ident['system']}|{ident['value']}")
    return Head(rtype, rid, f"{rtype}/{rid}")


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
    # each resource as its JSON bytes, when the maker has them (what fingerprints the item): a folder writes them
    # as they are. Empty: the destination serialises the resources itself
    lines: tuple[bytes, ...] = field(default=(), compare=False, repr=False)
    # each resource's Head, when the maker has them: with `lines`, all a folder needs, so an item for a destination
    # that does not read resources (`Destination.reads_resources`) carries none. Empty: read from the resources
    heads: tuple[Head, ...] = field(default=(), compare=False, repr=False)

    def resource_heads(self) -> tuple[Head, ...]:
        return self.heads or tuple(map(head_of, self.resources))

    def __reduce__(self) -> tuple[type[DeliveryItem], tuple[Any, ...]]:
        # the mapper's workers hand items over pickled: by their fields in order, rebuilt by __init__. A slots
        # dataclass's own pickling looks its fields up for each object (dataclasses.fields: measured at 20k students,
        # about a third of the parent's time unpickling the workers' envelopes)
        return DeliveryItem, _item_fields(self)


_item_fields = attrgetter(*(f.name for f in fields(DeliveryItem)))


@dataclass(slots=True)
class DeliveryResult:
    key: str
    outcome: Outcome
    detail: str = ""  # a human-readable reason (no PHI): status code, OperationOutcome text, ACK text
    disclosed: list[str] = field(default_factory=list)  # "Observation/abc/_history/2", "MSG00001", a file path
    retry_after: float | None = None  # seconds, when the recipient said (Retry-After)
    operation_outcome: dict[str, Any] | None = None  # kept as the server sent it


class Destination(ABC):
    """Where one recipient's items go. Implementations: NDJSON folder, FHIR REST, HL7 v2 over MLLP.

    Like httpx's transports: one abstract method (`deliver`), and defaults for the rest, which a destination
    overrides where it has something to do (`check`, `remember_students`, `find_held`, `sent_references`, `withdraw`,
    `close`).
    A destination is used in one event loop (the command's): its connections belong to that loop.

    `deliver` is an async generator: it yields a list of results each time the recipient confirms something
    (one transaction Bundle's response, one ACK, one flushed write), so that the outbox records each as soon as
    it is known. Every item handed over gets exactly one result; an item left without one is taken to be in
    doubt (it may have reached the recipient)."""

    name: str  # for logs and the outbox, e.g. "fhir:https://ehr.example.org/fhir"
    batch_size: ClassVar[int] = 500  # items per `deliver` call from the outbox
    local: ClassVar[bool] = False  # True: no network; the pipeline hands items over as they are made
    # True: the recipient loads what it gets as it is (Bulk Data `$import` of a folder), so each item carries the
    # Patient and Organizations its resources refer to, by literal references (`Patient/<id>`) that resolve in
    # the set. False: references are logical (by identifier) and a FHIR REST destination links the Patient.
    self_contained: ClassVar[bool] = False
    # False: the destination reads only an item's `lines` and `heads` (a folder writes the bytes as they are), so
    # the mapper need not hand the resources themselves over (from its worker processes: pickled, then decoded)
    reads_resources: ClassVar[bool] = True

    async def check(self) -> None:  # noqa: B027 - most destinations have nothing to ask before a run
        """Asked once before a run: raise RecipientMisconfigured when the recipient cannot take what is sent (the run
        stops), RecipientUnreachable when it cannot be asked now (a warning: its items wait). By default, nothing."""

    def remember_students(self, students: Iterable[Student]) -> None:  # noqa: B027 - few destinations need them
        """The roster's students, before their items come: a FHIR destination links each to the recipient's Patient
        by demographics (Patient/$match, or creating one). By default, not needed."""

    @abstractmethod
    def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        """Deliver a batch, yielding results as they are confirmed. Must not raise for per-item failures."""

    def sent_references(self, item: DeliveryItem) -> list[str]:
        """What an attempt to deliver `item` discloses, before the recipient says where it stored it: for the
        disclosure log while the outcome is not known. Resources by business identifier, by default."""
        return [h.sent for h in item.resource_heads()]

    async def find_held(self, items: Sequence[DeliveryItem]) -> dict[str, list[str]]:
        """For items whose delivery is in doubt: those the recipient can be seen to hold, exactly as sent, with what
        it stored them as (key -> references, as a delivery result would give), and those it can be seen never to
        have received (key -> an empty list: it holds none of the item's resources at all). Items it cannot tell
        about are left out; by default, all of them (an HL7 v2 receiver cannot be asked)."""
        return {}

    def withdraw(self, subjects: Iterable[tuple[str, str]]) -> None:  # noqa: B027 - only a served set forgets
        """(recipient, student sourcedId) pairs the gate no longer permits (no consent, or it expired): a destination
        that others read from (the API's served set) stops holding them. By default, nothing: what was sent is the
        recipient's."""

    async def close(self) -> None:  # noqa: B027 - most destinations hold nothing to release
        """Release connections and files."""


async def deliver_all(destination: Destination, items: Sequence[DeliveryItem]) -> list[DeliveryResult]:
    """Every result of one `deliver` call, once the last is in (for callers that record nothing in between)."""
    return [result async for results in destination.deliver(items) for result in results]
