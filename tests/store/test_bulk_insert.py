"""store/bulk.insert_many and execute_many store exactly what SQLAlchemy's own insert or update of the same rows
stores, on SQLite and PostgreSQL: the same values and types (timestamps, blobs, booleans, NULLs), Python and server
defaults included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, Table, bindparam, delete, func, insert, select, update

from sis2fhir.store import open_store
from sis2fhir.store.bulk import execute_many, insert_many, insert_tuples
from sis2fhir.store.schema import attendance_summaries, disclosures, outbox, served_resources
from tests.support.postgres import STORES, new_store_url

TS = datetime(2026, 3, 31, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_store_url(request, tmp_path, "bulk")


def outbox_rows(prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "key": f"{prefix}{i:04d}",
            "recipient": "1904672353",
            "destination": "/tmp/out",
            "student_sourced_id": f"stu-{i}",
            "state_student_id": "" if i % 2 else f"100{i}",
            "consent_id": f"CNS-{i}",
            "subject_key": f"1904672353|stu-{i}|",
            "payload": b"" if i % 3 else b'{"resources": [1, 2]}\x00\xff',
            "status": "sending",
            "attempts": 0,
            "created_at": TS,
            "next_attempt_at": TS,
            "updated_at": TS,
            "last_error": "",
            "run_id": None if i % 5 == 0 else 7,
        }
        for i in range(120)
    ]


def disclosure_rows(prefix: str) -> list[dict[str, Any]]:  # no channel: its server default; no certainty either
    return [
        {
            "student_sourced_id": f"stu-{i}",
            "state_student_id": f"100{i}",
            "recipient": "1904672353",
            "destination": "/tmp/out",
            "consent_id": f"CNS-{i}",
            "disclosed": '["Patient/p-1", "Observation/o-1"]',
            "disclosed_at": TS,
            "outbox_key": f"{prefix}{i:04d}",
            "latency_seconds": None if i % 2 else 0.25 * i,
        }
        for i in range(60)
    ]


def served_rows(prefix: str) -> list[dict[str, Any]]:  # no state_student_id, consent_id, permits: Python defaults
    return [
        {
            "recipient": "1904672353",
            "resource_type": "Consent",
            "resource_id": f"{prefix}{i}",
            "student": None if i == 0 else f"stu-{i}",
            "version_id": 1,
            "last_updated": TS,
            "digest": "0" * 64,
            "content": b"{}",
            "patient_id": None,
            "effective_end": "2026-03-31",
            "status": "active",
        }
        for i in range(30)
    ]


def _stored_sides(engine: Any, table: Table, key: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows stored for side "a" (SQLAlchemy's insert) and side "b" (ours), by `key`, without id and key."""
    columns = [c for c in table.columns if c.name not in ("id", key)]
    with engine.connect() as conn:
        return {
            side: [
                tuple(r)
                for r in conn.execute(select(*columns).where(table.c[key].like(f"{side}%")).order_by(table.c[key]))
            ]
            for side in ("a", "b")
        }


@pytest.mark.parametrize(
    ("table", "rows", "key"),
    [
        (outbox, outbox_rows, "key"),
        (disclosures, disclosure_rows, "outbox_key"),
        (served_resources, served_rows, "resource_id"),
    ],
    ids=["outbox", "disclosures", "served_resources"],
)
def test_rows_are_stored_as_sqlalchemy_stores_them(store_url: str, table: Table, rows: Any, key: str) -> None:
    engine = open_store(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(table))
            conn.execute(insert(table), rows("a"))
            insert_many(conn, table, rows("b"))
        stored = _stored_sides(engine, table, key)
    finally:
        engine.dispose()
    assert len(stored["b"]) == len(rows("b")) > 0
    assert stored["a"] == stored["b"]
    assert [type(v) for r in stored["a"] for v in r] == [type(v) for r in stored["b"] for v in r]


