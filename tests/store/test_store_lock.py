"""One writer per state store, with real processes: a second `sis2fhir sync` (or `outbox retry`) on the same SQLite
or PostgreSQL store waits for the first, then finds "0 changes", or gives up with exit 5 and says why; a holder
killed with SIGKILL never leaves the store locked; two syncs started at once deliver everything exactly once.

To hold the lock for as long as a test needs, the first sync also delivers to a FHIR "server" that accepts
connections and never answers (a socket that listens and never accepts): the sync holds the store while it waits
for the CapabilityStatement, and goes on (the recipient unreachable, its items queued) when the socket closes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from sis2fhir.config import shown_store_url
from sis2fhir.store.lock import ADVISORY_KEY, StoreLockError, WriterLock
from sis2fhir.store.schema import disclosures, outbox
from tests.end_to_end.test_sync_fhir import identifiers_in_ndjson, identifiers_on_server, seed_patients, write_config
from tests.support import network, paths
from tests.support.postgres import new_database

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"
AS_OF = "2026-03-31"
SIS2FHIR = str(Path(sys.executable).parent / "sis2fhir")
BUSY = 5  # Exit.STORE_BUSY, as documented in the README


class SilentServer:
    """A TCP port that takes connections into its backlog and never answers them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/fhir"

    def close(self) -> None:  # the waiting connections are reset: the sync sees the recipient unreachable
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def start(*args: str, wait: float, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # a run without a config file has the made-up district's identity, which network delivery needs (and every
    # run of a test must share, so that their identifiers agree)
    identity = {} if "--config" in args else network.env()
    environ = {**os.environ, "SIS2FHIR_STORE_LOCK_WAIT_SECONDS": str(wait), **identity, **(env or {})}
    with log.open("wb") as f:
        return subprocess.Popen(
            [SIS2FHIR, *args], stdout=f, stderr=subprocess.STDOUT, env=environ, start_new_session=True, cwd=log.parent
        )


def run(*args: str, wait: float, log: Path) -> tuple[int, str]:
    proc = start(*args, wait=wait, log=log)
    proc.wait(timeout=600)
    return proc.returncode, log.read_text()


def sync_args(out: Path, *extra: str) -> list[str]:
    return ["sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(out), *extra]


def wait_for(condition, proc: subprocess.Popen[bytes], what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def holds_sqlite_lock(out: Path, proc: subprocess.Popen[bytes]) -> bool:
    lock = out / "state.sqlite.lock"
    return lock.exists() and f"pid {proc.pid}" in lock.read_text()


def changes(output: str) -> int | None:
    """The summary's last line says "<n> changes."; None when the run did not get that far."""
    found = re.findall(r"^(\d+) changes[.:]", output, flags=re.M)
    return int(found[-1]) if found else None


def flat(output: str) -> str:
    """The output with its line wrapping undone (messages are wrapped at the terminal's width)."""
    return " ".join(output.split())


def no_traceback(output: str) -> None:
    assert "Traceback" not in output, output


def assert_each_delivery_recorded_once(store_url: str) -> None:
    engine = create_engine(store_url)
    with engine.connect() as conn:
        repeated = conn.execute(
            select(disclosures.c.outbox_key).group_by(disclosures.c.outbox_key).having(func.count() > 1)
        ).all()
        keys = conn.execute(select(func.count(), func.count(outbox.c.key.distinct())).select_from(outbox)).one()
    engine.dispose()
    assert repeated == []
    assert keys[0] == keys[1] > 0


def ndjson_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.ndjson"))}


def hidden_files(out: Path) -> list[str]:
    return [p.name for p in out.glob("*/.*")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The folder a single clean run writes."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code, output = run(*sync_args(out), wait=0, log=out.parent / "log")
    assert code == 0, output
    return ndjson_files(out)


# --- SQLite --------------------------------------------------------------------------------------------------------


def test_a_second_writer_gives_up_with_exit_5_and_says_who_holds_the_store(
    silent: SilentServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    holder = start(*sync_args(out, "--destination", silent.url), wait=0, log=tmp_path / "holder.log")
    wait_for(lambda: holds_sqlite_lock(out, holder), holder, "the first sync took the lock")

    code, output = run(*sync_args(out), wait=0.5, log=tmp_path / "second.log")
    assert code == BUSY, output
    assert f"another sis2fhir command (sync, pid {holder.pid}) is writing to this state store" in flat(output)
    no_traceback(output)

    store = ["--store", f"sqlite:///{out / 'state.sqlite'}"]
    code, output = run("outbox", "retry", *store, wait=0.5, log=tmp_path / "retry.log")
    assert code == BUSY and "is writing to this state store" in flat(output), output
    code, output = run("outbox", "replay", *store, wait=0, log=tmp_path / "replay.log")
    assert code == BUSY, output
    # reading does not wait for the writer
    for i, read in enumerate((["outbox", "list"], ["outbox", "dead"], ["pending"], ["disclosures", "--student", "x"])):
        code, output = run(*read, *store, wait=0, log=tmp_path / f"read{i}.log")
        assert code == 0, output

    silent.close()
    assert holder.wait(timeout=600) == 4, (tmp_path / "holder.log").read_text()  # its FHIR items wait in the outbox
    assert changes((tmp_path / "holder.log").read_text()) == 2 * 152  # the folder's and the FHIR server's


def test_a_second_writer_waits_for_the_first_and_then_has_0_changes(
    silent: SilentServer, tmp_path: Path, reference: dict[str, bytes]
) -> None:
    out = tmp_path / "out"
    holder = start(*sync_args(out, "--destination", silent.url), wait=0, log=tmp_path / "holder.log")
    wait_for(lambda: holds_sqlite_lock(out, holder), holder, "the first sync took the lock")
    second = start(*sync_args(out), wait=600, log=tmp_path / "second.log")
    wait_for(lambda: "waiting up to 600 s" in flat((tmp_path / "second.log").read_text()), second, "it waits")

    silent.close()
    assert holder.wait(timeout=600) == 4
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    assert changes((tmp_path / "holder.log").read_text()) == 2 * 152
    assert changes((tmp_path / "second.log").read_text()) == 0
    assert ndjson_files(out) == reference and hidden_files(out) == []
    assert_each_delivery_recorded_once(f"sqlite:///{out / 'state.sqlite'}")


def test_a_holder_killed_with_sigkill_leaves_the_store_unlocked(silent: SilentServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = start(*sync_args(out, "--destination", silent.url), wait=0, log=tmp_path / "holder.log")
    wait_for(lambda: holds_sqlite_lock(out, holder), holder, "the first sync took the lock")
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)

    code, output = run(*sync_args(out), wait=0, log=tmp_path / "after.log")  # no waiting at all
    assert code == 0, output
    assert changes(output) == 152


@pytest.mark.integration
@pytest.mark.parametrize("wait", [0, 600])
def test_two_syncs_started_at_once_deliver_everything_once(fhir_server: str, tmp_path: Path, wait: float) -> None:
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "sis2fhir.yaml", namespace)
    seed_patients(fhir_server, f"{namespace}:state-student-id")
    out = tmp_path / "out"
    args = sync_args(out, "--config", str(config), "--destination", fhir_server)
    procs = [start(*args, wait=wait, log=tmp_path / f"sync{i}.log") for i in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    outputs = [(tmp_path / f"sync{i}.log").read_text() for i in range(2)]
    for output in outputs:
        no_traceback(output)

    first = next(i for i in range(2) if changes(outputs[i]) == 2 * 152 and codes[i] == 0)
    other, other_code = outputs[1 - first], codes[1 - first]
    # the other one either waited and found nothing to do, or (no wait allowed) met the first one at work
    if other_code == 0:
        assert changes(other) == 0
    else:
        assert wait == 0 and other_code == BUSY, other
        assert "another sis2fhir command (sync, pid" in flat(other)

    for rtype, kind in (("Observation", "attendance-summary"), ("Consent", "consent")):
        on_server = identifiers_on_server(fhir_server, rtype, f"{namespace}:{kind}")
        assert set(on_server) == identifiers_in_ndjson(out, rtype)
        assert max(on_server.values()) == 1
    for path in out.glob("*/*.ndjson"):
        ids = [line.split(b'"id":"', 1)[1].split(b'"', 1)[0] for line in path.read_bytes().splitlines()]
        assert len(ids) == len(set(ids)), path
    assert_each_delivery_recorded_once(f"sqlite:///{out / 'state.sqlite'}")


# --- PostgreSQL ----------------------------------------------------------------------------------------------------


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[str]:
    """A fresh database, addressed with a password in the URL (trust auth ignores it; messages must not show it)."""
    yield new_database(postgres_url, "lock").replace("postgres@", "postgres:s3cret-pw@")


def pg_holder_running(store: str) -> bool:
    engine = create_engine(store)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'sis2fhir sync' "
                        "AND l.classid::bigint = :hi AND l.objid::bigint = :lo"
                    ),
                    {"hi": (ADVISORY_KEY >> 32) & 0xFFFFFFFF, "lo": ADVISORY_KEY & 0xFFFFFFFF},
                ).scalar()
            )
    finally:
        engine.dispose()


@pytest.mark.integration
def test_postgres_a_second_writer_gives_up_with_exit_5_and_sigkill_frees_the_lock(
    silent: SilentServer, pg_store: str, tmp_path: Path
) -> None:
    store = ["--store", pg_store]
    holder = start(*sync_args(tmp_path / "a", *store, "--destination", silent.url), wait=0, log=tmp_path / "h.log")
    wait_for(lambda: pg_holder_running(pg_store), holder, "the first sync took the advisory lock")

    code, output = run(*sync_args(tmp_path / "b", *store), wait=0.5, log=tmp_path / "second.log")
    assert code == BUSY, output
    assert "another sis2fhir command (sync, server backend pid" in flat(output)
    assert "s3cret-pw" not in output and "***" in output
    no_traceback(output)
    code, output = run("outbox", "retry", *store, wait=0, log=tmp_path / "retry.log")
    assert code == BUSY, output

    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)
    # the server ends the killed client's session when its socket closes; allow it a moment, no more
    code, output = run(*sync_args(tmp_path / "b", *store), wait=30, log=tmp_path / "after.log")
    assert code == 0, output
    assert changes(output) == 152


@pytest.mark.integration
def test_postgres_two_syncs_started_at_once_record_everything_once(pg_store: str, tmp_path: Path) -> None:
    args = sync_args(tmp_path / "out", "--store", pg_store)
    procs = [start(*args, wait=600, log=tmp_path / f"sync{i}.log") for i in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    outputs = [(tmp_path / f"sync{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], outputs
    assert sorted(changes(o) for o in outputs) == [0, 152]
    assert_each_delivery_recorded_once(pg_store)


# --- the lock itself -----------------------------------------------------------------------------------------------


def test_an_in_memory_store_takes_no_lock(tmp_path: Path) -> None:
    with WriterLock("sqlite://", "sync", 0), WriterLock("sqlite://", "sync", 0):
        pass  # one process's own database: no other writer can reach it


def test_a_database_this_cannot_lock_is_refused_with_its_password_hidden() -> None:
    with pytest.raises(StoreLockError) as e:
        WriterLock("mysql://u:hunter2@db.example.org/s", "sync").acquire()
    assert "hunter2" not in str(e.value) and "mysql" in str(e.value)
    assert "hunter2" not in shown_store_url("postgresql+psycopg://u:hunter2@h/db")
