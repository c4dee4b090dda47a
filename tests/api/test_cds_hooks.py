"""The CDS Hooks 2.0 patient-view service of `sis2fhir serve`, called by Medplum's CDS client (@medplum/core:
getCdsServices, buildCdsRequest filling the prefetch from a real FHIR server, callCdsService), every answer checked
against the CDS Hooks 2.0 rules (tests/support/cds_rules.py); the JWT rules and the consent gate one by one."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from sis2fhir.store.schema import disclosures
from tests.support import paths, smart
from tests.support.cds_rules import discovery_problems, response_problems
from tests.support.chart_district import SERVICE, ChartDistrict, chart_district
from tests.support.paths import ROOT
from tests.support.served_district import RIVERSIDE, sync

MEDPLUM = ROOT / ".tools" / "medplum"
SCRIPT = ROOT / "tests" / "support" / "medplum_cds.mjs"
TIER_INDICATOR = {  # what a clinician should see first, per tier (the issue: info / warning / critical)
    "satisfactory": "info",
    "at-risk": "warning",
    "moderate-chronic": "critical",
    "severe-chronic": "critical",
}


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory, fhir_server: str) -> Iterator[ChartDistrict]:
    with chart_district(tmp_path_factory.mktemp("cds"), fhir_server) as found:
        yield found


def medplum(district: ChartDistrict, calls: list[dict[str, Any]]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: Medplum's CDS client cannot run")
    if not (MEDPLUM / "node_modules" / "@medplum" / "core" / "package.json").is_file():
        pytest.fail(f"Medplum is not installed in {MEDPLUM}: run scripts/install-medplum.sh", pytrace=False)
    job = {"cdsBase": district.url, "fhirBase": district.fhir_base, "discoveryJwt": district.jwt(), "calls": calls}
    run = subprocess.run([node, str(SCRIPT), str(MEDPLUM)], input=json.dumps(job), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(json.loads(run.stdout))


def component(observation: dict[str, Any], code: str) -> float:
    for c in observation["component"]:
        if c["code"]["coding"][0]["code"] == code:
            return float(c["valueQuantity"]["value"])
    raise AssertionError(code)


def expected_summary(observation: dict[str, Any]) -> str:
    absent, days = component(observation, "days-absent"), component(observation, "days-in-membership")
    return f"Missed {absent:g} of {days:g} school days this year ({observation['valueQuantity']['value']:g} %)"


def shown_to(district: ChartDistrict, channel: str) -> list[str]:
    engine = create_engine(district.store_url)
    try:
        with engine.connect() as conn:
            t = disclosures
            return list(conn.scalars(select(t.c.student_sourced_id).where(t.c.channel == channel)))
    finally:
        engine.dispose()


def post(district: ChartDistrict, body: dict[str, Any], token: str | None, path: str = "") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{district.service_url}{path}", json=body, headers=headers, timeout=30)


def request_body(district: ChartDistrict, patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": patient_id, "userId": "Practitioner/1"},
        **extra,
    }


def test_medplum_gets_one_card_with_the_observations_numbers_and_none_without_consent(
    district: ChartDistrict,
) -> None:
    before = len(shown_to(district, "cds-hooks"))
    calls = [
        {"patientId": district.consented, "jwt": district.jwt()},
        {"patientId": district.not_consented, "jwt": district.jwt()},
        {"patientId": district.unknown, "jwt": district.jwt()},
    ]
    answer = medplum(district, calls)
    assert discovery_problems(answer["discovery"]) == []
    [service] = [s for s in answer["discovery"]["services"] if s["hook"] == "patient-view"]
    assert service["id"] == SERVICE and "patient" in service["prefetch"]
    consented, not_consented, unknown = answer["results"]
    for result in answer["results"]:
        assert result["ok"], result
        assert response_problems(result["body"]) == []
    assert consented["request"]["prefetch"]["patient"]["id"] == district.consented  # Medplum read it from sekmet
    [card] = consented["body"]["cards"]
    observation = district.consented_observation
    assert card["summary"].startswith(expected_summary(observation) + ": ")
    tier = observation["interpretation"][0]["coding"][0]["code"]
    assert card["indicator"] == TIER_INDICATOR[tier]
    school = observation["performer"][0]["display"]
    assert school.split()[0] in card["detail"]
    assert f"Excused: {component(observation, 'days-absent-excused'):g} days" in card["detail"]
    assert f"unexcused: {component(observation, 'days-absent-unexcused'):g} days" in card["detail"]
    assert observation["effectivePeriod"]["end"] in card["detail"]
    assert "Trend, days missed by month: " in card["detail"]  # the monthly tallies the sync recorded
    assert "March 2026: " in card["detail"]
    [link] = card["links"]
    assert link["type"] == "smart" and link["url"] == f"{district.url}/app/launch"
    assert not_consented["body"]["cards"] == [] and unknown["body"]["cards"] == []
    assert len(shown_to(district, "cds-hooks")) == before + 1  # the card is in the FERPA log; nothing else


def test_a_dropped_prefetch_is_read_from_fhir_server(district: ChartDistrict) -> None:
    calls = [
        {
            "patientId": district.consented,
            "jwt": district.jwt(),
            "dropPrefetch": True,
            "fhirServer": district.fhir_base,
        },
        {
            "patientId": district.not_consented,
            "jwt": district.jwt(),
            "dropPrefetch": True,
            "fhirServer": district.fhir_base,
        },
    ]
    consented, not_consented = medplum(district, calls)["results"]
    assert "patient" not in consented["request"]["prefetch"]
    assert response_problems(consented["body"]) == [] and len(consented["body"]["cards"]) == 1
    assert consented["body"]["cards"][0]["summary"].startswith(expected_summary(district.consented_observation))
    assert not_consented["body"]["cards"] == []


def test_412_when_the_patient_is_neither_prefetched_nor_readable(district: ChartDistrict) -> None:
    assert post(district, request_body(district, district.consented), district.jwt()).status_code == 412
    null = request_body(district, district.consented, prefetch={"patient": None})
    assert post(district, null, district.jwt()).status_code == 412
    gone = request_body(district, district.consented, fhirServer="http://127.0.0.1:9/fhir")
    assert post(district, gone, district.jwt()).status_code == 412
    no_server = request_body(district, district.consented, fhirAuthorization={"access_token": "x"})
    assert post(district, no_server, district.jwt()).status_code == 400


def _prefetched(district: ChartDistrict) -> dict[str, Any]:
    patient = httpx.get(f"{district.fhir_base}/Patient/{district.consented}").json()
    return request_body(district, district.consented, prefetch={"patient": patient})


def test_the_jwt_rules_one_by_one(district: ChartDistrict) -> None:
    body = _prefetched(district)
    assert len(post(district, body, district.jwt()).json()["cards"]) == 1  # the same call, well signed
    stranger = smart.make_client_keys("ES384", kid=district.cds_keys.kid)
    bad = {
        "no token": None,
        "unknown issuer": district.jwt(iss="https://someone-else.example", sub="https://someone-else.example"),
        "a key not registered": smart.client_assertion(
            "https://ehr.riverside-clinic.example", district.service_url, stranger
        ),
        "unknown kid": district.jwt(kid="not-a-kid"),
        "aud another service": district.jwt(aud=f"{district.url}/cds-services/other"),
        "aud the base": district.jwt(aud=district.url),
        "expired": district.jwt(exp_in=-5),
        "no exp": district.jwt(exp_in=None),
        "exp an hour ahead": district.jwt(exp_in=3600),
        "no jti": district.jwt(jti=None),
        "HS256": district.jwt(alg="HS256", signing_key="a-shared-secret-that-is-long-enough-for-hs256"),
    }
    for rule, token in bad.items():
        answer = post(district, body, token)
        assert answer.status_code == 401, rule
        assert "cards" not in answer.json(), rule
    replayed = district.jwt(jti="the-same-jti")
    assert post(district, body, replayed).status_code == 200
    assert post(district, body, district.jwt(jti="the-same-jti")).status_code == 401


def test_feedback_is_accepted_for_the_service_only(district: ChartDistrict) -> None:
    feedback_url = f"{district.service_url}/feedback"
    items = {
        "feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-03-31T10:00:00Z"}]
    }
    assert post(district, items, district.jwt(aud=feedback_url), "/feedback").status_code == 200
    assert post(district, items, district.jwt(), "/feedback").status_code == 401  # aud: the service, not feedback
    wrong = {"feedback": [{"card": "x", "outcome": "liked"}]}
    assert post(district, wrong, district.jwt(aud=feedback_url), "/feedback").status_code == 400


def test_a_revoked_consent_takes_the_card_away(district: ChartDistrict, tmp_path: Path) -> None:
    """Last in this module: the district is synced again with the consented student's Riverside consent revoked."""
    body = _prefetched(district)
    assert len(post(district, body, district.jwt()).json()["cards"]) == 1
    patient_id = district.consented_observation["subject"]["reference"].split("/")[1]
    [patient] = [p for p in district.ndjson(RIVERSIDE, "Patient") if p["id"] == patient_id]
    ids = {i["value"] for i in patient["identifier"]}
    export = tmp_path / "district"
    shutil.copytree(paths.EXAMPLE, export)
    with (export / "consents.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    revoked = 0
    for row in rows:
        if row["recipientOrganization"] == RIVERSIDE and ids & {row["studentSourcedId"], row["studentIdentifier"]}:
            row.update(status="revoked", revokedDate="2026-03-02")
            revoked += 1
    assert revoked >= 1
    with (export / "consents.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    sync(district.config, tmp_path / "out", export)
    answer = post(district, body, district.jwt())
    assert answer.status_code == 200 and answer.json() == {"cards": []}
