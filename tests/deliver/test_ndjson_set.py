"""The NDJSON destination declares that it wants a self-contained set, and writes the Organizations every student's
item carries once per id (the last version, where it was first seen), as the folder's merge keeps them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from sis2fhir.config import DistrictSettings, Settings
from sis2fhir.deliver.base import DeliveryItem, Outcome, deliver_all
from sis2fhir.deliver.factory import build, configured_routes
from sis2fhir.deliver.fhir_rest import FhirRestDestination
from sis2fhir.deliver.mllp import MllpDestination
from sis2fhir.deliver.ndjson import NdjsonDestination
from sis2fhir.map.organization import school_organization
from sis2fhir.map.patient import student_patient
from sis2fhir.records import School, Student
from tests.support import network

DISTRICT = DistrictSettings(namespace="urn:sis2fhir:district:test")
RECIPIENT = "1234567893"


def test_only_the_folder_declares_itself_self_contained(tmp_path: Path) -> None:
    assert NdjsonDestination.self_contained
    assert not FhirRestDestination.self_contained and not MllpDestination.self_contained
    settings = Settings.model_validate(
        {
            "district": network.district(),
            "hl7": network.HL7,
            "recipients": [
                {
                    "identifier": RECIPIENT,
                    "destinations": [
                        {"type": "ndjson", "folder": str(tmp_path / "out")},
                        {"type": "fhir", "url": "https://ehr.example.org/fhir"},
                        {"type": "mllp", "host": "hie.example.org", "port": 2575},
                    ],
                }
            ],
        }
    )
    routes, destinations = configured_routes(settings)
    assert {destinations[rt.destination].__class__.__name__: rt.self_contained for rt in routes[RECIPIENT]} == {
        "NdjsonDestination": True,
        "FhirRestDestination": False,
        "MllpDestination": False,
    }
    takes, _ = build(settings.recipients[0].destinations[0], settings)
    assert takes == "fhir"


def item(n: int, school: dict[str, Any]) -> DeliveryItem:
    patient = student_patient(Student(sourced_id=f"u-{n}", state_id=f"S{n}", family_name="Doe"), DISTRICT)
    return DeliveryItem(f"key-{n}", RECIPIENT, f"u-{n}", f"S{n}", f"C-{n}", [patient, school])


def test_a_batch_writes_each_organization_once_and_names_it_for_every_item(tmp_path: Path) -> None:
    school = school_organization(School(sourced_id="sch-1", name="Lincoln Elementary"), None, DISTRICT)
    renamed = {**school, "name": "Lincoln Elementary School"}
    destination = NdjsonDestination(tmp_path)

    async def deliver() -> list[Any]:
        results = await deliver_all(destination, [item(1, school), item(2, school), item(3, renamed)])
        await destination.close()
        return results

    results = asyncio.run(deliver())
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    folder = tmp_path / RECIPIENT
    orgs = [orjson.loads(line) for line in (folder / "Organization.ndjson").read_bytes().splitlines()]
    assert [o["name"] for o in orgs] == ["Lincoln Elementary School"]  # one line; the last version wins
    assert len((folder / "Patient.ndjson").read_bytes().splitlines()) == 3
    for r in results:  # each delivery names the Organization it disclosed (the disclosure log)
        assert f"{RECIPIENT}/Organization.ndjson#Organization/{school['id']}" in r.disclosed
