"""Bring a state store to the current tables with the Alembic revisions in store/migrations, keeping every row.

The revisions run in code (a Config built here, no alembic.ini), in one transaction that first takes a lock (SQLite:
BEGIN IMMEDIATE, the database's write lock; PostgreSQL: an advisory lock), so that two commands opening the same old
store do not both upgrade it. A store that is current costs one read of alembic_version and takes no lock.

State files written before the migrations existed have no alembic_version table: they are recognised by their
tables and stamped at the revision whose tables they have (0001: the release before issue 6, 89dafb6; 0002: issue
6, including a file that its ad-hoc upgrade reached only partly, since 0002 adds only what is missing), then
upgraded like any other."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from sis2fhir.store.schema import metadata

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE, FAIL_CLOSED = "0001_baseline", "0002_fail_closed"
BASE_TABLES = frozenset({"runs", "outbox", "disclosures"})  # every release since the first writes these
VERSION_TABLE = "alembic_version"
_PG_LOCK = 0x5152F418  # pg_advisory_xact_lock key: "sis2fhir store migration"


class StoreUnrecognised(Exception):
    """The database holds some of the store's tables but not the tables of any release: not touched."""


def head() -> str:
    """The newest revision (the tables of this release)."""
    return _in_order()[-1]


def current_revision(conn: Connection) -> str | None:
    """The revision stamped in the store, or None (a store from before the migrations, or an empty one)."""
    return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    with engine.connect() as conn:
        return current_revision(conn) == head()


def bring_up_to_date(engine: Engine) -> list[str]:
    """Upgrade the store to head; returns the revisions applied, oldest first (none when it was current)."""
    if is_current(engine):
        return []
    with engine.connect() as conn:
        _lock(conn)
        before = current_revision(conn)  # again, under the lock: another command may have upgraded it meanwhile
        if before is None:
            before = recognise(set(inspect(conn).get_table_names()), conn)
            if before is not None:
                command.stamp(_config(conn), before)
        applied = _between(before, head())
        if applied:
            command.upgrade(_config(conn), "head")
        conn.commit()
    return applied


def recognise(tables: set[str], conn: Connection) -> str | None:
    """The revision a store without alembic_version is at, judged by its tables; None for an empty database."""
    present = tables & set(metadata.tables)
    if not present:
        return None
    if lacking := BASE_TABLES - present:
        raise StoreUnrecognised(
            f"it holds the tables {', '.join(sorted(present))} but not {', '.join(sorted(lacking))}: "
            "not a state store a sis2fhir release wrote"
        )
    have = inspect(conn)
    certainty = "certainty" in {c["name"] for c in have.get_columns("disclosures")}
    indexed = "ix_disclosures_outbox_key" in {i["name"] for i in have.get_indexes("disclosures")}
    if "run_verdicts" in present and certainty and indexed:
        return FAIL_CLOSED
    return BASELINE


@cache
def _in_order() -> tuple[str, ...]:
    """Every revision, oldest first."""
    return tuple(s.revision for s in reversed(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions())))


def _between(before: str | None, after: str) -> list[str]:
    """The revisions after `before` up to `after`, oldest first."""
    order = _in_order()
    return list(order[(order.index(before) + 1 if before is not None else 0) : order.index(after) + 1])


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # pysqlite begins a transaction only before DML: BEGIN here makes the DDL transactional and takes the write
        # lock now (waiting up to the busy timeout for a writer)
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config
