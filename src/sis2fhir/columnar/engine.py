"""The columnar engine: attendance.csv tallied by DuckDB, the rare rows that do not count cleanly by the Python reader.

Most rows of a real export are clean: a known student, school, ISO date, category, duration and reason, counted on
a school day in membership, the only row of its student, school and day. DuckDB resolves and sums those, in
parallel, per student x school (table.py, values.py). Every other row, and every row of a student x school that
has such a row or a second row for a day, goes by its line through the Python reader and the streaming tally's own
`Tallies.consume`, in file order: so the row report (file, line, column, message), the first-row-wins rule for
duplicates, the rejected rows that withhold a student and the first OUTSIDE_LISTED rows outside the year listed
by line are exactly the streaming engine's. The two tallies cover disjoint students x schools and add up.

A file whose shape is odd (shape.py), a zip, Ed-Fi XML, or a file under `min_bytes` is read by the streaming
engine instead; `MeasuredAttendance.engine` and `.fallback` say which engine read it and why.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from sis2fhir.absence_days import PLANES, add_day, new_masks
from sis2fhir.columnar.shape import header_of, odd_file, unfit
from sis2fhir.columnar.table import AFTER, COUNTED, OUTSIDE, REJECTED, UNCLEAN, AttendanceTable, Unfit
from sis2fhir.columnar.values import Combo
from sis2fhir.engine import Key, MeasuredAttendance, Rules
from sis2fhir.measure import AbsenceTally
from sis2fhir.read.attendance import ATTENDANCE_FILE
from sis2fhir.read.attendance_csv import iter_csv
from sis2fhir.read.attendance_values import Resolver
from sis2fhir.read.export import Export
from sis2fhir.records import AttendanceCategory, AttendanceEvent, RejectedAttendance, Roster
from sis2fhir.report import RowReport
from sis2fhir.tally import OUTSIDE_LISTED, StreamingTally, Tallies, measured_of
from sis2fhir.year_facts import YearFacts, school_days_of


@dataclass(frozen=True, slots=True)
class ColumnarTally:
    """The columnar engine on `workers` threads (0: one per core), DuckDB within `memory_limit` (it spills to a
    temporary folder beyond it); attendance.csv under `min_bytes` goes to the streaming engine."""

    workers: int = 0
    min_bytes: int = 0
    memory_limit: str = "256MB"  # 100k students: 817 MB peak RSS with it, 1.5 GB with 1 GB (BENCHMARKS.md)

    def measure(self, export: Export, roster: Roster, rules: Rules, report: RowReport) -> MeasuredAttendance:
        why = unfit(export, rules, self.min_bytes)
        if why is None:
            path = export.path_of(ATTENDANCE_FILE)
            names = header_of(path)
            assert names is not None  # unfit() checked it
            tallies = None
            with tempfile.TemporaryDirectory(prefix="sis2fhir-columnar-") as tmp:
                table = AttendanceTable(path, names, Path(tmp), self.workers, self.memory_limit)
                try:  # nothing is reported before the file is known to be plain
                    why = read_checked(table)
                    if why is None:
                        table.resolve(roster, rules, Resolver(roster, RowReport()))
                except Unfit as exc:
                    why = f"DuckDB cannot read it as plain CSV ({exc})"
                except duckdb.OutOfMemoryException:  # before anything is reported: the streaming engine reads it
                    why = f"DuckDB needs more than its memory limit of {self.memory_limit} to resolve its rows"
                else:
                    if why is None:
                        tallies = columnar_tallies(table, export, roster, rules, report)
                finally:
                    table.close()
            if tallies is not None:  # DuckDB's memory given back before the summaries are made beside the tallies
                return measured_of(tallies, export, rules, report, "columnar")
        measured = StreamingTally(self.workers).measure(export, roster, rules, report)
        measured.fallback = why or ""
        return measured


def read_checked(table: AttendanceTable) -> str | None:
    """The file read into the table by DuckDB in a thread while this one checks its bytes (shape.odd_file): why it
    is odd (then the read is stopped), or None. Side by side, both read the same pages: a file that is not in the
    page cache comes off the disk once, not twice (it did, one after the other: BENCHMARKS.md). Unfit: DuckDB
    could not read a file whose bytes are plain."""
    with ThreadPoolExecutor(1, thread_name_prefix="sis2fhir-duckdb") as pool:
        reading = pool.submit(table.read)
        try:
            why = odd_file(table.path)
        except BaseException:
            table.interrupt()
            raise
        if why is not None:
            table.interrupt()  # the streaming engine reads it: DuckDB need not read on to its end
        try:
            reading.result()
        except Unfit:
            if why is None:
                raise
    return why


def rare_events(
    table: AttendanceTable,
    where: str,
    roster: Roster,
    file: str,
    report: RowReport,
    rejected: RejectedAttendance | None,
) -> Iterator[AttendanceEvent]:
    """The rows of `t` matching `where`, read by the Python reader at their lines (an extract of the file)."""
    lines = [0, 1]
    path = table.workdir / file
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(",".join(table.names) + "\n")
        for line, fields in table.raw_rows(where):
            lines.append(line)
            f.write(",".join(fields) + "\n")
    extract = Export(table.workdir, {ATTENDANCE_FILE: file}, None)
    try:
        yield from iter_csv(extract, roster, report, None, rejected, lines)
    finally:
        extract.close()
        path.unlink()


def _masks_of(c: Combo) -> list[int]:
    """The masks (absence_days.DayMasks) a counted day of this combination goes into, as add_day puts it there."""
    if not c.w:
        return []
    masks = new_masks()
    add_day(masks, 0, c.w, AttendanceCategory(c.cat), c.reason)
    return [i for i, m in enumerate(masks) if m]


# students x schools per pass of the GROUP BYs that keep a bitstring per group: DuckDB cannot spill those states, and
# one pass over 1M students ran out of its 256 MB (OutOfMemoryException, measured at 1M students x 180 days);
# a pass of 200k fits, so memory stays flat however many students the district has
KEYS_PER_PASS = 200_000
# students x schools per pass of the GROUP BY of absences (by_combo): their day masks are held in Python until the
# facts of the year are read from them (year_facts.py), about 400 bytes each; passes of 25k keep that at ~10 MB
# (100k students: tracemalloc peak of columnar_tallies 111 MB in one pass, 61 MB in passes of 25k; CPU the same).
# Each pass scans the table: all of it in a file ordered by date (100k sorted by date: 1 to 2 s more CPU, of 20).
# Passes of 200k ORDER BY kid, read 25k at a time, scan it less but ran out of DuckDB's 256 MB at 1M students.
FACTS_PER_PASS = 25_000


def _in_passes(con: duckdb.DuckDBPyConnection, sql: str, keys: int) -> Iterator[list[Any]]:
    """The rows of `sql` (with `$lo`, `$hi` bounding t.kid) over every student x school, a pass of KEYS_PER_PASS
    at a time, in batches."""
    for lo in range(0, max(keys, 1), KEYS_PER_PASS):
        yield from _batches(con.execute(sql, {"lo": lo, "hi": lo + KEYS_PER_PASS}))


def _batches(cur: duckdb.DuckDBPyConnection, rows: int = 50_000) -> Iterator[list[Any]]:
    while batch := cur.fetchmany(rows):
        yield batch


def _add_pass(
    batches: Iterator[list[Any]],
    adds: list[tuple[tuple[int, int, int, int, int, int], list[int]]],
    python_kids: set[int],
    keys: list[Key],
    year_days: int,
    into: Tallies,
    year_facts: YearFacts,
    shared: dict[int, int],
) -> None:
    """One pass of the by_combo GROUP BY (its students x schools, each with all its rows) into the tallies: the
    sums, and the facts of the year read from the day masks, which are then let go (one pass's masks are held, not
    the district's: 57 bytes a mask, about 7 a student). `shared`: equal sums are one int object (the summaries
    keep them: 28 bytes each above 256)."""
    sums: dict[int, list[int]] = {}  # kid -> absent, excused, unexcused, illness, oss, absent up to compare_until
    day_masks: dict[int, list[int]] = {}
    for batch in batches:
        for kid, x, n, n_until, blob in batch:
            if kid in python_kids:
                continue
            (absent, exc, unexc, ill, oss, w), into_masks = adds[x]
            total = sums.get(kid)
            if total is None:
                total = sums[kid] = [0, 0, 0, 0, 0, 0]
                day_masks[kid] = new_masks()
            total[0] += n * absent
            total[1] += n * exc
            total[2] += n * unexc
            total[3] += n * ill
            total[4] += n * oss
            total[5] += n_until * w
            if into_masks:
                mask = int.from_bytes(blob, "big") & year_days
                kid_masks = day_masks[kid]
                for i in into_masks:
                    kid_masks[i] |= mask
    tallies, absent_until, facts_made = into.tallies, into.absent_until, into.facts
    for kid in list(sums):  # each one's working sums dropped as its tally is made: not all held twice
        total, masks = sums.pop(kid), day_masks.pop(kid)
        key = keys[kid]
        tallies[key] = AbsenceTally(*[shared.setdefault(v, v) for v in total[:5]])
        if any(masks[:PLANES]):  # a day absent
            facts = year_facts.facts(key, masks)
            if facts is not None:
                facts_made[key] = facts
        if total[5]:
            absent_until[key] = total[5]


def columnar_tallies(
    table: AttendanceTable, export: Export, roster: Roster, rules: Rules, report: RowReport
) -> Tallies:
    """The tallies of the resolved table (`AttendanceTable.resolve`): the clean students x schools from SQL, the
    others from the Python tally of their rows, added up."""
    file = export.actual_name(ATTENDANCE_FILE)
    con, keys, schools = table.con, table.keys, table.schools
    kid_of = {key: kid for kid, key in enumerate(keys)}
    # the students x schools the Python reader finds in the rows the tables did not resolve (a padded id, a state
    # id, an unknown reason): all their rows go to the Python tally (their duplicates may be across the two)
    python_kids = {
        kid
        for e in rare_events(table, f"status = {UNCLEAN}", roster, file, RowReport(), None)
        if (kid := kid_of.get((e.student_sourced_id, e.school_sourced_id))) is not None
    }
    del kid_of  # an entry per student x school: not held through the passes
    last = (rules.year.end - rules.year.start).days
    year_days = (1 << (last + 1)) - 1  # the day offsets 0..last of the year
    until = -1 if rules.compare_until is None else rules.compare_until
    counted = f"FROM t JOIN combos x ON x.id = t.x WHERE t.status = {COUNTED}"
    columnar = Tallies()
    presence = 0  # rows saying In Attendance / Present of the students x schools counted here
    seen = columnar.seen
    by_kid = (
        f"SELECT t.kid, count(*), bit_count(bitstring_agg(t.o, 0, {last})), count(*) FILTER (WHERE x.presence) "
        f"{counted} AND t.kid >= $lo AND t.kid < $hi GROUP BY t.kid"
    )
    for batch in _in_passes(con, by_kid, len(keys)):
        for kid, n, days, pres in batch:
            if n != days:  # a second row for a day: first-row-wins is decided by line, in the Python tally
                python_kids.add(kid)
            elif kid not in python_kids:  # non-zero: a row counted (the count of days, not the tally's mask)
                seen[keys[kid]] = n
                presence += pres
    columnar.presence_rows = presence
    table.load("pk", {"kid": "INTEGER"}, ((kid,) for kid in python_kids))
    by_day = f"SELECT sch, o, count(*) FROM t WHERE status = {COUNTED}"
    for sch, offset, n in con.execute(f"{by_day} GROUP BY sch, o").fetchall():
        columnar.rows_by_school.setdefault(schools[sch], {})[offset] = n
    if python_kids:  # their rows are the Python tally's: take them out
        for sch, offset, n in con.execute(f"{by_day} AND kid IN (FROM pk) GROUP BY sch, o").fetchall():
            per_day = columnar.rows_by_school[schools[sch]]
            per_day[offset] -= n
            if not per_day[offset]:
                del per_day[offset]
    if rules.calendar_days is None:  # the school days the rows show, as consume() learns them
        for sch, offset in con.execute(f"SELECT DISTINCT sch, o FROM t WHERE status = {COUNTED}").fetchall():
            columnar.derived_days.setdefault(schools[sch], set()).add(offset)
    # the rows for the Python tally: the unclean and rejected ones, all rows of its students x schools, and the
    # first rows outside the year (among them are the first OUTSIDE_LISTED of the file that the reader resolves);
    # tallied before the columnar passes: the days its rows show are school days of the facts read there
    first_outside = f"SELECT rn FROM t WHERE status = {OUTSIDE} ORDER BY rn LIMIT {OUTSIDE_LISTED}"
    con.execute(
        f"CREATE TABLE m AS SELECT rn, status FROM t WHERE status IN ({REJECTED}, {UNCLEAN}) OR kid IN (FROM pk) "
        f"OR rn IN ({first_outside})"
    )
    python = Tallies(rejected=rules.rejected())
    python.consume(rare_events(table, "rn IN (SELECT rn FROM m)", roster, file, report, python.rejected), rules, report)
    derived: dict[str, set[int]] = {s: set() for s in [*columnar.derived_days, *python.derived_days]}
    for tally in (columnar, python):
        for school, offsets in tally.derived_days.items():
            derived[school] |= offsets
    year_facts = YearFacts(rules, school_days_of(rules, derived))
    # what each (category, hundredths, reason) adds (values.Combo): the tally's five sums, its weight, and the
    # masks its days go into (the weight's bit planes, then its kinds)
    adds = [
        (
            (c.absent, c.excused, c.unexcused, c.illness, c.oss, c.w),
            _masks_of(c),
        )
        for c in table.vocabulary.combos
    ]
    in_python = int(table.one("SELECT count(*) FROM m") or 0)
    report.count_read(file, table.rows - in_python)  # the extract counted its own rows
    # the rows not in m, per status: all rows less m's (an anti-join of every row with m costs more, measured)
    in_m = dict(con.execute("SELECT status, count(*) FROM m GROUP BY status").fetchall())
    for status, every in con.execute("SELECT status, count(*) FROM t GROUP BY status").fetchall():
        n = every - in_m.get(status, 0)
        columnar.events += n
        if status == OUTSIDE:
            columnar.outside_year += n
        elif status == AFTER:
            columnar.after_as_of += n
    # per student x school and combination: its rows, those up to compare_until, and its days as a BLOB (the last
    # day's bit leftmost: the mask's bytes, big-endian, after up to 7 padding bits, masked off below)
    # the counted absences (a tenth of the rows, or less) in their own table in kid order, so that each pass reads
    # only its own row groups however the file was ordered (by date, a pass of `t` read all of it)
    con.execute(f"CREATE TABLE ab AS SELECT t.kid, t.x, t.o {counted} AND x.absent_kind ORDER BY t.kid")
    for done in ("att", "t", "m", "pk"):  # the passes read only ab: DuckDB's memory for the rest given back
        con.execute(f"DROP TABLE {done}")
    by_combo = f"""SELECT kid, x, count(*), count(*) FILTER (WHERE o <= {until}),
        bitstring_agg({last} - o, 0, {last})::BLOB FROM ab WHERE kid >= $lo AND kid < $hi GROUP BY kid, x"""
    shared: dict[int, int] = {}
    for lo in range(0, max(len(keys), 1), FACTS_PER_PASS):
        cur = con.execute(by_combo, {"lo": lo, "hi": lo + FACTS_PER_PASS})
        _add_pass(_batches(cur, 10_000), adds, python_kids, keys, year_days, columnar, year_facts, shared)
    if columnar.outside_year or columnar.after_as_of:
        columnar.file = file
    if not in_python:  # the Python tally read no row: absorbing would copy every entry of the columnar one
        columnar.rejected = python.rejected
        return columnar
    python.absorb(columnar)  # disjoint students x schools: nothing overlaps
    return python
