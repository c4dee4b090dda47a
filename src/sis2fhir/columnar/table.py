"""attendance.csv in DuckDB: read once in parallel, each row resolved onto roster keys and given a status.

`att` holds the file's rows as text (DuckDB's rowid is the row's position: line = rowid + 2, header line 1, as the
file's shape is plain: shape.py); `t` holds, per row, the resolved student, school, day offset, category,
hundredths and reason (values.py) and one status: COUNTED (a school day in membership up to the as-of date),
OUTSIDE (dated outside the school year), AFTER (after the as-of date), REJECTED (not enrolled, outside the
membership, not a school day) or UNCLEAN (a value the tables do not resolve: the Python reader reads that row).
The database lives in a temporary folder with a memory limit and spills there: memory does not grow with rows.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from sis2fhir.columnar.values import (
    COMBO_COLUMNS,
    categories_of,
    combos,
    dates_of,
    durations_of,
    reasons_of,
    schools_of,
)
from sis2fhir.engine import Rules
from sis2fhir.read.attendance_values import Resolver
from sis2fhir.read.lines import MAX_LINE_BYTES
from sis2fhir.read.quotes import FIELD_LIMIT
from sis2fhir.records import Roster

COUNTED, OUTSIDE, AFTER, REJECTED, UNCLEAN = 0, 1, 2, 3, 4


class Unfit(Exception):
    """DuckDB could not read the file as plain CSV (ragged row, not UTF-8, overlong value): the streaming reader
    reads it and reports what is wrong, row by row."""


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class AttendanceTable:
    """One attendance.csv loaded; `names` its header's columns (shape.header_of)."""

    def __init__(self, path: Path, names: list[str], workdir: Path, threads: int, memory_limit: str) -> None:
        self.names = names
        self.workdir = workdir
        self.con = duckdb.connect(
            ":memory:",
            config={
                "threads": threads or os.cpu_count() or 1,
                "memory_limit": memory_limit,
                "temp_directory": str(workdir / "spill"),
                "preserve_insertion_order": True,  # rowid follows the file: the line of a row
            },
        )
        columns = ", ".join(f"{_literal(n)}: 'VARCHAR'" for n in names)
        try:
            self.con.execute(
                f"CREATE TABLE att AS SELECT * FROM read_csv(?, header = true, columns = {{{columns}}}, "
                "auto_detect = false, delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
                f"null_padding = false, max_line_size = {MAX_LINE_BYTES}, parallel = true)",
                [str(path)],
            )
        except duckdb.Error as exc:
            self.close()
            raise Unfit(str(exc).splitlines()[0]) from None
        lengths = ", ".join(f"strlen(coalesce({q(n)}, ''))" for n in names)
        longest = self.one(f"SELECT max(greatest({lengths}, 0)) FROM att")
        if longest is not None and longest >= FIELD_LIMIT:
            self.close()
            raise Unfit("a value is longer than the csv module's field limit")
        self.rows = int(self.one("SELECT count(*) FROM att") or 0)

    def close(self) -> None:
        self.con.close()

    def one(self, sql: str) -> Any:
        row = self.con.execute(sql).fetchone()
        return None if row is None else row[0]

    def col(self, name: str, default: str) -> str:
        """The column as text ('' for an empty field), or a constant when the file has no such column."""
        return f"coalesce(a.{q(name)}, '')" if name in self.names else _literal(default)

    def distinct(self, name: str) -> list[str]:
        if name not in self.names:
            return []
        return [r[0] for r in self.con.execute(f"SELECT DISTINCT coalesce({q(name)}, '') FROM att").fetchall()]

    def load(self, table: str, columns: dict[str, str], rows: Iterable[tuple[Any, ...]]) -> None:
        """A table from Python rows (through a CSV file: DuckDB has no faster way in without numpy or arrow)."""
        path = self.workdir / f"{table}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
                tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows
            )
        spec = ", ".join(f"{_literal(c)}: {_literal(t)}" for c, t in columns.items())
        self.con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_csv(?, header = false, columns = {{{spec}}}, "
            "auto_detect = false, delim = ',', quote = '\"', escape = '\"', allow_quoted_nulls = false)",
            [str(path)],
        )
        path.unlink()

    def resolve(self, roster: Roster, rules: Rules, resolver: Resolver) -> None:
        """Make `t`: each row's keys, values and status (the module's docstring)."""
        c = self.col
        self.load(
            "students",
            {"sid": "VARCHAR", "state": "VARCHAR"},
            ((sid, st.state_id or "") for sid, st in roster.students.items()),
        )
        self.load(
            "vschool", {"raw": "VARCHAR", "school": "VARCHAR"}, schools_of(self.distinct("schoolSourcedId"), resolver)
        )
        self.load("vdate", {"raw": "VARCHAR", "o": "INTEGER", "v": "INTEGER"}, dates_of(self.distinct("date"), rules))
        cats = categories_of(self.distinct("category"))
        self.load("vcat", {"raw": "VARCHAR", "cat": "VARCHAR"}, cats)
        durations = durations_of(self.distinct("duration"), resolver) if "duration" in self.names else [("", 100)]
        self.load("vdur", {"raw": "VARCHAR", "h": "INTEGER"}, durations)
        reasons = reasons_of(self.distinct("reason"), resolver) if "reason" in self.names else [("", "")]
        self.load("vreason", {"raw": "VARCHAR", "reason": "VARCHAR"}, reasons)
        types = {n: "BOOLEAN" if n.startswith(("absent_", "presence", "m_")) else "INTEGER" for n in COMBO_COLUMNS}
        types.update(cat="VARCHAR", reason="VARCHAR")
        found = combos((v for _, v in cats), (h for _, h in durations), (r for _, r in reasons), rules)
        self.load("combos", types, (x.row() for x in found))
        base = rules.base
        self.load(
            "mem",
            {"sid": "VARCHAR", "school": "VARCHAR", "b": "INTEGER", "e": "INTEGER"},
            ((s, sc, m.begin.toordinal() - base, m.end.toordinal() - base) for (s, sc), m in rules.memberships.items()),
        )
        calendar = rules.calendar_days
        if calendar is not None:
            self.load(
                "cal", {"school": "VARCHAR", "o": "INTEGER"}, ((s, o) for s, os_ in calendar.items() for o in os_)
            )
        state = f"({c('studentIdentifier', '')} = '' OR {c('studentIdentifier', '')} = s.state)"
        clean = (
            "s.sid IS NOT NULL AND sc.school IS NOT NULL AND d.o IS NOT NULL AND k.cat IS NOT NULL "
            "AND du.h IS NOT NULL AND re.reason IS NOT NULL"
        )
        on_calendar = "" if calendar is None else "OR c.o IS NULL"
        join_calendar = "" if calendar is None else "LEFT JOIN cal c ON c.school = sc.school AND c.o = d.o"
        self.con.execute(
            f"""CREATE TABLE t AS SELECT a.rowid AS rn, s.sid, sc.school, d.o, k.cat, du.h, re.reason,
            CASE WHEN NOT ({clean}) THEN {UNCLEAN} WHEN d.v = -1 THEN {OUTSIDE} WHEN d.v = -2 THEN {AFTER}
                 WHEN m.sid IS NULL OR d.o < m.b OR d.o > m.e {on_calendar} THEN {REJECTED} ELSE {COUNTED} END
                 :: TINYINT AS status
            FROM att a
            LEFT JOIN students s ON s.sid = {c("studentSourcedId", "")} AND {state}
            LEFT JOIN vschool sc ON sc.raw = {c("schoolSourcedId", "")}
            LEFT JOIN vdate d ON d.raw = {c("date", "")}
            LEFT JOIN vcat k ON k.raw = {c("category", "")}
            LEFT JOIN vdur du ON du.raw = {c("duration", "")}
            LEFT JOIN vreason re ON re.raw = {c("reason", "")}
            LEFT JOIN mem m ON m.sid = s.sid AND m.school = sc.school
            {join_calendar}"""
        )

    def raw_rows(self, where: str) -> Iterator[tuple[int, list[str]]]:
        """(line, fields) of the rows of `t` matching `where`, in file order."""
        fields = ", ".join(f"coalesce(a.{q(n)}, '')" for n in self.names)
        cur = self.con.execute(
            f"SELECT a.rowid, {fields} FROM att a WHERE a.rowid IN (SELECT rn FROM t WHERE {where}) ORDER BY a.rowid"
        )
        while batch := cur.fetchmany(10_000):
            for r in batch:
                yield int(r[0]) + 2, list(r[1:])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
