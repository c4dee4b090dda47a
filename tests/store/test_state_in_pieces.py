"""Migration 0011 on SQLite and PostgreSQL: a store whose summary digest and transition state are one blob each (as
revisions 0003-0010 wrote them) is regrouped into pieces (store/pieces.py) with nothing lost: the next sync finds
the same last numbers (no row added for an unchanged student) and the same states (no crossing recorded twice)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, column, create_engine, func, insert, select, table

from sis2fhir.measure import AttendanceSummary
from sis2fhir.policy import PRESETS
from sis2fhir.store import open_store
from sis2fhir.store.attendance_events import record_transitions
from sis2fhir.store.migrate import MIGRATIONS
from sis2fhir.store.pieces import piece_of, split, unpack
from sis2fhir.store.schema import (
    attendance_summaries,
    summary_digest_pieces,
    transition_state_pieces,
    transition_states,
)
from sis2fhir.store.summaries import numbers_of, record_changed
from sis2fhir.terminology import Tier
from sis2fhir.transitions import judge_in_pieces
from tests.support.postgres import STORES, new_store_url

DISTRICT = "urn:example:district"
TS = datetime(2026, 1, 5, 18, tzinfo=UTC)
DAY = date(2026, 1, 5)


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield new_store_url(request, tmp_path, "pieces")


def summary(i: int, as_of: date) -> AttendanceSummary:
    absent = 1200 if i % 4 == 0 else 100
    tier = Tier.MODERATE_CHRONIC if absent >= 1000 else Tier.SATISFACTORY
    school = "sch2" if i % 10 == 0 else "sch1"
    return AttendanceSummary(f"s{i}", school, 2026, date(2025, 8, 25), as_of, 100, absent, absent, 0, 0, 0, tier)


def at_revision_0010(url: str) -> Engine:
    engine = create_engine(url)
    with engine.connect() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0010_run_fingerprints")
        conn.commit()
    return engine


def test_one_blob_each_becomes_pieces_and_the_next_sync_carries_on(url: str) -> None:
    first = [summary(i, DAY) for i in range(500)]
    numbers = {}
    states = {}
    for s in first:
        numbers.setdefault(s.school_sourced_id, {})[s.student_sourced_id] = numbers_of(s, "essa")
        chronic = s.tier == Tier.MODERATE_CHRONIC
        states.setdefault(s.school_sourced_id, {})[s.student_sourced_id] = [
            int(chronic), str(s.tier), int(chronic), 0, 1, 0, 0
        ]  # fmt: skip
    old = at_revision_0010(url)
    with old.begin() as conn:  # what revision 0010's summaries.py and attendance_events.py wrote
        conn.execute(
            insert(
                table("summary_digests", column("district"), column("run_id"), column("digest"), column("recorded_at"))
            ),
            [{"district": DISTRICT, "run_id": 1, "digest": zlib.compress(orjson.dumps(numbers)), "recorded_at": TS}],
        )
        blob = zlib.compress(orjson.dumps({"school_year": 2026, "as_of": DAY.isoformat(), "schools": states}))
        conn.execute(
            insert(
                table(
                    "transition_states",
                    column("district"),
                    column("as_of"),
                    column("run_id"),
                    column("state"),
                    column("recorded_at"),
                )
            ),
            [{"district": DISTRICT, "as_of": DAY.isoformat(), "run_id": 1, "state": blob, "recorded_at": TS}],
        )
    old.dispose()

    engine = open_store(url)  # migrates to head
    with engine.connect() as conn:
        digest = {r.piece: unpack(r.digest) for r in conn.execute(select(summary_digest_pieces))}
        state = {r.piece: unpack(r.state) for r in conn.execute(select(transition_state_pieces))}
        header = conn.execute(select(transition_states)).one()
    assert digest == split(numbers) and state == split(states) and len(digest) > 100
    assert all(piece_of(student) == n for n, p in digest.items() for by_student in p.values() for student in by_student)
    assert (header.school_year, header.as_of, header.run_id) == (2026, "2026-01-05", 1)

    later = date(2026, 1, 6)
    again = [summary(i, later) for i in range(500)]
    again[7] = AttendanceSummary("s7", "sch1", 2026, date(2025, 8, 25), later, 101, 1300, 1300, 0, 0, 0,
                                 Tier.MODERATE_CHRONIC)  # fmt: skip
    assert record_changed(engine, 2, DISTRICT, "essa", again) == 1  # s7's numbers only
    judged = record_transitions(engine, DISTRICT, later, 2, judge_in_pieces(2026, later, again, PRESETS["essa"], {3}))
    assert judged.judged and judged.events == {"into-chronic": 1, "tier-changed": 1}  # s7; the others: as stored
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(attendance_summaries)).scalar() == 1
    engine.dispose()
