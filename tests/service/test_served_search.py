"""FHIR R4 search over the served set (service/served.py), per parameter: tokens with and without a system and
with R4's escapes, references, dates and _lastUpdated with prefixes, Consent status, _id; commas OR, repeated
parameters AND; paging totals and order; and the FERPA rows of `record_reads`. Real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from sis2fhir.deliver.base import DeliveryItem
from sis2fhir.deliver.served import write_items
from sis2fhir.service.served import ServedStore, UnsupportedSearch
from sis2fhir.store import open_store
from sis2fhir.store.schema import disclosures
from tests.support.postgres import STORES, new_store_url

R, OTHER = "1582147033", "1904672353"
SID = "urn:sis2fhir:test:state-student-id"
CODE = "http://sis2fhir.org/fhir/CodeSystem/school-attendance"
T1, T2 = datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 3, 5, 8, 30, tzinfo=UTC)
ODD = "a,b|c$d\\e"  # every character R4 search escapes


def patient(n: int, *, odd: bool = False) -> dict[str, Any]:
    ident = [{"system": SID, "value": f"100{n}"}]
    if odd:
        ident.append({"system": "urn:x|y", "value": ODD})
        ident.append({"value": "no-system"})
    return {"resourceType": "Patient", "id": f"p{n}", "identifier": ident}


def observation(n: int, school: int, end: str, code: str = "attendance-summary") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}-{school}",
        "identifier": [{"system": "urn:obs", "value": f"obs-{n}-{school}"}],
        "code": {"coding": [{"system": CODE, "code": code}]},
        "subject": {"reference": f"Patient/p{n}", "identifier": {"system": SID, "value": f"100{n}"}},
        "effectivePeriod": {"start": "2025-08-25", "end": end},
    }


def consent(n: int, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": f"c{n}",
        "identifier": [{"system": "urn:consent", "value": f"CNS-{n}"}],
        "status": status,
        "patient": {"reference": f"Patient/p{n}", "identifier": {"system": SID, "value": f"100{n}"}},
    }


ORG = {"resourceType": "Organization", "id": "org1", "identifier": [{"system": "urn:org", "value": "district"}]}


def item(n: int, resources: list[dict[str, Any]], recipient: str = R) -> DeliveryItem:
    return DeliveryItem(
        f"key-{recipient}-{n}-{len(resources)}", recipient, f"stu-{n}", f"100{n}", f"CNS-{n}", resources
    )


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServedStore]:
    engine = open_store(new_store_url(request, tmp_path, "served"))
    with engine.begin() as conn:
        write_items(
            conn,
            [
                item(
                    1,
                    [
                        patient(1, odd=True),
                        ORG,
                        observation(1, 1, "2026-03-31"),
                        observation(1, 2, "2026-02-27"),
                        consent(1),
                    ],
                ),
                item(2, [patient(2), ORG, observation(2, 1, "2026-03-31", "days-absent"), consent(2)]),
                item(3, [patient(3), ORG, observation(3, 1, "2025-12-19"), consent(3)], recipient=OTHER),
            ],
            T1,
        )
    with engine.begin() as conn:  # a later batch: student 4, and student 2's Observation changed
        write_items(
            conn,
            [
                item(4, [patient(4), ORG, observation(4, 1, "2026-03-31"), consent(4)]),
                item(2, [patient(2), ORG, observation(2, 1, "2026-03-30", "days-absent"), consent(2)]),
            ],
            T2,
        )
    with ServedStore(engine) as served:
        yield served


def found(store: ServedStore, rtype: str, **params: list[str]) -> list[str]:
    page = store.search(R, rtype, {k.replace("__", ":"): v for k, v in params.items()}, 100, 0)
    assert page.total == len(page.resources)
    return [r.resource_id for r in page.resources]


def test_identifier_tokens_with_and_without_system_and_escapes(store: ServedStore) -> None:
    assert found(store, "Patient", identifier=[f"{SID}|1001"]) == ["p1"]
    assert found(store, "Patient", identifier=["1001"]) == ["p1"]
    assert found(store, "Patient", identifier=["urn:other|1001"]) == []
    assert found(store, "Patient", identifier=["|no-system"]) == ["p1"]
    assert found(store, "Patient", identifier=["|1001"]) == []  # 1001 has a system
    assert found(store, "Patient", identifier=[f"{SID}|"]) == ["p1", "p2", "p4"]
    escaped = "urn:x\\|y|a\\,b\\|c\\$d\\\\e"
    assert found(store, "Patient", identifier=[escaped]) == ["p1"]
    assert found(store, "Patient", identifier=["a\\,b\\|c\\$d\\\\e"]) == ["p1"]
    assert found(store, "Patient", identifier=["a,b"]) == []  # unescaped: two values, a OR b
    assert found(store, "Patient", identifier=["1003"]) == []  # another recipient's student
    assert found(store, "Organization", identifier=["urn:org|district"]) == ["org1"]


def test_references_codes_and_subject_identifier(store: ServedStore) -> None:
    assert found(store, "Observation", patient=["Patient/p1"]) == ["o1-1", "o1-2"]
    assert found(store, "Observation", subject=["p1"]) == ["o1-1", "o1-2"]
    assert found(store, "Observation", patient=["https://x.example/fhir/Patient/p1"]) == ["o1-1", "o1-2"]
    assert found(store, "Observation", patient=["Group/p1"]) == []
    assert found(store, "Observation", subject__identifier=[f"{SID}|1004"]) == ["o4-1"]
    assert found(store, "Observation", subject__identifier=["1003"]) == []
    assert found(store, "Observation", code=[f"{CODE}|days-absent"]) == ["o2-1"]
    assert found(store, "Observation", code=["attendance-summary"]) == ["o1-1", "o1-2", "o4-1"]
    assert found(store, "Consent", patient=["p2"]) == ["c2"]
    assert found(store, "Consent", patient__identifier=["1001"]) == ["c1"]


def test_dates_with_prefixes_and_precision(store: ServedStore) -> None:
    assert found(store, "Observation", date=["2026-03-31"]) == ["o1-1", "o4-1"]
    assert found(store, "Observation", date=["eq2026-03"]) == ["o1-1", "o2-1", "o4-1"]
    assert found(store, "Observation", date=["2026"]) == ["o1-1", "o1-2", "o2-1", "o4-1"]
    assert found(store, "Observation", date=["lt2026-03-01"]) == ["o1-2"]
    assert found(store, "Observation", date=["le2026-03-30"]) == ["o1-2", "o2-1"]
    assert found(store, "Observation", date=["gt2026-03-30"]) == ["o1-1", "o4-1"]
    assert found(store, "Observation", date=["ge2026-03-30"]) == ["o1-1", "o2-1", "o4-1"]
    assert found(store, "Observation", date=["ge2026-03-01", "le2026-03-30"]) == ["o2-1"]  # AND
    assert found(store, "Observation", date=["2026-02-27,2026-03-30"]) == ["o1-2", "o2-1"]  # OR
    for bad in ("2026-13", "sa2026-01-01", "yesterday"):
        with pytest.raises(UnsupportedSearch):
            found(store, "Observation", date=[bad])


def test_last_updated_status_id_and_combinations(store: ServedStore) -> None:
    assert found(store, "Observation", _lastUpdated=["ge2026-03-05"]) == ["o2-1", "o4-1"]
    assert found(store, "Observation", _lastUpdated=["lt2026-03-05T08:30:00Z"]) == ["o1-1", "o1-2"]
    assert found(store, "Observation", _lastUpdated=["eq2026-03-05T08:30:00+00:00"]) == ["o2-1", "o4-1"]
    assert found(store, "Patient", _lastUpdated=["2026-03-01"]) == ["p1", "p2"]  # p2 did not change: v1
    assert found(store, "Consent", status=["active"]) == ["c1", "c2", "c4"]
    assert found(store, "Consent", status=["inactive"]) == []
    assert found(store, "Observation", _id=["o1-2,o4-1"]) == ["o1-2", "o4-1"]
    assert found(store, "Observation", patient=["p1,p4"], code=["attendance-summary"], date=["2026-03-31"]) == [
        "o1-1",
        "o4-1",
    ]
    assert found(store, "Observation", patient=["p1"], _count=["1"]) == ["o1-1", "o1-2"]  # the API's, ignored here
    with pytest.raises(UnsupportedSearch):
        found(store, "Observation", status=["final"])
    with pytest.raises(UnsupportedSearch):
        found(store, "Patient", name=["x"])
    with pytest.raises(UnsupportedSearch):
        found(store, "Encounter")


def test_versions_order_and_paging(store: ServedStore) -> None:
    o21 = store.read(R, "Observation", "o2-1")
    assert o21 is not None and o21.version_id == 2 and o21.last_updated == T2 and o21.student == "stu-2"
    assert orjson.loads(o21.content)["effectivePeriod"]["end"] == "2026-03-30"
    p2 = store.read(R, "Patient", "p2")
    assert p2 is not None and p2.version_id == 1 and p2.last_updated == T1
    org = store.read(R, "Organization", "org1")
    assert org is not None and org.student is None
    assert store.read(R, "Patient", "p3") is None and store.read(OTHER, "Patient", "p3") is not None
    # order: last updated, then id; pages of 2 over 4 with the total on each
    pages = [store.search(R, "Observation", {}, 2, offset) for offset in (0, 2, 4)]
    assert [p.total for p in pages] == [4, 4, 4]
    assert [[r.resource_id for r in p.resources] for p in pages] == [["o1-1", "o1-2"], ["o2-1", "o4-1"], []]
    assert store.search(R, "Observation", {}, 0, 0).total == 4  # _summary=count
    assert [r.resource_id for r in store.export(R, ["Consent", "Patient"], None)] == [
        "c1",
        "c2",
        "c4",
        "p1",
        "p2",
        "p4",
    ]
    assert [r.resource_id for r in store.export(R, ["Observation"], T1)] == ["o2-1", "o4-1"]
    assert store.group_members(R) == ["p1", "p2", "p4"]


def test_a_revocation_notice_hides_and_removes_the_students_data(store: ServedStore) -> None:
    with store.engine.begin() as conn:
        write_items(conn, [item(1, [consent(1, "inactive")])], T2)
    assert store.read(R, "Patient", "p1") is None
    assert found(store, "Observation", patient=["p1"]) == []
    c1 = store.read(R, "Consent", "c1")
    assert c1 is not None and orjson.loads(c1.content)["status"] == "inactive" and c1.version_id == 2
    assert store.read(R, "Organization", "org1") is not None
    assert found(store, "Patient", identifier=["1001"]) == []  # its search terms went too
    assert store.group_members(R) == ["p2", "p4"]


def test_record_reads_writes_one_row_per_student_with_the_consent_relied_on(store: ServedStore) -> None:
    when = datetime(2026, 3, 6, 9, tzinfo=UTC)
    store.record_reads(R, "riverside-ehr", ["stu-1", "stu-2", "stu-1"], "Observation?patient=p1,p2", when)
    store.record_reads(R, "riverside-ehr", ["stu-4"], "Group/consented/$export?_type=Observation", when)
    store.record_reads(R, "riverside-ehr", [], "Observation?patient=nobody", when)
    t = disclosures
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                t.c.student_sourced_id,
                t.c.state_student_id,
                t.c.recipient,
                t.c.destination,
                t.c.consent_id,
                t.c.disclosed,
                t.c.channel,
                t.c.certainty,
            ).order_by(t.c.id)
        ).all()
        at = conn.scalar(select(t.c.disclosed_at).limit(1))
    assert [tuple(r) for r in rows] == [
        ("stu-1", "1001", R, "api:riverside-ehr", "CNS-1", '["Observation?patient=p1,p2"]', "api-read", "confirmed"),
        ("stu-2", "1002", R, "api:riverside-ehr", "CNS-2", '["Observation?patient=p1,p2"]', "api-read", "confirmed"),
        (
            "stu-4",
            "1004",
            R,
            "api:riverside-ehr",
            "CNS-4",
            '["Group/consented/$export?_type=Observation"]',
            "bulk-export",
            "confirmed",
        ),
    ]
    assert at is not None and at.replace(tzinfo=UTC) == when
