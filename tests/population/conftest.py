"""What the population tests share: the generated districts and the commands' output, made once per session."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from tests.population.commands import AS_OF, START, config, evaluate, run
from tests.population.recount import generate, rows


@pytest.fixture(scope="session")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("population") / "district", "--students", "700", "--schools", "4", "--seed", "13"
    )


@pytest.fixture(scope="session")
def out(district: Path) -> Path:
    folder = district.parent / "out"
    done = run(
        "population",
        str(district),
        "--as-of",
        AS_OF.isoformat(),
        "--out",
        str(folder),
        "--report",
        str(district.parent / "rows.csv"),
    )
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str], int]:
    """(export, cohort file, cohort students, hundredths of days taken away): every third student is in the
    cohort, and from the start on every absence of theirs is gone (exception-only: no row is a day present)."""
    base = tmp_path_factory.mktemp("evaluate")
    export = generate(
        base / "district", "--students", "800", "--schools", "3", "--seed", "21", "--style", "exception-only"
    )
    students = sorted(r["sourcedId"] for r in rows(export / "users.csv") if r["role"] == "student")
    cohort = set(students[::3])
    attendance = rows(export / "attendance.csv")
    kept, removed = [], 0
    for r in attendance:
        day = date.fromisoformat(r["date"])
        if r["studentSourcedId"] in cohort and START <= day <= AS_OF and r["category"].endswith("Absence"):
            removed += round(float(r["duration"] or 1) * 100)
            continue
        kept.append(r)
    with (export / "attendance.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(attendance[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(kept)
    state = {r["sourcedId"]: r["identifier"] for r in rows(export / "users.csv")}
    cohort_file = base / "registry.csv"
    cohort_file.write_text(
        "studentIdentifier,cohort\n" + "".join(f"{state[s]},asthma-program\n" for s in sorted(cohort)), "utf-8"
    )
    return export, cohort_file, cohort, removed


@pytest.fixture(scope="session")
def result(planted: tuple[Path, Path, set[str], int]) -> Path:
    export, cohort, _, _ = planted
    out = export.parent / "out"
    code, said = evaluate(export, cohort, out, "--config", str(config(export.parent)))
    assert code == 0, said
    return out
