"""The outbox operations: what waits (list, dead, pending), and giving items another go (retry, replay)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sis2fhir.config import Settings
from sis2fhir.deliver.outbox import DEAD, PENDING, QUEUED, Outbox
from sis2fhir.errors import UsageError
from sis2fhir.service.state import LockWait, open_existing, writer_lock

WAITING = (QUEUED, PENDING, DEAD)  # what still needs an operator's or a recipient's attention after a drain


@dataclass(frozen=True)
class OutboxItem:
    """One item as the operator sees it (no payload)."""

    key: str
    recipient: str
    destination: str
    student_sourced_id: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str

    @classmethod
    def of(cls, row: Any) -> OutboxItem:
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class OutboxListing:
    counts: dict[tuple[str, str], int]  # (destination, status) -> items
    items: list[OutboxItem]  # the latest first


@dataclass(frozen=True)
class DrainReport:
    """What giving the due items a go came to."""

    delivered: dict[str, int] = field(default_factory=dict)  # outcome -> items
    left: dict[str, int] = field(default_factory=dict)  # status -> items still waiting (queued, pending, dead)


def open_outbox(settings: Settings) -> Outbox:
    """The outbox of the store a sync wrote (StoreMissing otherwise)."""
    return Outbox(open_existing(settings), settings.outbox)


def items(settings: Settings, status: str | None = None, limit: int = 50) -> list[OutboxItem]:
    """The latest items, of one status or all."""
    return [OutboxItem.of(r) for r in open_outbox(settings).list(status, limit)]


def listing(settings: Settings, status: str | None = None, limit: int = 50) -> OutboxListing:
    """Counts by destination and status, and the latest items."""
    ob = open_outbox(settings)
    return OutboxListing(ob.counts(), [OutboxItem.of(r) for r in ob.list(status, limit)])


def pending(settings: Settings, limit: int = 200) -> list[OutboxItem]:
    """Students waiting for a certain patient match at a recipient: never sent, tried again on every run."""
    return items(settings, PENDING, limit)


@contextmanager
def writing(settings: Settings, command: str, on_wait: LockWait | None = None) -> Iterator[Outbox]:
    """The outbox of an existing store, with the store's writer lock held while the block runs (the store is
    opened first: one that is not there gets no lock file)."""
    ob = open_outbox(settings)
    with writer_lock(settings, command, on_wait):
        yield ob


def make_due(ob: Outbox) -> int:
    """Every queued and pending item due now; how many."""
    return ob.make_due()


def dead_keys(ob: Outbox, prefixes: Sequence[str]) -> list[str]:
    """The full keys of the dead letters named by `prefixes`; UsageError for a prefix that names none, several,
    or an item that is not a dead letter (replaying it would mean nothing)."""
    keys: list[str] = []
    for p in prefixes:
        status_of = ob.statuses_by_key_prefix(p.strip()) if p.strip() else {}
        found = list(status_of)
        if not found:
            raise UsageError(f"no outbox item has a key starting with {p!r}: see `sis2fhir outbox dead`")
        if len(found) > 1 and p.strip() not in found:
            raise UsageError(f"the key prefix {p!r} matches {len(found)} items: give more of the key")
        key = p.strip() if p.strip() in found else found[0]
        if status_of[key] != DEAD:
            raise UsageError(f"the item {key[:12]} is {status_of[key]}, not a dead letter: nothing to replay")
        keys.append(key)
    return keys


def make_dead_due(ob: Outbox, keys: Sequence[str] | None = None) -> int:
    """Dead letters (these, or all) queued again with a fresh retry window; how many."""
    return ob.make_due((DEAD,), keys)


def drain(ob: Outbox, settings: Settings) -> DrainReport:
    """Deliver what is due to every destination with items in the outbox; FolderWriteError when merging a
    folder's delivered segments did not fit (they stay, merged next time)."""
    from sis2fhir.deliver.factory import destinations_for_outbox
    from sis2fhir.deliver.flush import drain_and_close

    dests = destinations_for_outbox(settings, ob)
    delivered = dict(asyncio.run(drain_and_close(ob, dests))) if dests else {}
    left: dict[str, int] = {}
    for (_dest, status), n in ob.counts().items():
        if status in WAITING:
            left[status] = left.get(status, 0) + n
    return DrainReport(delivered, left)
