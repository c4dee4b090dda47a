"""The measured summaries in the store: a row per student x school when its numbers changed, none for a re-run or a
later date with the same numbers (SQLite and PostgreSQL), and what two syncs of the example district leave."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.measure import AttendanceSummary
from sis2fhir.store import open_store
from sis2fhir.store.schema import attendance_summaries
from sis2fhir.store.summaries import history, record_changed
from tests.support import paths
from tests.support.postgres import STORES, new_store_url

EXAMPLE = paths.EXAMPLE
DISTRICT = "urn:example:district"


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_store_url(request, tmp_path, "summaries")


def summary(
    student: str, school: str = "sch1", absent_h: int = 300, as_of: date = date(2026, 3, 2)
) -> AttendanceSummary:
    return AttendanceSummary(
        student_sourced_id=student,
        school_sourced_id=school,
        school_year=2026,
        period_start=date(2025, 8, 25),
        as_of=as_of,
        days_in_membership=120,
        days_absent_h=absent_h,
        excused_h=absent_h,
        unexcused_h=0,
        illness_h=0,
        oss_h=0,
        tier="satisfactory",
    )


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(attendance_summaries)).scalar_one())


def test_a_row_only_when_the_numbers_change(store_url: str) -> None:
    engine = open_store(store_url)
    first = [summary(f"s{i}") for i in range(50)] + [summary("s0", school="sch2")]
    assert record_changed(engine, 1, DISTRICT, "essa", first) == 51
    assert record_changed(engine, 2, DISTRICT, "essa", first) == 0  # a re-run
    later = [replace(s, as_of=date(2026, 3, 3)) for s in first]
    assert record_changed(engine, 3, DISTRICT, "essa", later) == 0  # a day that changed no number
    changed = [replace(s, days_absent_h=400, excused_h=400) if s.student_sourced_id == "s7" else s for s in later]
    assert record_changed(engine, 4, DISTRICT, "essa", changed) == 1
    assert record_changed(engine, 5, DISTRICT, "crdc", changed[:2]) == 2  # another policy: other numbers
    assert record_changed(engine, 6, "urn:other", "essa", first[:1]) == 1  # another district: its own history
    assert count(engine) == 51 + 1 + 2 + 1
    rows = history(engine, DISTRICT, "s7")
    assert [(r.run_id, r.as_of, r.days_absent_h, r.rate, r.chronic) for r in rows] == [
        (1, date(2026, 3, 2), 300, 3 / 120, False),
        (4, date(2026, 3, 3), 400, 4 / 120, False),
    ]
    assert [(r.school_sourced_id, r.run_id) for r in history(engine, DISTRICT, "s0")] == [
        ("sch1", 1),
        ("sch1", 5),
        ("sch2", 1),
    ]
    engine.dispose()


def sync(export: Path, out: Path, store: str) -> None:
    res = CliRunner().invoke(app, ["sync", str(export), "--out", str(out), "--as-of", "2026-03-31", "--store", store])
    assert res.exit_code == 0, res.output


def test_two_syncs_one_absence_added_one_new_row(store_url: str, tmp_path: Path) -> None:
    export = tmp_path / "district"
    shutil.copytree(EXAMPLE, export)
    sync(export, tmp_path / "out", store_url)
    engine = open_store(store_url, existing=True)
    with engine.connect() as conn:
        first = conn.execute(select(attendance_summaries)).all()
    assert first and {r.run_id for r in first} == {1}
    assert {r.policy for r in first} == {"essa"}

    # one Present day of one student becomes an excused absence
    path = export / "attendance.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    target = next(r for r in rows if r["category"] == "Present")
    target["category"] = "Excused Absence"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    sync(export, tmp_path / "out", store_url)

    with engine.connect() as conn:
        added = conn.execute(select(attendance_summaries).where(attendance_summaries.c.run_id == 2)).all()
    assert [(r.student_sourced_id, r.school_sourced_id) for r in added] == [
        (target["studentSourcedId"], target["schoolSourcedId"])
    ]
    before = next(
        r
        for r in first
        if (r.student_sourced_id, r.school_sourced_id) == (target["studentSourcedId"], target["schoolSourcedId"])
    )
    assert added[0].days_absent_h == before.days_absent_h + 100
    assert added[0].excused_h == before.excused_h + 100
    engine.dispose()
