"""A recipient's NDJSON folder is a self-contained set, through the real command line (subprocesses): Patient and
Organization files beside Observation and Consent, every reference resolving in the same folder, a Patient only
for a student with a disclosure to that recipient, identifier-only mode, byte-stable output. At a FHIR REST
recipient (the real sekmet server) nothing of that changes: no Patient or Organization is sent there."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from sis2fhir.config import DistrictSettings
from tests.end_to_end.test_sync_fhir import search_all, seed_patients
from tests.store.test_store_lock import run
from tests.support import network, paths

EXAMPLE = paths.ROOT / "examples" / "district"
AS_OF = "2026-03-31"
# the CLI runs with the tests' network identity (tests/support/network.py, as tests/store/test_store_lock.run gives it)
DISTRICT = DistrictSettings(**network.district())


def sync(out: Path, *extra: str) -> str:
    code, output = run("sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(out), *extra, wait=0,
                       log=out.parent / f"{out.name}.log")  # fmt: skip
    assert code == 0, output
    return output


def resources(folder: Path, rtype: str) -> list[dict[str, Any]]:
    path = folder / f"{rtype}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def references(node: Any) -> Iterator[dict[str, Any]]:
    """Every Reference in a resource (any dict with `reference`, or a logical one: `type` and `identifier`)."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str) or ("identifier" in node and isinstance(node.get("type"), str)):
            yield node
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def recipient_folders(out: Path) -> list[Path]:
    folders = sorted(p for p in out.iterdir() if p.is_dir() and p.name != "quarantine")
    assert folders
    return folders


