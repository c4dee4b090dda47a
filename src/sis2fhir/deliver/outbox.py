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

import hashlib
from collections import Counter
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import DateTime, Engine, and_, bindparam, case, delete, func, insert, or_, select, update
from tenacity import RetryCallState, Retrying, wait_random_exponential

from sis2fhir.config import OutboxSettings
from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, DestinationUnusable, Outcome
from sis2fhir.deliver.disclosure_log import (
    confirm_held,
    in_flight_to_in_doubt,
    log_answers,
    log_in_flight,
    unconfirmed_keys,
)
from sis2fhir.store.schema import outbox

QUEUED, DELIVERED, PENDING, DEAD, SUPERSEDED = "queued", "delivered", "pending", "dead", "superseded"
SENDING = "sending"  # handed to a destination, no answer recorded yet (after a crash: in doubt)


def idempotency_key(destination: str, recipient: str, subject_key: str, content: bytes) -> str:
    h = hashlib.sha256()
    for part in (destination, recipient, subject_key):
        h.update(part.encode())
        h.update(b"\x1f")
    h.update(content)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Envelope:
    """An item on its way into the outbox, with the destination it goes to and what it is about."""

    destination: str
    subject_key: str  # e.g. "<recipient>|<student>" : a newer item about the same subject supersedes older ones
    item: DeliveryItem
    encoded_resources: bytes = b""  # the item's resources as a JSON array, when the caller has it already


def encode_payload(item: DeliveryItem, encoded_resources: bytes = b"") -> bytes:
    resources = encoded_resources or orjson.dumps(item.resources)
    return b'{"resources":' + resources + b',"hl7v2":' + orjson.dumps(item.hl7v2) + b"}"


class _FreshRow:
    """What `record` reads of an outbox row, for an item enqueued moments ago (attempts 0)."""

    __slots__ = ("attempts", "consent_id", "created_at", "key", "recipient", "state_student_id", "student_sourced_id")

    def __init__(self, item: DeliveryItem, ts: datetime) -> None:
        self.key, self.attempts, self.created_at = item.key, 0, ts
        self.student_sourced_id, self.state_student_id = item.student_sourced_id, item.state_student_id
        self.recipient, self.consent_id = item.recipient, item.consent_id


