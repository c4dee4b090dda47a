"""Writing items into the outbox: only unknown keys, superseding older undelivered items about the same subjects;
and taking them back out again (withdrawn when consent ends, forgotten when a folder could not take them)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence, Set

from sqlalchemy import Engine, bindparam, delete, or_, select, update

from sis2fhir.deliver.base import Destination
from sis2fhir.deliver.disclosure_log import log_in_flight, unconfirmed_keys
from sis2fhir.deliver.outbox.items import (
    CHUNK,
    DELIVERED,
    QUEUED,
    SENDING,
    SUPERSEDED,
    UNDELIVERED,
    Envelope,
    OutboxTable,
    Subject,
    Withdrawals,
    encode_payload,
    now_utc,
)
from sis2fhir.store.bulk import execute_many, insert_many
from sis2fhir.store.schema import outbox


class KnownKeys:
    """Which of some keys the outbox already has (any status but superseded): looked up per chunk of items being
    made, so memory does not grow with the days x students the outbox has seen.

    Usable from forked workers: in a process other than the one that made the engine, the pooled connections
    belong to the parent, so they are left to it (`dispose(close=False)`) and new ones are opened."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pid = os.getpid()

    def __call__(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        found: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(keys), CHUNK):
                found.update(
                    k
                    for (k,) in conn.execute(
                        select(outbox.c.key).where(outbox.c.key.in_(keys[i : i + CHUNK]), outbox.c.status != SUPERSEDED)
                    )
                )
        return found


class Enqueueing(OutboxTable):
    def known_among(self, keys: Sequence[str]) -> set[str]:
        """Which of these keys the outbox already has (any status but superseded)."""
        return KnownKeys(self.engine)(keys)

    def delivered_subjects(
        self, destinations: Iterable[str], among: Set[Subject] | None = None
    ) -> set[tuple[str, Subject]]:
        """(destination, subject) pairs something was, or possibly was, delivered about: who may hold what, for
        revocation notices. Anything the disclosure log names counts, confirmed or in doubt. `among`: only these
        subjects (a sync asks about those with a revoked consent: every pair, after a full sync of 1M students,
        was about 150 MB more in the parent for the rest of the run, measured 2026-12-03)."""
        names = list(destinations)
        if not names or (among is not None and not among):
            return set()
        wanted = None if among is None else {str(s) for s in among}
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
            return {(d, Subject.parse(sk)) for d, sk in rows if wanted is None or sk in wanted}

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
        subjects_by_dest: dict[str, list[str]] = {}  # the envelopes' subjects by destination, each spelled once
        for env in envelopes:
            it = env.item
            payload = b"" if it.key in without_payload else encode_payload(it)
            subject = str(env.subject)
            subjects_by_dest.setdefault(env.destination, []).append(subject)
            rows.append(
                {
                    "key": it.key,
                    "recipient": it.recipient,
                    "destination": env.destination,
                    "student_sourced_id": it.student_sourced_id,
                    "state_student_id": it.state_student_id,
                    "consent_id": it.consent_id,
                    "subject_key": subject,
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
            for dest, subjects in subjects_by_dest.items():
                for chunk_start in range(0, len(subjects), CHUNK):
                    chunk = subjects[chunk_start : chunk_start + CHUNK]
                    conn.execute(
                        update(outbox)
                        .where(
                            outbox.c.destination == dest,
                            outbox.c.subject_key.in_(chunk),
                            outbox.c.status.in_(UNDELIVERED),
                        )
                        .values(status=SUPERSEDED, updated_at=ts, last_error="superseded by newer content")
                    )
            # A key superseded or withdrawn earlier can come back (the content went back to what it was, or a
            # consent was given again): that row is revived, not inserted twice.
            keys = [r["key"] for r in rows]
            existing: set[str] = set()
            for i in range(0, len(keys), CHUNK):
                existing.update(
                    k for (k,) in conn.execute(select(outbox.c.key).where(outbox.c.key.in_(keys[i : i + CHUNK])))
                )
            fresh = [r for r in rows if r["key"] not in existing]
            if fresh:
                insert_many(conn, outbox, fresh)
            revived = [{f"v_{c}": v for c, v in r.items()} for r in rows if r["key"] in existing]
            if revived:
                columns = [c for c in rows[0] if c != "key"]
                execute_many(
                    conn,
                    update(outbox)
                    .where(outbox.c.key == bindparam("v_key"))
                    .values({c: bindparam(f"v_{c}") for c in columns}),
                    revived,
                )
            if sending is not None:
                log_in_flight(conn, sending, [env.item for env in envelopes], ts)
        return len(rows)

    def keep_payloads(self, envelopes: Sequence[Envelope]) -> None:
        """Store the payloads of items first written without one (a local folder's) that must now wait for a retry
        (those that were delivered keep none)."""
        if envelopes:
            with self.engine.begin() as conn:
                execute_many(
                    conn,
                    update(outbox)
                    .where(outbox.c.key == bindparam("k"), outbox.c.status != DELIVERED)
                    .values(payload=bindparam("p")),
                    [{"k": e.item.key, "p": encode_payload(e.item)} for e in envelopes],
                )

    def discard_fresh(self, keys: Iterable[str]) -> None:
        """Forget items this run wrote moments ago that certainly did not reach their (local) destination: the run
        stops, and the store is left as it was before the run, so the next run writes them anew. (Their in-flight
        disclosure rows were dropped when they were recorded as not delivered.)"""
        wanted = list(keys)
        with self.engine.begin() as conn:
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i : i + CHUNK]
                conn.execute(delete(outbox).where(outbox.c.key.in_(chunk), outbox.c.status != DELIVERED))

    def withdraw(self, wanted: Withdrawals) -> int:
        """Cancel undelivered items about these (destination, subject) pairs: the consent no longer permits.

        A student's subject covers that student's per-school subjects (HL7 v2 messages)."""
        ts = now_utc()
        with self.engine.begin() as conn:
            undelivered = conn.execute(
                select(outbox.c.key, outbox.c.destination, outbox.c.subject_key).where(outbox.c.status.in_(UNDELIVERED))
            ).all()
            keys = []
            for k, dest, stored in undelivered:
                subject = Subject.parse(stored)
                if (dest, subject) in wanted or (dest, subject.student_wide()) in wanted:
                    keys.append(k)
            for i in range(0, len(keys), CHUNK):
                conn.execute(
                    update(outbox)
                    .where(outbox.c.key.in_(keys[i : i + CHUNK]))
                    .values(status=SUPERSEDED, updated_at=ts, last_error="withdrawn: consent no longer permits")
                )
        return len(keys)
