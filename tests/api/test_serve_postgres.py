"""`sis2fhir serve` on a PostgreSQL state store (the suite's throwaway cluster), the same store `sync` wrote: ready,
a consented student found by identifier with their Observations, and each answer recorded in the FERPA log."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fhirpy import SyncFHIRClient
from sqlalchemy import create_engine, func, select

from sis2fhir.store.schema import disclosures
from tests.support.postgres import new_database
from tests.support.served_district import RIVERSIDE, District, served_district

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def district(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[District]:
    url = new_database(postgres_url, "served")
    with served_district(tmp_path_factory.mktemp("pg"), store_url=url) as d:
        yield d


def test_serve_answers_from_a_postgresql_store(district: District) -> None:
    ready = httpx.get(f"{district.url}/readyz")
    assert ready.status_code == 200, ready.text
    client = SyncFHIRClient(district.fhir, authorization=f"Bearer {district.token(RIVERSIDE)}")
    patient = district.ndjson(RIVERSIDE, "Patient")[0]
    ident = next(i for i in patient["identifier"] if i["system"].endswith("state-student-id"))
    engine = create_engine(district.store_url)
    try:
        with engine.connect() as conn:
            before = conn.scalar(
                select(func.count()).select_from(disclosures).where(disclosures.c.channel == "api-read")
            )
        found = client.resources("Patient").search(identifier=f"{ident['system']}|{ident['value']}").fetch()
        assert [p["id"] for p in found] == [patient["id"]]
        observations = client.resources("Observation").search(patient=f"Patient/{patient['id']}").fetch_all()
        expected = [
            o for o in district.ndjson(RIVERSIDE, "Observation") if o["subject"]["reference"].endswith(patient["id"])
        ]
        assert {o["id"] for o in observations} == {o["id"] for o in expected}
        with engine.connect() as conn:
            after = conn.scalar(
                select(func.count()).select_from(disclosures).where(disclosures.c.channel == "api-read")
            )
        assert after == before + 2  # two answers with this student's data: two rows
    finally:
        engine.dispose()
