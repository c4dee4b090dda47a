"""An item's resources are serialised once: the lines the NDJSON folder writes, joined, are the item's fingerprint
(what its idempotency key is made of), and a folder given the lines writes exactly what it writes without them."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from sis2fhir.deliver.base import DeliveryItem, deliver_all
from sis2fhir.deliver.ndjson import NdjsonDestination
from sis2fhir.disclosure import encoded_resources, fingerprint
from tests.support.attendance_items import attendance_observation, delivery_item, ferpa_consent

AWKWARD: list[dict[str, Any]] = [
    {"resourceType": "Basic", "id": "a", "v": [0.1, 1e-7, 2.5e20, -0.0, 10**18, True, None], "s": 'é"\\\n漢🙂'},
    {"resourceType": "Basic", "id": "b", "empty": {}, "list": [], "nested": [{"a": [{}]}]},
]


def test_the_lines_joined_are_the_fingerprint() -> None:
    for resources in (
        [attendance_observation("S1"), ferpa_consent("S1")],
        [attendance_observation("S2", days_absent=12.5, days_in_membership=81)],
        [ferpa_consent("S3")],
        AWKWARD,
        [],
    ):
        lines, encoded = encoded_resources(resources)
        assert encoded == fingerprint(resources)
        assert [orjson.loads(line) for line in lines] == resources


def _folder(tmp_path: Path, name: str, items: list[DeliveryItem]) -> dict[str, bytes]:
    folder = tmp_path / name
    dest = NdjsonDestination(folder)
    results = asyncio.run(deliver_all(dest, items))
    asyncio.run(dest.close())
    assert [r.outcome.value for r in results] == ["delivered"] * len(items)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_writes_an_items_lines_as_it_would_write_its_resources(tmp_path: Path) -> None:
    plain = [delivery_item(f"S{i}", days_absent=i) for i in range(5)]
    plain.append(DeliveryItem("k-awkward", "other/recipient", "s", "", "c", AWKWARD))
    with_lines = [replace(i, lines=encoded_resources(i.resources)[0]) for i in plain]
    written = _folder(tmp_path, "with-lines", with_lines)
    assert written == _folder(tmp_path, "plain", plain)
    assert set(written) == {
        "1234567893/Observation.ndjson",
        "1234567893/Consent.ndjson",
        "other_recipient/Basic.ndjson",
    }


def test_an_attempt_discloses_each_resource_by_its_first_complete_identifier(tmp_path: Path) -> None:
    item = delivery_item("S9")
    item.resources += [
        {"resourceType": "Patient", "id": "p1",
         "identifier": [{"system": "s"}, {"value": "v"}, {"system": "a", "value": "b"}]},
        {"resourceType": "Organization", "id": "o1", "identifier": [{"system": "s", "value": ""}]},
        {"resourceType": "Organization", "id": "o2"},
    ]  # fmt: skip
    refs = NdjsonDestination(tmp_path).sent_references(item)
    observation, consent = item.resources[0]["identifier"][0], item.resources[1]["identifier"][0]
    assert refs == [
        f"Observation?identifier={observation['system']}|{observation['value']}",
        f"Consent?identifier={consent['system']}|{consent['value']}",
        "Patient?identifier=a|b",
        "Organization/o1",
        "Organization/o2",
    ]
