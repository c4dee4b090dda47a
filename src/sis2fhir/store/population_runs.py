"""The runs of `sis2fhir population` and `sis2fhir evaluate` in the state store (counts only, never a student)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select, update

from sis2fhir.store.schema import as_utc, population_runs


@dataclass(frozen=True, slots=True)
class PopulationRun:
    id: int
    command: str
    district: str
    started_at: datetime
    finished_at: datetime | None
    as_of: date
    program_start: date | None
    export: str
    out: str
    agreement: str
    cohort: str
    cohort_sha256: str
    summary: dict[str, Any]


def start(
    engine: Engine,
    command: str,
    district: str,
    as_of: date,
    export: str,
    out: str,
    *,
    program_start: date | None = None,
    agreement: str = "",
    cohort: str = "",
    cohort_sha256: str = "",
) -> int:
    """Record a run that starts (before anything is written); returns its id."""
    values = {
        "command": command,
        "district": district,
        "started_at": datetime.now(UTC),
        "as_of": as_of.isoformat(),
        "program_start": program_start.isoformat() if program_start else None,
        "export": export,
        "out": out,
        "agreement": agreement,
        "cohort": cohort,
        "cohort_sha256": cohort_sha256,
    }
    with engine.begin() as conn:
        key = conn.execute(insert(population_runs).values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def finish(engine: Engine, run_id: int, summary: Mapping[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(population_runs)
            .where(population_runs.c.id == run_id)
            .values(finished_at=datetime.now(UTC), summary=orjson.dumps(summary).decode())
        )


def runs(engine: Engine) -> list[PopulationRun]:
    """Every recorded run, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(population_runs).order_by(population_runs.c.id)).mappings().all()
    return [
        PopulationRun(
            id=r["id"],
            command=r["command"],
            district=r["district"],
            started_at=as_utc(r["started_at"]),
            finished_at=as_utc(r["finished_at"]) if r["finished_at"] else None,
            as_of=date.fromisoformat(r["as_of"]),
            program_start=date.fromisoformat(r["program_start"]) if r["program_start"] else None,
            export=r["export"],
            out=r["out"],
            agreement=r["agreement"],
            cohort=r["cohort"],
            cohort_sha256=r["cohort_sha256"],
            summary=orjson.loads(r["summary"]) if r["summary"] else {},
        )
        for r in rows
    ]
