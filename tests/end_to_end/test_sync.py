"""`sis2fhir sync` end to end: the example district and a hand-computed district, through the real CLI."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from typer.testing import CliRunner

from sis2fhir import terminology as t
from sis2fhir.cli import app
from sis2fhir.config import load_settings
from sis2fhir.gate import decide
from sis2fhir.read.consents import read_consents
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.report import RowReport
from sis2fhir.validate.engine import validate_resource
from tests.support import network, paths

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"
KNOWN = paths.FIXTURES / "known_district"
EXAMPLE_AS_OF = "2026-03-31"
runner = CliRunner()


def run_sync(export: Path, out: Path, *extra: str) -> tuple[int, str]:
    res = runner.invoke(app, ["sync", str(export), "--out", str(out), *extra])
    return res.exit_code, res.output


def ndjson(path: Path) -> Iterator[dict]:
    with path.open("rb") as f:
        for line in f:
            yield orjson.loads(line)


@cache
def r4_schema_validator(resource_type: str) -> jsonschema.Draft6Validator:
    """The official schema, entered at the resource's own definition (the top-level oneOf is slow)."""
    schema = orjson.loads((paths.FIXTURES / "r4-schema" / "fhir.schema.json").read_bytes())
    return jsonschema.Draft6Validator({"$ref": f"#/definitions/{resource_type}", "definitions": schema["definitions"]})


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("example") / "out"
    code, output = run_sync(EXAMPLE, out, "--as-of", EXAMPLE_AS_OF)
    return out, code, output


def test_the_example_district_syncs_cleanly(example_run: tuple[Path, int, str]) -> None:
    out, code, output = example_run
    assert code == 0, output
    recipients = [p for p in out.iterdir() if p.is_dir() and p.name != "quarantine"]
    assert len(recipients) >= 2
    for folder in recipients:
        assert (folder / "Observation.ndjson").stat().st_size > 0
        assert (folder / "Consent.ndjson").stat().st_size > 0
    assert (out / "rows-report.csv").exists()


def test_every_written_resource_passes_our_profiles_and_the_official_r4_schema(
    example_run: tuple[Path, int, str],
) -> None:
    out, _, _ = example_run
    n = 0
    for path in out.glob("*/*.ndjson"):
        for res in ndjson(path):
            n += 1
            assert [i for i in validate_resource(res) if i.severity == "error"] == [], res["id"]
            errors = list(r4_schema_validator(res["resourceType"]).iter_errors(res))
            assert errors == [], (res["id"], errors[0].message if errors else "")
    assert n > 100


def test_sis2fhir_validate_accepts_the_output(example_run: tuple[Path, int, str]) -> None:
    out, _, _ = example_run
    res = runner.invoke(app, ["validate", str(out)])
    assert res.exit_code == 0, res.output


def test_a_second_run_over_the_same_export_makes_no_changes(example_run: tuple[Path, int, str]) -> None:
    out, _, _ = example_run
    before = {p: p.read_bytes() for p in out.glob("*/*.ndjson")}
    code, output = run_sync(EXAMPLE, out, "--as-of", EXAMPLE_AS_OF)
    assert code == 0, output
    assert "0 changes" in output
    assert {p: p.read_bytes() for p in out.glob("*/*.ndjson")} == before


def test_the_same_export_gives_the_same_resources_in_a_fresh_folder(
    example_run: tuple[Path, int, str], tmp_path: Path
) -> None:
    out, _, _ = example_run
    code, output = run_sync(EXAMPLE, tmp_path / "again", "--as-of", EXAMPLE_AS_OF)
    assert code == 0, output
    for p in out.glob("*/*.ndjson"):
        assert (tmp_path / "again" / p.parent.name / p.name).read_bytes() == p.read_bytes()


def test_observations_go_only_to_recipients_with_a_permitting_consent(
    example_run: tuple[Path, int, str],
) -> None:
    out, _, _ = example_run
    report = RowReport()
    export = open_export(EXAMPLE)
    roster = read_roster(export, report)
    consents = read_consents(export, roster, report, date.fromisoformat(EXAMPLE_AS_OF))
    by_state_id = roster.student_by_state_id()
    as_of = date.fromisoformat(EXAMPLE_AS_OF)
    system = load_settings().district.student_id_system
    for folder in (p for p in out.iterdir() if p.is_dir() and p.name != "quarantine"):
        for obs in ndjson(folder / "Observation.ndjson"):
            ident = obs["subject"]["identifier"]
            assert ident["system"] == system
            student = by_state_id[ident["value"]]
            assert decide(consents.get(student, []), folder.name, as_of).decision == "permitted"


