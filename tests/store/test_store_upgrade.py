"""State files written by earlier releases open with the Alembic migrations, keep every row, and end with the tables
of a store made new (SQLite and PostgreSQL): the release before issue 6 (89dafb6), issue 6's release (as it made a
new store, and as its ad-hoc upgrade left an older one, completely or halfway)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, insert, inspect, select, text

from sis2fhir.deliver.outbox import Outbox, Subject
from sis2fhir.store import StoreMissing, open_store
from sis2fhir.store.migrate import current_revision, head
from sis2fhir.store.schema import disclosures, metadata, outbox, runs
from tests.support import paths
from tests.support.postgres import STORES, new_store_url

SCHEMAS = paths.FIXTURES / "store"
TS = datetime(2026, 3, 1, 12, tzinfo=UTC)
FHIR = "fhir:https://ehr.example.org/fhir"


def schema_of(release: str) -> MetaData:
    """The tables of an earlier release, from a copy of its schema.py (tests/fixtures/store)."""
    spec = importlib.util.spec_from_file_location(f"schema_{release}", SCHEMAS / f"schema_{release}.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: MetaData = module.metadata
    return found


OLD, ISSUE6 = schema_of("89dafb6"), schema_of("issue6")


@pytest.fixture(params=STORES)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(a database for the old state file, one for a store made new)"""
    yield new_store_url(request, tmp_path, "upgraded"), new_store_url(request, tmp_path, "fresh")


def fill_89dafb6(engine: Engine, schema: MetaData) -> None:
    """Rows as that release wrote them: two runs, five outbox items (three delivered), three disclosures."""
    with engine.begin() as conn:
        conn.execute(
            insert(schema.tables["runs"]),
            [
                {
                    "started_at": TS,
                    "finished_at": TS,
                    "as_of": f"2026-02-2{i}",
                    "export": "/x",
                    "changes": i,
                    "summary": '{"students": 5}',
                }
                for i in range(2)
            ],
        )
        conn.execute(
            insert(schema.tables["outbox"]),
            [
                {
                    "key": f"k{i}",
                    "recipient": "NPI1",
                    "destination": FHIR,
                    "student_sourced_id": f"s{i}",
                    "state_student_id": f"st{i}",
                    "consent_id": f"c{i}",
                    "subject_key": f"NPI1|s{i}",
                    "payload": b"{}",
                    "status": "delivered" if i < 3 else "queued",
                    "attempts": 1,
                    "created_at": TS,
                    "next_attempt_at": TS,
                    "updated_at": TS,
                    "last_error": "",
                    "run_id": 1,
                }
                for i in range(5)
            ],
        )
        conn.execute(
            insert(schema.tables["disclosures"]),
            [
                {
                    "student_sourced_id": f"s{i}",
                    "state_student_id": f"st{i}",
                    "recipient": "NPI1",
                    "destination": FHIR,
                    "consent_id": f"c{i}",
                    "disclosed": f'["Observation/o{i}/_history/1"]',
                    "disclosed_at": TS,
                    "outbox_key": f"k{i}",
                    "latency_seconds": 0.5,
                }
                for i in range(3)
            ],
        )


def fill_issue6(engine: Engine, schema: MetaData) -> None:
    """What issue 6's release adds: a disclosure in doubt and a run's verdict."""
    with engine.begin() as conn:
        conn.execute(
            insert(schema.tables["disclosures"]).values(
                student_sourced_id="s3",
                state_student_id="st3",
                recipient="NPI1",
                destination=FHIR,
                consent_id="c3",
                disclosed='["Observation/o3"]',
                disclosed_at=TS,
                outbox_key="k3",
                certainty="in-doubt",
            )
        )
        conn.execute(
            insert(schema.tables["run_verdicts"]).values(
                run_id=2,
                district="urn:x",
                school_year=2026,
                as_of="2026-02-21",
                verdict="clean",
                accepted_reason="",
                findings="[]",
                measures="{}",
                absent_digest=b"x",
                recorded_at=TS,
            )
        )


def written_by_89dafb6(url: str) -> None:
    engine = create_engine(url)
    OLD.create_all(engine)  # that release's DDL: metadata.create_all
    fill_89dafb6(engine, OLD)
    engine.dispose()


def written_by_issue6(url: str) -> None:
    engine = create_engine(url)
    ISSUE6.create_all(engine)
    fill_89dafb6(engine, ISSUE6)
    fill_issue6(engine, ISSUE6)
    engine.dispose()


def upgraded_ad_hoc(url: str, *, halfway: bool = False) -> None:
    """A state file of 89dafb6 that issue 6's open_store upgraded: create_all (the new run_verdicts table), then
    ALTER TABLE ... ADD COLUMN and the new index; `halfway`: stopped after create_all."""
    written_by_89dafb6(url)
    engine = create_engine(url)
    ISSUE6.create_all(engine)
    if not halfway:
        with engine.begin() as conn:
            conn.execute(
                text('ALTER TABLE "disclosures" ADD COLUMN "certainty" VARCHAR(16) DEFAULT \'confirmed\' NOT NULL')
            )
            for index in ISSUE6.tables["disclosures"].indexes:
                index.create(conn, checkfirst=True)
        fill_issue6(engine, ISSUE6)
    engine.dispose()


