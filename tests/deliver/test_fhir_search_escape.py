"""Identifiers with FHIR search's special characters (`,` `|` `$` `\\`) at the real server (sekmet-fhir): linking
finds the student's own Patient, conditional updates find the Observation they made, If-None-Exist creates no
duplicate. Unescaped, "S1,S2" is a search for S1 or S2.

What sekmet-fhir 0.1.1 does with escapes (its fhir/search.py): it splits a value on unescaped `,`, taking `\\,`
`\\|` `\\$` `\\\\` to the character, then splits on unescaped `|` and unescapes again. One escaped special
character is found exactly, which is what these tests use; a `\\` right before `,` `|` `$` or at the end of a
value is unescaped twice there and not found (a server bug, not tested). Of the four, only `,` changes what
sekmet finds when left unescaped (it splits `|` by its first occurrence and has no composite identifier), so the
tests that fail without escaping are those with a comma.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Outcome, deliver_all
from sis2fhir.deliver.fhir_bundle import conditional_update
from sis2fhir.deliver.fhir_rest import FhirRestDestination
from sis2fhir.deliver.fhir_search import identifier_token, search_escape
from sis2fhir.deliver.smart_auth import NoAuth
from sis2fhir.link import LinkStatus, PatientLinker
from tests.support.attendance_items import STATE_ID_SYSTEM, delivery_item, new_state_id

pytestmark = pytest.mark.integration


def seed_patient(base: str, state_id: str) -> str:
    patient = {"resourceType": "Patient", "identifier": [{"system": STATE_ID_SYSTEM, "value": state_id}]}
    response = httpx.post(f"{base}/Patient", json=patient, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 201
    return str(response.json()["id"])


def deliver(base: str, items: Sequence[DeliveryItem]) -> dict[str, DeliveryResult]:
    destination = FhirRestDestination(base, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM))

    async def go() -> list[DeliveryResult]:
        try:
            return await deliver_all(destination, items)
        finally:
            await destination.close()

    return {r.key: r for r in asyncio.run(go())}


def observations_of(base: str, patient_id: str) -> list[dict[str, object]]:
    bundle = httpx.get(f"{base}/Observation", params={"subject": f"Patient/{patient_id}"}).json()
    return [e["resource"] for e in bundle.get("entry") or []]


def test_escaping_follows_the_r4_rules() -> None:
    assert search_escape("a,b|c$d\\e") == "a\\,b\\|c\\$d\\\\e"
    assert search_escape("plain-123") == "plain-123"
    assert identifier_token("urn:oid:1.2.3", "S,1") == "urn:oid:1.2.3|S\\,1"
    entry = conditional_update({"resourceType": "Observation", "identifier": [{"system": "urn:x", "value": "a,b&c"}]})
    assert entry["request"]["url"] == "Observation?identifier=urn:x|a%5C%2Cb%26c"  # escaped, then URL-encoded


@pytest.mark.parametrize("special", [",", "|", "$", "\\"])
def test_a_state_id_with_a_special_character_links_its_own_patient_and_updates_one_observation(
    fhir_server: str, special: str
) -> None:
    head, tail = new_state_id(), new_state_id()
    state_id = f"{head}{special}{tail}"
    decoy = seed_patient(fhir_server, head)  # what "S1,S2" unescaped would also find: another student
    patient = seed_patient(fhir_server, state_id)
    item = delivery_item(state_id)

    first = deliver(fhir_server, [item])
    again = deliver(fhir_server, [delivery_item(state_id, days_absent=4)])  # the next run: a conditional update

    assert {r.outcome for r in [*first.values(), *again.values()]} == {Outcome.DELIVERED}
    held = observations_of(fhir_server, patient)
    assert len(held) == 1  # found again by its identifier: updated, not created twice
    assert held[0]["identifier"] == item.resources[0]["identifier"]
    assert observations_of(fhir_server, decoy) == []


def test_a_created_patient_is_created_once_for_an_identifier_with_a_comma(fhir_server: str) -> None:
    head, tail = new_state_id(), new_state_id()
    state_id = f"{head},{tail}"
    decoy = seed_patient(fhir_server, head)  # If-None-Exist unescaped would take this one as existing

    async def link() -> tuple[str, str]:
        async with httpx.AsyncClient(base_url=fhir_server + "/") as client:
            made = await PatientLinker(STATE_ID_SYSTEM, create_patients=True, client=client).link(state_id)
            found = await PatientLinker(STATE_ID_SYSTEM, client=client).link(state_id)
        assert made.status is LinkStatus.LINKED and found.status is LinkStatus.LINKED
        return made.patient_id, found.patient_id

    made, found = asyncio.run(link())
    assert made != decoy and found == made
    stored = httpx.get(f"{fhir_server}/Patient/{made}").json()
    assert stored["identifier"] == [{"system": STATE_ID_SYSTEM, "value": state_id}]


def test_a_batched_patient_search_keeps_commas_inside_values_apart(fhir_server: str) -> None:
    plain, head, tail = new_state_id(), new_state_id(), new_state_id()
    tricky = f"{head},{tail}"
    patients = {v: seed_patient(fhir_server, v) for v in (plain, tricky, head)}

    async def prefetch() -> dict[str, str]:
        async with httpx.AsyncClient(base_url=fhir_server + "/") as client:
            linker = PatientLinker(STATE_ID_SYSTEM, client=client)
            await linker.prefetch([plain, tricky])  # one search: identifier=s|plain,s|head\,tail
            return {v: (await linker.link(v)).patient_id for v in (plain, tricky)}

    assert asyncio.run(prefetch()) == {plain: patients[plain], tricky: patients[tricky]}
