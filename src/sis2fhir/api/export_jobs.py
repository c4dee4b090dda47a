"""Running Bulk Data $export jobs in the server's process: one worker thread per job (never a fork), the NDJSON
files under `api.export_dir/<job id>/`, the FERPA record of what was exported, cancellation and expiry.

A job's files are exactly the resources the store serves the client's recipient (`ServedStore.export`: type order,
then id), one file per type, `<Type>.ndjson`, split into `<Type>.2.ndjson`, ... above FILE_LIMIT bytes. They are
served only once the job is complete, and only to the client that started it. The disclosure rows (one per student)
are written before the job is marked complete: no file can be fetched before its record exists (a job cancelled
in between leaves a record of a possible disclosure, the safe side).

Expiry: `api.export_expiry_seconds` after a job finished, its files and its row are removed when next looked at
(status, a file, a kick-off by anyone) and at server start, which also removes jobs a stopped server left running.
Without `api.export_dir` the files go to a temporary folder of this process: a restart loses them (the jobs go
with them at start)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Engine

from sis2fhir.config import Settings
from sis2fhir.service.served import BULK_EXPORT, ServedStore, open_served
from sis2fhir.store import exports, open_store
from sis2fhir.store.exports import ExportFile, ExportJob

log = logging.getLogger("sis2fhir.api.bulk")

FILE_LIMIT = 256 * 1024 * 1024  # bytes per NDJSON file before the next part of the same type begins
_PROGRESS_EVERY = 5000  # resources between updates of X-Progress


class Busy(Exception):
    """This client already has an export running (answered 429 with Retry-After)."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ExportJobs:
    """The jobs of one server process: its store, its export folder, the cancel flags of the jobs it runs."""

    settings: Settings
    engine: Engine
    folder: Path
    expiry: timedelta
    served: ServedStore | None = None  # the app's open served store (else one is opened per job)
    _cancels: dict[str, threading.Event] = field(default_factory=dict)
    _threads: dict[str, threading.Thread] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings, served: ServedStore | None = None) -> ExportJobs:
        folder = settings.api.export_dir
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="sis2fhir-exports-"))
        folder.mkdir(parents=True, exist_ok=True)
        jobs = cls(
            settings=settings,
            engine=open_store(settings.store_url),
            folder=folder,
            expiry=timedelta(seconds=settings.api.export_expiry_seconds),
            served=served,
        )
        jobs.purge_at_start()
        return jobs

    def close(self) -> None:
        """At shutdown: running jobs are told to stop (the next start removes them)."""
        with self._lock:
            for event in self._cancels.values():
                event.set()
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout=5)
        self.engine.dispose()

    # -- the interactions -------------------------------------------------------------------------------------

    def kick_off(
        self, client_id: str, recipient: str, request: str, types: Sequence[str], since: datetime | None
    ) -> ExportJob:
        now = _now()
        self.purge_expired(now)
        with self._lock:
            if any(j.id in self._threads for j in exports.running_of(self.engine, client_id)):
                raise Busy()
            job = exports.start(
                self.engine,
                uuid.uuid4().hex,
                client_id=client_id,
                recipient=recipient,
                request=request,
                types=types,
                since=since,
                now=now,
            )
            cancel = threading.Event()
            thread = threading.Thread(target=self._run, args=(job, cancel), name=f"export-{job.id[:8]}", daemon=True)
            self._cancels[job.id] = cancel
            self._threads[job.id] = thread
        thread.start()
        return job

    def status(self, client_id: str, job_id: str) -> ExportJob | None:
        """The job as its client sees it; None when unknown, another client's, cancelled or expired (removed now)."""
        job = exports.of_client(self.engine, job_id, client_id)
        if job is not None and job.expired(_now()):
            self._remove(job.id)
            return None
        return job

    def cancel(self, client_id: str, job_id: str) -> bool:
        """DELETE: the job stops (if running) and goes with its files; False when the client has no such job."""
        if self.status(client_id, job_id) is None:
            return False
        with self._lock:
            event = self._cancels.get(job_id)
        if event is not None:
            event.set()  # the worker removes what it wrote when it sees the flag
        self._remove(job_id)
        return True

    def file(self, client_id: str, job_id: str, name: str) -> Path | None:
        """A file of a complete job of this client; None otherwise (including names the manifest does not list)."""
        job = self.status(client_id, job_id)
        if job is None or job.status != exports.COMPLETE or name not in {f.file for f in job.output}:
            return None
        path = self.folder / job.id / name
        return path if path.is_file() else None

    def wait(self, job_id: str, timeout: float) -> None:
        """For the benchmark and tests run in-process: until the job's worker ends."""
        with self._lock:
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)

    # -- expiry -----------------------------------------------------------------------------------------------

    def purge_at_start(self) -> None:
        """At server start: expired jobs, and jobs a stopped server left running (one server per store)."""
        for job_id in exports.expired(self.engine, _now()) + exports.left_running(self.engine):
            self._remove(job_id)

    def purge_expired(self, now: datetime) -> None:
        for job_id in exports.expired(self.engine, now):
            self._remove(job_id)

    def _remove(self, job_id: str) -> None:
        exports.remove(self.engine, job_id)
        shutil.rmtree(self.folder / job_id, ignore_errors=True)

    def served_store(self) -> AbstractContextManager[ServedStore]:
        return nullcontext(self.served) if self.served is not None else open_served(self.settings)

    # -- the worker -------------------------------------------------------------------------------------------

    def _run(self, job: ExportJob, cancel: threading.Event) -> None:
        folder = self.folder / job.id
        try:
            files = self._write(job, folder, cancel)
            if files is not None:
                self._finish(job, files, cancel)
        except Exception as e:  # the job fails, the server goes on; no data in the reason
            if cancel.is_set():  # cancelled while writing: its folder went from under it
                return
            reason = f"the export failed: {type(e).__name__}"
            log.error("export %s failed: %s", job.id, type(e).__name__)
            now = _now()
            exports.fail(self.engine, job.id, reason, now, now + self.expiry)
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            with self._lock:
                self._cancels.pop(job.id, None)
                self._threads.pop(job.id, None)
            if cancel.is_set():
                shutil.rmtree(folder, ignore_errors=True)

    def _write(self, job: ExportJob, folder: Path, cancel: threading.Event) -> tuple[list[ExportFile], set[str]] | None:
        folder.mkdir(parents=True, exist_ok=True)
        writer = _Files(folder)
        students: set[str] = set()
        try:
            with self.served_store() as served:
                for n, res in enumerate(served.export(job.recipient, job.types, job.since), start=1):
                    writer.add(res.resource_type, _line(res.content))
                    if res.student:
                        students.add(res.student)
                    if n % _PROGRESS_EVERY == 0:
                        if cancel.is_set():
                            return None
                        exports.advance(self.engine, job.id, f"{n} resources written")
        finally:
            writer.close()
        if cancel.is_set():
            return None
        return writer.files, students

    def _finish(self, job: ExportJob, written: tuple[list[ExportFile], set[str]], cancel: threading.Event) -> None:
        files, students = written
        now = _now()
        asked = urlsplit(job.request)
        what = f"bulk-export {job.id}: {asked.path}{'?' + asked.query if asked.query else ''} ({','.join(job.types)})"
        if students:
            with self.served_store() as served:
                served.record_reads(job.recipient, job.client_id, sorted(students), what, now, channel=BULK_EXPORT)
        if cancel.is_set() or not exports.finish(self.engine, job.id, files, now, now + self.expiry):
            shutil.rmtree(self.folder / job.id, ignore_errors=True)
            return
        log.info("export %s complete: %d files, %d students", job.id, len(files), len(students))


