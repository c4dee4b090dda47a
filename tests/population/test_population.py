"""`sis2fhir population` on a generated district, run as the real command: every published figure equals the test's
own count, no published count is below the minimum, no withheld cell can be recovered from the published ones, no
student identifier is in any file, the MeasureReports are valid and say what the CSV says, the run is recorded."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from tests.population import attack
from tests.population.commands import AS_OF, run
from tests.population.recount import Cell, cells, rate_hundredths, recount

MIN_CELL = 10


@pytest.fixture(scope="module")
def published(out: Path) -> list[dict[str, str]]:
    with (out / "population.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def expected(district: Path) -> dict[tuple[str, str, str, str], Cell]:
    return cells(recount(district, AS_OF))


def key(r: dict[str, str]) -> tuple[str, str, str, str]:
    return r["level"], r["school"], r["grade"], r["month"]


def test_the_file_has_every_level_and_the_columns_asked_for(published: list[dict[str, str]], expected: dict) -> None:
    for column in ("level", "school", "grade", "month", "students", "chronic", "rate_percent", "suppressed"):
        assert column in published[0]
    assert {r["level"] for r in published} == {"district", "school", "grade", "month"}
    assert {key(r) for r in published} == set(expected)  # a row for every group, withheld or not
    assert sum(1 for r in published if r["level"] == "school") == 4


def test_every_published_figure_equals_an_independent_count(published: list[dict[str, str]], expected: dict) -> None:
    rates = 0
    for r in published:
        want = expected[key(r)]
        figures = {
            "enrolled": want.enrolled,
            "students": want.students,
            "chronic": want.chronic,
            "membership_days": want.days,
            **{t: want.tiers[t] for t in ("satisfactory", "at_risk", "moderate", "severe")},
        }
        for column, n in figures.items():
            if r[column] != "":
                assert int(r[column]) == n, (key(r), column)
        if r["absent_days"] != "":
            assert round(float(r["absent_days"]) * 100) == want.absent, key(r)
            assert r["absent_per_100"] == f"{rate_hundredths(want.absent, want.days * 100) / 100:.2f}"
        if r["rate_percent"] != "":
            rates += 1
            assert r["rate_percent"] == f"{rate_hundredths(want.chronic, want.students) / 100:.2f}", key(r)
            assert r["students"] != "" and r["chronic"] != ""  # a rate only of published counts
        assert (r["suppressed"] == "true") == any(r[c] == "" for c in (*attack.COUNTS, *attack.DAYS))
    schools = [r for r in published if r["level"] == "school"]
    assert all(r["rate_percent"] for r in schools)  # 700 students in 4 schools: every school rate is shown
    assert rates >= 4 + 1 + 8  # schools, the district, the months


def test_no_published_count_is_below_the_minimum(published: list[dict[str, str]]) -> None:
    withheld = 0
    for r in published:
        for column in attack.COUNTS:
            if r[column] == "":
                withheld += 1
            else:
                assert int(r[column]) >= MIN_CELL, (key(r), column)
    assert withheld > 0  # 4 schools x 9 grades of about 20 students: small tiers are withheld


def test_small_cells_are_withheld_not_rounded(published: list[dict[str, str]], expected: dict) -> None:
    small = [(key(r), c) for r in published for c in ("students", "chronic") if getattr(expected[key(r)], c) < MIN_CELL]
    assert small
    rows = {key(r): r for r in published}
    for k, column in small:
        assert rows[k][column] == "" and rows[k]["rate_percent"] == "" and rows[k]["suppressed"] == "true"


def test_schools_are_ranked_by_chronic_absence_rate(published: list[dict[str, str]]) -> None:
    schools = sorted((r for r in published if r["level"] == "school"), key=lambda r: int(r["rank"]))
    rates = [float(r["rate_percent"]) for r in schools]
    assert rates == sorted(rates, reverse=True)
    assert int(schools[0]["rank"]) == 1


def test_no_withheld_cell_can_be_recovered_from_the_published_ones(published: list[dict[str, str]]) -> None:
    values, withheld = attack.table(published)
    keys = {key(r) for r in published}
    assert len(withheld) > 50
    assert attack.recoverable(values, withheld, attack.sums(keys)) == set()
    assert attack.pinned(values, withheld, attack.sums(keys, exact_only=True)) == {}


def test_the_attack_finds_a_cell_withheld_alone(published: list[dict[str, str]]) -> None:
    """The attack is real: publish one withheld cell's partner and it recovers the cell."""
    values, withheld = attack.table(published)
    keys = {key(r) for r in published}
    equations = attack.sums(keys)
    rows = {key(r): r for r in published}
    # a school row's tiers: severe withheld with a partner; give the attacker every partner but one cell
    target = next(c for c in sorted(withheld) if c[1] == "severe" and c[0][0] == "school")
    others = {c for c in withheld if c != target}
    found = attack.recoverable({**values, **dict.fromkeys(others, 0)}, {target}, equations)
    assert found == {target}
    assert rows[target[0]]["severe"] == ""


