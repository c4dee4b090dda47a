"""Simple reads of the state store for the operator commands: the disclosure log of one student, the outbox items
whose key starts with a prefix. Rows come back as plain dicts of column values (the caller shapes them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from sis2fhir.store.schema import disclosures, outbox


def disclosures_of(engine: Engine, student: str) -> list[dict[str, Any]]:
    """Every disclosure-log row about a student (by sourcedId or state id), oldest first, all columns."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(disclosures)
            .where((disclosures.c.student_sourced_id == student) | (disclosures.c.state_student_id == student))
            .order_by(disclosures.c.disclosed_at)
        ).all()
    return [dict(r._mapping) for r in rows]


def outbox_status_by_key_prefix(engine: Engine, prefix: str, limit: int = 50) -> dict[str, str]:
    """key -> status of (at most `limit`) outbox items whose key starts with `prefix` (taken literally)."""
    with engine.connect() as conn:
        q = select(outbox.c.key, outbox.c.status).where(outbox.c.key.startswith(prefix, autoescape=True))
        return {k: st for k, st in conn.execute(q.limit(limit))}
