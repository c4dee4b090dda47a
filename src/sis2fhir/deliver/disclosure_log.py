"""The FERPA 34 CFR 99.32 record of disclosures, kept ahead of the network, on the outbox's connection.

A row per item is written before the item goes out (certainty `sending`: what is being sent, by business identifier
or MSH-10). The recipient's answer turns it into a `confirmed` row with what it stored, or drops it when the item
certainly did not arrive; no answer at all (a timeout after sending, a crash) leaves it `in-doubt`: possibly
disclosed. Every function here runs inside the caller's transaction, the one that changes the items' status.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Select, bindparam, delete, select, update

from sis2fhir.deliver.base import DeliveryItem, Destination
from sis2fhir.store.bulk import execute_many, insert_many
from sis2fhir.store.schema import disclosures

# disclosures.certainty: the recipient confirmed it | an attempt is under way | an attempt whose outcome is unknown
CONFIRMED, IN_FLIGHT, IN_DOUBT = "confirmed", "sending", "in-doubt"
CHUNK = 500  # keys per IN (...) list


def log_in_flight(conn: Connection, destination: Destination, items: Sequence[DeliveryItem], ts: datetime) -> None:
    """Rows for items about to be handed to `destination`: possibly disclosed from now on."""
    if items:
        insert_many(
            conn,
            disclosures,
            [
                {
                    "student_sourced_id": it.student_sourced_id,
                    "state_student_id": it.state_student_id,
                    "recipient": it.recipient,
                    "destination": destination.name,
                    "consent_id": it.consent_id,
                    "disclosed": orjson.dumps(destination.sent_references(it)).decode(),
                    "disclosed_at": ts,
                    "outbox_key": it.key,
                    "latency_seconds": None,
                    "certainty": IN_FLIGHT,
                }
                for it in items
            ],
        )


def log_answers(
    conn: Connection,
    confirmed: Sequence[dict[str, Any]],
    doubtful: Sequence[str],
    settled: Sequence[str],
    ts: datetime,
) -> None:
    """This attempt's rows, now that the recipient answered: `confirmed` rows (with what it stored, disclosed at
    `ts`) replace the provisional ones of `settled` keys (which lose theirs when they did not arrive); `doubtful`
    keys keep theirs, in doubt."""
    in_place = _confirm_in_place(conn, confirmed, ts)
    if in_place and confirmed:  # the confirmed keys have no provisional row left
        done = {row["outbox_key"] for row in confirmed}
        settled = [k for k in settled if k not in done]
    for i in range(0, len(doubtful), CHUNK):
        conn.execute(
            update(disclosures)
            .where(disclosures.c.outbox_key.in_(doubtful[i : i + CHUNK]), disclosures.c.certainty == IN_FLIGHT)
            .values(certainty=IN_DOUBT)
        )
    for i in range(0, len(settled), CHUNK):
        conn.execute(
            delete(disclosures).where(
                disclosures.c.outbox_key.in_(settled[i : i + CHUNK]), disclosures.c.certainty == IN_FLIGHT
            )
        )
    if not in_place:
        insert_many(conn, disclosures, [{**row, "certainty": CONFIRMED} for row in confirmed])


MATCHED_ON = ("outbox_key", "student_sourced_id", "state_student_id")


def _confirm_in_place(conn: Connection, confirmed: Sequence[dict[str, Any]], ts: datetime) -> bool:
    """Each confirmed row written over its key's provisional one, by one UPDATE: True when every key had exactly
    one (an item is handed over once per attempt, after `log_in_flight`). Otherwise (a key without a provisional
    row, or with two) what the UPDATE confirmed is deleted again, and False: the rows are inserted, as they are
    when nothing was provisional."""
    if not confirmed:
        return True
    # the key and the student are matched, not set: the indexed columns of a row that stays are not rewritten
    matched_on = [c for c in MATCHED_ON if c in confirmed[0]]
    columns = [c for c in confirmed[0] if c not in MATCHED_ON]
    statement = (
        update(disclosures)
        .where(*(disclosures.c[c] == bindparam(f"v_{c}") for c in matched_on), disclosures.c.certainty == IN_FLIGHT)
        .values({**{c: bindparam(f"v_{c}") for c in columns}, "certainty": CONFIRMED})
    )
    matched = execute_many(conn, statement, [{f"v_{c}": v for c, v in row.items()} for row in confirmed])
    if matched == len(confirmed):
        return True
    keys = [row["outbox_key"] for row in confirmed]
    for i in range(0, len(keys), CHUNK):  # this answer's rows (disclosed at ts), confirmed just now
        conn.execute(
            delete(disclosures).where(
                disclosures.c.outbox_key.in_(keys[i : i + CHUNK]),
                disclosures.c.certainty == CONFIRMED,
                disclosures.c.disclosed_at == ts,
            )
        )
    return False


def in_flight_to_in_doubt(conn: Connection) -> None:
    """After a stop: every attempt still under way has an unknown outcome."""
    conn.execute(update(disclosures).where(disclosures.c.certainty == IN_FLIGHT).values(certainty=IN_DOUBT))


def confirm_held(conn: Connection, held: Iterable[tuple[str, list[str]]]) -> None:
    """In-doubt rows of items the recipient was seen to hold, confirmed with what it stored them as."""
    for key, refs in held:
        conn.execute(
            update(disclosures)
            .where(disclosures.c.outbox_key == key, disclosures.c.certainty == IN_DOUBT)
            .values(certainty=CONFIRMED, disclosed=orjson.dumps(refs).decode())
        )


def drop_in_doubt(conn: Connection, keys: Sequence[str]) -> None:
    """In-doubt rows of items the recipient was seen never to have received: they were never a disclosure."""
    for i in range(0, len(keys), CHUNK):
        conn.execute(
            delete(disclosures).where(
                disclosures.c.outbox_key.in_(keys[i : i + CHUNK]), disclosures.c.certainty == IN_DOUBT
            )
        )


def unconfirmed_keys(destinations: Sequence[str] | None = None, *, only_in_doubt: bool = False) -> Select[Any]:
    """Outbox keys with a row in flight or in doubt (or only in doubt), for use as a subquery."""
    q = select(disclosures.c.outbox_key).where(
        disclosures.c.certainty == IN_DOUBT if only_in_doubt else disclosures.c.certainty != CONFIRMED
    )
    return q.where(disclosures.c.destination.in_(destinations)) if destinations is not None else q