# --- a district written by hand, with numbers computed by hand (tests/fixtures/known_district/README.md) ----------


def known_as_of() -> date:
    text = (KNOWN / "README.md").read_text()
    for token in text.replace("`", " ").split():
        try:
            return date.fromisoformat(token.strip(".,:;()*"))
        except ValueError:
            continue
    raise AssertionError("the known district README names no as-of date")


def expected_rows(name: str) -> list[dict[str, str]]:
    with (KNOWN / name).open(newline="") as f:
        return list(csv.DictReader(f))


# the hand-computed numbers of the known district: tests/measure/test_engine_contract.py (for every engine)


def test_hand_computed_consent_decisions() -> None:
    report = RowReport()
    export = open_export(KNOWN)
    roster = read_roster(export, report)
    as_of = known_as_of()
    consents = read_consents(export, roster, report, as_of)
    for r in expected_rows("expected-consent.csv"):
        student = r.get("student_sourced_id") or roster.student_by_state_id()[r["student_identifier"]]
        recipient = r.get("recipient") or r.get("recipient_organization") or r.get("recipientOrganization")
        assert recipient
        got = decide(consents.get(student, []), recipient, as_of).decision
        assert got == r["decision"], f"{student} -> {recipient}"


def test_the_known_district_output_holds_exactly_the_permitted_students(tmp_path: Path) -> None:
    code, output = run_sync(KNOWN, tmp_path / "out", "--as-of", known_as_of().isoformat())
    assert code in (0, 3), output
    permitted = {
        (
            r.get("recipient") or r.get("recipient_organization") or r.get("recipientOrganization"),
            r.get("student_sourced_id") or r.get("student_identifier"),
        )
        for r in expected_rows("expected-consent.csv")
        if r["decision"] == "permitted"
    }
    report = RowReport()
    roster = read_roster(open_export(KNOWN), report)
    state_to_sourced = roster.student_by_state_id()
    got = set()
    for folder in (p for p in (tmp_path / "out").iterdir() if p.is_dir() and p.name != "quarantine"):
        for consent in ndjson(folder / "Consent.ndjson"):
            value = consent["patient"]["identifier"]["value"]
            got.add((folder.name, state_to_sourced.get(value, value)))
    normalised = {(rcp, state_to_sourced.get(s, s)) for rcp, s in permitted}
    assert got == normalised


# --- consent changes between runs --------------------------------------------------------------------------------


def revoke_every_consent(export: Path, revoked: str) -> None:
    path = export / "consents.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0])
    for r in rows:
        r["status"], r["revokedDate"] = "revoked", revoked
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def test_a_revoked_consent_stops_the_next_delivery_and_the_recipient_learns_of_it(tmp_path: Path) -> None:
    export = tmp_path / "district"
    shutil.copytree(EXAMPLE, export)
    out = tmp_path / "out"
    code, output = run_sync(export, out, "--as-of", EXAMPLE_AS_OF)
    assert code == 0, output
    delivered = sum(1 for _ in out.glob("*/Consent.ndjson") for _ in ndjson(_))
    # every consent revoked, effective before the next run (also the ones not yet started on the first run)
    revoke_every_consent(export, "2026-04-01")
    observations_before = {p: p.read_bytes() for p in out.glob("*/Observation.ndjson")}
    code, output = run_sync(export, out, "--as-of", "2026-04-15")
    assert code == 0, output
    # no attendance goes out any more...
    assert {p: p.read_bytes() for p in out.glob("*/Observation.ndjson")} == observations_before
    # ...and each recipient that held a student's data now holds that student's Consent as inactive, ended
    consents = [c for p in out.glob("*/Consent.ndjson") for c in ndjson(p)]
    assert len(consents) == delivered
    assert {c["status"] for c in consents} == {"inactive"}
    assert {c["provision"]["period"]["end"] for c in consents} == {"2026-04-01"}
    assert f"{delivered} changes" in output
    code, output = run_sync(export, out, "--as-of", "2026-04-16")
    assert code == 0 and "0 changes" in output, output


