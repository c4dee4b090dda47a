"""Syncs of the example district over successive as-of dates record exactly one into-chronic event per student x
school per upward crossing, computed here independently from the export's CSV files (calendar, enrollments,
attendance) with a small arithmetic of its own; re-running the same dates, an older date and a restart (a new
process on the same store) record nothing new; and the monthly tallies in the store add up."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import orjson
from sqlalchemy import select
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.store import open_store
from sis2fhir.store.attendance_events import events_after
from sis2fhir.store.schema import attendance_summaries, runs
from tests.support import paths

EXAMPLE = paths.EXAMPLE
DATES = [date(2025, 9, 12), date(2025, 10, 3), date(2025, 11, 7), date(2025, 12, 12), date(2026, 2, 6),
         date(2026, 3, 31)]  # fmt: skip


def rows(name: str) -> list[dict[str, str]]:
    with (EXAMPLE / name).open(newline="") as f:
        return list(csv.DictReader(f))


def chronic_by_hand(as_of: date) -> dict[tuple[str, str], bool | None]:
    """ESSA: absent (excused or unexcused, by duration) / school days in membership >= 10 %, with 10 days at least."""
    school_days: dict[str, list[date]] = {}
    for r in rows("calendar.csv"):
        if r["instructional"].strip().lower() == "true":
            school_days.setdefault(r["schoolSourcedId"], []).append(date.fromisoformat(r["date"]))
    spans: dict[tuple[str, str], tuple[date, date]] = {}
    for r in rows("enrollments.csv"):
        if r["role"] == "student":
            key = (r["userSourcedId"], r["schoolSourcedId"])
            # blank dates: the school year's (academicSessions.csv: 2025-08-25 to 2026-06-12)
            b = date.fromisoformat(r["beginDate"] or "2025-08-25")
            e = date.fromisoformat(r["endDate"] or "2026-06-12")
            had = spans.get(key)
            spans[key] = (min(b, had[0]), max(e, had[1])) if had else (b, e)
    absent: Counter[tuple[str, str]] = Counter()
    for r in rows("attendance.csv"):
        key, day = (r["studentSourcedId"], r["schoolSourcedId"]), date.fromisoformat(r["date"])
        if r["category"] in ("Excused Absence", "Unexcused Absence") and day <= as_of and key in spans:
            absent[key] += round(float(r["duration"] or 1) * 100)
    found: dict[tuple[str, str], bool | None] = {}
    for key, (b, e) in spans.items():
        days = sum(1 for d in school_days[key[1]] if b <= d <= min(e, as_of))
        if days:
            found[key] = None if days < 10 else absent[key] * 10 >= days * 100
    return found


def sync(store: str, out: Path, as_of: date, *accept: str) -> None:
    res = CliRunner().invoke(app, ["sync", str(EXAMPLE), "--as-of", as_of.isoformat(), "--out", str(out),
                                   "--store", store, "--workers", "1", *accept])  # fmt: skip
    assert res.exit_code == 0, res.output


def test_one_into_chronic_event_per_crossing_and_nothing_on_reruns(tmp_path: Path) -> None:
    store, out = f"sqlite:///{tmp_path / 'state.sqlite'}", tmp_path / "out"
    for d in DATES:
        sync(store, out, d)
    engine = open_store(store, existing=True)
    events = events_after(engine, 0)

    expected: Counter[tuple[str, str]] = Counter()
    was: dict[tuple[str, str], bool] = {}
    for d in DATES:
        for key, chronic in chronic_by_hand(d).items():
            if chronic is True and not was.get(key, False):
                expected[key] += 1
            if chronic is not None:
                was[key] = chronic
    got = Counter((e.student_sourced_id, e.school_sourced_id) for e in events if e.trigger == "into-chronic")
    assert got == expected
    assert len(expected) >= 20 and 2 in expected.values()  # many crossings, some students crossing twice
    assert any(e.trigger == "back-below" for e in events)  # the district has students who recover, too

    # re-running the same dates, an older date, and a restart: a new process on the same store
    sync(store, out, DATES[-1])
    for d in (DATES[2], DATES[0]):  # the gates stop an older as-of date unless the operator accepts it
        sync(store, out, d, "--accept-change", "replaying an older export")
    cmd = [sys.executable, "-m", "sis2fhir", "sync", str(EXAMPLE), "--as-of", DATES[-1].isoformat(), "--out",
           str(out), "--store", store, "--workers", "1"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert events_after(engine, 0) == events

    with engine.connect() as conn:
        summaries = [dict(r) for r in conn.execute(select(runs.c.id, runs.c.summary).order_by(runs.c.id)).mappings()]
        recorded = conn.execute(select(attendance_summaries)).all()
    per_run = [orjson.loads(r["summary"])["events"] for r in summaries]
    assert sum(n for counts in per_run for n in counts.values()) == len(events)  # the run summaries count them
    assert all(counts == {} for counts in per_run[len(DATES) :])  # the re-runs and the restart: none
    assert sum(c.get("into-chronic", 0) for c in per_run) == sum(expected.values())

    # the monthly tallies in the store add up to the totals of their row, one per month in membership
    assert recorded
    for r in recorded:
        months = orjson.loads(r.months)
        assert [m[0] for m in months] == sorted({m[0] for m in months})
        assert sum(m[1] for m in months) == r.days_in_membership
        assert [sum(m[k] for m in months) for k in range(2, 7)] == [
            r.days_absent_h, r.excused_h, r.unexcused_h, r.illness_h, r.oss_h
        ]  # fmt: skip
        assert months[-1][0] <= r.as_of[:7]
    engine.dispose()