def now_utc() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class Outbox:
    def __init__(self, engine: Engine, settings: OutboxSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or OutboxSettings()
        self._wait = wait_random_exponential(
            multiplier=self.settings.initial_backoff_seconds, max=self.settings.max_backoff_seconds
        )

    # --- enqueue -------------------------------------------------------------------------------------------------

    def known_keys(self, destinations: Iterable[str]) -> set[str]:
        """Keys already in the outbox for these destinations (any status but superseded)."""
        names = list(destinations)
        if not names:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.key).where(outbox.c.destination.in_(names), outbox.c.status != SUPERSEDED)
            )
            return {r[0] for r in rows}

    def delivered_subjects(self, destinations: Iterable[str]) -> set[tuple[str, str]]:
        """(destination, subject) pairs something was, or possibly was, delivered about: who may hold what, for
        revocation notices. Anything the disclosure log names counts, confirmed or in doubt."""
        names = list(destinations)
        if not names:
            return set()
        # a confirmed row belongs to a delivered item; only the (few) rows in flight or in doubt need looking up
        doubtful = unconfirmed_keys(names)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.destination, outbox.c.subject_key)
                .where(
                    outbox.c.destination.in_(names),
                    or_(outbox.c.status == DELIVERED, outbox.c.key.in_(doubtful)),
                )
                .distinct()
            )
            return {(d, sk) for d, sk in rows}

    def enqueue(
        self,
        envelopes: Sequence[Envelope],
        run_id: int | None = None,
        without_payload: Set[str] = frozenset(),
        sending: Destination | None = None,
    ) -> int:
        """Write new items (unknown keys only); supersede older undelivered items about the same subjects.

        `without_payload`: keys whose record only is kept (a local folder holds their content).
        `sending`: the items are handed to this destination right after: they are written as in flight, with their
        provisional disclosure-log rows (see `begin_sending`), in the same transaction."""
        if not envelopes:
            return 0
        ts = now_utc()
        rows = []
        for env in envelopes:
            it = env.item
            payload = b"" if it.key in without_payload else encode_payload(it, env.encoded_resources)
            rows.append(
                {
                    "key": it.key,
                    "recipient": it.recipient,
                    "destination": env.destination,
                    "student_sourced_id": it.student_sourced_id,
                    "state_student_id": it.state_student_id,
                    "consent_id": it.consent_id,
                    "subject_key": env.subject_key,
                    "payload": payload,
                    "status": SENDING if sending is not None else QUEUED,
                    "attempts": 0,
                    "created_at": ts,
                    "next_attempt_at": ts,
                    "updated_at": ts,
                    "last_error": "",
                    "run_id": run_id,
                }
            )
        with self.engine.begin() as conn:
            subjects_by_dest: dict[str, list[str]] = {}
            for env in envelopes:
                subjects_by_dest.setdefault(env.destination, []).append(env.subject_key)
            for dest, subjects in subjects_by_dest.items():
                for chunk_start in range(0, len(subjects), 500):
                    chunk = subjects[chunk_start : chunk_start + 500]
                    conn.execute(
                        update(outbox)
                        .where(
                            outbox.c.destination == dest,
                            outbox.c.subject_key.in_(chunk),
                            outbox.c.status.in_([QUEUED, PENDING]),
                        )
                        .values(status=SUPERSEDED, updated_at=ts, last_error="superseded by newer content")
                    )
            # A key superseded or withdrawn earlier can come back (the content went back to what it was, or a
            # consent was given again): that row is revived, not inserted twice.
            keys = [r["key"] for r in rows]
            existing: set[str] = set()
            for i in range(0, len(keys), 500):
                existing.update(
                    k for (k,) in conn.execute(select(outbox.c.key).where(outbox.c.key.in_(keys[i : i + 500])))
                )
            fresh = [r for r in rows if r["key"] not in existing]
            if fresh:
                conn.execute(insert(outbox), fresh)
            revived = [{f"v_{c}": v for c, v in r.items()} for r in rows if r["key"] in existing]
            if revived:
                columns = [c for c in rows[0] if c != "key"]
                conn.execute(
                    update(outbox)
                    .where(outbox.c.key == bindparam("v_key"))
                    .values({c: bindparam(f"v_{c}") for c in columns}),
                    revived,
                )
            if sending is not None:
                log_in_flight(conn, sending, [env.item for env in envelopes], ts)
        return len(rows)

    def begin_sending(self, destination: Destination, items: Sequence[DeliveryItem]) -> None:
        """Mark items in flight and log them as possibly disclosed, committed before any of them is handed over."""
        ts = now_utc()
        keys = [i.key for i in items]
        with self.engine.begin() as conn:
            for i in range(0, len(keys), 500):
                conn.execute(
                    update(outbox).where(outbox.c.key.in_(keys[i : i + 500])).values(status=SENDING, updated_at=ts)
                )
            log_in_flight(conn, destination, items, ts)

    def recover_in_doubt(self) -> int:
        """Items still in flight from a process that stopped (kill -9, power loss): their outcome is unknown.

        Their log rows become in-doubt (possibly disclosed) and they are queued again, due now: re-sending is
        idempotent, and a consent that no longer permits withdraws them instead. An item without a payload (a local
        folder's) cannot be re-sent from here: it is set aside, and the next run, which builds it again, rewrites
        it. Call only where no other process can be delivering from this store (the store lock)."""
        ts = now_utc()
        with self.engine.begin() as conn:
            n = conn.execute(
                update(outbox)
                .where(outbox.c.status == SENDING)
                .values(
                    status=case((func.length(outbox.c.payload) == 0, SUPERSEDED), else_=QUEUED),
                    next_attempt_at=ts,
                    updated_at=ts,
                    last_error="in doubt: the process stopped before the recipient's answer was recorded",
                )
            ).rowcount
            in_flight_to_in_doubt(conn)
        return n or 0

    async def settle_in_doubt(self, destinations: Mapping[str, Destination]) -> int:
        """Ask the recipients about items in doubt that are still to be sent (queued or pending): those a recipient
        holds exactly as sent (`Destination.find_held`) are delivered, and their in-doubt rows become confirmed, with
        what the recipient stored. The others stay in doubt. Returns how many were settled."""
        names = list(destinations)
        if not names:
            return 0
        doubtful = unconfirmed_keys(only_in_doubt=True)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox).where(
                    outbox.c.destination.in_(names),
                    outbox.c.status.in_([QUEUED, PENDING]),
                    func.length(outbox.c.payload) > 0,
                    outbox.c.key.in_(doubtful),
                )
            ).all()
        settled = 0
        by_destination: dict[str, list[DeliveryItem]] = {}
        for row in rows:
            by_destination.setdefault(row.destination, []).append(self._load(row))
        for name, items in by_destination.items():
            held = await destinations[name].find_held(items)
            if not held:
                continue
            ts = now_utc()
            with self.engine.begin() as conn:
                confirm_held(conn, held.items())
                for key in held:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.key == key, outbox.c.status.in_([QUEUED, PENDING]))
                        .values(status=DELIVERED, updated_at=ts, last_error="")
                    )
            settled += len(held)
        return settled

    def keep_payloads(self, envelopes: Sequence[Envelope]) -> None:
        """Store the payloads of items first written without one (a local folder's) that must now wait for a retry
        (those that were delivered keep none)."""
        if envelopes:
            with self.engine.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.key == bindparam("k"), outbox.c.status != DELIVERED)
                    .values(payload=bindparam("p")),
                    [{"k": e.item.key, "p": encode_payload(e.item, e.encoded_resources)} for e in envelopes],
                )

    def discard_fresh(self, keys: Iterable[str]) -> None:
        """Forget items this run wrote moments ago that certainly did not reach their (local) destination: the run
        stops, and the store is left as it was before the run, so the next run writes them anew. (Their in-flight
        disclosure rows were dropped when they were recorded as not delivered.)"""
        wanted = list(keys)
        with self.engine.begin() as conn:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                conn.execute(delete(outbox).where(outbox.c.key.in_(chunk), outbox.c.status != DELIVERED))

    def withdraw(self, subjects: Iterable[tuple[str, str]]) -> int:
        """Cancel undelivered items about these (destination, subject) pairs: the consent no longer permits.

        A subject matches itself and its sub-subjects (`recipient|student` covers `recipient|student|school`)."""
        wanted = set(subjects)
        ts = now_utc()
        with self.engine.begin() as conn:
            undelivered = conn.execute(
                select(outbox.c.key, outbox.c.destination, outbox.c.subject_key).where(
                    outbox.c.status.in_([QUEUED, PENDING])
                )
            ).all()
            keys = [
                k
                for k, dest, subject in undelivered
                if (dest, subject) in wanted or (dest, "|".join(subject.split("|")[:2])) in wanted
            ]
            for i in range(0, len(keys), 500):
                conn.execute(
                    update(outbox)
                    .where(outbox.c.key.in_(keys[i : i + 500]))
                    .values(status=SUPERSEDED, updated_at=ts, last_error="withdrawn: consent no longer permits")
                )
        return len(keys)

    # --- deliver -------------------------------------------------------------------------------------------------

    def _load(self, row: Any) -> DeliveryItem:
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

    def due(self, destination: str, limit: int, *, include_pending: bool = True) -> list[DeliveryItem]:
        statuses = [QUEUED, PENDING] if include_pending else [QUEUED]
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
        return [self._load(r) for r in rows]

    def _backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        """Exponential backoff with full jitter (tenacity's wait_random_exponential), never shorter than the
        recipient's Retry-After. Cross-run retries live in the store, so only the wait strategy is borrowed."""
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = max(1, attempts)
        wait = max(self.settings.initial_backoff_seconds / 2, self._wait(state))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return timedelta(seconds=wait)

    def record(
        self, destination: str, results: Sequence[DeliveryResult], fresh: Sequence[DeliveryItem] = ()
    ) -> Counter[str]:
        """Write what happened to each item and, in the same transaction, its disclosure-log row: confirmed for a
        delivered item, in doubt for one that may have arrived, none for one that certainly did not. Returns counts
        by outcome.

        `fresh`: the items, when they were enqueued moments ago by this process (saves reading them back)."""
        counts: Counter[str] = Counter()
        ts = now_utc()
        max_age = timedelta(hours=self.settings.max_age_hours)
        by_key = {r.key: r for r in results}
        changes: list[dict[str, Any]] = []
        disclosed: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            rows: list[Any] = [_FreshRow(i, ts) for i in fresh if i.key in by_key]
            keys = [] if fresh else list(by_key)
            for i in range(0, len(keys), 500):
                rows += conn.execute(
                    select(
                        outbox.c.key,
                        outbox.c.attempts,
                        outbox.c.created_at,
                        outbox.c.student_sourced_id,
                        outbox.c.state_student_id,
                        outbox.c.recipient,
                        outbox.c.consent_id,
                    ).where(outbox.c.key.in_(keys[i : i + 500]))
                ).all()
            for row in rows:
                res = by_key[row.key]
                attempts = row.attempts + 1
                change = {"k": row.key, "attempts": attempts, "next": None, "error": res.detail[:4000]}
                if res.outcome is Outcome.DELIVERED:
                    change.update(status=DELIVERED, error="")
                    disclosed.append(
                        {
                            "student_sourced_id": row.student_sourced_id,
                            "state_student_id": row.state_student_id,
                            "recipient": row.recipient,
                            "destination": destination,
                            "consent_id": row.consent_id,
                            "disclosed": orjson.dumps(res.disclosed).decode(),
                            "disclosed_at": ts,
                            "outbox_key": row.key,
                            "latency_seconds": (ts - _aware(row.created_at)).total_seconds(),
                        }
                    )
                elif res.outcome is Outcome.DEAD or ts - _aware(row.created_at) > max_age:
                    if res.outcome is not Outcome.DEAD:
                        change["error"] = f"gave up after {attempts} attempts: {res.detail}"[:4000]
                    change["status"] = DEAD
                else:
                    change["status"] = PENDING if res.outcome is Outcome.PENDING else QUEUED
                    change["next"] = ts + self._backoff(attempts, res.retry_after)
                counts[change["status"]] += 1
                changes.append(change)
            if changes:
                # one statement, many parameter sets: a batch of thousands costs one round of SQL compilation
                conn.execute(
                    update(outbox)
                    .where(outbox.c.key == bindparam("k"))
                    .values(
                        status=bindparam("status"),
                        attempts=bindparam("attempts"),
                        updated_at=ts,
                        last_error=bindparam("error"),
                        next_attempt_at=func.coalesce(
                            bindparam("next", type_=DateTime(timezone=True)), outbox.c.next_attempt_at
                        ),
                    ),
                    changes,
                )
            # this attempt's provisional rows: in doubt when the item may have arrived, else replaced or dropped
            log_answers(
                conn,
                disclosed,
                doubtful=[r.key for r in results if r.outcome is Outcome.IN_DOUBT],
                settled=[r.key for r in results if r.outcome is not Outcome.IN_DOUBT],
            )
        return counts

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

    # --- operations (sis2fhir outbox ...) -----------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, str], int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.destination, outbox.c.status, func.count()).group_by(
                    outbox.c.destination, outbox.c.status
                )
            )
            return {(d, s): n for d, s, n in rows}

    def list(self, status: str | None = None, limit: int = 100) -> list[Any]:
        q = select(
            outbox.c.key,
            outbox.c.recipient,
            outbox.c.destination,
            outbox.c.student_sourced_id,
            outbox.c.status,
            outbox.c.attempts,
            outbox.c.created_at,
            outbox.c.next_attempt_at,
            outbox.c.last_error,
        ).order_by(outbox.c.id.desc())
        if status:
            q = q.where(outbox.c.status == status)
        with self.engine.connect() as conn:
            return list(conn.execute(q.limit(limit)).all())

    def expand_keys(self, prefixes: Sequence[str]) -> list[str]:
        """Full keys for the key prefixes shown by `outbox list`."""
        with self.engine.connect() as conn:
            keys: list[str] = []
            for p in prefixes:
                keys += [r[0] for r in conn.execute(select(outbox.c.key).where(outbox.c.key.startswith(p)))]
            return keys

    def make_due(self, statuses: Sequence[str] = (QUEUED, PENDING), keys: Sequence[str] | None = None) -> int:
        """Retry now: queued/pending items become due; `replay` passes DEAD to give dead letters another go."""
        ts = now_utc()
        cond = [outbox.c.status.in_(list(statuses))]
        if keys:
            cond.append(outbox.c.key.in_(list(keys)))
        values: dict[str, Any] = {"next_attempt_at": ts, "updated_at": ts}
        if DEAD in statuses:
            values.update(status=QUEUED, created_at=ts)  # a replay gets a fresh retry window
        with self.engine.begin() as conn:
            return conn.execute(update(outbox).where(and_(*cond)).values(**values)).rowcount or 0
