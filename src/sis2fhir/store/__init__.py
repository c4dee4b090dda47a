"""The state store (SQLAlchemy): runs, the outbox, the disclosure log, the runs' verdicts and the measured
summaries; SQLite by default, PostgreSQL to scale out. Its tables are made and upgraded by Alembic (migrate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

from sis2fhir.errors import StoreMissing
from sis2fhir.store.migrate import BASE_TABLES, StoreUnrecognised, bring_up_to_date

__all__ = ["StoreMissing", "open_store"]


def open_store(url: str, *, existing: bool = False) -> Engine:
    """Connect, bringing the tables up to date (store/migrate.py: a new store is made by the migrations, a state
    file of an earlier release gets what this one adds, every row kept). `sqlite:///path` or
    `postgresql+psycopg://...`.

    `existing=True` (the operator commands: outbox, pending, disclosures) opens only a store a sync wrote: it
    creates no file and no table, and raises StoreMissing otherwise, so that a mistyped path cannot answer
    "no disclosure recorded" from an empty store made on the spot."""
    if existing:
        _refuse_a_missing_sqlite_file(url)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not existing:  # a store a sync made is in WAL already; an operator command changes no file
                # WAL: readers (outbox list, disclosures) do not block a running sync; NORMAL is durable in WAL mode
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    try:
        if existing:
            # the tables every sync since the first release writes: without them no sync used this store
            missing = sorted(BASE_TABLES - set(inspect(engine).get_table_names()))
            if missing:
                raise StoreMissing(f"the state store has no {', '.join(missing)} table: no sync has used it")
        bring_up_to_date(engine)  # a new store gets its tables; an earlier release's file what this one adds
    except StoreUnrecognised as e:  # some of the tables, not those of a release: touched by no migration
        engine.dispose()
        raise StoreMissing(str(e)) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def _refuse_a_missing_sqlite_file(url: str) -> None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return
    if not u.database or u.database == ":memory:" or u.database.startswith("file::memory:"):
        raise StoreMissing("an in-memory SQLite store holds nothing between runs")
    path = Path(u.database.removeprefix("file:").partition("?")[0])
    if not path.is_file():
        raise StoreMissing(f"there is no file {path.absolute()}" if not path.exists() else f"{path} is not a file")
