"""The attendance events in the state store (attendance_events, transition_states): what a sync found changed for a
student x school, once per trigger and episode, in the order found (the id), for the notifier to fan out.

A sync judges its transitions in one transaction: read the district's stored state, judge only when the run's as-of
date is after the stored one (none stored: the first judgment), insert the events (if absent: the unique key
makes a restart or a concurrent replay insert nothing twice, on SQLite and PostgreSQL alike), and write the new
state. The rules themselves are transitions.py's (a layer above: passed in as `judge`). sourcedIds and figures
only, never names.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from sis2fhir.store.schema import as_utc, attendance_events, transition_states

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


# the stored state (JSON as parsed, None when none is stored) -> None (nothing to judge) or (the events, the new
# state's JSON in pieces: compressed as they come, never whole in memory)
Judge = Callable[[Any], tuple[Sequence[EventToRecord], Iterable[bytes]] | None]


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
    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:  # events commit in id order (the notifier reads by id), and one judgment at a time
            conn.execute(text("LOCK TABLE attendance_events IN SHARE ROW EXCLUSIVE MODE"))
        t = transition_states
        row = conn.execute(select(t.c.as_of, t.c.state).where(t.c.district == district)).first()
        if row is not None and date.fromisoformat(row.as_of) >= as_of:
            return Recorded(False, {})  # a re-run, a replay or an older export: judged already
        judged = judge(None if row is None else orjson.loads(zlib.decompress(row.state)))
        if judged is None:
            return Recorded(False, {})
        events, state = judged
        counts = _insert_new(conn, district, as_of, run_id, events, now)
        compressor = zlib.compressobj(6)
        blob = b"".join([*map(compressor.compress, state), compressor.flush()])
        values = {"district": district, "as_of": as_of.isoformat(), "run_id": run_id, "state": blob, "recorded_at": now}
        dialect = postgresql if postgres else sqlite
        upsert = dialect.insert(t).values(**values)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[t.c.district],
                set_={k: upsert.excluded[k] for k in ("as_of", "run_id", "state", "recorded_at")},
                where=t.c.as_of < upsert.excluded.as_of,  # a concurrent later judgment is not undone
            )
        )
    return Recorded(True, dict(counts))


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
