"""The runs in the state store: a row when a sync starts, finished with its figures (counts only, never PHI)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert, update

from sis2fhir.store.schema import runs


def start_run(engine: Engine, started_at: datetime, as_of: date, export: str) -> int:
    """Record a run that starts; returns its id."""
    with engine.begin() as conn:
        key = conn.execute(
            insert(runs).values(started_at=started_at, as_of=as_of.isoformat(), export=export, changes=0)
        ).inserted_primary_key
    assert key is not None  # an INSERT of one row always has its key
    return int(key[0])


def finish_run(engine: Engine, run_id: int, changes: int, summary: Mapping[str, Any]) -> None:
    """Record the end of a run: how many items it queued and its figures (JSON)."""
    with engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(finished_at=datetime.now(UTC), changes=changes, summary=orjson.dumps(summary).decode())
        )
