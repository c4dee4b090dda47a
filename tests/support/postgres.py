"""A throwaway PostgreSQL 15 cluster on loopback for tests: initdb in a temp folder, pg_ctl start, stop at the end."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class PostgresUnavailable(RuntimeError):
    pass


def _bin(name: str) -> str:
    # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or (
        [shutil.which(name)] if shutil.which(name) else []
    )
    if not found:
        raise PostgresUnavailable(f"{name} not found: run scripts/install-postgres.sh (Debian package postgresql)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_postgres() -> Iterator[str]:
    """Yields a SQLAlchemy URL of a fresh cluster (trust auth on 127.0.0.1, user postgres)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="sis2fhir-pg-"))
    as_root = os.geteuid() == 0
    if as_root:  # initdb refuses to run as root: the cluster belongs to the postgres user
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)

    def run(*args: str) -> None:
        cmd = list(args)
        if as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {done.stderr[-800:]}")

    port = _free_port()
    data = root / "data"
    run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        try:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def new_database(postgres_url: str, prefix: str) -> str:
    """A fresh, empty database on the suite's PostgreSQL (named `<prefix>_<random>`); its URL."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


STORES = ["sqlite", "postgresql"]  # the params of a fixture that runs its tests on both kinds of store


def new_store_url(request: pytest.FixtureRequest, folder: Path, name: str) -> str:
    """A new, empty store for a fixture parametrised over STORES: the SQLite file `<folder>/<name>.sqlite`, or a
    fresh database `<name>_<random>` of the suite's PostgreSQL (started on first use only: a SQLite run needs
    none)."""
    if request.param == "sqlite":
        return f"sqlite:///{folder / f'{name}.sqlite'}"
    return new_database(request.getfixturevalue("postgres_url"), name)