@pytest.mark.parametrize("workers", [1, 2])
def test_items_waiting_for_an_unreachable_recipient_are_withdrawn_when_consent_is_revoked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    import socket

    import sis2fhir.disclosure as disclosure
    import sis2fhir.student_chunks as student_chunks

    monkeypatch.chdir(tmp_path)
    for name, value in network.env().items():  # network delivery needs the district's own identifiers
        monkeypatch.setenv(name, value)
    if workers > 1:  # the example is small: map it in forked workers anyway, a few students each
        monkeypatch.setattr(disclosure, "PARALLEL_MAPPING_FROM", 1)
        monkeypatch.setattr(student_chunks, "MAP_CHUNK", 17)
    export = tmp_path / "district"
    shutil.copytree(EXAMPLE, export)
    with socket.socket() as s:  # a loopback port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    args = ["sync", str(export), "--store", store, "--destination", f"http://127.0.0.1:{port}/fhir",
            "--workers", str(workers)]  # fmt: skip
    first = runner.invoke(app, [*args, "--as-of", EXAMPLE_AS_OF])
    assert first.exit_code == 4 and "152 changes" in first.output, first.output
    revoke_every_consent(export, "2026-04-01")
    second = runner.invoke(app, [*args, "--as-of", "2026-04-15"])
    # nothing reached the recipient, so it holds nothing to be told of: what waited is withdrawn, nothing is queued
    withdrawn = [line.split("│")[-2].strip() for line in second.output.splitlines() if "withdrawn (consent" in line]
    assert withdrawn == ["152"], second.output
    listed = runner.invoke(app, ["outbox", "list", "--json", "--status", "queued", "--store", store])
    assert listed.output.strip() == "", listed.output


def test_disclosures_are_recorded_per_student(example_run: tuple[Path, int, str]) -> None:
    out, _, _ = example_run
    consent = next(ndjson(next(out.glob("*/Consent.ndjson"))))
    state_id = consent["patient"]["identifier"]["value"]
    res = runner.invoke(
        app, ["disclosures", "--student", state_id, "--store", f"sqlite:///{out / 'state.sqlite'}", "--json"]
    )
    assert res.exit_code == 0, res.output
    records = [orjson.loads(line) for line in res.output.splitlines() if line.strip()]
    assert records, res.output
    assert all(r["state_student_id"] == state_id for r in records)
    assert any(f"Consent/{consent['id']}" in d for r in records for d in r["disclosed"])
    assert {r["consent_id"] for r in records} >= {consent["identifier"][0]["value"]}


def test_the_chronic_status_is_a_searchable_component_code(example_run: tuple[Path, int, str]) -> None:
    out, _, _ = example_run
    obs = next(ndjson(next(out.glob("*/Observation.ndjson"))))
    tiers = [c for c in obs["component"] if c["code"]["coding"][0]["code"] == "chronic-absence-tier"]
    assert len(tiers) == 1
    assert tiers[0]["valueCodeableConcept"]["coding"][0]["system"] == t.TIER_CS
    assert obs["interpretation"][0]["coding"][0]["code"] == tiers[0]["valueCodeableConcept"]["coding"][0]["code"]


def test_an_invalid_resource_is_quarantined_with_an_outcome_naming_element_and_source_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sis2fhir.disclosure as disclosure

    real = disclosure.attendance_observation
    broken_for: list[str] = []

    def mapper_with_a_bug(summary, student, school, district, measured, literal=False):  # type: ignore[no-untyped-def]
        obs = real(summary, student, school, district, measured, literal)
        if not broken_for:  # the first student's Observation loses its tier component
            broken_for.append(student.sourced_id)
            obs["component"] = [c for c in obs["component"] if c["code"]["coding"][0]["code"] != "chronic-absence-tier"]
        return obs

    monkeypatch.setattr(disclosure, "attendance_observation", mapper_with_a_bug)
    out = tmp_path / "out"
    code, output = run_sync(EXAMPLE, out, "--as-of", EXAMPLE_AS_OF)
    assert code == 3, output  # completed, with something to look at
    quarantined = [orjson.loads(line) for line in (out / "quarantine" / "Observation.ndjson").read_bytes().splitlines()]
    assert len(quarantined) == 1
    outcome = quarantined[0]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("Observation.component" in e for i in outcome["issue"] for e in i.get("expression", []))
    assert all(i["diagnostics"].startswith("users.csv line ") for i in outcome["issue"])
    assert broken_for[0] in outcome["issue"][0]["diagnostics"]
    # the other students' Observations still went out; the broken one did not
    written = {o["id"] for p in out.glob("*/Observation.ndjson") if p.parent.name != "quarantine" for o in ndjson(p)}
    assert quarantined[0]["resource"]["id"] not in written
    assert len(written) > 100
    report = (out / "rows-report.csv").read_text()
    assert "invalid-resource" in report


