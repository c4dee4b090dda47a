"""An item's resources are serialised once: the lines the NDJSON folder writes, joined, are the item's fingerprint
(what its idempotency key is made of), and a folder given the lines writes exactly what it writes without them;
given the lines and heads alone (no resources, as the mapper hands items to a folder), the same again, and the
outbox keeps them whole."""

from __future__ import annotations

import asyncio
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from sis2fhir.deliver.base import DeliveryItem, deliver_all
from sis2fhir.deliver.ndjson import NdjsonDestination
from sis2fhir.deliver.outbox import Envelope, Outbox, Subject
from sis2fhir.deliver.outbox.items import encode_payload
from sis2fhir.disclosure import encoded_resources, fingerprint
from sis2fhir.store import open_store
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


def _lines_only(item: DeliveryItem) -> DeliveryItem:
    """The item as the mapper hands it over for a destination that does not read resources (a folder)."""
    return replace(item, resources=[], lines=encoded_resources(item.resources)[0], heads=item.resource_heads())


def test_a_folder_given_only_lines_and_heads_writes_and_names_what_it_would_from_the_resources(tmp_path: Path) -> None:
    plain = [delivery_item(f"S{i}", days_absent=i) for i in range(5)]
    plain.append(DeliveryItem("k-awkward", "other/recipient", "s", "", "c", AWKWARD))
    bare = [_lines_only(i) for i in plain]
    assert not NdjsonDestination.reads_resources and all(not i.resources for i in bare)
    assert _folder(tmp_path, "bare", bare) == _folder(tmp_path, "plain", plain)
    folder = NdjsonDestination(tmp_path / "refs")
    assert [folder.sent_references(i) for i in bare] == [folder.sent_references(i) for i in plain]
    assert [r.disclosed for r in asyncio.run(deliver_all(folder, bare))] == [
        r.disclosed for r in asyncio.run(deliver_all(NdjsonDestination(tmp_path / "refs2"), plain))
    ]


def test_an_item_given_only_its_lines_is_stored_whole_for_a_retry(tmp_path: Path) -> None:
    """The payload the outbox keeps (for an item a folder could not take) is the joined lines: the same bytes as
    the resources serialised, and what is loaded back is the resources."""
    plain = [delivery_item("S1"), delivery_item("S2", days_absent=3), DeliveryItem("k-a", "r", "s", "", "c", AWKWARD)]
    for item in plain:
        assert encode_payload(_lines_only(item)) == encode_payload(item)
    engine = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        box = Outbox(engine)
        envelopes = [Envelope("dest", Subject(i.recipient, i.student_sourced_id), _lines_only(i)) for i in plain]
        assert box.enqueue(envelopes) == 3
        assert [i.resources for i in box.due("dest", 10)] == [i.resources for i in plain]
    finally:
        engine.dispose()


def test_an_envelope_comes_back_whole_from_a_mapping_worker() -> None:
    """Workers hand envelopes over pickled: every field of the item arrives."""
    item = _lines_only(delivery_item("S4"))
    item = replace(item, resources=[{"resourceType": "Basic", "id": "b"}], hl7v2="MSH|^~\\&|\rPID|1")
    envelope = Envelope("ndjson:/out", Subject("r", "s", "school"), item)
    back = pickle.loads(pickle.dumps([envelope, envelope]))
    assert back[0] == envelope and back[0].subject.school == "school"
    assert [(e.item.lines, e.item.heads, e.item.hl7v2) for e in back] == [(item.lines, item.heads, item.hl7v2)] * 2
