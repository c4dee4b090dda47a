"""The state store (SQLAlchemy): runs, the outbox and the disclosure log; SQLite by default, PostgreSQL to scale out."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from sis2fhir.errors import StoreMissing
from sis2fhir.store.schema import metadata


def open_store(url: str, *, existing: bool = False) -> Engine:
    """Connect (creating the tables if needed, adding what a newer release added). `sqlite:///path` or `postgresql+psycopg://...`.

    `existing=True` (the operator commands: outbox, pending, disclosures) opens only a store a sync wrote: it
    creates no file and no table, and raises StoreMissing otherwise, so that a mistyped path cannot answer
    "no disclosure recorded" from an empty store made on the spot."""
    if existing:
        _refuse_a_missing_sqlite_file(url)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            if not existing:  # a store a sync made is in WAL already; an operator command changes no file
                # WAL: readers (outbox list, disclosures) do not block a running sync; NORMAL is durable in WAL mode
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    if existing:
        # the tables every sync since the first release writes; newer ones (run_verdicts) may be missing from
        # an older state file and are read as empty
        missing = sorted({"runs", "outbox", "disclosures"} - set(inspect(engine).get_table_names()))
        if missing:
            engine.dispose()
            raise StoreMissing(f"the state store has no {', '.join(missing)} table: no sync has used it")
        upgrade(engine)  # a state file of an earlier release gets the columns this one reads (additive only)
        return engine
    metadata.create_all(engine)
    upgrade(engine)
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


def upgrade(engine: Engine) -> list[str]:
    """Bring a state file written by an earlier release up to the current tables, keeping every row.

    `create_all` makes missing tables only; columns and indexes added to existing tables since are added here:
    `ALTER TABLE ... ADD COLUMN` with the column's default (SQLite and PostgreSQL both take it), then the missing
    indexes. Additive only: nothing is renamed or dropped. Returns what was added."""
    added: list[str] = []
    have = inspect(engine)
    existing_tables = set(have.get_table_names())
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if table.name not in existing_tables:
                continue
            columns = {c["name"] for c in have.get_columns(table.name)}
            for column in table.columns:
                if column.name in columns:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                default = column.server_default.arg if column.server_default is not None else None  # type: ignore[attr-defined]
                clause = f" DEFAULT '{default}'" if isinstance(default, str) else ""
                null = " NOT NULL" if not column.nullable and clause else ""
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{clause}{null}'))
                added.append(f"{table.name}.{column.name}")
            indexes = {i["name"] for i in have.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexes:
                    index.create(conn, checkfirst=True)
                    added.append(str(index.name))
    return added
