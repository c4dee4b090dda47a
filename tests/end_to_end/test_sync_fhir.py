"""`sis2fhir sync --destination http://...` against a real FHIR server (sekmet-fhir): what lands is what NDJSON holds,
and a sync killed with SIGKILL in the middle of delivering loses nothing and duplicates nothing when run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.report import RowReport
from tests.support import network, paths

pytestmark = pytest.mark.integration

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"
AS_OF = "2026-03-31"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs without --out write rows-report.csv in the current folder: keep it out of the checkout."""
    monkeypatch.chdir(tmp_path)


def write_config(path: Path, namespace: str, **destination: object) -> Path:
    """A config whose district namespace is unique to the test, so tests sharing the server do not collide."""
    import yaml

    cfg: dict[str, object] = {"district": network.district(namespace), "hl7": network.HL7}
    if destination:
        cfg["recipients"] = [{"identifier": r, "destinations": [destination]} for r in recipients_of_example()]
    path.write_text(yaml.safe_dump(cfg))
    return path


def recipients_of_example() -> list[str]:
    import csv

    with (EXAMPLE / "consents.csv").open(newline="") as f:
        return sorted({r["recipientOrganization"] for r in csv.DictReader(f)})


def seed_patients(base: str, system: str) -> int:
    """The recipient EHR already knows the students (as a real EHR would, from registration)."""
    roster = read_roster(open_export(EXAMPLE), RowReport())
    entries = [
        {
            "resource": {"resourceType": "Patient", "identifier": [{"system": system, "value": s.state_id}]},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={system}|{s.state_id}"},
        }
        for s in roster.students.values()
        if s.state_id
    ]
    for i in range(0, len(entries), 100):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries[i : i + 100]}
        r = httpx.post(
            base, content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"}, timeout=60
        )
        assert r.status_code == 200, r.text[:500]
    return len(entries)


def search_all(base: str, resource_type: str, **params: str) -> Iterator[dict]:
    url: str | None = f"{base}/{resource_type}"
    query: dict[str, str] | None = {**params, "_count": "200"}
    while url:
        r = httpx.get(url, params=query, timeout=60)
        assert r.status_code == 200, r.text[:300]
        bundle = r.json()
        for e in bundle.get("entry", []):
            yield e["resource"]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        query = None


def identifiers_on_server(base: str, resource_type: str, system: str) -> Counter[str]:
    """How many resources on the server carry each business identifier value of `system`."""
    found: Counter[str] = Counter()
    for res in search_all(base, resource_type, identifier=f"{system}|"):
        for ident in res.get("identifier", []):
            if ident.get("system") == system:
                found[ident["value"]] += 1
    return found


def identifiers_in_ndjson(out: Path, resource_type: str) -> set[str]:
    values = set()
    for path in out.glob(f"*/{resource_type}.ndjson"):
        for line in path.read_bytes().splitlines():
            values.add(orjson.loads(line)["identifier"][0]["value"])
    return values


