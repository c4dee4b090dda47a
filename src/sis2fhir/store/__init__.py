"""The state store (SQLAlchemy): runs, the outbox and the disclosure log; SQLite by default, PostgreSQL to scale out."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event

from sis2fhir.store.schema import metadata


def open_store(url: str) -> Engine:
    """Connect (creating the tables if needed). `sqlite:///path` or `postgresql+psycopg://...`."""
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL: readers (outbox list, disclosures) do not block a running sync; NORMAL is durable in WAL mode
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    metadata.create_all(engine)
    return engine
