"""Linking students to the recipient's Patients: a real server for search and creation, respx for $match."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from datetime import date
from typing import Any, TypeVar

import httpx
import pytest
import respx

from sis2fhir.link import MATCH_GRADE_EXTENSION, LinkError, LinkStatus, PatientLinker
from sis2fhir.records import Student

SYSTEM = "urn:oid:2.16.840.1.113883.4.999.27"  # a state student id system, made up for the tests
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def new_state_id() -> str:
    return f"S{uuid.uuid4().hex[:10].upper()}"


def seed_patient(base: str, state_id: str) -> str:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": state_id}],
        "gender": "female",
    }
    response = httpx.post(f"{base}/Patient", json=patient, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 201
    return str(response.json()["id"])


def count_patients(base: str, state_id: str) -> int:
    bundle = httpx.get(f"{base}/Patient", params={"identifier": f"{SYSTEM}|{state_id}", "_summary": "count"}).json()
    return int(bundle["total"])


async def link_with_real_server(
    base: str, state_id: str, requests: list[str] | None = None, **options: Any
) -> tuple[Any, Any]:
    async def record(request: httpx.Request) -> None:
        if requests is not None:
            requests.append(f"{request.method} {request.url.path}")

    async with httpx.AsyncClient(base_url=base, event_hooks={"request": [record]}) as client:
        linker = PatientLinker(SYSTEM, client=client, **options)
        first = await linker.link(state_id)
        second = await linker.link(state_id)
    return first, second


@pytest.mark.integration
def test_a_student_whose_patient_carries_the_state_id_is_linked_with_one_search(fhir_server: str) -> None:
    state_id = new_state_id()
    patient_id = seed_patient(fhir_server, state_id)
    requests: list[str] = []
    first, second = run(link_with_real_server(fhir_server, state_id, requests))
    assert (first.status, first.patient_id, first.via) == (LinkStatus.LINKED, patient_id, "identifier")
    assert second == first
    assert requests == ["GET /fhir/Patient"]  # the second link came from the run's cache


@pytest.mark.integration
def test_a_student_without_a_patient_stays_pending_and_nothing_is_created(fhir_server: str) -> None:
    state_id = new_state_id()
    link, _ = run(link_with_real_server(fhir_server, state_id))
    assert link.status is LinkStatus.PENDING
    assert link.reason == "no Patient with the student's identifier"
    assert count_patients(fhir_server, state_id) == 0


@pytest.mark.integration
def test_two_patients_with_the_same_state_id_are_not_guessed_between(fhir_server: str) -> None:
    state_id = new_state_id()
    seed_patient(fhir_server, state_id)
    seed_patient(fhir_server, state_id)
    link, _ = run(link_with_real_server(fhir_server, state_id))
    assert link.status is LinkStatus.PENDING
    assert link.reason == "2 Patients carry the student's identifier"


@pytest.mark.integration
def test_when_configured_a_patient_is_created_once_and_found_on_the_next_run(fhir_server: str) -> None:
    state_id = new_state_id()
    student = Student("u-1", state_id, "Ada", "Lovelace", birth_date=date(2014, 5, 12), sex="female")

    async def first_run() -> Any:
        async with httpx.AsyncClient(base_url=fhir_server) as client:
            return await PatientLinker(SYSTEM, client=client, create_patients=True).link_student(student)

    created = run(first_run())
    assert (created.status, created.via) == (LinkStatus.LINKED, "created")
    stored = httpx.get(f"{fhir_server}/Patient/{created.patient_id}").json()
    assert stored["identifier"] == [{"system": SYSTEM, "value": state_id}]
    assert (stored["birthDate"], stored["gender"], stored["name"][0]["family"]) == (
        "2014-05-12",
        "female",
        "Lovelace",
    )

    again, _ = run(link_with_real_server(fhir_server, state_id, create_patients=True))
    assert (again.via, again.patient_id) == ("identifier", created.patient_id)
    assert count_patients(fhir_server, state_id) == 1


# -- $match, which sekmet-fhir does not offer: the answers come from respx --

BASE = "https://ehr.example.org/fhir"
CAPABILITIES_WITH_MATCH = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "rest": [
        {
            "mode": "server",
            "resource": [
                {
                    "type": "Patient",
                    "operation": [
                        {
                            "name": "match",
                            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
                        }
                    ],
                }
            ],
        }
    ],
}
EMPTY_SEARCH = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def match_entry(patient_id: str, grade: str, score: float) -> dict[str, Any]:
    return {
        "fullUrl": f"{BASE}/Patient/{patient_id}",
        "resource": {"resourceType": "Patient", "id": patient_id},
        "search": {
            "mode": "match",
            "score": score,
            "extension": [{"url": MATCH_GRADE_EXTENSION, "valueCode": grade}],
        },
    }


def link_with_match_answer(entries: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    student = Student("u-7", "S0007", "Grace", "Hopper", birth_date=date(2013, 12, 9), sex="female")
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{BASE}/Patient").respond(200, json=EMPTY_SEARCH)
        mock.get(f"{BASE}/metadata").respond(200, json=CAPABILITIES_WITH_MATCH)
        match = mock.post(f"{BASE}/Patient/$match").respond(
            200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries}
        )

        async def go() -> Any:
            async with httpx.AsyncClient(base_url=BASE) as client:
                return await PatientLinker(SYSTEM, client=client).link_student(student)

        link = run(go())
        sent = json.loads(match.calls.last.request.content)
    return link, sent


def test_a_single_certain_match_links_and_the_query_carries_the_demographics() -> None:
    link, sent = link_with_match_answer([match_entry("p-42", "certain", 0.99)])
    assert (link.status, link.patient_id, link.via) == (LinkStatus.LINKED, "p-42", "match")
    parameters = {p["name"]: p for p in sent["parameter"]}
    assert parameters["onlyCertainMatches"]["valueBoolean"] is True
    patient = parameters["resource"]["resource"]
    assert patient["identifier"] == [{"system": SYSTEM, "value": "S0007"}]
    assert (patient["birthDate"], patient["gender"], patient["name"][0]["family"]) == (
        "2013-12-09",
        "female",
        "Hopper",
    )


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([match_entry("p-1", "probable", 0.8)], "only a probable match"),
        ([match_entry("p-1", "certain", 0.95), match_entry("p-2", "certain", 0.94)], "2 possible matches"),
        ([], "no match"),
    ],
    ids=["probable", "several", "none"],
)
def test_anything_but_one_certain_match_leaves_the_student_pending(entries: list[dict[str, Any]], reason: str) -> None:
    link, _ = link_with_match_answer(entries)
    assert link.status is LinkStatus.PENDING
    assert link.reason == reason
    assert link.patient_id == ""


def test_a_server_without_match_is_not_asked() -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/Patient").respond(200, json=EMPTY_SEARCH)
        mock.get(f"{BASE}/metadata").respond(200, json={"resourceType": "CapabilityStatement", "rest": [{}]})
        match = mock.post(f"{BASE}/Patient/$match")

        async def go() -> Any:
            async with httpx.AsyncClient(base_url=BASE) as client:
                return await PatientLinker(SYSTEM, client=client).link("S0008")

        link = run(go())
    assert link.status is LinkStatus.PENDING
    assert not match.called


def test_a_server_error_is_not_remembered_as_a_missing_patient() -> None:
    found = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p9"}}],
    }
    with respx.mock() as mock:
        mock.get(f"{BASE}/Patient").mock(side_effect=[httpx.Response(503), httpx.Response(200, json=found)])

        async def go() -> Any:
            async with httpx.AsyncClient(base_url=BASE) as client:
                linker = PatientLinker(SYSTEM, client=client)
                with pytest.raises(LinkError, match="503"):
                    await linker.link("S0009")
                return await linker.link("S0009")

        link = run(go())
    assert (link.status, link.patient_id) == (LinkStatus.LINKED, "p9")


def test_concurrent_items_of_one_student_share_one_lookup() -> None:
    found = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p3"}}],
    }
    with respx.mock() as mock:
        search = mock.get(f"{BASE}/Patient").respond(200, json=found)

        async def go() -> list[Any]:
            async with httpx.AsyncClient(base_url=BASE) as client:
                linker = PatientLinker(SYSTEM, client=client)
                return await asyncio.gather(*(linker.link("S0003") for _ in range(5)))

        links = run(go())
    assert {link.patient_id for link in links} == {"p3"}
    assert search.call_count == 1


@pytest.mark.integration
def test_a_batch_of_students_is_linked_with_one_search_and_the_unknown_one_asked_alone(
    fhir_server: str,
) -> None:
    known = [new_state_id() for _ in range(3)]
    patients = {s: seed_patient(fhir_server, s) for s in known}
    unknown = new_state_id()
    requests: list[str] = []

    async def go() -> list[Any]:
        async def record(request: httpx.Request) -> None:
            requests.append(f"{request.method} {request.url.path}")

        async with httpx.AsyncClient(base_url=fhir_server, event_hooks={"request": [record]}) as client:
            linker = PatientLinker(SYSTEM, client=client)
            await linker.prefetch([*known, unknown])
            return [await linker.link(s) for s in [*known, unknown]]

    links = run(go())
    assert [link.patient_id for link in links[:3]] == [patients[s] for s in known]
    assert links[3].status is LinkStatus.PENDING
    assert requests == ["GET /fhir/Patient", "GET /fhir/Patient", "GET /fhir/metadata"]  # $match offered?