def test_the_state_can_live_in_postgresql(postgres_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "sync_state"'))
    admin.dispose()
    store = postgres_url.rsplit("/", 1)[0] + "/sync_state"
    code, output = run_sync(EXAMPLE, tmp_path / "out", "--as-of", EXAMPLE_AS_OF, "--store", store)
    assert code == 0, output
    assert not (tmp_path / "out" / "state.sqlite").exists()
    code, output = run_sync(EXAMPLE, tmp_path / "out", "--as-of", EXAMPLE_AS_OF, "--store", store)
    assert code == 0 and "0 changes: the input is identical to run 1" in output, output  # stood on run 1


def test_an_unreachable_recipient_keeps_items_queued_and_every_run_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.chdir(tmp_path)
    for name, value in network.env().items():  # network delivery needs the district's own identifiers
        monkeypatch.setenv(name, value)
    with socket.socket() as s:  # a loopback port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["sync", str(EXAMPLE), "--as-of", EXAMPLE_AS_OF, "--store", f"sqlite:///{tmp_path / 's.sqlite'}",
            "--destination", f"http://127.0.0.1:{port}/fhir"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 4, first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 4, second.output
    assert "0 changes" in second.output and "waiting in the outbox: queued" in second.output
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    listed = runner.invoke(app, ["outbox", "list", "--json", "--status", "queued", "--limit", "500", "--store", store])
    items = [orjson.loads(line) for line in listed.output.splitlines()]
    assert len(items) == 152 and all(i["status"] == "queued" and i["attempts"] == 1 for i in items)
    assert all("could not be reached" in i["last_error"] for i in items)


def test_a_recipient_that_is_not_fhir_r4_stops_the_run_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server

    for name, value in network.env().items():  # network delivery needs the district's own identifiers
        monkeypatch.setenv(name, value)
    import threading

    class Dstu3Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = orjson.dumps({"resourceType": "CapabilityStatement", "fhirVersion": "3.0.2", "rest": [
                {"mode": "server", "interaction": [{"code": "transaction"}]}]})  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dstu3Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", EXAMPLE_AS_OF, "--store",
                                  f"sqlite:///{tmp_path / 's.sqlite'}", "--report", str(tmp_path / "r.csv"),
                                  "--destination", f"http://127.0.0.1:{server.server_port}/fhir"])  # fmt: skip
    finally:
        server.shutdown()
    assert res.exit_code == 1
    assert "3.0.2" in res.output and "Nothing was sent" in res.output
    assert not (tmp_path / "r.csv").exists()  # stopped before reading the export


def test_no_name_or_birth_date_reaches_the_logs_or_the_row_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    export = tmp_path / "district"
    shutil.copytree(EXAMPLE, export)
    with (export / "attendance.csv").open("a") as f:  # some bad rows, so that the report has something to say
        f.write("stu-0000001,,org-school-01,2025-13-01,Present,1,\nstu-9999999,,org-school-01,2025-09-02,Present,1,\n")
    report = RowReport()
    ex = open_export(export)
    roster = read_roster(ex, report)
    phi = {s.given_name for s in roster.students.values()} | {s.family_name for s in roster.students.values()}
    phi |= {s.birth_date.isoformat() for s in roster.students.values() if s.birth_date}
    phi = {p for p in phi if len(p) > 3}
    assert len(phi) > 100
    with caplog.at_level(logging.DEBUG):
        code, output = run_sync(export, tmp_path / "out", "--as-of", EXAMPLE_AS_OF)
    assert code == 3, output
    text = caplog.text + output + (tmp_path / "out" / "rows-report.csv").read_text()
    assert "bad-date" in text and "unknown-student" in text
    leaked = sorted(p for p in phi if p in text)
    assert leaked == []


