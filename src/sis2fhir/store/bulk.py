"""Many rows into one table, or one statement with many parameter sets, through the DBAPI's executemany with
parameters built here.

`conn.execute(insert(table), rows)` compiles each row's parameters (SQLAlchemy's `construct_params`: 70,778 calls,
0.6 s of CPU in a 20k-student sync, measured 2026-12-02, almost all of them the outbox's, the disclosure log's and
the measured summaries' inserts). Here the statement is compiled once and each value goes through its column
type's bind processor for the dialect, as SQLAlchemy's own execute does, so the rows stored are the same (SQLite:
timestamps as text, booleans as integers; PostgreSQL: psycopg adapts the values itself)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Connection, Table, bindparam, insert
from sqlalchemy.sql.dml import UpdateBase


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) in the caller's transaction. Columns missing from the rows get
    their scalar Python default or their server default, as with SQLAlchemy's insert; rows whose keys differ, or a
    missing column with a callable default, go the ordinary way."""
    if not rows:
        return
    names = list(rows[0])
    keys = set(names)
    missing = [c for c in table.columns if c.name not in keys and c.default is not None]
    if any(not c.default.is_scalar for c in missing) or any(r.keys() != keys for r in rows):  # type: ignore[union-attr]
        conn.execute(insert(table), list(rows))
        return
    defaults = {c.name: c.default.arg for c in missing}  # type: ignore[union-attr]
    if defaults:
        rows = [{**defaults, **r} for r in rows]
    dialect = conn.dialect
    compiled = insert(table).values({n: bindparam(n, type_=table.c[n].type) for n in rows[0]}).compile(dialect=dialect)
    if compiled.escaped_bind_names:  # a column name the dialect's paramstyle cannot spell as it is
        conn.execute(insert(table), list(rows))
        return
    if compiled.positional and compiled.positiontup:  # sqlite3: tuples straight from the dicts
        order = list(compiled.positiontup)
        get = itemgetter(*order)
        params: list[Any] = [get(r) for r in rows] if len(order) > 1 else [(get(r),) for r in rows]
        processed = [(i, p) for i, n in enumerate(order) if (p := _processor(table.c[n], dialect)) is not None]
        if processed:
            params = [_apply(t, processed) for t in params]
    else:  # a named paramstyle (psycopg): dicts
        named = [(n, p) for n in rows[0] if (p := _processor(table.c[n], dialect)) is not None]
        params = [dict(r) for r in rows]
        for n, p in named:
            for d in params:
                if d[n] is not None:
                    d[n] = p(d[n])
    conn.exec_driver_sql(compiled.string, params)


def insert_tuples(conn: Connection, table: Table, names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """As `insert_many`, each row a tuple of the `names` columns' values (no dict per row): on a positional
    paramstyle (sqlite3) they go to the DBAPI as they are, put through their columns' bind processors; otherwise,
    or when a column left out has a default, as dicts by `insert_many`."""
    if not rows:
        return
    dialect = conn.dialect
    given = set(names)
    compiled = insert(table).values({n: bindparam(n, type_=table.c[n].type) for n in names}).compile(dialect=dialect)
    defaulted = any(c.name not in given and c.default is not None for c in table.columns)
    if defaulted or compiled.escaped_bind_names or not (compiled.positional and compiled.positiontup):
        insert_many(conn, table, [dict(zip(names, r, strict=True)) for r in rows])
        return
    processed = [(i, p) for i, n in enumerate(names) if (p := _processor(table.c[n], dialect)) is not None]
    params: Sequence[tuple[Any, ...]] = [_apply(r, processed) for r in rows] if processed else rows
    order = [list(names).index(n) for n in compiled.positiontup]
    if order != list(range(len(names))):
        pick = _getter(order)
        params = [pick(r) for r in params]
    conn.exec_driver_sql(compiled.string, list(params))


def execute_many(conn: Connection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]) -> int:
    """`statement` (an UPDATE or DELETE by `bindparam`s) once per row, in the caller's transaction: compiled once and
    run by one executemany. A row gives the values of the bind parameters it names; the others are the values in
    the statement (a batch's timestamp), each put through its type's bind processor once, not once per row.
    Returns the number of rows the statement matched, added up over the parameter sets (the DBAPI's rowcount)."""
    if not rows:
        return 0
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect)
    binds = compiled.binds
    if compiled.escaped_bind_names or any(b.expanding or b.literal_execute for b in binds.values()):
        return int(conn.execute(statement, list(rows)).rowcount)  # IN (...) lists and the like: the ordinary way
    given = set(rows[0])
    per_row = [n for n in binds if n in given]
    fixed: dict[str, Any] = {}
    for n, b in binds.items():
        if n not in given:
            p = _bind_processor(b.type, dialect)
            value = b.effective_value
            fixed[n] = p(value) if p is not None and value is not None else value
    # each row's values in `per_row` order, then the fixed ones: a tuple per row, picked into the statement's order
    # by one itemgetter (a dict per row, read name by name, was most of the time of confirming 76k disclosure-log
    # rows in place, measured at 100k students)
    names = per_row + [n for n in fixed]
    processed = [(i, p) for i, n in enumerate(per_row) if (p := _bind_processor(binds[n].type, dialect)) is not None]
    of_row = _getter(per_row)
    tail = tuple(fixed.values())
    values = [of_row(r) for r in rows]
    if processed:
        values = [_apply(v, processed) for v in values]
    if compiled.positional and compiled.positiontup is not None:  # sqlite3: tuples in the statement's order
        pick = _getter([names.index(n) for n in compiled.positiontup])
        params: list[Any] = [pick(v + tail) for v in values]
    else:  # a named paramstyle (psycopg): dicts
        params = [dict(zip(names, v + tail, strict=True)) for v in values]
    return int(conn.exec_driver_sql(compiled.string, params).rowcount)


def _getter(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """These keys' values of a row (a mapping or a tuple), as a tuple, however many keys there are."""
    if not keys:
        return lambda _: ()
    if len(keys) == 1:
        key = keys[0]
        return lambda r: (r[key],)
    return itemgetter(*keys)


def _apply(values: tuple[Any, ...], processed: list[tuple[int, Callable[[Any], Any]]]) -> tuple[Any, ...]:
    row = list(values)
    for i, p in processed:
        if row[i] is not None:
            row[i] = p(row[i])
    return tuple(row)


def _processor(column: Column[Any], dialect: Any) -> Callable[[Any], Any] | None:
    return _bind_processor(column.type, dialect)


def _bind_processor(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The type's bind processor for the dialect, remembering its last value: a batch's rows share their timestamp
    (the same object), which SQLite's is formatted into text once, not once per row."""
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    last: list[Any] = [_NOTHING, None]

    def once(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, process(value)
        return last[1]

    return once


_NOTHING = object()
