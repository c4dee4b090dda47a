"""FhirRestDestination against the real sekmet-fhir server: transactions land, re-runs duplicate nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from sis2fhir import terminology as t
from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Outcome, deliver_all
from sis2fhir.deliver.fhir_rest import FhirRestDestination
from sis2fhir.deliver.smart_auth import NoAuth, SmartBackendAuth
from sis2fhir.link import PatientLinker
from tests.support.attendance_items import (
    STATE_ID_SYSTEM,
    days_absent,
    delivery_item,
    new_state_id,
    observation_identifier,
)
from tests.support.oauth_server import running_oauth_server

pytestmark = pytest.mark.integration


def seed_patient(base: str, state_id: str) -> str:
    patient = {"resourceType": "Patient", "identifier": [{"system": STATE_ID_SYSTEM, "value": state_id}]}
    response = httpx.post(f"{base}/Patient", json=patient, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 201
    return str(response.json()["id"])


def total(base: str, resource_type: str, **params: str) -> int:
    response = httpx.get(f"{base}/{resource_type}", params={**params, "_summary": "count"})
    assert response.status_code == 200
    return int(response.json()["total"])


def deliver(destination: FhirRestDestination, items: Sequence[DeliveryItem]) -> dict[str, DeliveryResult]:
    async def go() -> list[DeliveryResult]:
        try:
            return await deliver_all(destination, items)
        finally:
            await destination.close()

    return {r.key: r for r in asyncio.run(go())}


def destination(base: str, auth: httpx.Auth | None = None, **options: Any) -> FhirRestDestination:
    return FhirRestDestination(base, auth or NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM), **options)


def test_items_land_in_transactions_linked_to_the_students_patients(fhir_server: str) -> None:
    students = [new_state_id() for _ in range(5)]
    patients = {s: seed_patient(fhir_server, s) for s in students}
    items = [delivery_item(s) for s in students]

    results = deliver(destination(fhir_server, bundle_size=4), items)  # 2 resources per item: 3 bundles

    assert {r.outcome for r in results.values()} == {Outcome.DELIVERED}
    for state_id, item in zip(students, items, strict=True):
        disclosed = results[item.key].disclosed
        assert [d.split("/")[0] for d in disclosed] == ["Observation", "Consent"]
        observation = httpx.get(f"{fhir_server}/{disclosed[0]}").json()  # a vread of the disclosed version
        consent = httpx.get(f"{fhir_server}/{disclosed[1]}").json()
        assert observation["subject"]["reference"] == f"Patient/{patients[state_id]}"
        assert consent["patient"]["reference"] == f"Patient/{patients[state_id]}"
        assert observation["identifier"] == item.resources[0]["identifier"]


def test_sending_the_same_items_again_creates_nothing_new(fhir_server: str) -> None:
    students = [new_state_id() for _ in range(3)]
    patients = [seed_patient(fhir_server, s) for s in students]
    items = [delivery_item(s) for s in students]
    dest = destination(fhir_server)

    first = deliver(dest, items)
    observations_before = total(fhir_server, "Observation")
    consents_before = total(fhir_server, "Consent")
    again = deliver(dest, items)
    third = deliver(destination(fhir_server), items)  # a new run

    assert {r.outcome for r in [*first.values(), *again.values(), *third.values()]} == {Outcome.DELIVERED}
    assert total(fhir_server, "Observation") == observations_before
    assert total(fhir_server, "Consent") == consents_before
    for patient_id in patients:
        assert total(fhir_server, "Observation", subject=f"Patient/{patient_id}") == 1
        assert total(fhir_server, "Consent", patient=f"Patient/{patient_id}") == 1
    key = items[0].key
    resource_id = first[key].disclosed[0].split("/")[1]
    assert third[key].disclosed[0].split("/")[1] == resource_id  # the same Observation, a later version
    assert third[key].disclosed[0] != first[key].disclosed[0]


def test_the_recipient_finds_them_by_patient_identifier_and_component_code(fhir_server: str) -> None:
    state_id = new_state_id()
    seed_patient(fhir_server, state_id)
    deliver(destination(fhir_server), [delivery_item(state_id, days_absent=11)])

    by_identifier = httpx.get(
        f"{fhir_server}/Observation",
        params={
            "patient.identifier": f"{STATE_ID_SYSTEM}|{state_id}",
            "component-code": f"{t.ATTENDANCE_CS}|days-absent",
        },
    ).json()
    assert by_identifier["total"] == 1
    assert days_absent(by_identifier["entry"][0]["resource"]) == 11


def test_a_student_without_a_patient_stays_pending_and_nothing_is_sent(fhir_server: str) -> None:
    known, unknown = new_state_id(), new_state_id()
    seed_patient(fhir_server, known)
    results = deliver(destination(fhir_server), [delivery_item(known), delivery_item(unknown)])

    assert results[delivery_item(known).key].outcome is Outcome.DELIVERED
    pending = results[delivery_item(unknown).key]
    assert pending.outcome is Outcome.PENDING
    assert pending.detail == "no certain Patient at the recipient: no Patient with the student's identifier"
    assert total(fhir_server, "Observation", identifier=observation_identifier(unknown)) == 0


def test_a_resource_the_server_refuses_is_dead_and_the_others_still_land(fhir_server: str) -> None:
    students = [new_state_id() for _ in range(4)]
    for s in students:
        seed_patient(fhir_server, s)
    items = [delivery_item(s) for s in students]
    items[2].resources[0]["valueFoo"] = 1  # not an Observation element: sekmet answers 400 for the transaction

    results = deliver(destination(fhir_server), items)

    bad = results[items[2].key]
    assert bad.outcome is Outcome.DEAD
    assert bad.operation_outcome is not None
    assert "valueFoo" in bad.detail
    assert [results[i.key].outcome for i in items if i is not items[2]] == [Outcome.DELIVERED] * 3
    assert total(fhir_server, "Observation", identifier=observation_identifier(students[2])) == 0


def test_delivery_through_smart_backend_services(fhir_server: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = {**ECKey.import_key(pem).as_dict(private=False), "kid": "district-1", "alg": "ES384"}
    state_id = new_state_id()
    seed_patient(fhir_server, state_id)
    with running_oauth_server(fhir_server) as oauth:
        oauth.register("district-client", {"keys": [jwk]})
        auth = SmartBackendAuth(oauth.fhir_base, "district-client", pem, "district-1", alg="ES384")
        results = deliver(destination(oauth.fhir_base, auth), [delivery_item(state_id)])
        assert [(r.outcome, r.detail) for r in results.values()] == [(Outcome.DELIVERED, "200")]
        assert oauth.token_requests == 1
        assert oauth.fhir_refused == 0


def test_check_accepts_a_fhir_r4_server_with_transactions(fhir_server: str) -> None:
    async def go() -> dict[str, Any] | None:
        dest = destination(fhir_server)
        try:
            await dest.check()  # raises for a server that cannot take our transactions
            return dest.capabilities
        finally:
            await dest.close()

    capabilities = asyncio.run(go())
    assert capabilities is not None and capabilities["fhirVersion"] == "4.0.1"


def test_an_item_in_doubt_is_found_held_only_when_the_server_has_exactly_what_was_sent(fhir_server: str) -> None:
    sent, unsent = new_state_id(), new_state_id()
    for s in (sent, unsent):
        seed_patient(fhir_server, s)
    item = delivery_item(sent)
    delivered = deliver(destination(fhir_server), [item])[item.key]
    assert delivered.outcome is Outcome.DELIVERED
    changed = delivery_item(sent, days_absent=17)  # newer content, never sent: the server holds the older one
    changed.key += ":changed"
    never = delivery_item(unsent)

    async def ask() -> dict[str, list[str]]:
        dest = destination(fhir_server)
        try:
            return await dest.find_held([item, changed, never])
        finally:
            await dest.close()

    held = asyncio.run(ask())
    # held: the versions the server holds, as a delivery would name them; never received: none of its resources is
    # there; the changed item stays in doubt (the server holds other content under its identifiers)
    assert held == {item.key: delivered.disclosed, never.key: []}
