"""One writer per state store: a lock that every writing command (`sync`, `outbox retry`, `outbox replay`) holds
for its whole life.

- SQLite: `fcntl.flock` on a file beside the database, `<db>.lock`. The kernel drops the lock when the process
  ends, however it ends (kill -9 included), so a dead holder never leaves the store locked. The file stays; it is
  only a place to lock and says who holds it (command and process id, no secrets).
- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a key derived from a fixed name, taken on
  a connection of its own that stays open for the command's life. The server drops it when that session ends
  (a dead client's socket closes). Advisory locks are per database, so the key is one per store.
- In-memory SQLite (`sqlite://`, `:memory:`, `mode=memory`) lives in one process: there is no second writer to
  keep out, and no lock is taken. Another database (not SQLite, not PostgreSQL) cannot be locked here: refused.

A second writer polls until the first one finishes or `store_lock_wait_seconds` (default 30) has passed, then
stops with `StoreBusy`: the command exits 5 and says which command holds the store.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import NullPool

from sis2fhir.config import shown_store_url
from sis2fhir.errors import StoreBusy, StoreLockError

POLL_SECONDS = 0.2
LOCK_NAME = "sis2fhir state store writer"
# pg_try_advisory_lock takes a signed 64-bit key: the first 8 bytes of a hash of a fixed name
ADVISORY_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)


def sqlite_lock_path(url: URL) -> Path | None:
    """`<db>.lock` beside a SQLite database file; None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):  # sqlite:///file:path?uri=true
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).resolve().with_name(Path(database).name + ".lock")


class WriterLock:
    """Held from `acquire()` until `release()` (or the process ends). Use as a context manager or call both."""

    def __init__(self, url: str, command: str, wait_seconds: float = 30.0) -> None:
        self.url = make_url(url)
        self.command = command
        self.wait_seconds = max(0.0, wait_seconds)
        self._fd: int | None = None
        self._conn: Connection | None = None

    # --- taking it --------------------------------------------------------------------------------------------

    def acquire(self, on_wait: Callable[[str], None] | None = None) -> WriterLock:
        """Take the lock, polling up to `wait_seconds`; `on_wait(holder)` is called once if it must wait."""
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            path = sqlite_lock_path(self.url)
            if path is None:
                return self
            try_once, holder = self._sqlite_attempt(path), lambda: self._sqlite_holder(path)
        elif backend == "postgresql":
            try_once, holder = self._postgres_attempt(), self._postgres_holder
        else:
            raise StoreLockError(
                f"cannot take a writer lock on a {backend} database ({shown_store_url(str(self.url))}): "
                "use SQLite or PostgreSQL"
            )
        deadline = time.monotonic() + self.wait_seconds
        told = False
        while not try_once():
            if time.monotonic() >= deadline:
                self.release()
                raise StoreBusy(
                    f"another sis2fhir command ({holder()}) is writing to this state store "
                    f"({shown_store_url(str(self.url))}); waited {self.wait_seconds:g} s. Wait for it to finish and "
                    "run this again, or let commands wait longer (store_lock_wait_seconds in the config, "
                    "SIS2FHIR_STORE_LOCK_WAIT_SECONDS)."
                )
            if not told and on_wait is not None:
                on_wait(holder())
                told = True
            time.sleep(POLL_SECONDS)
        return self

    def _sqlite_attempt(self, path: Path) -> Callable[[], bool]:
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreLockError(f"cannot open the store's lock file {path}: {e.strerror}") from None
        fd = self._fd

        def attempt() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:  # who holds it, for the message a waiting command prints; best effort (a full disk must not stop us)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{self.command}, pid {os.getpid()}\n".encode(), 0)
            except OSError:
                pass
            return True

        return attempt

    def _sqlite_holder(self, path: Path) -> str:
        try:
            said = path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            said = ""
        return said or "sync or outbox retry/replay"

    def _postgres_attempt(self) -> Callable[[], bool]:
        engine = create_engine(
            self.url, poolclass=NullPool, connect_args={"application_name": f"sis2fhir {self.command}"}
        )
        try:
            self._conn = engine.connect()
        except Exception as e:  # unreachable, refused, bad credentials: the driver's own words, never the URL
            reason = str(getattr(e, "orig", None) or type(e).__name__).strip().splitlines()[0]
            raise StoreLockError(f"the state store {shown_store_url(str(self.url))} cannot be used: {reason}") from None
        conn = self._conn

        def attempt() -> bool:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
            conn.commit()  # a session-level lock outlives the transaction; no transaction stays open while we wait
            return got

        return attempt

    def _postgres_holder(self) -> str:
        if self._conn is None:
            return "sync or outbox retry/replay"
        try:
            # a bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits)
            row = self._conn.execute(
                text(
                    "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"hi": (ADVISORY_KEY >> 32) & 0xFFFFFFFF, "lo": ADVISORY_KEY & 0xFFFFFFFF},
            ).first()
            self._conn.commit()
        except Exception:
            return "sync or outbox retry/replay"
        if row is None:
            return "sync or outbox retry/replay"
        name = (row[0] or "").removeprefix("sis2fhir ").strip()
        return f"{name or 'a session'}, server backend pid {row[1]}"

    # --- letting go -------------------------------------------------------------------------------------------

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._conn is not None:
            # a dedicated connection without a pool (NullPool): closing it ends the session, and PostgreSQL drops a
            # session-level advisory lock with its session
            self._conn.close()
            self._conn = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
