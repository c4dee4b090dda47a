"""The Bulk Data $export jobs (table export_jobs): started, advanced, finished, failed, looked up by their client,
and removed when cancelled or expired. The files themselves live under the API's export folder (api/export_files.py);
this module keeps only their names and counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select, update

from sis2fhir.store.schema import as_utc, export_jobs

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One NDJSON file of a finished job: its resource type, its name in the job's folder, its lines."""

    type: str
    file: str
    count: int


@dataclass(frozen=True, slots=True)
class ExportJob:
    id: str
    client_id: str
    recipient: str
    request: str
    types: tuple[str, ...]
    since: datetime | None
    status: str
    progress: str
    transaction_time: datetime
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    output: tuple[ExportFile, ...]
    error: str

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _job(row: Any) -> ExportJob:
    files = tuple(ExportFile(f["type"], f["file"], f["count"]) for f in orjson.loads(row.output))
    transaction_time = _utc(row.transaction_time)
    created_at = _utc(row.created_at)
    assert transaction_time is not None and created_at is not None
    return ExportJob(
        id=row.id,
        client_id=row.client_id,
        recipient=row.recipient,
        request=row.request,
        types=tuple(orjson.loads(row.types)),
        since=_utc(row.since),
        status=row.status,
        progress=row.progress,
        transaction_time=transaction_time,
        created_at=created_at,
        finished_at=_utc(row.finished_at),
        expires_at=_utc(row.expires_at),
        output=files,
        error=row.error,
    )


def start(
    engine: Engine,
    job_id: str,
    *,
    client_id: str,
    recipient: str,
    request: str,
    types: Sequence[str],
    since: datetime | None,
    now: datetime,
) -> ExportJob:
    """A new running job; its transaction time is `now` (what the export reflects, and the next `_since`)."""
    row = {
        "id": job_id,
        "client_id": client_id,
        "recipient": recipient,
        "request": request,
        "types": orjson.dumps(list(types)).decode(),
        "since": since,
        "status": RUNNING,
        "progress": "queued",
        "transaction_time": now,
        "created_at": now,
        "output": "[]",
        "error": "",
    }
    with engine.begin() as conn:
        conn.execute(insert(export_jobs).values(row))
    found = get(engine, job_id)
    assert found is not None
    return found


def get(engine: Engine, job_id: str) -> ExportJob | None:
    with engine.connect() as conn:
        row = conn.execute(select(export_jobs).where(export_jobs.c.id == job_id)).first()
    return _job(row) if row is not None else None


def of_client(engine: Engine, job_id: str, client_id: str) -> ExportJob | None:
    """The job, only when that client started it: another client's job is, to it, not there."""
    job = get(engine, job_id)
    return job if job is not None and job.client_id == client_id else None


def running_of(engine: Engine, client_id: str) -> list[ExportJob]:
    t = export_jobs
    with engine.connect() as conn:
        rows = conn.execute(select(t).where((t.c.client_id == client_id) & (t.c.status == RUNNING))).all()
    return [_job(r) for r in rows]


def advance(engine: Engine, job_id: str, progress: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(progress=progress))


def finish(engine: Engine, job_id: str, files: Sequence[ExportFile], now: datetime, expires_at: datetime) -> bool:
    """The job complete with its files; False when it was cancelled meanwhile (its row is gone)."""
    output = orjson.dumps([{"type": f.type, "file": f.file, "count": f.count} for f in files]).decode()
    t = export_jobs
    with engine.begin() as conn:
        done = conn.execute(
            update(t)
            .where((t.c.id == job_id) & (t.c.status == RUNNING))
            .values(status=COMPLETE, progress="complete", output=output, finished_at=now, expires_at=expires_at)
        )
    return done.rowcount == 1


def fail(engine: Engine, job_id: str, reason: str, now: datetime, expires_at: datetime) -> None:
    t = export_jobs
    with engine.begin() as conn:
        conn.execute(
            update(t)
            .where((t.c.id == job_id) & (t.c.status == RUNNING))
            .values(status=FAILED, progress="failed", error=reason, finished_at=now, expires_at=expires_at)
        )


def remove(engine: Engine, job_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(export_jobs).where(export_jobs.c.id == job_id))


def expired(engine: Engine, now: datetime) -> list[str]:
    """Finished jobs whose time is up."""
    t = export_jobs
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.id).where(t.c.expires_at <= now)).all()
    return [r.id for r in rows]


def left_running(engine: Engine) -> list[str]:
    """Jobs still running in the table: at server start, those a stopped server left (the work runs in the
    server's process, so they will never finish)."""
    with engine.connect() as conn:
        rows = conn.execute(select(export_jobs.c.id).where(export_jobs.c.status == RUNNING)).all()
    return [r.id for r in rows]
