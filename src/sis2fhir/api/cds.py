"""CDS Hooks 2.0 on `sis2fhir serve`: discovery at /cds-services, the patient-view service and its feedback.

A call: the JWT is checked (api/cds_auth.py) and binds the call to its client's recipient organization; the
Patient comes from the prefetch (key `patient`), or, when the CDS client dropped the key or sent null (clients
drop keys they failed to fetch), from `fhirServer` with `fhirAuthorization`; neither: 412, as CDS Hooks says. The
student is found by the Patient's state student id; without a Consent for that recipient the answer is an empty
`cards` list (nothing says whether the student exists). A card shown is a disclosure: one FERPA row, channel
cds-hooks. Wiring: `app.include_router(cds.router)` (api/app.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sis2fhir.api.cds_auth import CdsCall, CdsRefused, bearer, check_cds_jwt
from sis2fhir.config import Settings
from sis2fhir.keys import CDS_JWT_ALGS, ClientKey, load_jwks
from sis2fhir.present import card as texts
from sis2fhir.present.facts import AttendanceFacts
from sis2fhir.service.chart import CARD, attendance, find_student, record_shown
from sis2fhir.service.served import ServedStore
from sis2fhir.store.assertions import remember_jti

router = APIRouter(include_in_schema=False)  # described by docs/chart.md (and CDS discovery), not OpenAPI
log = logging.getLogger("sis2fhir.api.cds")
SERVICE_ID = "sis2fhir-school-attendance"
HOOK = "patient-view"
PREFETCH = {"patient": "Patient/{{context.patientId}}"}
MAX_BODY = 1 << 20  # a patient-view request with its prefetch is a few kilobytes
FETCH_TIMEOUT = 10.0  # seconds for the Patient from fhirServer
OUTCOMES = ("accepted", "overridden")


def discovery(settings: Settings) -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "School attendance (consented)",
                "description": "Year-to-date school attendance and chronic-absence tier of a student whose parent "
                "consented to share it with this organization, with a chart of the year",
                "prefetch": PREFETCH,
                "usageRequirements": "Send a JWT signed with a key of the JWKS registered for your iss; the "
                "Patient needs the state student id among its identifiers.",
            }
        ]
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


class _Keys:
    """The CDS clients' keys, read once per app."""

    def __init__(self, settings: Settings) -> None:
        self.keys: dict[str, dict[str, ClientKey]] = {
            c.issuer: load_jwks(c.jwks, f"CDS client {c.issuer!r}: jwks", CDS_JWT_ALGS)
            for c in settings.api.cds_clients
        }

    def key_of(self, issuer: str, kid: str) -> ClientKey | None:
        return self.keys.get(issuer, {}).get(kid)


def _keys(request: Request) -> _Keys:
    found = getattr(request.app.state, "cds_keys", None)
    if found is None:
        found = request.app.state.cds_keys = _Keys(request.app.state.settings)
    return found


async def _authenticated(request: Request, service_url: str) -> CdsCall:
    settings: Settings = request.app.state.settings
    call = check_cds_jwt(
        bearer(request.headers.get("authorization", "")),
        service_url=service_url,
        client_of=settings.api.cds_client,
        key_of=_keys(request).key_of,
        now=time.time(),
    )
    served: ServedStore = request.app.state.served
    fresh = await run_in_threadpool(
        remember_jti, served.engine, call.replay_key, call.jti, call.expires_at, datetime.now(UTC)
    )
    if not fresh:
        raise CdsRefused("the JWT's jti was used before (a replayed call)")
    return call


async def _body(request: Request) -> dict[str, Any] | None:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


@router.get("/cds-services")
async def cds_discovery(request: Request) -> JSONResponse:
    return JSONResponse(discovery(request.app.state.settings))


