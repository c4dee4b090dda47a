"""The commands' refusals: usage errors exit 2, an unusable export exits 1 with nothing written, never a traceback."""

from __future__ import annotations

from pathlib import Path

from tests.population.commands import config, run
from tests.support.paths import EXAMPLE


def test_population_refuses_a_date_that_is_not_one(tmp_path: Path) -> None:
    done = run("population", str(EXAMPLE), "--as-of", "31/03/2026", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "--as-of" in done.stderr and "Traceback" not in done.stderr


def test_population_refuses_an_export_without_a_roster(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run(
        "population",
        str(tmp_path / "empty"),
        "--as-of",
        "2026-03-31",
        "--out",
        str(tmp_path / "o"),
        "--report",
        str(tmp_path / "rows.csv"),
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert not [p for p in (tmp_path / "o").glob("*") if p.suffix != ".sqlite"]


def test_evaluate_refuses_a_program_start_outside_the_year_up_to_the_as_of_date(tmp_path: Path) -> None:
    cohort = tmp_path / "c.csv"
    cohort.write_text("studentSourcedId,cohort\nstu-0000001,x\n", encoding="utf-8")
    common = ["--cohort", str(cohort), "--config", str(config(tmp_path)), "--report", str(tmp_path / "r.csv")]
    for start, as_of in (("2026-04-02", "2026-03-31"), ("2025-08-01", "2026-03-31"), ("2026-13-01", "2026-03-31")):
        done = run(
            "evaluate", str(EXAMPLE), "--program-start", start, "--as-of", as_of, "--out", str(tmp_path / "o"), *common
        )
        assert done.returncode == 2, (start, done.stderr)
        assert "--program-start" in done.stderr and "Traceback" not in done.stderr


def test_evaluate_names_the_labels_when_the_file_has_several(tmp_path: Path) -> None:
    cohort = tmp_path / "c.csv"
    cohort.write_text("studentSourcedId,cohort\nstu-0000001,a\nstu-0000002,b\n", encoding="utf-8")
    done = run(
        "evaluate",
        str(EXAMPLE),
        "--cohort",
        str(cohort),
        "--program-start",
        "2026-01-05",
        "--as-of",
        "2026-03-31",
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(config(tmp_path)),
        "--report",
        str(tmp_path / "r.csv"),
    )
    assert done.returncode == 2 and "--label" in done.stderr
