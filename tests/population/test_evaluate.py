"""`sis2fhir evaluate` on a generated district whose cohort's absences were taken away after the program start: the
difference in differences is the test's own, its 95 % interval holds the planted drop and excludes no effect; the
command refuses without a written agreement, records its runs, and writes no student identifier."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import timedelta
from hashlib import sha256
from pathlib import Path

from tests.population.commands import AGREEMENT, AS_OF, START, config, evaluate, run
from tests.population.recount import rate_hundredths, recount, rows


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_the_planted_drop_is_within_the_interval_and_the_interval_excludes_zero(
    planted: tuple[Path, Path, set[str], int], result: Path
) -> None:
    export, _, cohort, removed = planted
    whole, before = recount(export, AS_OF), recount(export, AS_OF, upto=START - timedelta(days=1))
    after_days = sum(u.days for s, u in whole.students().items() if s in cohort) - sum(
        u.days for s, u in before.students().items() if s in cohort
    )
    planted_drop = -removed / after_days  # hundredths of a day per day: days per 100 school days
    assert planted_drop < -3  # a real effect: the cohort's absences after the start are all gone
    did = {r["metric"]: r for r in read(result / "difference-in-differences.csv")}
    row = did["absent_per_100"]
    low, high, estimate = float(row["ci_low"]), float(row["ci_high"]), float(row["estimate"])
    assert low <= planted_drop <= high
    assert high < 0
    assert low <= estimate <= high
    assert row["replicates"] == "2000" and row["seed"] == "13"


def test_the_groups_and_the_difference_equal_the_tests_own_arithmetic(
    planted: tuple[Path, Path, set[str], int], result: Path
) -> None:
    export, _, cohort, _ = planted
    whole = recount(export, AS_OF).students()
    before = recount(export, AS_OF, upto=START - timedelta(days=1)).students()
    others = set(whole) - cohort  # every third student of every school and grade: the others are all the rest
    rates: dict[tuple[str, str], int] = {}
    published = {(r["group"], r["period"]): r for r in read(result / "evaluation.csv")}
    for group, members in (("cohort", cohort), ("comparison", others)):
        for period in ("before", "after"):
            days = absent = students = 0
            for s in members:
                b = before.get(s)
                w = whole[s]
                d = (b.days if b else 0) if period == "before" else w.days - (b.days if b else 0)
                a = (b.absent if b else 0) if period == "before" else w.absent - (b.absent if b else 0)
                if d > 0:
                    students += 1
                    days += d
                    absent += a
            rates[(group, period)] = rate_hundredths(absent, days * 100)
            row = published[(group, period)]
            assert int(row["students"]) == students
            assert row["absent_per_100"] == f"{rates[(group, period)] / 100:.2f}"
    want = (rates[("cohort", "after")] - rates[("cohort", "before")]) - (
        rates[("comparison", "after")] - rates[("comparison", "before")]
    )
    did = {r["metric"]: r for r in read(result / "difference-in-differences.csv")}
    assert round(float(did["absent_per_100"]["estimate"]) * 100) == want


def test_one_measure_report_per_group_valid(result: Path) -> None:
    done = run("validate", str(result / "MeasureReport.ndjson"))
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(line) for line in (result / "MeasureReport.ndjson").read_text().splitlines()]
    assert [r["identifier"][0]["value"].rsplit("/", 1)[1] for r in reports] == ["cohort", "comparison"]
    strata = reports[0]["group"][0]["stratifier"][0]["stratum"]
    assert [s["value"]["coding"][0]["code"] for s in strata] == ["before", "after"]


def test_no_student_identifier_in_any_output(planted: tuple[Path, Path, set[str], int], result: Path) -> None:
    export = planted[0]
    ids = {r["sourcedId"] for r in rows(export / "users.csv") if r["role"] == "student"}
    ids |= {r["identifier"] for r in rows(export / "users.csv") if r["role"] == "student"}
    assert len(ids) == 1600
    files = list(result.iterdir())  # the run record (state.sqlite) too
    assert {p.name for p in files} >= {"evaluation.csv", "difference-in-differences.csv", "evaluation.html"}
    for path in files:
        text = path.read_bytes()
        assert not [i for i in ids if i.encode() in text], path.name


def test_the_run_is_recorded_with_its_agreement(planted: tuple[Path, Path, set[str], int], result: Path) -> None:
    cohort_file = planted[1]
    with sqlite3.connect(result / "state.sqlite") as db:
        found = db.execute("SELECT command, program_start, agreement, cohort, cohort_sha256 FROM population_runs")
        recorded = found.fetchall()
    assert recorded == [
        ("evaluate", START.isoformat(), AGREEMENT, "asthma-program", sha256(cohort_file.read_bytes()).hexdigest())
    ]


def test_refused_without_an_agreement(planted: tuple[Path, Path, set[str], int], tmp_path: Path) -> None:
    export, cohort, _, _ = planted
    code, said = evaluate(export, cohort, tmp_path / "out")
    assert code == 1
    assert "population.agreement" in said and "Traceback" not in said
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir() if p.suffix != ".sqlite"]


def test_a_small_cohort_publishes_nothing_of_either_group(
    planted: tuple[Path, Path, set[str], int], tmp_path: Path
) -> None:
    export, cohort, _, _ = planted
    small = tmp_path / "small.csv"
    small.write_text("".join(cohort.read_text().splitlines(keepends=True)[:6]), encoding="utf-8")  # 5 students
    code, said = evaluate(export, small, tmp_path / "out", "--config", str(config(tmp_path)))
    assert code == 0, said
    for r in read(tmp_path / "out" / "evaluation.csv"):
        assert r["students"] == r["chronic"] == r["absent_per_100"] == "" and r["suppressed"] == "true"
    assert all(r["estimate"] == "" for r in read(tmp_path / "out" / "difference-in-differences.csv"))


def test_unknown_cohort_rows_are_reported_by_line_without_the_id(
    planted: tuple[Path, Path, set[str], int], tmp_path: Path
) -> None:
    export, cohort, _, _ = planted
    odd = tmp_path / "odd.csv"
    odd.write_text(cohort.read_text() + "4999999999,asthma-program\n", encoding="utf-8")
    code, _ = evaluate(export, odd, tmp_path / "out", "--config", str(config(tmp_path)))
    assert code == 3
    report = (tmp_path / "out-rows.csv").read_text()
    assert "odd.csv" in report and "unknown-student" in report and "4999999999" not in report
