"""The sanity gates against a real FHIR server (sekmet-fhir): an export with unusable or implausible attendance,
synced over one that was delivered, leaves every Observation on the server exactly as it was (the bug this guards
against overwrote 25 chronic-absence Observations with "satisfactory"), and queues and logs nothing."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sis2fhir.cli import app
from tests.end_to_end.test_sync_fhir import EXAMPLE, search_all, seed_patients, write_config
from tests.gate.test_gates import (
    _absences_become_presence,
    _empty,
    _every_other_day,
    _students_with_early_absences,
    rewrite_attendance,
)

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # rows-report.csv lands in the current folder


def observations(base: str, system: str) -> dict[str, dict]:
    """The server's attendance Observations of this test's district, by id, as the server holds them."""
    return {o["id"]: o for o in search_all(base, "Observation", identifier=f"{system}|")}


def tiers(held: dict[str, dict]) -> dict[str, str]:
    return {i: o["interpretation"][0]["coding"][0]["code"] for i, o in held.items()}


def counts(store: Path) -> tuple[int, int]:
    with sqlite3.connect(store) as conn:
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        log = conn.execute("SELECT count(*) FROM disclosures").fetchone()[0]
    return outbox, log


def _shrink_ten(export: Path) -> None:
    rewrite_attendance(export, _absences_become_presence(_students_with_early_absences(10)))


def _half_the_days(export: Path) -> None:
    rewrite_attendance(export, _every_other_day)


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (_empty, "attendance-empty"),
        (_half_the_days, "rows-per-school-day-dropped"),
        (_shrink_ten, "days-absent-shrank"),
    ],
)
def test_a_stopped_run_leaves_the_fhir_server_as_it_was(
    fhir_server: str, tmp_path: Path, damage: Callable[[Path], None], code: str
) -> None:
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "sis2fhir.yaml", namespace)
    seed_patients(fhir_server, f"{namespace}:state-student-id")
    store = tmp_path / "state.sqlite"

    def sync(export: Path, as_of: str) -> tuple[int, str]:
        res = runner.invoke(app, ["sync", str(export), "--as-of", as_of, "--config", str(config), "--store",
                                  f"sqlite:///{store}", "--destination", fhir_server])  # fmt: skip
        return res.exit_code, " ".join(res.output.split())

    exit_code, output = sync(EXAMPLE, "2026-03-15")
    assert exit_code == 0, output
    system = f"{namespace}:attendance-summary"
    held = observations(fhir_server, system)
    assert len(held) > 100
    chronic = sum(t.endswith("chronic") for t in tiers(held).values())
    assert chronic > 10
    before = counts(store)

    export = Path(shutil.copytree(EXAMPLE, tmp_path / "district"))
    damage(export)
    exit_code, output = sync(export, "2026-03-31")
    assert exit_code == 1, output
    assert code in output and "nothing was sent" in output
    assert observations(fhir_server, system) == held  # every version and value as it was
    assert counts(store) == before  # nothing queued, nothing logged

    # the complete export goes through again, over the same baseline
    exit_code, output = sync(EXAMPLE, "2026-03-31")
    assert exit_code == 0, output
    after = observations(fhir_server, system)
    assert set(after) == set(held) and {o["effectivePeriod"]["end"] for o in after.values()} == {"2026-03-31"}