def test_the_server_holds_exactly_what_the_ndjson_output_holds(fhir_server: str, tmp_path: Path) -> None:
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "sis2fhir.yaml", namespace)
    seed_patients(fhir_server, f"{namespace}:state-student-id")
    sync_args = ["sync", str(EXAMPLE), "--as-of", AS_OF, "--config", str(config), "--out", str(tmp_path / "out"),
                 "--destination", fhir_server]  # fmt: skip
    res = runner.invoke(app, sync_args)
    assert res.exit_code == 0, res.output
    for rtype, kind in (("Observation", "attendance-summary"), ("Consent", "consent")):
        on_server = identifiers_on_server(fhir_server, rtype, f"{namespace}:{kind}")
        assert set(on_server) == identifiers_in_ndjson(tmp_path / "out", rtype)
        assert max(on_server.values()) == 1  # never duplicated, though several recipients share Observations

    # a clinician's system finds a student's attendance by the patient's identifier, and by the Patient reference
    obs = next(search_all(fhir_server, "Observation", identifier=f"{namespace}:attendance-summary|"))
    patient_ref = obs["subject"]["reference"]
    assert patient_ref.startswith("Patient/")
    patient = httpx.get(f"{fhir_server}/{patient_ref}").json()
    state_id = patient["identifier"][0]["value"]
    by_subject = list(search_all(fhir_server, "Observation", subject=patient_ref))
    by_identifier = list(
        search_all(fhir_server, "Observation", **{"patient.identifier": f"{namespace}:state-student-id|{state_id}"})
    )
    assert obs["id"] in {o["id"] for o in by_subject}
    assert {o["id"] for o in by_identifier} == {o["id"] for o in by_subject}

    # the disclosure log says exactly what the server received: every resource version it names is on the server,
    # and every resource on the server was logged as disclosed to some recipient under a consent
    from sqlalchemy import select

    from sis2fhir.store import open_store
    from sis2fhir.store.schema import disclosures

    with open_store(f"sqlite:///{tmp_path / 'out' / 'state.sqlite'}").connect() as conn:
        logged = conn.execute(select(disclosures).where(disclosures.c.destination == f"fhir:{fhir_server}")).all()
    assert logged and all(r.consent_id for r in logged)
    versions = {ref for r in logged for ref in orjson.loads(r.disclosed)}
    for ref in versions:
        assert httpx.get(f"{fhir_server}/{ref}").status_code == 200, ref  # vread of the logged version
    for rtype, kind in (("Observation", "attendance-summary"), ("Consent", "consent")):
        on_server = {res["id"] for res in search_all(fhir_server, rtype, identifier=f"{namespace}:{kind}|")}
        assert on_server == {v.split("/")[1] for v in versions if v.startswith(f"{rtype}/")}

    # and a re-run sends nothing
    res = runner.invoke(app, sync_args)
    assert res.exit_code == 0, res.output
    assert "0 changes" in res.output


def test_students_unknown_to_the_ehr_wait_as_pending_and_are_not_created(fhir_server: str, tmp_path: Path) -> None:
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "sis2fhir.yaml", namespace)
    res = runner.invoke(
        app,
        [
            "sync",
            str(EXAMPLE),
            "--as-of",
            AS_OF,
            "--config",
            str(config),
            "--store",
            f"sqlite:///{tmp_path / 'state.sqlite'}",
            "--destination",
            fhir_server,
        ],
    )
    assert res.exit_code == 4, res.output  # completed, but not all delivered
    assert "deliveries pending" in res.output
    assert not list(search_all(fhir_server, "Patient", identifier=f"{namespace}:state-student-id|"))
    assert not list(search_all(fhir_server, "Observation", identifier=f"{namespace}:attendance-summary|"))
    listed = runner.invoke(
        app,
        [
            "outbox",
            "list",
            "--status",
            "pending",
            "--store",
            f"sqlite:///{tmp_path / 'state.sqlite'}",
            "--config",
            str(config),
        ],
    )
    assert listed.exit_code == 0 and "pending" in listed.output


def test_a_sync_killed_mid_delivery_loses_and_duplicates_nothing(fhir_server: str, tmp_path: Path) -> None:
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"
    # one resource per transaction, one at a time: slow enough to be caught in the middle
    config = write_config(
        tmp_path / "sis2fhir.yaml", namespace, type="fhir", url=fhir_server, bundle_size=1, concurrency=1
    )
    seed_patients(fhir_server, f"{namespace}:state-student-id")
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    cmd = [
        str(Path(sys.executable).parent / "sis2fhir"),
        "sync",
        str(EXAMPLE),
        "--as-of",
        AS_OF,
        "--config",
        str(config),
        "--store",
        store,
    ]
    system = f"{namespace}:attendance-summary"

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    landed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        landed = sum(identifiers_on_server(fhir_server, "Observation", system).values())
        if landed >= 5:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the sync finished before it could be killed mid-delivery"
    partial = sum(identifiers_on_server(fhir_server, "Observation", system).values())

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]

    on_server = identifiers_on_server(fhir_server, "Observation", system)
    consents = identifiers_on_server(fhir_server, "Consent", f"{namespace}:consent")

    # what the NDJSON output of the same export holds is what the server must hold, once each
    out = tmp_path / "reference"
    ref_config = write_config(tmp_path / "reference.yaml", namespace)  # same namespace, no FHIR destination
    ref = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", AS_OF, "--config", str(ref_config), "--out", str(out)])
    assert ref.exit_code == 0, ref.output
    expected = identifiers_in_ndjson(out, "Observation")
    assert partial < len(expected)
    assert set(on_server) == expected  # nothing lost
    assert max(on_server.values()) == 1  # nothing duplicated
    assert set(consents) == identifiers_in_ndjson(out, "Consent") and max(consents.values()) == 1
