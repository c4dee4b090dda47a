"""Operator commands that cannot mislead: they read the store a sync wrote or refuse (creating nothing), `outbox
retry` says by its exit code whether anything still waits, `replay` refuses keys it cannot resolve, and the
summary table of `sync` reconciles with the files written."""

from __future__ import annotations

import csv
import re
import socket
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.store import open_store
from sis2fhir.store.schema import outbox
from tests.support import network, paths
from tests.support.postgres import new_database

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"
AS_OF = "2026-03-31"
runner = CliRunner()

OPERATOR_COMMANDS = [
    ["outbox", "list"],
    ["outbox", "dead"],
    ["outbox", "retry"],
    ["outbox", "replay"],
    ["pending"],
    ["disclosures", "--student", "stu-0000140"],
]


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    res = runner.invoke(app, args, env=env)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synced") / "out"
    code, output = invoke(["sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(out)])
    assert code == 0, output
    return out


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_operator_command_on_a_store_that_does_not_exist_refuses_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the default store, sqlite:///sis2fhir-state.sqlite, is looked for here
    monkeypatch.delenv("SIS2FHIR_STORE_URL", raising=False)
    code, output = invoke(command)
    assert code == 1, output
    assert "no sis2fhir state store at sqlite:///sis2fhir-state.sqlite" in output
    assert "--store" in output and "--config" in output and "SIS2FHIR_STORE_URL" in output
    assert "no disclosure recorded" not in output
    code, output = invoke([*command, "--store", str(tmp_path / "typo.sqlite")])
    assert code == 1 and "typo.sqlite" in output, output
    assert list(tmp_path.iterdir()) == []


def test_a_file_or_database_without_the_tables_is_not_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    code, output = invoke(["disclosures", "--student", "stu-0000140", "--store", str(empty)])
    assert code == 1 and "has no disclosures, outbox, runs table" in output, output
    assert empty.stat().st_size == 0  # no table was created in it
    code, output = invoke(["outbox", "list", "--store", "sqlite://"])
    assert code == 1 and "in-memory" in output, output


def test_a_postgresql_database_without_the_tables_is_refused_and_left_alone(postgres_url: str) -> None:
    url = new_database(postgres_url, "empty")
    code, output = invoke(["pending", "--store", url])
    assert code == 1 and "no sis2fhir state store" in output and "table" in output, output
    engine = create_engine(url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_the_operator_commands_find_the_store_of_a_one_off_sync(synced: Path) -> None:
    with (EXAMPLE / "consents.csv").open(encoding="utf-8-sig") as f:
        student = next(r["studentSourcedId"] for r in csv.DictReader(f))
    for store in (str(synced), str(synced / "state.sqlite"), f"sqlite:///{synced / 'state.sqlite'}"):
        code, output = invoke(["disclosures", "--student", student, "--store", store, "--json"])
        assert code == 0, output
    code, output = invoke(
        ["outbox", "list", "--json", "--limit", "1000"],
        env={"SIS2FHIR_STORE_URL": f"sqlite:///{synced / 'state.sqlite'}"},
    )
    assert code == 0 and output.count("\n") == 152, output[:300]  # the example district: 152 deliveries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_outbox_retry_exits_4_while_anything_still_waits(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    args = ["sync", str(EXAMPLE), "--as-of", AS_OF, "--store", store, "--report", str(tmp_path / "rows.csv")]
    nobody = f"mllp://127.0.0.1:{_free_port()}"  # nobody listens
    code, output = invoke([*args, "--destination", nobody], env=network.env())
    assert code == 4, output
    engine = open_store(store)
    with engine.connect() as conn:
        queued = len(conn.execute(select(outbox.c.key).where(outbox.c.status == "queued")).all())
    assert queued
    code, output = invoke(["outbox", "retry", "--store", store], env=network.env())
    assert code == 4, output
    assert f"still in the outbox: {queued} queued" in output


def test_replay_refuses_a_key_it_cannot_resolve(synced: Path) -> None:
    store = str(synced)
    engine = open_store(f"sqlite:///{synced / 'state.sqlite'}")
    with engine.connect() as conn:
        keys = [k for (k,) in conn.execute(select(outbox.c.key))]
    code, output = invoke(["outbox", "replay", "ffffffffffffffffdeadbeef", "--store", store])
    assert code == 2 and "no outbox item has a key starting with 'ffffffffffffffffdeadbeef'" in output, output
    first, n = Counter(k[0] for k in keys).most_common(1)[0]
    assert n > 1
    code, output = invoke(["outbox", "replay", first, "--store", store])
    assert code == 2 and f"matches {n} items" in output, output
    code, output = invoke(["outbox", "replay", keys[0][:12], "--store", store])
    assert code == 2 and "is delivered, not a dead letter" in output, output


def _table(output: str) -> dict[str, int]:
    rows = {}
    for line in output.splitlines():
        m = re.match(r"^│ (.+?)\s+│\s+([\d,.]+)(?: s)? │$", line.strip())
        if m:
            rows[m.group(1).strip()] = int(float(m.group(2).replace(",", "")))
    return rows


def _lines(folder: Path, rtype: str) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in folder.glob(f"*/{rtype}.ndjson"))


def test_the_summary_counts_equal_the_files_written_and_a_rerun_says_nothing_changed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, first = invoke(["sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(out)])
    assert code == 0, first
    counts = _table(first)
    for rtype in ("Observation", "Consent", "Patient", "Organization"):
        held = counts[f"{rtype} resources for recipients (new + unchanged, per destination)"]
        assert held == _lines(out, rtype) > 0
        assert counts[f"of which new or changed in this run: {rtype}"] == held
    code, again = invoke(["sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(out)])
    assert code == 0, again
    assert "0 changes: the input is identical to run 1; nothing new to deliver." in again
    counts = _table(again)
    for rtype in ("Observation", "Consent", "Patient", "Organization"):
        assert counts[f"{rtype} resources for recipients (new + unchanged, per destination)"] == _lines(out, rtype)
        assert counts[f"of which new or changed in this run: {rtype}"] == 0


def test_the_summary_separates_rejected_rows_from_warnings(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for f in EXAMPLE.iterdir():
        (export / f.name).write_bytes(f.read_bytes())
    with (export / "attendance.csv").open("a", encoding="utf-8") as f:  # a student nobody enrolled: an error
        header = (EXAMPLE / "attendance.csv").read_text(encoding="utf-8").splitlines()[1].split(",")
        f.write(",".join(["stu-9999999", *header[1:]]) + "\n")
    out = tmp_path / "out"
    code, output = invoke(["sync", str(export), "--as-of", AS_OF, "--out", str(out)])
    assert code == 3, output
    with (out / "rows-report.csv").open(encoding="utf-8") as f:
        issues = list(csv.DictReader(f))
    table = _table(output)
    errors = Counter(i["code"] for i in issues if i["severity"] == "error")
    warnings = Counter(i["code"] for i in issues if i["severity"] == "warning")
    assert errors and warnings
    assert table["input rows rejected (not used)"] == len(
        {(i["file"], i["line"]) for i in issues if i["severity"] == "error"}
    )
    assert {k.removeprefix("error "): v for k, v in table.items() if k.startswith("error ")} == errors
    assert {k.removeprefix("warning "): v for k, v in table.items() if k.startswith("warning ")} == warnings
    assert table["warnings (rows used, or notes on a whole file)"] == sum(warnings.values())
    assert "stu-9999999" not in output  # the summary counts; the row report names the row
