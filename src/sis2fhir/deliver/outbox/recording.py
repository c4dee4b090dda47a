"""What happened to each item: marked in flight before it is handed over, then its answer recorded (delivered,
retried with backoff, pending, dead), with its disclosure-log row in the same transaction; in doubt after a crash."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, DateTime, bindparam, case, func, select, update
from tenacity import RetryCallState, Retrying

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome
from sis2fhir.deliver.disclosure_log import in_flight_to_in_doubt, log_answers, log_in_flight
from sis2fhir.deliver.outbox.items import (
    CHUNK,
    DEAD,
    DELIVERED,
    PENDING,
    QUEUED,
    SENDING,
    SUPERSEDED,
    OutboxTable,
    now_utc,
)
from sis2fhir.store.bulk import execute_many
from sis2fhir.store.schema import as_utc, outbox


class _FreshRow:
    """What `record` reads of an outbox row, for an item enqueued moments ago (attempts 0)."""

    __slots__ = ("attempts", "consent_id", "created_at", "key", "recipient", "state_student_id", "student_sourced_id")

    def __init__(self, item: DeliveryItem, ts: datetime) -> None:
        self.key, self.attempts, self.created_at = item.key, 0, ts
        self.student_sourced_id, self.state_student_id = item.student_sourced_id, item.state_student_id
        self.recipient, self.consent_id = item.recipient, item.consent_id


class Recording(OutboxTable):
    def begin_sending(self, destination: Destination, items: Sequence[DeliveryItem]) -> None:
        """Mark items in flight and log them as possibly disclosed, committed before any of them is handed over."""
        ts = now_utc()
        keys = [i.key for i in items]
        with self.engine.begin() as conn:
            for i in range(0, len(keys), CHUNK):
                conn.execute(
                    update(outbox).where(outbox.c.key.in_(keys[i : i + CHUNK])).values(status=SENDING, updated_at=ts)
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
        by status (plain strings, as stored).

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
            for i in range(0, len(keys), CHUNK):
                rows += conn.execute(
                    select(
                        outbox.c.key,
                        outbox.c.attempts,
                        outbox.c.created_at,
                        outbox.c.student_sourced_id,
                        outbox.c.state_student_id,
                        outbox.c.recipient,
                        outbox.c.consent_id,
                    ).where(outbox.c.key.in_(keys[i : i + CHUNK]))
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
                            "latency_seconds": (ts - as_utc(row.created_at)).total_seconds(),
                        }
                    )
                elif res.outcome is Outcome.DEAD or ts - as_utc(row.created_at) > max_age:
                    if res.outcome is not Outcome.DEAD:
                        change["error"] = f"gave up after {attempts} attempts: {res.detail}"[:4000]
                    change["status"] = DEAD
                else:
                    change["status"] = PENDING if res.outcome is Outcome.PENDING else QUEUED
                    change["next"] = ts + self._backoff(attempts, res.retry_after)
                counts[change["status"].value] += 1  # plain str keys: the counts end up in JSON (orjson)
                changes.append(change)
            _write_changes(conn, changes, ts)
            # this attempt's provisional rows: in doubt when the item may have arrived, else replaced or dropped
            log_answers(
                conn,
                disclosed,
                doubtful=[r.key for r in results if r.outcome is Outcome.IN_DOUBT],
                settled=[r.key for r in results if r.outcome is not Outcome.IN_DOUBT],
                ts=ts,
            )
        return counts


SAME_CHANGE = 50  # items given the same change (a batch delivered at its first attempt): one UPDATE per CHUNK keys


def _write_changes(conn: Connection, changes: list[dict[str, Any]], ts: datetime) -> None:
    """The items' new status, attempts, error and due time: items that all get the same change by key lists, the
    rest by one statement with many parameter sets (a batch of thousands costs one round of SQL compilation)."""
    alike: dict[tuple[Any, ...], list[str]] = {}
    for c in changes:
        alike.setdefault((c["status"], c["attempts"], c["error"], c["next"]), []).append(c["k"])
    several = [c for c in changes if len(alike[(c["status"], c["attempts"], c["error"], c["next"])]) < SAME_CHANGE]
    for (status, attempts, error, due), keys in alike.items():
        if len(keys) < SAME_CHANGE:
            continue
        values: dict[str, Any] = {"status": status, "attempts": attempts, "updated_at": ts, "last_error": error}
        if due is not None:  # else the due time stays (coalesce below)
            values["next_attempt_at"] = due
        for i in range(0, len(keys), CHUNK):
            conn.execute(update(outbox).where(outbox.c.key.in_(keys[i : i + CHUNK])).values(values))
    if several:
        execute_many(
            conn,
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
            several,
        )
