"""The measured summaries in the state store: a row per student x school whenever its numbers changed since the last
row for that student x school (the as-of date alone is no change), for notifications and charts to read.

The last numbers of every student x school of a district are kept in a compact digest in pieces
(summary_digest_pieces, pieces.py), read and written in the transaction that adds the rows: one read of the
compressed pieces however long the history grows, one piece parsed at a time, only the pieces that changed written
again, and a bulk insert of only the rows that changed. sourcedIds and numbers only, never names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import attrgetter
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, insert, select, update

from sis2fhir.records import MonthTally
from sis2fhir.store.bulk import insert_tuples
from sis2fhir.store.pieces import Piece, by_piece, pack, unpack
from sis2fhir.store.schema import attendance_summaries, summary_digest_pieces

CHUNK = 5000  # rows per INSERT
# what is compared: school year, days in membership, days absent (all, excused, unexcused, illness, out-of-school
# suspension; hundredths), tier, policy name (rate and chronic follow from these)
Numbers = list[Any]


class MeasuredSummary(Protocol):
    """What is recorded of a summary (measure.AttendanceSummary has it; the store imports nothing above it)."""

    @property
    def student_sourced_id(self) -> str: ...
    @property
    def school_sourced_id(self) -> str: ...
    @property
    def school_year(self) -> int: ...
    @property
    def as_of(self) -> date: ...
    @property
    def days_in_membership(self) -> int: ...
    @property
    def days_absent_h(self) -> int: ...
    @property
    def excused_h(self) -> int: ...
    @property
    def unexcused_h(self) -> int: ...
    @property
    def illness_h(self) -> int: ...
    @property
    def oss_h(self) -> int: ...
    @property
    def tier(self) -> str: ...
    @property
    def rate(self) -> float | None: ...
    @property
    def chronic(self) -> bool | None: ...
    @property
    def months(self) -> tuple[MonthTally, ...]: ...
    @property
    def projected_rate(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class RecordedSummary:
    """A row of attendance_summaries."""

    run_id: int
    student_sourced_id: str
    school_sourced_id: str
    school_year: int
    as_of: date
    days_in_membership: int
    days_absent_h: int
    excused_h: int
    unexcused_h: int
    illness_h: int
    oss_h: int
    rate: float | None
    tier: str
    chronic: bool | None
    policy: str
    months: tuple[MonthTally, ...] = ()  # one per calendar month in membership (none on rows before migration 0007)
    projected_rate: float | None = None  # transitions.projected_rate: the early-warning projection, 0..1


def numbers_of(s: MeasuredSummary, policy: str) -> Numbers:
    return [
        s.school_year,
        s.days_in_membership,
        s.days_absent_h,
        s.excused_h,
        s.unexcused_h,
        s.illness_h,
        s.oss_h,
        s.tier,
        policy,
    ]


def record_changed(
    engine: Engine, run_id: int, district: str, policy: str, summaries: Iterable[MeasuredSummary]
) -> int:
    """Add a row for each summary whose numbers differ from the last row of its student x school (or that has none);
    returns how many were added. Rows are inserted CHUNK at a time as they are found (a first run of 1M students
    adds 1M rows; held as dicts they were about 0.7 kB each, measured at 100k)."""
    now = datetime.now(UTC)
    added = 0
    t = summary_digest_pieces
    with engine.begin() as conn:
        stored = {
            r.piece: r.digest for r in conn.execute(select(t.c.piece, t.c.digest).where(t.c.district == district))
        }
        rows: list[tuple[Any, ...]] = []
        as_of_iso: dict[date, str] = {}
        for n, group in sorted(by_piece(summaries, attrgetter("student_sourced_id")).items()):
            blob = stored.pop(n, None)
            last: Piece = {} if blob is None else unpack(blob)
            changed = False
            for s in group:
                numbers = numbers_of(s, policy)
                of_school = last.get(s.school_sourced_id)
                if of_school is None:
                    of_school = last[s.school_sourced_id] = {}
                if of_school.get(s.student_sourced_id) == numbers:
                    continue
                of_school[s.student_sourced_id] = numbers
                changed = True
                as_of = as_of_iso.get(s.as_of)
                if as_of is None:
                    as_of = as_of_iso[s.as_of] = s.as_of.isoformat()
                rows.append(_row(s, run_id, district, policy, now, as_of))
                if len(rows) == CHUNK:
                    insert_tuples(conn, attendance_summaries, ROW, rows)
                    added += len(rows)
                    rows = []
            if changed:
                _write_piece(conn, district, n, run_id, last, now)
        if rows:
            insert_tuples(conn, attendance_summaries, ROW, rows)
            added += len(rows)
    return added


def history(engine: Engine, district: str, student_sourced_id: str) -> list[RecordedSummary]:
    """Every recorded summary of a student, by school and as-of date."""
    t = attendance_summaries
    with engine.connect() as conn:
        found = conn.execute(
            select(t)
            .where(t.c.district == district, t.c.student_sourced_id == student_sourced_id)
            .order_by(t.c.school_sourced_id, t.c.as_of, t.c.id)
        ).all()
    return [
        RecordedSummary(
            run_id=r.run_id,
            student_sourced_id=r.student_sourced_id,
            school_sourced_id=r.school_sourced_id,
            school_year=r.school_year,
            as_of=date.fromisoformat(r.as_of),
            days_in_membership=r.days_in_membership,
            days_absent_h=r.days_absent_h,
            excused_h=r.excused_h,
            unexcused_h=r.unexcused_h,
            illness_h=r.illness_h,
            oss_h=r.oss_h,
            rate=r.rate,
            tier=r.tier,
            chronic=r.chronic,
            policy=r.policy,
            months=_months(r.months),
            projected_rate=r.projected_rate,
        )
        for r in found
    ]


def _months(stored: str | None) -> tuple[MonthTally, ...]:
    """attendance_summaries.months as written by `_row`: [month, days in membership, absent, excused, unexcused,
    illness, out-of-school suspension] per month."""
    if not stored:
        return ()
    return tuple(MonthTally(str(m[0]), *(int(x) for x in m[1:7])) for m in orjson.loads(stored))


# the columns of a row as `_row` gives it
ROW = ("run_id", "district", "student_sourced_id", "school_sourced_id", "school_year", "as_of", "days_in_membership",
       "days_absent_h", "excused_h", "unexcused_h", "illness_h", "oss_h", "rate", "tier", "chronic", "policy",
       "recorded_at", "months", "projected_rate")  # fmt: skip


def _row(s: MeasuredSummary, run_id: int, district: str, policy: str, now: datetime, as_of: str) -> tuple[Any, ...]:
    """A row of attendance_summaries, in ROW's order (a tuple, not a dict: measured at 20k, a quarter less CPU)."""
    months = [[m.month, m.days_in_membership, m.absent_h, m.excused_h, m.unexcused_h, m.illness_h, m.oss_h]
              for m in s.months]  # fmt: skip
    return (run_id, district, s.student_sourced_id, s.school_sourced_id, s.school_year, as_of, s.days_in_membership,
            s.days_absent_h, s.excused_h, s.unexcused_h, s.illness_h, s.oss_h, s.rate, s.tier, s.chronic, policy, now,
            orjson.dumps(months).decode(), s.projected_rate)  # fmt: skip


def _write_piece(conn: Connection, district: str, n: int, run_id: int, numbers: Piece, now: datetime) -> None:
    """A piece of the digest written again (inserted where it was not stored yet)."""
    values = {"run_id": run_id, "digest": pack(orjson.dumps(numbers)), "recorded_at": now}
    t = summary_digest_pieces
    if conn.execute(update(t).where(t.c.district == district, t.c.piece == n).values(**values)).rowcount == 0:
        conn.execute(insert(t).values(district=district, piece=n, **values))
