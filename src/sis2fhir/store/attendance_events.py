"""The attendance events in the state store (attendance_events, transition_states): what a sync found changed for a
student x school, once per trigger and episode, in the order found (the id), for the notifier to fan out.

A sync judges its transitions in one transaction, one judgment at a time (PostgreSQL: a table lock; SQLite: its
write lock, taken first): read the district's stored state, judge only when the run's as-of date is after the
stored one (none stored: the first judgment), insert the events (if absent: the unique key makes a restart or a
replay insert nothing twice, on SQLite and PostgreSQL alike), and write the new state. The state is kept in pieces
(pieces.py): the judge asks for the pieces of the students it judges, each parsed when asked for, and gives back
the new JSON of those pieces only. The rules themselves are transitions.py's (a layer above: passed in as
`judge`). sourcedIds and figures only, never names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from sis2fhir.store.pieces import Piece, pack, unpack
from sis2fhir.store.schema import as_utc, attendance_events, transition_state_pieces, transition_states

CHUNK = 2000  # rows per INSERT


class EventToRecord(Protocol):
    """An event as the rules give it (transitions.Transition has these)."""

    @property
    def school_year(self) -> int: ...
    @property
    def student_sourced_id(self) -> str: ...
    @property
    def school_sourced_id(self) -> str: ...
    @property
    def trigger(self) -> str: ...
    @property
    def episode(self) -> str: ...
    @property
    def occurred_on(self) -> date: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class StoredState:
    """The district's last judgment: its school year and as-of date, and the state it left, a piece at a time."""

    school_year: int
    as_of: date
    packed: Mapping[int, bytes]  # piece -> its stored row (pieces.pack)

    def piece(self, n: int) -> Piece:
        """The stored `{school: {student: state}}` of piece n (empty where none of its students was judged)."""
        blob = self.packed.get(n)
        return {} if blob is None else unpack(blob)


@dataclass(frozen=True, slots=True)
class Judged:
    """A judgment: the events found, in the order to record them, and the new state of each piece judged."""

    events: Sequence[EventToRecord]
    school_year: int
    pieces: Mapping[int, bytes]  # piece -> the JSON of its new `{school: {student: state}}`
    fresh: bool  # the state starts again (a first judgment, a new school year): the pieces not judged go


# the stored state (None when none is stored) -> the judgment, or None: nothing to judge
Judge = Callable[[StoredState | None], Judged | None]


@dataclass(frozen=True)
class RecordedEvent:
    """A row of attendance_events."""

    id: int
    district: str
    school_year: int
    student_sourced_id: str
    school_sourced_id: str
    trigger: str
    episode: str
    as_of: date
    occurred_on: date
    detail: dict[str, Any]
    run_id: int
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a sync's judgment came to: whether it judged at all, and the events newly recorded, by trigger."""

    judged: bool
    events: dict[str, int]


def record_transitions(engine: Engine, district: str, as_of: date, run_id: int, judge: Judge) -> Recorded:
    """Judge a sync's transitions against the district's stored state and record them, in one transaction."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:  # events commit in id order (the notifier reads by id), and one judgment at a time
            conn.execute(text("LOCK TABLE attendance_events IN SHARE ROW EXCLUSIVE MODE"))
        else:  # pysqlite begins a transaction only before a write: the write lock now, before the state is read
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        stored = _stored(conn, district)
        if stored is not None and stored.as_of >= as_of:
            return Recorded(False, {})  # a re-run, a replay or an older export: judged already
        judged = judge(stored)
        if judged is None:
            return Recorded(False, {})
        del stored  # the compressed rows read
        counts = _insert_new(conn, district, as_of, run_id, judged.events, now)
        _write_state(conn, district, as_of, run_id, judged, now)
        conn.commit()
    return Recorded(True, dict(counts))


def _stored(conn: Connection, district: str) -> StoredState | None:
    t, p = transition_states, transition_state_pieces
    row = conn.execute(select(t.c.school_year, t.c.as_of).where(t.c.district == district)).first()
    if row is None:
        return None
    packed = {r.piece: r.state for r in conn.execute(select(p.c.piece, p.c.state).where(p.c.district == district))}
    return StoredState(row.school_year, date.fromisoformat(row.as_of), packed)


def _write_state(conn: Connection, district: str, as_of: date, run_id: int, judged: Judged, now: datetime) -> None:
    t, p = transition_states, transition_state_pieces
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    if judged.fresh:
        conn.execute(delete(p).where(p.c.district == district))
    for n, state in judged.pieces.items():
        piece = dialect.insert(p).values(district=district, piece=n, state=pack(state))
        conn.execute(
            piece.on_conflict_do_update(index_elements=[p.c.district, p.c.piece], set_={"state": piece.excluded.state})
        )
    values = {"school_year": judged.school_year, "as_of": as_of.isoformat(), "run_id": run_id, "recorded_at": now}
    header = dialect.insert(t).values(district=district, **values)
    conn.execute(
        header.on_conflict_do_update(index_elements=[t.c.district], set_={k: header.excluded[k] for k in values})
    )


def _insert_new(
    conn: Connection, district: str, as_of: date, run_id: int, events: Sequence[EventToRecord], now: datetime
) -> Counter[str]:
    """Insert the events not recorded yet (by their unique key); the count of those inserted, by trigger."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    t = attendance_events
    counts: Counter[str] = Counter()
    stmt = dialect.insert(t).on_conflict_do_nothing().returning(t.c.trigger, sort_by_parameter_order=True)
    for start in range(0, len(events), CHUNK):  # executemany ("insertmanyvalues"): ids in the order given
        rows = [  # a chunk's rows at a time (a first sync of 1M students found 222k events)
            {
                "district": district,
                "school_year": e.school_year,
                "student_sourced_id": e.student_sourced_id,
                "school_sourced_id": e.school_sourced_id,
                "trigger": str(e.trigger),
                "episode": e.episode,
                "as_of": as_of.isoformat(),
                "occurred_on": e.occurred_on.isoformat(),
                "detail": orjson.dumps(dict(e.detail)).decode(),
                "run_id": run_id,
                "recorded_at": now,
            }
            for e in events[start : start + CHUNK]
        ]
        counts.update(conn.execute(stmt, rows).scalars())
    return counts


def events_after(engine: Engine, after_id: int, limit: int = 1000) -> list[RecordedEvent]:
    """The events with an id above `after_id`, by id ascending, at most `limit`."""
    t = attendance_events
    with engine.connect() as conn:
        found = conn.execute(select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)).all()
    return [
        RecordedEvent(
            id=r.id,
            district=r.district,
            school_year=r.school_year,
            student_sourced_id=r.student_sourced_id,
            school_sourced_id=r.school_sourced_id,
            trigger=r.trigger,
            episode=r.episode,
            as_of=date.fromisoformat(r.as_of),
            occurred_on=date.fromisoformat(r.occurred_on),
            detail=orjson.loads(r.detail),
            run_id=r.run_id,
            recorded_at=as_utc(r.recorded_at),
        )
        for r in found
    ]


def last_event_id(engine: Engine) -> int:
    """The highest event id (0 when there is none)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(attendance_events.c.id))).scalar() or 0)
