"""The attendance events in the store (store/attendance_events.py) on SQLite and PostgreSQL: judged once per as-of
date, each (trigger, episode) inserted once whatever the re-runs, replays, restarts and concurrent syncs, read back
in id order; and the monthly tallies and projection of store/summaries.py read back as written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from sis2fhir.measure import AttendanceSummary
from sis2fhir.policy import PRESETS
from sis2fhir.records import MonthTally
from sis2fhir.store import open_store
from sis2fhir.store.attendance_events import events_after, last_event_id, record_transitions
from sis2fhir.store.pieces import PIECES, piece_of, unpack
from sis2fhir.store.schema import attendance_events, transition_state_pieces, transition_states
from sis2fhir.store.summaries import history, record_changed
from sis2fhir.terminology import Tier
from sis2fhir.transitions import Trigger, judge_in_pieces
from tests.support.postgres import STORES, new_store_url

DISTRICT = "urn:example:district"
ESSA = PRESETS["essa"]


@pytest.fixture(params=STORES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    e = open_store(new_store_url(request, tmp_path, "events"))
    yield e
    e.dispose()


def summary(student: str, absent_h: int, as_of: date, dim: int = 100, **facts: Any) -> AttendanceSummary:
    tier = Tier.MODERATE_CHRONIC if absent_h >= dim * 10 else Tier.SATISFACTORY
    return AttendanceSummary(student, "sch1", 2026, date(2025, 8, 25), as_of, dim, absent_h, absent_h, 0, 0, 0,
                             tier, **facts)  # fmt: skip


def sync(engine: Engine, as_of: date, summaries: list[AttendanceSummary], run_id: int = 1) -> dict[str, int] | None:
    """What pipeline._record_events does."""

    recorded = record_transitions(engine, DISTRICT, as_of, run_id, judge_in_pieces(2026, as_of, summaries, ESSA, {3}))
    return recorded.events if recorded.judged else None


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(attendance_events)).scalar_one())


def test_each_crossing_once_whatever_the_reruns(engine: Engine) -> None:
    assert last_event_id(engine) == 0 and events_after(engine, 0) == []
    d1, d2, d3 = date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)
    day1 = [summary("s1", 1200, d1), summary("s2", 500, d1)]
    assert sync(engine, d1, day1) == {"into-chronic": 1}
    assert sync(engine, d1, day1) is None  # a re-run of the same date: not judged
    day2 = [summary("s1", 1200, d2, dim=101), summary("s2", 1100, d2, dim=101)]
    assert sync(engine, d2, day2, run_id=2) == {"into-chronic": 1, "tier-changed": 1}
    assert sync(engine, d1, day1, run_id=3) is None  # an older export: not judged
    assert sync(engine, d2, day2, run_id=4) is None  # a restart of the last run
    got = events_after(engine, 0)
    assert [(e.id, e.student_sourced_id, e.trigger, e.episode, e.as_of, e.run_id) for e in got] == [
        (got[0].id, "s1", "into-chronic", "1", d1, 1),
        (got[1].id, "s2", "into-chronic", "1", d2, 2),
        (got[2].id, "s2", "tier-changed", "1", d2, 2),
    ]
    assert got[0].id < got[1].id < got[2].id and last_event_id(engine) == got[2].id
    assert got[1].detail["tier"] == "moderate-chronic" and got[1].detail["days_absent_h"] == 1100
    assert got[2].detail["previous_tier"] == "satisfactory"
    assert got[0].occurred_on == d1 and got[0].recorded_at.tzinfo is not None
    assert [e.id for e in events_after(engine, got[0].id, limit=1)] == [got[1].id]
    # s1 goes back below, then crosses again: a second episode
    assert sync(engine, d3, [summary("s1", 1000, d3, dim=120)], run_id=5) == {"back-below": 1, "tier-changed": 1}
    d4 = date(2026, 1, 8)
    assert sync(engine, d4, [summary("s1", 1300, d4, dim=121)], run_id=6) == {"into-chronic": 1, "tier-changed": 1}
    crossings = [
        (e.student_sourced_id, e.episode) for e in events_after(engine, 0) if e.trigger == Trigger.INTO_CHRONIC
    ]
    assert crossings == [("s1", "1"), ("s2", "1"), ("s1", "2")]


def test_a_replay_that_finds_events_already_recorded_inserts_only_the_new_ones(engine: Engine) -> None:
    d1, d2 = date(2026, 1, 5), date(2026, 1, 6)
    sync(engine, d1, [summary("s1", 1200, d1)])
    with engine.begin() as conn:  # as if the state had been written by an older run (a restored backup)
        conn.execute(transition_states.delete())
        conn.execute(transition_state_pieces.delete())
    # judged again from an empty state: s1's crossing is the same episode, already recorded; s2's is new
    assert sync(engine, d2, [summary("s1", 1200, d2), summary("s2", 1200, d2)], run_id=2) == {"into-chronic": 1}
    assert count(engine) == 2


def test_concurrent_syncs_of_the_same_date_record_each_event_once(engine: Engine) -> None:
    day = date(2026, 1, 5)
    summaries = [summary(f"s{i}", 1200 if i % 3 else 100, day) for i in range(300)]
    results: list[dict[str, int] | None] = []
    errors: list[BaseException] = []

    def run(run_id: int) -> None:
        try:
            results.append(sync(engine, day, summaries, run_id))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(engine) == 200
    assert sum((r or {}).get("into-chronic", 0) for r in results) == 200  # each counted by the run that inserted it
    ids = [e.id for e in events_after(engine, 0)]
    assert ids == sorted(ids) and len(set(ids)) == 200


def test_the_state_is_compact_zlib_json_in_pieces(engine: Engine) -> None:
    day = date(2026, 1, 5)
    sync(engine, day, [summary(f"s{i}", 100 * (i % 15), day) for i in range(1000)])
    with engine.connect() as conn:
        header = conn.execute(select(transition_states)).one()
        pieces = conn.execute(select(transition_state_pieces)).all()
    assert (header.school_year, header.as_of) == (2026, "2026-01-05")
    assert 200 < len(pieces) <= PIECES  # 1000 students over the pieces
    students = {}
    for p in pieces:
        for student, state in unpack(p.state)["sch1"].items():
            assert piece_of(student) == p.piece
            students[student] = state
    assert sorted(students) == sorted(f"s{i}" for i in range(1000))
    assert students["s14"][:2] == [1, "moderate-chronic"] and students["s1"][:2] == [0, "satisfactory"]
    assert sum(len(p.state) for p in pieces) < 40 * 1000  # a few bytes per student x school


def test_a_later_day_rewrites_only_the_pieces_of_the_students_judged(engine: Engine) -> None:
    d1, d2 = date(2026, 1, 5), date(2026, 1, 6)
    everyone = [summary(f"s{i}", 1200 if i < 3 else 100, d1) for i in range(600)]
    sync(engine, d1, everyone)
    with engine.connect() as conn:
        before = dict(conn.execute(select(transition_state_pieces.c.piece, transition_state_pieces.c.state)).all())
    # s5 crosses; s0 has no summary this time (withheld): it keeps its state, and so do the pieces nobody was in
    assert sync(engine, d2, [summary("s5", 1300, d2), summary("s1", 1200, d2)], run_id=2) == {
        "into-chronic": 1,
        "tier-changed": 1,
    }
    with engine.connect() as conn:
        after = dict(conn.execute(select(transition_state_pieces.c.piece, transition_state_pieces.c.state)).all())
        assert conn.execute(select(transition_states.c.as_of)).scalar() == "2026-01-06"
    changed = {n for n in after if after[n] != before[n]}
    assert set(after) == set(before) and changed == {piece_of("s5")}  # s1's piece: the same state again
    assert unpack(after[piece_of("s0")])["sch1"]["s0"][:2] == [1, "moderate-chronic"]
    # a new school year starts again: only this sync's students are left
    d3 = date(2026, 8, 20)
    year = record_transitions(engine, DISTRICT, d3, 3, judge_in_pieces(2027, d3, [summary("s9", 0, d3)], ESSA, {3}))
    assert year.judged
    with engine.connect() as conn:
        left = conn.execute(select(transition_state_pieces.c.piece, transition_state_pieces.c.state)).all()
        assert conn.execute(select(transition_states.c.school_year)).scalar() == 2027
    assert [(n, list(unpack(state)["sch1"])) for n, state in left] == [(piece_of("s9"), ["s9"])]


def test_months_and_projection_are_read_back(engine: Engine) -> None:
    months = (MonthTally("2025-08", 5, 100, 100, 0, 0, 0), MonthTally("2025-09", 21, 250, 0, 250, 50, 100))
    s = summary("s1", 350, date(2025, 9, 30), dim=26, months=months, projected_rate=0.125)
    assert record_changed(engine, 1, DISTRICT, "essa", [s, replace(s, student_sourced_id="s2", months=())]) == 2
    [got] = history(engine, DISTRICT, "s1")
    assert got.months == months and got.projected_rate == 0.125
    [other] = history(engine, DISTRICT, "s2")
    assert other.months == () and other.projected_rate == 0.125
