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
from sqlalchemy import Connection, Select, delete, select, update

from sis2fhir.deliver.base import DeliveryItem, Destination
from sis2fhir.store.bulk import insert_many
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
    conn: Connection, confirmed: Sequence[dict[str, Any]], doubtful: Sequence[str], settled: Sequence[str]
) -> None:
    """This attempt's rows, now that the recipient answered: `confirmed` rows (with what it stored) replace the
    provisional ones of `settled` keys (which lose theirs when they did not arrive); `doubtful` keys keep theirs,
    in doubt."""
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
    if confirmed:
        insert_many(conn, disclosures, [{**row, "certainty": CONFIRMED} for row in confirmed])


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