def test_rows_of_differing_keys_are_stored_as_sqlalchemy_stores_them(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")

    def odd(prefix: str) -> list[dict[str, Any]]:
        rows = disclosure_rows(prefix)
        rows[1] = {**rows[1], "certainty": "sending"}  # a key the first row has not
        return rows

    try:
        with engine.begin() as conn:
            conn.execute(insert(disclosures), odd("a"))
            insert_many(conn, disclosures, odd("b"))
        with engine.connect() as conn:
            stored = {
                side: conn.execute(
                    select(disclosures.c.certainty, disclosures.c.channel)
                    .where(disclosures.c.outbox_key.like(f"{side}%"))
                    .order_by(disclosures.c.outbox_key)
                ).all()
                for side in ("a", "b")
            }
    finally:
        engine.dispose()
    assert len(stored["b"]) == 60 and stored["a"] == stored["b"]


def test_an_update_by_execute_many_stores_what_sqlalchemys_own_stores(store_url: str) -> None:
    """Values from the rows and values fixed in the statement (a batch's timestamp), NULLs and blobs included; the
    count is of the rows matched, so that a key the table does not hold shows."""
    later = datetime(2026, 4, 1, 8, 0, 0, 654321, tzinfo=UTC)
    statement = (
        update(outbox)
        .where(outbox.c.key == bindparam("k"), outbox.c.status == "sending")
        .values(
            status=bindparam("s"),
            payload=bindparam("p"),
            updated_at=later,
            next_attempt_at=func.coalesce(bindparam("due", type_=DateTime(timezone=True)), outbox.c.next_attempt_at),
        )
    )

    def changes(prefix: str) -> list[dict[str, Any]]:
        return [
            {"k": f"{prefix}{i:04d}", "s": "queued" if i // 2 % 2 else "dead", "p": bytes([i, 0, 255]),
             "due": None if i % 3 else later}
            for i in range(0, 130, 2)  # keys 0120 to 0128 are not in the table
        ]  # fmt: skip

    engine = open_store(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(outbox))
            insert_many(conn, outbox, outbox_rows("a") + outbox_rows("b"))
            conn.execute(statement, changes("a"))
            matched = execute_many(conn, statement, changes("b"))
        columns = [c for c in outbox.columns if c.name not in ("id", "key")]
        with engine.connect() as conn:
            stored = {
                side: [
                    tuple(r)
                    for r in conn.execute(select(*columns).where(outbox.c.key.like(f"{side}%")).order_by(outbox.c.key))
                ]
                for side in ("a", "b")
            }
    finally:
        engine.dispose()
    assert matched == 60
    assert stored["a"] == stored["b"]
    assert [type(v) for r in stored["a"] for v in r] == [type(v) for r in stored["b"] for v in r]
    assert sum(1 for r in stored["b"] if r[columns.index(outbox.c.status)] == "dead") == 30


def summary_rows(prefix: str) -> list[dict[str, Any]]:  # in an order of their own, not the table's
    return [
        {
            "chronic": [None, True, False][i % 3],
            "student_sourced_id": f"{prefix}{i:04d}",
            "run_id": 3,
            "district": "example",
            "school_sourced_id": "sch-1",
            "school_year": 2026,
            "as_of": "2026-03-31",
            "days_in_membership": i,
            "days_absent_h": 50 * i,
            "excused_h": 0,
            "unexcused_h": 25 * i,
            "illness_h": 0,
            "oss_h": i % 2,
            "rate": None if i == 0 else 0.5,
            "tier": "satisfactory",
            "policy": "essa",
            "recorded_at": TS,
            "months": None if i % 4 else "[]",
            "projected_rate": None if i % 2 else 0.1 * i,
        }
        for i in range(40)
    ]


@pytest.mark.parametrize(
    ("table", "rows", "key"),
    [(attendance_summaries, summary_rows, "student_sourced_id"), (disclosures, disclosure_rows, "outbox_key")],
    ids=["attendance_summaries", "disclosures (server defaults: by insert_many)"],
)
def test_tuples_are_stored_as_sqlalchemy_stores_the_rows(store_url: str, table: Table, rows: Any, key: str) -> None:
    engine = open_store(store_url)
    try:
        names = list(rows("b")[0])
        with engine.begin() as conn:
            conn.execute(delete(table))
            conn.execute(insert(table), rows("a"))
            insert_tuples(conn, table, names, [tuple(r[n] for n in names) for r in rows("b")])
        stored = _stored_sides(engine, table, key)
    finally:
        engine.dispose()
    assert len(stored["b"]) == len(rows("b")) and stored["a"] == stored["b"]
