"""Delivering from the outbox: what is due, handed to its destination batch by batch, each answer recorded as it
comes; items in doubt settled first where the recipient can be seen to hold them."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator, Mapping, Sequence

from sqlalchemy import func, select, update

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, DestinationUnusable, Outcome
from sis2fhir.deliver.disclosure_log import confirm_held, drop_in_doubt, unconfirmed_keys
from sis2fhir.deliver.outbox.items import DELIVERED, QUEUED, UNDELIVERED, load_item, now_utc
from sis2fhir.deliver.outbox.recording import Recording
from sis2fhir.store.schema import outbox


class Draining(Recording):
    async def settle_in_doubt(self, destinations: Mapping[str, Destination]) -> int:
        """Ask the recipients about items in doubt (`Destination.find_held`), whether still to be sent or withdrawn
        since (a revocation): those a recipient holds exactly as sent are delivered, and their in-doubt rows become
        confirmed, with what the recipient stored; those it never received lose their in-doubt row (the log names
        what the recipient holds, no more), and are sent or not as their status says. The others stay in doubt.
        Returns how many were settled either way."""
        names = list(destinations)
        if not names:
            return 0
        doubtful = unconfirmed_keys(only_in_doubt=True)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox).where(
                    outbox.c.destination.in_(names),
                    outbox.c.status != DELIVERED,
                    func.length(outbox.c.payload) > 0,
                    outbox.c.key.in_(doubtful),
                )
            ).all()
        settled = 0
        by_destination: dict[str, list[DeliveryItem]] = {}
        for row in rows:
            by_destination.setdefault(row.destination, []).append(load_item(row))
        for name, items in by_destination.items():
            answers = await destinations[name].find_held(items)
            held = {key: refs for key, refs in answers.items() if refs}
            never = [key for key, refs in answers.items() if not refs]
            if not answers:
                continue
            ts = now_utc()
            with self.engine.begin() as conn:
                confirm_held(conn, held.items())
                drop_in_doubt(conn, never)
                for key in held:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.key == key, outbox.c.status != DELIVERED)
                        .values(status=DELIVERED, updated_at=ts, last_error="")
                    )
            settled += len(answers)
        return settled

    def due(self, destination: str, limit: int, *, include_pending: bool = True) -> list[DeliveryItem]:
        statuses = UNDELIVERED if include_pending else (QUEUED,)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox)
                .where(
                    outbox.c.destination == destination,
                    outbox.c.status.in_(statuses),
                    outbox.c.next_attempt_at <= now_utc(),
                )
                .order_by(outbox.c.id)
                .limit(limit)
            ).all()
        return [load_item(r) for r in rows]

    async def deliver_batch(
        self, name: str, dest: Destination, items: Sequence[DeliveryItem], fresh: bool = False
    ) -> Counter[str]:
        """Hand items (already marked in flight) to a destination and record each result as it comes.

        `fresh`: the items were enqueued moments ago by this process. A destination that raises, or leaves an
        item without a result, leaves it in doubt: it may have been sent."""
        totals: Counter[str] = Counter()
        answered: set[str] = set()
        problem = "the destination gave no result for this item"
        confirmations = dest.deliver(items)
        try:
            while True:
                try:
                    results = await anext(confirmations)
                except StopAsyncIteration:
                    break
                except DestinationUnusable as e:  # nothing of the batch landed: certainly not delivered, and stop
                    unanswered = [i for i in items if i.key not in answered]
                    self.record(name, [DeliveryResult(i.key, Outcome.RETRY, str(e)[:500]) for i in unanswered],
                                fresh=items if fresh else ())  # fmt: skip
                    raise
                except Exception as e:  # a destination bug must not lose items: they stay queued, possibly delivered
                    problem = f"destination error: {type(e).__name__}: {e}"
                    break
                results = [r for r in results if r.key not in answered]
                answered.update(r.key for r in results)
                totals.update(self.record(name, results, fresh=items if fresh else ()))
        finally:
            if isinstance(confirmations, AsyncGenerator):
                await confirmations.aclose()
        rest = [DeliveryResult(i.key, Outcome.IN_DOUBT, problem) for i in items if i.key not in answered]
        if rest:
            totals.update(self.record(name, rest, fresh=items if fresh else ()))
        return totals

    async def drain(self, destinations: Mapping[str, Destination]) -> Counter[str]:
        """Deliver everything due now, destination by destination, until nothing is due. A failing item is
        rescheduled (not retried in a tight loop), so one poison item never blocks the others. Items left in flight
        by a process that stopped are recovered first (in doubt, queued again), and those the recipient can be seen
        to hold are settled as delivered."""
        self.recover_in_doubt()
        await self.settle_in_doubt(destinations)
        totals: Counter[str] = Counter()
        for name, dest in destinations.items():
            size = dest.batch_size
            seen: set[str] = set()
            while True:
                items = [i for i in self.due(name, size) if i.key not in seen]
                if not items:
                    break
                seen.update(i.key for i in items)
                self.begin_sending(dest, items)
                totals.update(await self.deliver_batch(name, dest, items))
        return totals
