"""The FHIR API as a client sees it: `sis2fhir serve` a real process on loopback over a store a real `sync` of the
example district wrote, with two clients bound to two recipient organizations, real tokens (the SMART token flow
with keys made here), the fhirpy client and httpx. What each client finds is compared with what `sync --out` wrote
for its recipient in the same run."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from tests.support import network, serve_process, smart
from tests.support.served_district import HARBOR, RIVERSIDE, District, served_district

pytestmark = pytest.mark.integration
STATE_ID = "state-student-id"


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Iterator[District]:
    with served_district(tmp_path_factory.mktemp("served")) as d:
        yield d


@pytest.fixture(scope="module")
def riverside(district: District) -> SyncFHIRClient:
    return SyncFHIRClient(district.fhir, authorization=f"Bearer {district.token(RIVERSIDE)}")


def state_id(patient: dict[str, Any]) -> tuple[str, str]:
    ident = next(i for i in patient["identifier"] if i["system"].endswith(STATE_ID))
    return ident["system"], ident["value"]


def sourced_id(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"].endswith("student-sourced-id"))


def only_at(district: District, holder: str, other: str) -> dict[str, Any]:
    """A Patient that `sync --out` wrote for `holder`, with an active Consent there, and not for `other`."""
    others = {p["id"] for p in district.ndjson(other, "Patient")}
    active = {c["patient"]["reference"] for c in district.ndjson(holder, "Consent") if c["status"] == "active"}
    return next(
        p for p in district.ndjson(holder, "Patient") if p["id"] not in others and f"Patient/{p['id']}" in active
    )


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_metadata_answers_without_a_token_and_names_what_the_server_does(district: District) -> None:
    r = district.get("metadata")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    cs = r.json()
    assert (cs["resourceType"], cs["kind"], cs["fhirVersion"], cs["format"]) == (
        "CapabilityStatement",
        "instance",
        "4.0.1",
        ["json"],
    )
    rest = cs["rest"][0]
    assert rest["mode"] == "server"
    assert any(c["code"] == "SMART-on-FHIR" for s in rest["security"]["service"] for c in s["coding"])
    token_uris = [x["valueUri"] for e in rest["security"]["extension"] for x in e["extension"] if x["url"] == "token"]
    assert token_uris == [f"{district.url}/auth/token"]
    resources = {r["type"]: r for r in rest["resource"]}
    for rtype, param in (("Patient", "identifier"), ("Observation", "patient"), ("Observation", "code")):
        assert param in {p["name"] for p in resources[rtype]["searchParam"]}
        assert {i["code"] for i in resources[rtype]["interaction"]} == {"read", "search-type"}
    assert {"Consent", "Organization"} <= set(resources)
    assert [o["name"] for o in rest["operation"]] == ["export"]
    assert resources["Group"]["operation"][0]["definition"].endswith("/group-export")


def test_health_and_readiness_answer_without_a_token(district: District) -> None:
    assert httpx.get(f"{district.url}/healthz").json()["status"] == "up"
    ready = httpx.get(f"{district.url}/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")


def test_without_a_token_the_data_is_refused_with_an_operation_outcome(district: District) -> None:
    patient = district.ndjson(RIVERSIDE, "Patient")[0]
    for path in ("Patient", f"Patient/{patient['id']}", "Observation"):
        r = district.get(path)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["resourceType"] == "OperationOutcome"
        assert patient["id"] not in r.text


def test_fhirpy_finds_a_consented_students_patient_by_identifier(district: District, riverside: SyncFHIRClient) -> None:
    patient = district.ndjson(RIVERSIDE, "Patient")[0]
    system, value = state_id(patient)
    found = riverside.resources("Patient").search(identifier=f"{system}|{value}").fetch()
    assert [p["id"] for p in found] == [patient["id"]]
    assert found[0].serialize() == patient  # exactly what sync --out wrote for this recipient
    read = riverside.reference("Patient", patient["id"]).to_resource()
    assert read.serialize() == patient


def test_fhirpy_finds_the_students_observations_by_patient_and_by_subject_identifier(
    district: District, riverside: SyncFHIRClient
) -> None:
    patient = district.ndjson(RIVERSIDE, "Patient")[0]
    expected = {
        o["id"]
        for o in district.ndjson(RIVERSIDE, "Observation")
        if o["subject"]["reference"] == f"Patient/{patient['id']}"
    }
    assert expected
    by_patient = riverside.resources("Observation").search(patient=f"Patient/{patient['id']}").fetch_all()
    assert {o["id"] for o in by_patient} == expected
    system, value = state_id(patient)
    by_identifier = riverside.resources("Observation").search(**{"subject:identifier": f"{system}|{value}"}).fetch_all()
    assert {o["id"] for o in by_identifier} == expected


def test_summary_count_answers_the_total_only(district: District, riverside: SyncFHIRClient) -> None:
    expected = len(district.ndjson(RIVERSIDE, "Observation"))
    r = district.get("Observation", RIVERSIDE, _summary="count")
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", expected)
    assert "entry" not in bundle
    assert riverside.resources("Observation").count() == expected


def test_paging_across_pages_adds_up_to_the_total(district: District) -> None:
    expected = {o["id"] for o in district.ndjson(RIVERSIDE, "Observation")}
    headers = district.headers(RIVERSIDE)
    url: str | None = f"{district.fhir}/Observation?_count=7"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = httpx.get(url, headers=headers).json()
        assert bundle["total"] == len(expected)
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert links["self"].startswith(f"{district.fhir}/Observation?")
        assert ("previous" in links) == (pages > 0)
        for entry in bundle["entry"]:
            assert entry["fullUrl"] == f"{district.fhir}/Observation/{entry['resource']['id']}"
            assert entry["search"] == {"mode": "match"}
        seen += ids(bundle)
        url, pages = links.get("next"), pages + 1
    assert pages == -(-len(expected) // 7)
    assert len(seen) == len(set(seen)) and set(seen) == expected


def test_a_client_sees_exactly_what_sync_wrote_for_its_recipient(district: District) -> None:
    for recipient in (RIVERSIDE, HARBOR):
        client = SyncFHIRClient(district.fhir, authorization=f"Bearer {district.token(recipient)}")
        for rtype in ("Patient", "Observation", "Consent", "Organization"):
            served = {r["id"]: r.serialize() for r in client.resources(rtype).limit(1000).fetch_all()}
            assert served == {r["id"]: r for r in district.ndjson(recipient, rtype)}, (recipient, rtype)


def test_a_student_consented_only_to_the_other_organization_never_appears(
    district: District, riverside: SyncFHIRClient
) -> None:
    stranger = only_at(district, HARBOR, RIVERSIDE)
    system, value = state_id(stranger)
    assert riverside.resources("Patient").search(identifier=f"{system}|{value}").fetch() == []
    assert riverside.resources("Observation").search(patient=f"Patient/{stranger['id']}").fetch() == []
    assert riverside.resources("Observation").search(**{"subject:identifier": f"{system}|{value}"}).fetch() == []
    assert riverside.resources("Consent").search(patient=f"Patient/{stranger['id']}").fetch() == []
    with pytest.raises(ResourceNotFound):
        riverside.reference("Patient", stranger["id"]).to_resource()
    r = district.get(f"Patient/{stranger['id']}", RIVERSIDE)
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    observation = next(
        o for o in district.ndjson(HARBOR, "Observation") if o["subject"]["reference"] == f"Patient/{stranger['id']}"
    )
    assert district.get(f"Observation/{observation['id']}", RIVERSIDE).status_code == 404
    assert district.get(f"Observation/{observation['id']}", HARBOR).status_code == 200  # it exists: for Harbor


def test_post_search_with_a_form_answers_as_get(district: District) -> None:
    patient = district.ndjson(RIVERSIDE, "Patient")[1]
    system, value = state_id(patient)
    headers = district.headers(RIVERSIDE)
    posted = httpx.post(f"{district.fhir}/Patient/_search", data={"identifier": f"{system}|{value}"}, headers=headers)
    assert posted.status_code == 200, posted.text
    assert ids(posted.json()) == [patient["id"]]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("Patient", {"name": "Brightwater"}, 400, "not-supported"),
        ("Observation", {"_count": "many"}, 400, "invalid"),
        ("Observation", {"_summary": "text"}, 400, "invalid"),
        ("Practitioner", {}, 404, "not-found"),
        ("Patient/no-such-id", {}, 404, "not-found"),
    ],
)
def test_every_error_is_an_operation_outcome(
    district: District, path: str, params: dict[str, str], status: int, code: str
) -> None:
    r = district.get(path, RIVERSIDE, **params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    assert "Traceback" not in r.text


def test_writes_are_not_allowed(district: District) -> None:
    patient = district.ndjson(RIVERSIDE, "Patient")[0]
    r = httpx.put(f"{district.fhir}/Patient/{patient['id']}", json=patient, headers=district.headers(RIVERSIDE))
    assert r.status_code == 405, r.text
    assert r.json()["issue"][0]["code"] == "not-supported"


def test_a_token_without_the_types_scope_is_forbidden(district: District) -> None:
    headers = district.headers(RIVERSIDE, scope="system/Patient.rs")
    assert httpx.get(f"{district.fhir}/Patient", headers=headers).status_code == 200
    r = httpx.get(f"{district.fhir}/Observation", headers=headers)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"


def disclosure_rows(district: District, student: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [serve_process.SIS2FHIR, "disclosures", "--student", student, "--config", str(district.config), "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_each_answer_with_a_students_data_is_one_disclosure_and_a_count_is_none(district: District) -> None:
    patient = district.ndjson(RIVERSIDE, "Patient")[2]
    student = sourced_id(patient)
    before = len(disclosure_rows(district, student))
    r = district.get("Observation", RIVERSIDE, patient=f"Patient/{patient['id']}")
    assert r.status_code == 200 and r.json()["total"] >= 1
    after = disclosure_rows(district, student)
    assert len(after) == before + 1
    assert after[-1]["recipient"] == RIVERSIDE
    assert district.get("Observation", RIVERSIDE, patient=f"Patient/{patient['id']}", _summary="count").json()["total"]
    assert len(disclosure_rows(district, student)) == before + 1  # a total discloses nobody's data


def test_one_log_line_per_request_without_identifiers_or_tokens(district: District) -> None:
    patient = district.ndjson(RIVERSIDE, "Patient")[3]
    system, value = state_id(patient)
    token = district.token(RIVERSIDE)
    marker = "_count=3"
    r = httpx.get(
        f"{district.fhir}/Patient?identifier={system}|{value}&{marker}", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200
    r = httpx.get(f"{district.fhir}/Patient/{patient['id']}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    log = district.served.log_text()
    assert value not in log and patient["id"] not in log and token not in log
    assert sourced_id(patient) not in log and patient["name"][0]["family"] not in log
    assert re.search(r"GET /fhir/Patient\?identifier,_count 200 [0-9.]+ms client=riverside-ehr", log), log[-2000:]
    assert re.search(r"GET /fhir/Patient/\{id\} 200 [0-9.]+ms client=riverside-ehr", log), log[-2000:]
    assert "Traceback" not in log


def serve_refusal(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [serve_process.SIS2FHIR, "serve", "--port", str(serve_process.free_port()), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_to_start_without_the_api_section(tmp_path: Path) -> None:
    config = tmp_path / "sis2fhir.yaml"
    config.write_text(f"store_url: sqlite:///{tmp_path / 'state.sqlite'}\n")
    done = serve_refusal(config)
    assert done.returncode == 1, done.stderr
    assert "api.base_url" in done.stderr and "Traceback" not in done.stderr


def test_serve_refuses_a_store_no_sync_wrote_and_creates_nothing(tmp_path: Path) -> None:
    keys = smart.make_client_keys("ES384")
    store = tmp_path / "state.sqlite"
    config = network.write_config(
        tmp_path / "sis2fhir.yaml",
        store_url=f"sqlite:///{store}",
        api={
            "base_url": "https://sis2fhir.example-hie.org",
            "clients": [smart.api_client_config("riverside-ehr", RIVERSIDE, keys, "system/Patient.rs")],
        },
    )
    done = serve_refusal(config)
    assert done.returncode == 1, done.stderr
    assert "no state store that a sync wrote" in done.stderr and "Traceback" not in done.stderr
    assert not store.exists()