def consent_rows() -> list[dict[str, str]]:
    with (EXAMPLE / "consents.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def students() -> dict[str, dict[str, str]]:
    """users.csv students by sourcedId."""
    with (EXAMPLE / "users.csv").open(newline="") as f:
        return {r["sourcedId"]: r for r in csv.DictReader(f) if r["role"] == "student"}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("set") / "out"
    sync(folder)
    return folder


def test_every_reference_in_a_recipient_folder_resolves_to_a_resource_in_that_folder(out: Path) -> None:
    for folder in recipient_folders(out):
        held = {f"{rt}/{r['id']}" for rt in ("Patient", "Organization", "Observation", "Consent")
                for r in resources(folder, rt)}  # fmt: skip
        assert resources(folder, "Patient") and resources(folder, "Organization") and resources(folder, "Observation")
        checked = 0
        for rtype in ("Patient", "Organization", "Observation", "Consent"):
            for resource in resources(folder, rtype):
                for ref in references(resource):
                    assert ref.get("reference") in held, (folder.name, rtype, ref)  # literal, and it resolves
                    checked += 1
        assert checked > 3 * len(resources(folder, "Observation"))  # subject, performer, patient, custodian, ...
    code, output = run("validate", str(out), wait=0, log=out.parent / "validate.log")
    assert code == 0, output  # every resource, Patient and Organization included, valid R4


def test_the_organizations_are_the_district_its_schools_and_the_recipient(out: Path) -> None:
    for folder in recipient_folders(out):
        orgs = resources(folder, "Organization")
        by_system = {o["identifier"][0]["system"]: o for o in orgs}
        assert DISTRICT.system("organization") in by_system  # the district, the Consent's custodian
        assert by_system["http://hl7.org/fhir/sid/us-npi"]["identifier"][0]["value"] == folder.name  # the recipient
        schools = {
            o["identifier"][0]["value"] for o in orgs if o["identifier"][0]["system"] == DISTRICT.system("school")
        }
        performers = {obs["performer"][0]["identifier"]["value"] for obs in resources(folder, "Observation")}
        assert schools == performers
        assert len({o["id"] for o in orgs}) == len(orgs)  # one line per Organization, though every item carries it


def test_only_a_student_with_a_disclosure_to_that_recipient_has_a_patient_in_its_folder(out: Path) -> None:
    roster = students()
    state_to_sourced = {r["identifier"]: sid for sid, r in roster.items()}
    for folder in recipient_folders(out):
        patients = resources(folder, "Patient")
        sourced = {i["value"] for p in patients for i in p["identifier"] if i["system"].endswith("student-sourced-id")}
        # no Patient without this student's Consent in the same folder (the disclosure it rests on)
        assert {c["patient"]["reference"] for c in resources(folder, "Consent")} == {f"Patient/{p['id']}"
                                                                                     for p in patients}  # fmt: skip
        rows = [r for r in consent_rows() if r["recipientOrganization"] == folder.name]
        named = {r["studentSourcedId"] or state_to_sourced.get(r["studentIdentifier"], "") for r in rows}
        # active on the as-of date (a revocation dated later has not taken effect yet)
        active = {r["studentSourcedId"] or state_to_sourced.get(r["studentIdentifier"], "") for r in rows
                  if r["status"] == "active" or (r["status"] == "revoked" and r["revokedDate"] > AS_OF)}  # fmt: skip
        assert sourced <= active  # a declined or revoked consent, or none at all: no Patient
        assert set(roster) - named and not (set(roster) - named) & sourced
    # stu-0000003's consent to 1904672353 was revoked on 2026-03-13; the one to 1582147033 permits
    assert "stu-0000003" not in {i["value"] for p in resources(out / "1904672353", "Patient") for i in p["identifier"]}
    assert "stu-0000003" in {i["value"] for p in resources(out / "1582147033", "Patient") for i in p["identifier"]}


def test_the_patient_says_what_matching_needs_from_the_roster(out: Path) -> None:
    roster = students()
    with (EXAMPLE / "demographics.csv").open(newline="") as f:
        demographics = {r["sourcedId"]: r for r in csv.DictReader(f)}
    patient = resources(out / "1582147033", "Patient")[0]
    sourced = next(i["value"] for i in patient["identifier"] if i["system"].endswith("student-sourced-id"))
    user = roster[sourced]
    assert patient["identifier"][0] == {"system": DISTRICT.student_id_system, "value": user["identifier"]}
    assert patient["name"][0]["family"] == user["familyName"] and patient["name"][0]["given"][0] == user["givenName"]
    assert patient["birthDate"] == demographics[sourced]["birthDate"]
    assert patient["gender"] == demographics[sourced]["sex"]


def test_the_output_is_byte_stable_across_runs(out: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    sync(again)
    files = sorted(p.relative_to(out) for p in out.glob("*/*.ndjson"))
    assert files == sorted(p.relative_to(again) for p in again.glob("*/*.ndjson"))
    assert {f.name for f in files} == {"Patient.ndjson", "Organization.ndjson", "Observation.ndjson", "Consent.ndjson"}
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)
    before = {f: (again / f).read_bytes() for f in files}
    output = sync(again)  # into the same folder: nothing changes, nothing is rewritten differently
    assert "0 changes" in output
    assert {f: (again / f).read_bytes() for f in files} == before


def test_identifier_only_writes_no_name_birth_date_or_gender(tmp_path: Path) -> None:
    config = tmp_path / "sis2fhir.yaml"
    # the district says identifier-only; one recipient overrides it back to matching
    settings = {
        "district": {"patient_detail": "identifier-only"},
        "recipients": [{"identifier": "1729034169", "patient_detail": "matching"}],
    }
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    sync(out, "--config", str(config))
    family_names = {r["familyName"] for r in students().values()}
    for folder in recipient_folders(out):
        patients = resources(folder, "Patient")
        assert patients
        if folder.name == "1729034169":
            assert all("name" in p and "birthDate" in p and "gender" in p for p in patients)
            continue
        for p in patients:
            assert set(p) == {"resourceType", "id", "meta", "identifier", "text"}, p
        text = (folder / "Patient.ndjson").read_text()
        assert not any(name in text for name in family_names)
        assert '"birthDate"' not in text and '"gender"' not in text


@pytest.mark.integration
def test_a_fhir_rest_recipient_gets_no_patient_or_organization_and_its_own_patient_is_linked(
    fhir_server: str, tmp_path: Path
) -> None:
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"
    config = tmp_path / "sis2fhir.yaml"
    config.write_text(yaml.safe_dump({"district": network.district(namespace), "hl7": network.HL7}))
    seeded = seed_patients(fhir_server, f"{namespace}:state-student-id")
    out = tmp_path / "out"
    sync(out, "--config", str(config), "--destination", fhir_server)
    assert any(resources(folder, "Patient") for folder in recipient_folders(out))  # the folder did get them

    patients = list(search_all(fhir_server, "Patient", identifier=f"{namespace}:state-student-id|"))
    assert len(patients) == seeded  # the recipient's own Patients, none created or overwritten
    assert all("name" not in p and "birthDate" not in p for p in patients)
    assert not list(search_all(fhir_server, "Patient", identifier=f"{namespace}:student-sourced-id|"))
    for kind in ("organization", "school"):
        assert not list(search_all(fhir_server, "Organization", identifier=f"{namespace}:{kind}|"))
    ids = {p["id"] for p in patients}
    observations = list(search_all(fhir_server, "Observation", identifier=f"{namespace}:attendance-summary|"))
    assert observations
    for obs in observations:
        assert obs["subject"]["reference"].removeprefix("Patient/") in ids  # linked to the recipient's Patient
        assert "reference" not in obs["performer"][0]  # the school by identifier: the recipient has no such id
    for consent in search_all(fhir_server, "Consent", identifier=f"{namespace}:consent|"):
        assert consent["patient"]["reference"].removeprefix("Patient/") in ids
        assert all("reference" not in org for org in consent["organization"])


@pytest.mark.integration
def test_a_recipient_folder_loads_into_a_fhir_server_as_it_is_and_its_references_resolve_there(
    fhir_server: str, tmp_path: Path
) -> None:
    """What `$import` does with a folder (sekmet has no `$import`): every resource stored under its own id."""
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"  # ids derive from the namespace: unique to the test
    config = tmp_path / "sis2fhir.yaml"
    config.write_text(yaml.safe_dump({"district": network.district(namespace), "hl7": network.HL7}))
    out = tmp_path / "out"
    sync(out, "--config", str(config))
    folder = out / "1582147033"
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{rt}/{r['id']}"}}
        for rt in ("Organization", "Patient", "Observation", "Consent")
        for r in resources(folder, rt)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    answer = httpx.post(fhir_server, content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"},
                        timeout=120)  # fmt: skip
    assert answer.status_code == 200, answer.text[:500]
    for obs in resources(folder, "Observation")[:10]:
        found = httpx.get(f"{fhir_server}/Observation", params=[("_id", obs["id"]), ("_include", "Observation:subject"),
                          ("_include", "Observation:performer")], timeout=60).json()  # fmt: skip
        got = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in found.get("entry", [])}
        assert {obs["subject"]["reference"], obs["performer"][0]["reference"]} <= got
