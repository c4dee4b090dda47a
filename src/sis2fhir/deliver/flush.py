"""Handing a run's items over: which go to their destination in the run (a local folder) and which are written
down for the drain after it (the network), and the drain itself.

This is the delivery policy; the pipeline only says when (`flush` per chunk of envelopes, `drain_and_close` once
the run's items are all written down).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from sis2fhir.deliver.base import Destination, DestinationUnusable
from sis2fhir.deliver.outbox import DELIVERED, Envelope, Outbox


@dataclass(slots=True)
class Flushed:
    """What one flush came to: items newly written to the outbox, and the local deliveries' results."""

    enqueued: int = 0
    delivery: Counter[str] = field(default_factory=Counter)


def flush(
    envelopes: list[Envelope],
    outbox: Outbox,
    destinations: Mapping[str, Destination],
    run_id: int | None,
    loop: asyncio.AbstractEventLoop,
) -> Flushed:
    """Write the items down and hand those for local destinations (a folder) over at once, while they are in memory.
    Empties `envelopes`.

    Network items are written down (with their payload) before any delivery and drained after the run. A folder
    is not a network: its items are written down in flight and without a payload (the folder will hold them), with
    their disclosure-log rows, then written to the folder and recorded; only those the folder could not take keep a
    payload for a retry. A crash in between leaves them in doubt: the next run writes them again, which the folder
    absorbs."""
    done = Flushed()
    local: dict[str, list[Envelope]] = {}
    remote: list[Envelope] = []
    for env in envelopes:
        dest = destinations.get(env.destination)
        if dest is not None and dest.local:
            local.setdefault(env.destination, []).append(env)
        else:
            remote.append(env)
    done.enqueued += outbox.enqueue(remote, run_id)
    for name, envs in local.items():
        dest = destinations[name]
        items = [e.item for e in envs]
        done.enqueued += outbox.enqueue(envs, run_id, without_payload={i.key for i in items}, sending=dest)
        try:
            counts = loop.run_until_complete(outbox.deliver_batch(name, dest, items, fresh=True))
        except DestinationUnusable:  # a full disk: nothing of the batch landed; the run stops, the store as it was
            outbox.discard_fresh(i.key for i in items)
            raise
        done.delivery.update(counts)
        if counts[DELIVERED] < len(items):
            outbox.keep_payloads(envs)
    envelopes.clear()
    return done


async def settle_and_close(outbox: Outbox, destinations: Mapping[str, Destination]) -> None:
    """Settle items a stopped run left in doubt (where the recipient can be asked), then close the destinations."""
    try:
        await outbox.settle_in_doubt(destinations)
    finally:
        for d in destinations.values():
            await d.close()


async def drain_and_close(outbox: Outbox, destinations: Mapping[str, Destination]) -> Counter[str]:
    """Deliver what is due from the outbox, then close the destinations."""
    try:
        return await outbox.drain(destinations)
    finally:
        for d in destinations.values():
            await d.close()
