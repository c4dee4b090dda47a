"""A state file written by the release before the disclosure log had a certainty column opens, keeps every row, and
takes the new rows (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    insert,
    inspect,
    select,
    text,
)

from sis2fhir.deliver.outbox import Outbox, Subject
from sis2fhir.store import open_store
from sis2fhir.store.schema import disclosures, outbox

# The outbox and disclosures tables exactly as sis2fhir 0.x created them (before issue 6).
old = MetaData()
Table(
    "outbox",
    old,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("destination", String(500), nullable=False),
    Column("student_sourced_id", String(200), nullable=False),
    Column("state_student_id", String(200), nullable=False, default=""),
    Column("consent_id", String(200), nullable=False),
    Column("subject_key", String(400), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("run_id", Integer),
    UniqueConstraint("key", name="uq_outbox_key"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_subject", "destination", "subject_key"),
)
Table(
    "disclosures",
    old,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("student_sourced_id", String(200), nullable=False),
    Column("state_student_id", String(200), nullable=False, default=""),
    Column("recipient", String(200), nullable=False),
    Column("destination", String(500), nullable=False),
    Column("consent_id", String(200), nullable=False),
    Column("disclosed", Text, nullable=False),
    Column("disclosed_at", DateTime(timezone=True), nullable=False),
    Column("outbox_key", String(64), nullable=False),
    Column("latency_seconds", Float),
    Index("ix_disclosures_student", "student_sourced_id"),
    Index("ix_disclosures_state_id", "state_student_id"),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.sqlite'}"
        return
    base = request.getfixturevalue("postgres_url")
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield base.rsplit("/", 1)[0] + f"/{name}"


def written_by_the_old_release(url: str) -> None:
    engine: Engine = create_engine(url)
    old.create_all(engine)
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(old.tables["outbox"]),
            [
                {
                    "key": f"k{i}",
                    "recipient": "NPI1",
                    "destination": "fhir:https://ehr.example.org/fhir",
                    "student_sourced_id": f"s{i}",
                    "state_student_id": f"st{i}",
                    "consent_id": f"c{i}",
                    "subject_key": f"NPI1|s{i}",
                    "payload": b"{}",
                    "status": "delivered" if i < 3 else "queued",
                    "attempts": 1,
                    "created_at": ts,
                    "next_attempt_at": ts,
                    "updated_at": ts,
                    "last_error": "",
                }
                for i in range(5)
            ],
        )
        conn.execute(
            insert(old.tables["disclosures"]),
            [
                {
                    "student_sourced_id": f"s{i}",
                    "state_student_id": f"st{i}",
                    "recipient": "NPI1",
                    "destination": "fhir:https://ehr.example.org/fhir",
                    "consent_id": f"c{i}",
                    "disclosed": f'["Observation/o{i}/_history/1"]',
                    "disclosed_at": ts,
                    "outbox_key": f"k{i}",
                    "latency_seconds": 0.5,
                }
                for i in range(3)
            ],
        )
    engine.dispose()


def test_a_state_file_of_the_previous_release_keeps_every_row(url: str) -> None:
    written_by_the_old_release(url)
    engine = open_store(url)
    with engine.connect() as conn:
        logged = conn.execute(select(disclosures).order_by(disclosures.c.id)).all()
        items = conn.execute(select(outbox).order_by(outbox.c.id)).all()
    assert [(r.student_sourced_id, r.certainty) for r in logged] == [(f"s{i}", "confirmed") for i in range(3)]
    assert [(r.key, r.status) for r in items] == [(f"k{i}", "delivered" if i < 3 else "queued") for i in range(5)]
    assert "ix_disclosures_outbox_key" in {i["name"] for i in inspect(engine).get_indexes("disclosures")}
    # the upgraded file works as a new one: what was delivered before counts as held
    box = Outbox(engine)
    assert box.delivered_subjects(["fhir:https://ehr.example.org/fhir"]) == {
        ("fhir:https://ehr.example.org/fhir", Subject("NPI1", f"s{i}")) for i in range(3)
    }
    engine.dispose()
    again = open_store(url)  # opening again changes nothing
    with again.connect() as conn:
        assert conn.execute(select(disclosures).order_by(disclosures.c.id)).all() == logged
    again.dispose()
