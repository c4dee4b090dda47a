"""The example district synced and served with a CDS Hooks client and a launching EHR bound to Riverside, and a
real FHIR server (sekmet) as that EHR's record holding Patients: one consented to Riverside, one consented to
Harbor only (not to Riverside), one the district does not know. Keys are made here.

The EHR's Patients carry the state student id (the district's state id system) beside an MRN of their own, and
ids of the FHIR server's choosing: nothing but the state id links them to the district's students.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import network, serve_process, smart
from tests.support.served_district import CLIENT_IDS, HARBOR, RIVERSIDE, SCOPES, sync
from tests.support.smart_ehr import TestEhr, running_ehr

CDS_ISSUER = "https://ehr.riverside-clinic.example"  # the Riverside EHR's CDS client (its JWTs' iss)
SERVICE = "sis2fhir-school-attendance"
STATE_SYSTEM = network.district()["state_id_system"]
MRN_SYSTEM = "https://ehr.riverside-clinic.example/mrn"


@dataclass
class ChartDistrict:
    url: str
    out: Path
    ehr: TestEhr
    fhir_base: str  # the real FHIR server (sekmet)
    cds_keys: smart.ClientKeys
    store_url: str
    served: serve_process.Served
    consented: str  # EHR Patient id: a student consented to Riverside
    not_consented: str  # EHR Patient id: a student consented to Harbor, not Riverside
    unknown: str  # EHR Patient id: no such student
    consented_observation: dict[str, Any]  # what Riverside's folder holds for the consented student
    config: Path

    @property
    def service_url(self) -> str:
        return f"{self.url}/cds-services/{SERVICE}"

    def jwt(self, aud: str | None = None, **changes: Any) -> str:
        """A CDS Hooks JWT of the Riverside EHR for the service (or `aud`), any claim or header changed."""
        return smart.client_assertion(CDS_ISSUER, aud or self.service_url, self.cds_keys, **changes)

    def ndjson(self, recipient: str, rtype: str) -> list[dict[str, Any]]:
        return _ndjson(self.out, recipient, rtype)


def _ndjson(out: Path, recipient: str, rtype: str) -> list[dict[str, Any]]:
    path = out / recipient / f"{rtype}.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _state_id(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == STATE_SYSTEM)


def _seed(fhir_base: str, state_id: str, mrn: str) -> str:
    """A Patient in the EHR's record with the state student id and an MRN; its server-assigned id."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": mrn}, {"system": STATE_SYSTEM, "value": state_id}],
        "name": [{"family": "Testpatient", "given": [mrn]}],
    }
    created = httpx.post(f"{fhir_base}/Patient", json=patient, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _chronic_first(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(observations, key=lambda o: -(o.get("valueQuantity") or {}).get("value", 0))


@contextmanager
def chart_district(tmp: Path, fhir_base: str) -> Iterator[ChartDistrict]:
    with running_ehr(fhir_base) as ehr:
        port = serve_process.free_port()
        url = f"http://127.0.0.1:{port}"
        ehr.redirect_uri = f"{url}/app/callback"
        keys = {RIVERSIDE: smart.make_client_keys("RS384"), HARBOR: smart.make_client_keys("ES384")}
        cds_keys = smart.make_client_keys("ES384")
        store_url = f"sqlite:///{tmp / 'state.sqlite'}"
        api = {
            "base_url": url,
            "clients": [smart.api_client_config(CLIENT_IDS[r], r, k, SCOPES) for r, k in keys.items()],
            "cds_clients": [{"issuer": CDS_ISSUER, "recipient": RIVERSIDE, "jwks": cds_keys.jwks}],
            "ehr_launch": [{"iss": ehr.fhir_base, "client_id": ehr.client_id, "recipient": RIVERSIDE}],
        }
        config = network.write_config(tmp / "sis2fhir.yaml", store_url=store_url, api=api)
        out = tmp / "out"
        sync(config, out)
        riverside = {_state_id(p): p for p in _ndjson(out, RIVERSIDE, "Patient")}
        harbor_only = [p for p in _ndjson(out, HARBOR, "Patient") if _state_id(p) not in riverside]
        assert riverside and harbor_only, "the example district has students of each kind"
        chosen = _chronic_first(_ndjson(out, RIVERSIDE, "Observation"))[0]
        patient_id = chosen["subject"]["reference"].split("/")[1]
        patient = next(p for p in riverside.values() if p["id"] == patient_id)
        consented = _seed(fhir_base, _state_id(patient), "MRN-1")
        not_consented = _seed(fhir_base, _state_id(harbor_only[0]), "MRN-2")
        unknown = _seed(fhir_base, "9999999999", "MRN-3")
        with serve_process.serving(config, port, tmp / "serve.log") as served:
            yield ChartDistrict(
                url, out, ehr, fhir_base, cds_keys, store_url, served, consented, not_consented, unknown, chosen, config
            )