def _line(content: bytes) -> bytes:
    """One NDJSON line: the stored JSON as it is when it is one line (what the NDJSON folder writes)."""
    content = content.rstrip(b"\r\n")
    if b"\n" in content or b"\r" in content:
        content = orjson.dumps(orjson.loads(content))
    return content + b"\n"


class _Files:
    """The job's NDJSON files, one type at a time (the export comes in type order), split at FILE_LIMIT."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: list[ExportFile] = []
        self._out: BinaryIO | None = None
        self._type = ""
        self._part = 0
        self._size = 0
        self._count = 0

    def add(self, resource_type: str, line: bytes) -> None:
        if resource_type != self._type or (self._size + len(line) > FILE_LIMIT and self._count):
            self._next(resource_type)
        assert self._out is not None
        self._out.write(line)
        self._size += len(line)
        self._count += 1

    def _next(self, resource_type: str) -> None:
        self.close()
        self._part = self._part + 1 if resource_type == self._type else 1
        self._type = resource_type
        name = f"{resource_type}.ndjson" if self._part == 1 else f"{resource_type}.{self._part}.ndjson"
        self._out = (self.folder / name).open("wb")
        self.files.append(ExportFile(resource_type, name, 0))
        self._size = self._count = 0

    def close(self) -> None:
        if self._out is None:
            return
        self._out.close()
        self._out = None
        last = self.files[-1]
        self.files[-1] = ExportFile(last.type, last.file, self._count)
