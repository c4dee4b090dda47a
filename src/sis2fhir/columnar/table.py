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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from sis2fhir.columnar.values import (
    COMBO_COLUMNS,
    Combo,
    categories_of,
    combos,
    dates_of,
    durations_of,
    likely_spellings,
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
        self.path = path
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
        self.con.execute("SET enable_progress_bar = false")  # DuckDB draws one on stdout for a long query
        # a value over csv's limit is reported by the Python reader's CSV layer, at a line of its own reckoning: such
        # a value resolves in no table, so resolve measures the columns among the rows left unresolved
        self.long_columns = [n for n in names if n.startswith("student")]
        self.rows = 0

    def read(self) -> None:
        """`att`: the file's rows, as text. Unfit: DuckDB cannot read it as plain CSV (or `interrupt` stopped it).
        DuckDB lets go of the GIL while it reads: another thread may run meanwhile."""
        columns = ", ".join(f"{_literal(n)}: 'VARCHAR'" for n in self.names)
        try:
            self.con.execute(
                f"CREATE TABLE att AS SELECT * FROM read_csv(?, header = true, columns = {{{columns}}}, "
                "auto_detect = false, delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
                f"null_padding = false, max_line_size = {MAX_LINE_BYTES}, parallel = true)",
                [str(self.path)],
            )
        except duckdb.Error as exc:
            raise Unfit(str(exc).splitlines()[0]) from None
        self.rows = int(self.one("SELECT count(*) FROM att") or 0)
        if self.rows >= 1 << 32:  # `t` keeps a row's position in 32 bits (resolve)
            raise Unfit("more than 4,294,967,295 rows")

    def interrupt(self) -> None:
        """Stop the query running in another thread (`read`): it raises Unfit there."""
        self.con.interrupt()

    def close(self) -> None:
        self.con.close()

    def one(self, sql: str) -> Any:
        row = self.con.execute(sql).fetchone()
        return None if row is None else row[0]

    def col(self, name: str, default: str) -> str:
        """The column as text ('' for an empty field), or a constant when the file has no such column."""
        return f"coalesce(a.{q(name)}, '')" if name in self.names else _literal(default)

    def distinct(self, *names: str, measured: Sequence[str] = (), where: str = "") -> list[list[str]]:
        """The distinct values of each column of `names` ([] for a column the file does not have) among the rows of
        `att` matching `where` (all: ""), from one scan of their combinations, in which the longest value of each
        column of `measured` is found too. Unfit: a value over csv's limit."""
        present = [n for n in names if n in self.names]
        found: dict[str, set[str]] = {n: set() for n in present}
        columns = [f"coalesce({q(n)}, '')" for n in present]
        lengths = [f"max(strlen(coalesce({q(n)}, '')))" for n in measured if n in self.names]
        longest = 0
        if columns or lengths:
            group = f" GROUP BY {', '.join(columns)}" if columns else ""
            sql = f"SELECT {', '.join(columns + lengths)} FROM att a{f' WHERE {where}' if where else ''}{group}"
            for row in self.con.execute(sql).fetchall():
                for n, v in zip(present, row[: len(present)], strict=True):
                    found[n].add(v)
                longest = max([longest, *(n or 0 for n in row[len(present) :])])
        if longest >= FIELD_LIMIT or any(len(v) >= FIELD_LIMIT for values in found.values() for v in values):
            raise Unfit("a value is longer than the csv module's field limit")
        return [sorted(found.get(n, ())) for n in names]

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
        """Make `t`: each row's student x school (`kid`, an index of `keys`), school (`sch`, of `schools`), day
        offset `o`, combination of values `x` (values.Combo, table `combos`) and status (the module's docstring).

        The tables of values are made first from the spellings most exports use (values.likely_spellings), then,
        if rows are left UNCLEAN, from the distinct values of those rows only, which are resolved again. A row
        whose values still do not resolve, or whose student, school and membership do not match exactly (a padded
        or state id, an identifier the roster does not know, no enrollment there) stays UNCLEAN: the Python reader
        resolves and reports it. A value over csv's limit resolves in no table (the roster's ids are read by csv),
        so it is among the UNCLEAN rows' values, where `distinct` finds it (Unfit)."""
        self.keys = list(rules.memberships)
        self.schools = sorted({school for _, school in self.keys})
        if len(self.schools) >= 1 << 15:  # `t` keeps a row's school in 16 bits
            raise Unfit("more than 32,767 schools")
        sch = {school: i for i, school in enumerate(self.schools)}
        base, students = rules.base, roster.students
        spellings = ((raw, sch[s]) for raw, s in schools_of(resolver.schools, resolver) if s in sch)
        self.load("sraw", {"raw": "VARCHAR", "sch": "INTEGER"}, spellings)

        def memberships() -> Iterable[tuple[Any, ...]]:
            for kid, (sid, school) in enumerate(self.keys):
                student = students.get(sid)
                if student is None:
                    continue  # enrollments of a student users.csv does not have: the reader reports its rows
                m = rules.memberships[(sid, school)]
                yield (
                    kid,
                    sid,
                    student.state_id or "",
                    sch[school],
                    m.begin.toordinal() - base,
                    m.end.toordinal() - base,
                )

        self.load(
            "sm",
            {"kid": "INTEGER", "sid": "VARCHAR", "state": "VARCHAR", "sch": "INTEGER", "b": "INTEGER", "e": "INTEGER"},
            memberships(),
        )
        calendar = rules.calendar_days
        if calendar is not None:
            self.load(
                "cal",
                {"sch": "INTEGER", "o": "INTEGER"},
                ((sch[s], o) for s, offsets in calendar.items() if s in sch for o in offsets),
            )
        self.vocabulary = Vocabulary(self, rules, resolver)
        self.vocabulary.learn(*likely_spellings(rules))
        self.con.execute(f"CREATE TABLE t AS {self._resolved(calendar is not None)}")
        unclean = f"a.rowid IN (SELECT rn FROM t WHERE status = {UNCLEAN})"
        if not self.one(f"SELECT count(*) FROM t WHERE status = {UNCLEAN}"):
            return
        measured = [*self.long_columns, "schoolSourcedId"]
        found = self.distinct("date", "category", "duration", "reason", measured=measured, where=unclean)
        if self.vocabulary.learn(*found):  # those rows again, with the values learnt from them
            self.con.execute(f"CREATE TABLE t2 AS {self._resolved(calendar is not None)} WHERE {unclean}")
            self.con.execute(f"DELETE FROM t WHERE status = {UNCLEAN}")
            self.con.execute("INSERT INTO t SELECT * FROM t2")
            self.con.execute("DROP TABLE t2")

    def _resolved(self, calendar: bool) -> str:
        """The query of `t`'s rows from `att a` (resolve)."""
        c = self.col
        state = c("studentIdentifier", "")
        on_calendar = "OR cal.o IS NULL" if calendar else ""
        join_calendar = "LEFT JOIN cal ON cal.sch = sm.sch AND cal.o = d.o" if calendar else ""
        return f"""SELECT a.rowid :: UINTEGER AS rn, sm.kid, sm.sch :: SMALLINT AS sch, d.o :: SMALLINT AS o,
            cr.id :: SMALLINT AS x,
            CASE WHEN sm.kid IS NULL OR d.o IS NULL OR cr.id IS NULL THEN {UNCLEAN}
                 WHEN d.v = -1 THEN {OUTSIDE} WHEN d.v = -2 THEN {AFTER}
                 WHEN d.o < sm.b OR d.o > sm.e {on_calendar} THEN {REJECTED} ELSE {COUNTED} END :: TINYINT AS status
            FROM att a
            LEFT JOIN sraw s ON s.raw = {c("schoolSourcedId", "")}
            LEFT JOIN sm ON sm.sid = {c("studentSourcedId", "")} AND sm.sch = s.sch
                AND ({state} = '' OR {state} = sm.state)
            LEFT JOIN vdate d ON d.raw = {c("date", "")}
            LEFT JOIN craw cr ON cr.cat = {c("category", "")} AND cr.dur = {c("duration", "")}
                AND cr.reason = {c("reason", "")}
            {join_calendar}"""

    def raw_rows(self, where: str) -> Iterator[tuple[int, list[str]]]:
        """(line, fields) of the rows of `t` matching `where`, in file order."""
        fields = ", ".join(f"coalesce(a.{q(n)}, '')" for n in self.names)
        cur = self.con.execute(
            f"SELECT a.rowid, {fields} FROM att a WHERE a.rowid IN (SELECT rn FROM t WHERE {where}) ORDER BY a.rowid"
        )
        while batch := cur.fetchmany(10_000):
            for r in batch:
                yield int(r[0]) + 2, list(r[1:])


class Vocabulary:
    """The raw spellings of dates, categories, durations and reasons resolved so far (by the reader's functions:
    values.py), as the tables `vdate`, `craw` (raw category x duration x reason -> combination) and `combos`. A
    combination keeps its id as more spellings are learnt, so rows of `t` resolved earlier stay right."""

    def __init__(self, table: AttendanceTable, rules: Rules, resolver: Resolver) -> None:
        self.table, self.rules, self.resolver = table, rules, resolver
        self.dates: dict[str, tuple[int, int]] = {}  # raw -> offset, day_offset's verdict
        self.categories: dict[str, str] = {}
        self.durations: dict[str, int] = {} if "duration" in table.names else {"": 100}
        self.reasons: dict[str, str] = {} if "reason" in table.names else {"": ""}
        self.combos: list[Combo] = []  # by id
        self.ids: dict[tuple[str, int, str], int] = {}
        self.tried: set[tuple[int, str]] = set()  # (column, raw) already resolved or not

    def _new(self, column: int, raws: Iterable[str]) -> list[str]:
        fresh = [r for r in raws if (column, r) not in self.tried]
        self.tried.update((column, r) for r in fresh)
        return fresh

    def learn(
        self, dates: Iterable[str], categories: Iterable[str], durations: Iterable[str], reasons: Iterable[str]
    ) -> bool:
        """Resolve the spellings not tried yet and remake the tables if any resolved; True if any did."""
        rules, resolver, names = self.rules, self.resolver, self.table.names
        first = not self.combos
        new_dates = dates_of(self._new(0, dates), rules)
        new_categories = categories_of(self._new(1, categories))
        new_durations = durations_of(self._new(2, durations), resolver) if "duration" in names else []
        new_reasons = reasons_of(self._new(3, reasons), resolver) if "reason" in names else []
        self.dates.update((raw, (offset, verdict)) for raw, offset, verdict in new_dates)
        self.categories.update(new_categories)
        self.durations.update(new_durations)
        self.reasons.update(new_reasons)
        if new_dates or first:
            self.table.load(
                "vdate",
                {"raw": "VARCHAR", "o": "INTEGER", "v": "INTEGER"},
                ((raw, offset, verdict) for raw, (offset, verdict) in self.dates.items()),
            )
        new_values = bool(new_categories or new_durations or new_reasons)
        if new_values or first:
            self._combine()
        return bool(new_dates) or new_values

    def _combine(self) -> None:
        found = combos(self.categories.values(), self.durations.values(), self.reasons.values(), self.rules)
        for x in found:
            if (x.cat, x.h, x.reason) not in self.ids:
                self.ids[(x.cat, x.h, x.reason)] = len(self.combos)
                self.combos.append(x)
        if len(self.combos) >= 1 << 15:  # `t` keeps a row's combination in 16 bits
            raise Unfit("more than 32,767 combinations of category, duration and reason")
        types = {n: "BOOLEAN" if n.startswith(("absent_", "presence", "m_")) else "INTEGER" for n in COMBO_COLUMNS}
        types.update(cat="VARCHAR", reason="VARCHAR")
        table, ids = self.table, self.ids
        table.load("combos", {"id": "INTEGER", **types}, ((i, *x.row()) for i, x in enumerate(self.combos)))
        table.load(
            "craw",
            {"cat": "VARCHAR", "dur": "VARCHAR", "reason": "VARCHAR", "id": "INTEGER"},
            (
                (rc, rd, rr, ids[(vc, h, vr)])
                for rc, vc in self.categories.items()
                for rd, h in self.durations.items()
                for rr, vr in self.reasons.items()
            ),
        )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
