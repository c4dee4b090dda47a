"""The durable outbox: every delivery is written down before it is attempted, retried with backoff, or dead-lettered.

Each item has an idempotency key derived from its content; a re-run over the same export finds the keys it already
has and enqueues nothing ("0 changes"). A newer item about the same subject supersedes older undelivered ones, so a
recipient never receives stale attendance after fresh. Successful deliveries go into the disclosure log
(FERPA 34 CFR 99.32) in the same transaction that marks them delivered.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import DateTime, Engine, and_, bindparam, func, insert, select, update
from tenacity import RetryCallState, Retrying, wait_random_exponential

from sis2fhir.config import OutboxSettings
from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome
from sis2fhir.store.schema import disclosures, outbox

QUEUED, DELIVERED, PENDING, DEAD, SUPERSEDED = "queued", "delivered", "pending", "dead", "superseded"


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
        """(destination, subject) pairs something was delivered about: who holds what, for revocation notices."""
        names = list(destinations)
        if not names:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.destination, outbox.c.subject_key)
                .where(outbox.c.destination.in_(names), outbox.c.status == DELIVERED)
                .distinct()
            )
            return {(d, sk) for d, sk in rows}

    def enqueue(
        self, envelopes: Sequence[Envelope], run_id: int | None = None, without_payload: Set[str] = frozenset()
    ) -> int:
        """Write new items (unknown keys only); supersede older undelivered items about the same subjects.

        `without_payload`: keys already delivered to a local folder; only their record is kept."""
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
                    "status": QUEUED,
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
            conn.execute(insert(outbox), rows)
        return len(rows)

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
        """Write what happened to each item; log each disclosure. Returns counts by outcome.

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
            if disclosed:
                conn.execute(insert(disclosures), disclosed)
        return counts

    async def drain(self, destinations: Mapping[str, Destination], batch_size: int = 500) -> Counter[str]:
        """Deliver everything due now, destination by destination, until nothing is due. A failing item is
        rescheduled (not retried in a tight loop), so one poison item never blocks the others."""
        totals: Counter[str] = Counter()
        for name, dest in destinations.items():
            size = getattr(dest, "batch_size", batch_size)
            seen: set[str] = set()
            while True:
                items = [i for i in self.due(name, size) if i.key not in seen]
                if not items:
                    break
                seen.update(i.key for i in items)
                try:
                    results = await dest.deliver(items)
                except Exception as e:  # a destination bug must not lose items: they stay queued
                    results = [
                        DeliveryResult(i.key, Outcome.RETRY, f"destination error: {type(e).__name__}: {e}")
                        for i in items
                    ]
                answered = {r.key for r in results}
                results += [
                    DeliveryResult(i.key, Outcome.RETRY, "destination gave no result for this item")
                    for i in items
                    if i.key not in answered
                ]
                totals.update(self.record(name, results))
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
