"""The durable outbox: every delivery is written down before it is attempted, retried with backoff, or dead-lettered.

Each item has an idempotency key derived from its content; a re-run over the same export finds the keys it already
has and enqueues nothing ("0 changes"). A newer item about the same subject supersedes older undelivered ones, so a
recipient never receives stale attendance after fresh.

The disclosure log (FERPA 34 CFR 99.32) is kept ahead of the network. Before items are handed to a destination they
are marked `sending` and logged as possibly disclosed (certainty `sending`), in one committed transaction; each
confirmation the recipient sends (a transaction-response, an ACK) turns its items' rows into `confirmed` ones with
what the recipient stored, in the same transaction that marks the items delivered; an item that certainly did not
reach the recipient loses its provisional row. When the process dies in between, the next drain (or sync) finds
the items still `sending`: their outcome is unknown, so their rows become `in-doubt` (possibly disclosed), they
count as held by that recipient (a revocation sends it the inactive Consent), and they are queued again: re-sending
is idempotent (conditional updates; the same MSH-10), and they are withdrawn instead when consent no longer permits.
"""

from __future__ import annotations

from sis2fhir.deliver.outbox.drain import Draining
from sis2fhir.deliver.outbox.enqueue import Enqueueing, KnownKeys
from sis2fhir.deliver.outbox.items import (
    DEAD,
    DELIVERED,
    PENDING,
    QUEUED,
    SENDING,
    SUPERSEDED,
    UNDELIVERED,
    Envelope,
    Status,
    Subject,
    Withdrawals,
    encode_payload,
    idempotency_key,
)
from sis2fhir.deliver.outbox.operations import Operating

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "QUEUED",
    "SENDING",
    "SUPERSEDED",
    "UNDELIVERED",
    "Envelope",
    "KnownKeys",
    "Outbox",
    "Status",
    "Subject",
    "Withdrawals",
    "encode_payload",
    "idempotency_key",
]


class Outbox(Enqueueing, Draining, Operating):
    """The outbox on one store: enqueue (enqueue.py), record and drain (recording.py, drain.py), operate
    (operations.py)."""
