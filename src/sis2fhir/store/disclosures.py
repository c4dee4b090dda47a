"""Reading the FERPA 34 CFR 99.32 disclosure log (the rows are written by deliver/disclosure_log.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from sis2fhir.store.schema import disclosures


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A row of the disclosure log, its fields in the table's column order. `disclosed`: JSON list of what was sent
    (resource ids and versions, message control ids, files); `certainty`: confirmed | sending | in-doubt;
    `channel`: push (a destination) | api-read | bulk-export (the API's reads)."""

    id: int
    student_sourced_id: str
    state_student_id: str
    recipient: str
    destination: str
    consent_id: str
    disclosed: str
    disclosed_at: datetime
    outbox_key: str
    latency_seconds: float | None
    certainty: str
    channel: str  # push | api-read | bulk-export


def disclosures_of(engine: Engine, student: str) -> list[Disclosure]:
    """What the log holds about a student, by sourcedId or state id, oldest first."""
    t = disclosures
    with engine.connect() as conn:
        rows = conn.execute(
            select(t)
            .where((t.c.student_sourced_id == student) | (t.c.state_student_id == student))
            .order_by(t.c.disclosed_at)
        ).all()
    return [Disclosure(**r._asdict()) for r in rows]