def test_mapping_on_several_cores_writes_what_one_core_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sis2fhir.disclosure as disclosure
    import sis2fhir.student_chunks as student_chunks

    code, output = run_sync(EXAMPLE, tmp_path / "one", "--as-of", EXAMPLE_AS_OF, "--workers", "1")
    assert code == 0, output
    monkeypatch.setattr(disclosure, "PARALLEL_MAPPING_FROM", 1)  # the example is small: fork anyway
    monkeypatch.setattr(student_chunks, "MAP_CHUNK", 17)
    let_go, parents = student_chunks.StudentsToMap.let_go, []

    def let_go_seen(self: student_chunks.StudentsToMap) -> None:
        parents.append(os.getpid())
        let_go(self)

    monkeypatch.setattr(student_chunks.StudentsToMap, "let_go", let_go_seen)
    code2, output2 = run_sync(EXAMPLE, tmp_path / "two", "--as-of", EXAMPLE_AS_OF, "--workers", "2")
    assert code2 == 0, output2
    assert parents == [os.getpid()]  # this process let go of the students to map, its workers mapped them all

    def table(text: str) -> list[str]:  # the summary without the timings
        return [line for line in text.splitlines() if "time:" not in line and "destinations)" not in line]

    assert table(output2.replace(str(tmp_path / "two"), "")) == table(output.replace(str(tmp_path / "one"), ""))
    for p in (tmp_path / "one").glob("*/*.ndjson"):
        assert (tmp_path / "two" / p.parent.name / p.name).read_bytes() == p.read_bytes()


@pytest.mark.timeout(120)
def test_a_mapping_worker_killed_mid_run_stops_the_sync_with_a_message_and_the_next_run_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    import sis2fhir.disclosure as disclosure
    import sis2fhir.student_chunks as student_chunks

    monkeypatch.setattr(disclosure, "PARALLEL_MAPPING_FROM", 1)  # the example is small: fork anyway
    monkeypatch.setattr(student_chunks, "MAP_CHUNK", 17)
    map_chunk = disclosure._map_chunk

    def killed_on_chunk_3(job: Any, n: int) -> Any:  # in a worker: as the out-of-memory killer would end it
        if n == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return map_chunk(job, n)

    monkeypatch.setattr(disclosure, "_map_chunk", killed_on_chunk_3)
    out = tmp_path / "out"
    code, output = run_sync(EXAMPLE, out, "--as-of", EXAMPLE_AS_OF, "--workers", "2")
    assert code == 70 and "killed by signal 9" in output and "Traceback" not in output, output
    monkeypatch.setattr(disclosure, "_map_chunk", map_chunk)
    code, output = run_sync(EXAMPLE, out, "--as-of", EXAMPLE_AS_OF, "--workers", "2")
    assert code == 0, output
    clean = tmp_path / "clean"
    assert run_sync(EXAMPLE, clean, "--as-of", EXAMPLE_AS_OF, "--workers", "2")[0] == 0
    for p in clean.glob("*/*.ndjson"):  # what the stopped run had written is absorbed, nothing is missing
        assert sorted((out / p.parent.name / p.name).read_bytes().splitlines()) == sorted(p.read_bytes().splitlines())


def test_check_gives_the_district_the_row_report_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "district"
    shutil.copytree(EXAMPLE, export)
    with (export / "attendance.csv").open("a") as f:
        f.write("stu-0000001,,org-school-01,2025-13-01,Present,1,\n")
    res = runner.invoke(app, ["check", str(export), "--as-of", EXAMPLE_AS_OF, "--report", str(tmp_path / "r.csv")])
    assert res.exit_code == 3, res.output
    assert "nothing was sent" in res.output
    with (tmp_path / "r.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    bad = [r for r in rows if r["code"] == "bad-date"]
    assert len(bad) == 1 and bad[0]["file"] == "attendance.csv" and bad[0]["column"] == "date"
    assert int(bad[0]["line"]) == sum(1 for _ in (export / "attendance.csv").open())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["district", "r.csv"]  # no state, no output