def test_no_student_identifier_in_any_output(out: Path, district: Path) -> None:
    d = recount(district, AS_OF)
    ids = set(d.grade) | {s for s in d.state_id.values() if s}
    assert len(ids) == 1400
    files = list(out.iterdir())  # the run record (state.sqlite) too
    assert {p.name for p in files} >= {"population.csv", "MeasureReport.ndjson", "population.html"}
    for path in files:
        text = path.read_bytes()
        leaked = [i for i in ids if i.encode() in text]
        assert not leaked, (path.name, leaked[:3])


def test_measure_reports_are_valid_and_say_what_the_csv_says(out: Path, published: list[dict[str, str]]) -> None:
    done = run("validate", str(out / "MeasureReport.ndjson"))
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(line) for line in (out / "MeasureReport.ndjson").read_text().splitlines()]
    assert {r["type"] for r in reports} == {"summary"}
    assert all(r["measure"].startswith("http://sis2fhir.org/fhir/Measure/chronic-absence") for r in reports)
    district = next(r for r in reports if r["identifier"][0]["value"] == "2026/district")
    row = next(r for r in published if r["level"] == "district")
    counts = {p["code"]["coding"][0]["code"]: p.get("count") for p in district["group"][0]["population"]}
    assert counts["initial-population"] == int(row["students"]) and counts["numerator"] == int(row["chronic"])
    assert district["group"][0]["measureScore"]["value"] == float(row["rate_percent"])
    by_school = {s["value"]["text"]: s for s in district["group"][0]["stratifier"][0]["stratum"]}
    for r in (r for r in published if r["level"] == "school"):
        numerator = next(
            p for p in by_school[r["school"]]["population"] if p["code"]["coding"][0]["code"] == "numerator"
        )
        assert numerator.get("count") == (int(r["chronic"]) if r["chronic"] else None)
    masked = [
        p
        for r in reports
        for s in r["group"][0].get("stratifier", [])
        for st in s["stratum"]
        for p in st["population"]
        if "count" not in p
    ]
    assert masked and all(p["_count"]["extension"][0]["valueCode"] == "masked" for p in masked)
    measure = json.loads((out / "Measure-chronic-absence.json").read_text())
    assert measure["resourceType"] == "Measure" and measure["url"] == "http://sis2fhir.org/fhir/Measure/chronic-absence"


def test_the_run_is_recorded(out: Path) -> None:
    with sqlite3.connect(out / "state.sqlite") as db:
        found = db.execute("SELECT command, as_of, summary FROM population_runs").fetchall()
    assert [(c, a) for c, a, _ in found] == [("population", AS_OF.isoformat())]
    summary = json.loads(found[0][2])
    assert summary["min_cell"] == MIN_CELL and summary["cells_withheld"] > 0


def test_a_larger_minimum_withholds_more(district: Path, published: list[dict[str, str]], tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("population:\n  min_cell: 40\n", encoding="utf-8")
    done = run(
        "population",
        str(district),
        "--as-of",
        AS_OF.isoformat(),
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(config),
        "--report",
        str(tmp_path / "rows.csv"),
    )
    assert done.returncode == 0, done.stderr
    with (tmp_path / "o" / "population.csv").open(encoding="utf-8", newline="") as f:
        strict = list(csv.DictReader(f))
    empty = lambda rs: sum(1 for r in rs for c in attack.COUNTS if r[c] == "")  # noqa: E731
    assert empty(strict) > empty(published)
    assert all(int(r[c]) >= 40 for r in strict for c in attack.COUNTS if r[c])
