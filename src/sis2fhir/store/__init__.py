"""The state store (SQLAlchemy): runs, the outbox and the disclosure log; SQLite by default, PostgreSQL to scale out."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event, inspect, text

from sis2fhir.store.schema import metadata


def open_store(url: str) -> Engine:
    """Connect (creating the tables if needed, adding what a newer release added). `sqlite:///path` or
    `postgresql+psycopg://...`."""
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
    upgrade(engine)
    return engine


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