@router.post("/cds-services/{service_id}")
async def cds_service(service_id: str, request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    if service_id != SERVICE_ID:
        return _error(404, f"no such CDS service; this server offers {SERVICE_ID}")
    try:
        call = await _authenticated(request, f"{settings.api.base_url}/cds-services/{SERVICE_ID}")
    except CdsRefused as e:
        return _error(401, e.description)
    body = await _body(request)
    if body is None:
        return _error(400, "the request body must be a JSON object (a CDS Hooks request) of at most 1 MiB")
    if body.get("hook") != HOOK:
        return _error(400, f"this service answers the {HOOK} hook")
    context = body.get("context")
    patient_id = context.get("patientId") if isinstance(context, dict) else None
    if not isinstance(patient_id, str) or not patient_id:
        return _error(400, "context.patientId is required")
    if body.get("fhirAuthorization") is not None and not body.get("fhirServer"):
        return _error(400, "fhirAuthorization is sent without fhirServer")
    server = body.get("fhirServer")
    if isinstance(server, str) and not call.client.allows_fhir_server(server):
        return _error(400, "fhirServer is not one of this CDS client's FHIR servers (api.cds_clients.fhir_servers)")
    patient = _prefetched(body, patient_id) or await _fetched(body, patient_id)
    if patient is None:
        return _error(412, "the Patient is neither prefetched (key `patient`) nor readable from fhirServer")
    served: ServedStore = request.app.state.served
    recipient = call.client.recipient

    def gather() -> list[dict[str, Any]]:
        student = find_student(served, recipient, patient, settings.district.student_id_system)
        if student is None:
            return []
        found = attendance(served, settings, recipient, student)
        if not found.charts:
            return []
        record_shown(served, recipient, call.client.issuer, found, f"cds-services/{SERVICE_ID}", CARD)
        return [card(found.charts[0], settings)]

    return JSONResponse({"cards": await run_in_threadpool(gather)}, headers={"Cache-Control": "no-store"})


def card(facts: AttendanceFacts, settings: Settings) -> dict[str, Any]:
    """The patient-view card of one school's year to date, with a SMART link to the chart."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": texts.summary(facts),
        "indicator": texts.indicator(facts),
        "detail": texts.detail(facts),
        "source": {
            "label": "School attendance shared by the district with the parent's consent (sis2fhir)",
            "topic": {"system": "http://sis2fhir.org/fhir/CodeSystem/school-attendance", "code": "attendance-summary"},
        },
        "links": [
            {"label": "Open the attendance chart", "url": f"{settings.api.base_url}/app/launch", "type": "smart"}
        ],
    }


def _prefetched(body: dict[str, Any], patient_id: str) -> dict[str, Any] | None:
    """The prefetched Patient, when it is the context's patient (a missing or null key: None)."""
    prefetch = body.get("prefetch")
    patient = prefetch.get("patient") if isinstance(prefetch, dict) else None
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient" and patient.get("id") == patient_id:
        return patient
    return None


async def _fetched(body: dict[str, Any], patient_id: str) -> dict[str, Any] | None:
    """The Patient read from fhirServer with fhirAuthorization's token; None when it cannot be read."""
    server = body.get("fhirServer")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        return None
    headers = {"Accept": "application/fhir+json"}
    auth = body.get("fhirAuthorization")
    if isinstance(auth, dict) and isinstance(auth.get("access_token"), str):
        headers["Authorization"] = f"Bearer {auth['access_token']}"
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
            response = await client.get(f"{server.rstrip('/')}/Patient/{patient_id}", headers=headers)
        found = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        log.info("CDS call: the Patient could not be read from fhirServer")
        return None
    return found if isinstance(found, dict) and found.get("resourceType") == "Patient" else None


@router.post("/cds-services/{service_id}/feedback")
async def cds_feedback(service_id: str, request: Request) -> JSONResponse:
    """Feedback on cards (CDS Hooks 2.0): counted per outcome, nothing else kept."""
    settings: Settings = request.app.state.settings
    if service_id != SERVICE_ID:
        return _error(404, f"no such CDS service; this server offers {SERVICE_ID}")
    try:
        await _authenticated(request, f"{settings.api.base_url}/cds-services/{SERVICE_ID}/feedback")
    except CdsRefused as e:
        return _error(401, e.description)
    body = await _body(request)
    items = body.get("feedback") if body is not None else None
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("card"), str) and i.get("outcome") in OUTCOMES for i in items
    ):
        return _error(400, "feedback must be a list of {card, outcome: accepted | overridden, outcomeTimestamp}")
    counts: Counter[str] = getattr(request.app.state, "cds_feedback", None) or Counter()
    counts.update(i["outcome"] for i in items)
    request.app.state.cds_feedback = counts
    log.info("CDS feedback: %d accepted, %d overridden so far", counts["accepted"], counts["overridden"])
    return JSONResponse({}, status_code=200)