def rows_of(engine: Engine, schema: MetaData) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables of `schema`, on that schema's columns, in id order."""
    found: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for table in schema.sorted_tables:
            columns = [c.name for c in table.columns]
            query = select(*[text(f'"{c}"') for c in columns]).select_from(text(f'"{table.name}"'))
            found[table.name] = sorted(
                ({c: v for c, v in zip(columns, r, strict=True)} for r in conn.execute(query)), key=repr
            )
    return found


def structure(engine: Engine) -> dict[str, Any]:
    """Tables, columns (name, type, nullable), indexes and unique constraints, as the database reports them."""
    have = inspect(engine)
    return {
        name: {
            "columns": sorted((c["name"], str(c["type"]), c["nullable"]) for c in have.get_columns(name)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in have.get_indexes(name)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in have.get_unique_constraints(name)),
            "pk": tuple(have.get_pk_constraint(name)["constrained_columns"]),
        }
        for name in sorted(have.get_table_names())
        if name != "alembic_version"
    }


def same_as_new(engine: Engine, fresh_url: str) -> None:
    with engine.connect() as conn:
        assert current_revision(conn) == head()
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []  # what autogenerate would add
    fresh = open_store(fresh_url)
    assert structure(engine) == structure(fresh)
    fresh.dispose()


WRITERS: dict[str, tuple[Callable[[str], None], MetaData]] = {
    "89dafb6": (written_by_89dafb6, OLD),
    "issue6": (written_by_issue6, ISSUE6),
    "89dafb6-upgraded-by-issue6": (upgraded_ad_hoc, ISSUE6),
    "89dafb6-upgraded-halfway": (lambda url: upgraded_ad_hoc(url, halfway=True), OLD),
}


@pytest.mark.parametrize("written_by", list(WRITERS))
def test_a_state_file_of_an_earlier_release_keeps_every_row(urls: tuple[str, str], written_by: str) -> None:
    url, fresh_url = urls
    write, schema = WRITERS[written_by]
    write(url)
    before = rows_of(create_engine(url), schema)
    engine = open_store(url)
    assert rows_of(engine, schema) == before  # every row of every table, every column the release had
    same_as_new(engine, fresh_url)
    with engine.connect() as conn:
        logged = conn.execute(select(disclosures.c.outbox_key, disclosures.c.certainty).order_by("id")).all()
        items = conn.execute(select(outbox.c.key, outbox.c.status).order_by("id")).all()
        assert conn.execute(select(runs.c.id)).scalars().all() == [1, 2]
    kept = [(f"k{i}", "confirmed") for i in range(3)]  # logged before issue 6: once the recipient had answered
    assert logged == ([*kept, ("k3", "in-doubt")] if len(before["disclosures"]) == 4 else kept)
    assert items == [(f"k{i}", "delivered" if i < 3 else "queued") for i in range(5)]
    # the upgraded file works as a new one: what was delivered before counts as held
    held = Outbox(engine).delivered_subjects([FHIR])
    assert {(FHIR, Subject("NPI1", f"s{i}")) for i in range(3)} <= held
    engine.dispose()
    again = open_store(url, existing=True)  # opening again changes nothing
    assert rows_of(again, schema) == before
    again.dispose()


def test_an_operator_command_upgrades_a_file_of_the_release_before_issue_6(urls: tuple[str, str]) -> None:
    url, fresh_url = urls
    written_by_89dafb6(url)
    before = rows_of(create_engine(url), OLD)
    engine = open_store(url, existing=True)
    assert rows_of(engine, OLD) == before
    same_as_new(engine, fresh_url)
    engine.dispose()


def test_a_new_store_is_made_by_the_migrations(urls: tuple[str, str]) -> None:
    url, _ = urls
    engine = open_store(url)
    with engine.connect() as conn:
        assert current_revision(conn) == head()
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_an_operator_command_makes_no_store(urls: tuple[str, str]) -> None:
    url, _ = urls
    with pytest.raises(StoreMissing, match=r"there is no file|has no disclosures, outbox, runs table"):
        open_store(url, existing=True)  # an empty database (PostgreSQL) or no file at all (SQLite)
    if url.startswith("sqlite"):
        assert not Path(url.removeprefix("sqlite:///")).exists()
    else:
        with create_engine(url).connect() as conn:
            assert inspect(conn).get_table_names() == []


def test_tables_of_no_release_are_left_alone(urls: tuple[str, str]) -> None:
    url, _ = urls
    engine = create_engine(url)
    OLD.tables["outbox"].create(engine)
    engine.dispose()
    with pytest.raises(StoreMissing, match="not a state store a sis2fhir release wrote"):
        open_store(url)
    with create_engine(url).connect() as conn:
        assert inspect(conn).get_table_names() == ["outbox"]
