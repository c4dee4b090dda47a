"""FHIR Bulk Data Access 2.0 `$export` (system level and Group level) and the Group of a client's consented students.

    GET    /fhir/$export                      kick-off, system level: everything served to the client's recipient
    GET    /fhir/Group/{id}/$export           kick-off, the Group of the recipient's consented students (the same
                                              resources: the store serves a recipient only consented students)
    GET    /fhir/Group, /fhir/Group/{id}      that Group (type person, actual, members Patient/<id>)
    GET    /fhir/$export-status/{job}         202 + X-Progress while running; 200 + the manifest when complete
    DELETE /fhir/$export-status/{job}         cancel: 202, the job and its files are gone (then 404)
    GET    /fhir/$export-file/{job}/{file}    an NDJSON file of the manifest (application/fhir+ndjson)

Every one needs the client's access token, and a job, its status and its files exist only for the client that
started it (404 for any other). Kick-off: `Prefer: respond-async` is required (400 otherwise); `Accept`, when sent,
must allow application/fhir+json; `_outputFormat` application/fhir+ndjson (or application/ndjson, ndjson);
`_type` from Patient, Organization, Observation, Consent, each needing the scope `system/<Type>.rs` (403 without);
without `_type`, the types the client's scopes grant; `_since` a FHIR instant. One job at a time per client: a
second kick-off while one runs is answered 429 with Retry-After. The Group's id is a uuid5 of the district's
`consented-students` system and the recipient identifier (`group_id`): the same for a recipient across restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from sis2fhir.api.bulk_params import EXPORT_TYPES, BadKickOff, parse_kick_off
from sis2fhir.api.export_jobs import Busy, ExportJobs
from sis2fhir.api.outcome import FHIR_JSON, FhirResponse, operation_outcome
from sis2fhir.api.smart import ApiClient, require
from sis2fhir.config import Settings
from sis2fhir.map.identity import resource_id
from sis2fhir.scopes import allows
from sis2fhir.store.exports import COMPLETE, FAILED, ExportJob

NDJSON = "application/fhir+ndjson"
RETRY_SECONDS = 2  # what a client polling a running job, or kicking off a second one, is told to wait
# Reading the Group names the recipient's patients: it needs the Patient scope.
_read_patients = require("system/Patient.rs")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At server start the export jobs are opened (expired ones and those a stopped server left are removed)."""
    settings: Settings | None = getattr(app.state, "settings", None)
    if settings is not None:
        app.state.export_jobs = ExportJobs.open(settings, getattr(app.state, "served", None))
    try:
        yield
    finally:
        jobs: ExportJobs | None = getattr(app.state, "export_jobs", None)
        if jobs is not None:
            jobs.close()


router = APIRouter(lifespan=_lifespan)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _jobs(request: Request) -> ExportJobs:
    jobs: ExportJobs | None = getattr(request.app.state, "export_jobs", None)
    if jobs is None:  # an app started without its lifespan (a test client)
        served = getattr(request.app.state, "served", None)
        jobs = request.app.state.export_jobs = ExportJobs.open(_settings(request), served)
    return jobs


def outcome(
    status: int, code: str, text: str, headers: dict[str, str] | None = None, severity: str = "error"
) -> Response:
    return FhirResponse(operation_outcome(text, code, severity), status_code=status, headers=headers)


def _fhir_base(settings: Settings) -> str:
    return settings.api.base_url.rstrip("/") + "/fhir"


def group_id(settings: Settings, recipient: str) -> str:
    """The id of the Group of a recipient's consented students: stable for that district and recipient."""
    return resource_id(settings.district.system("consented-students"), recipient)


def _group(request: Request, recipient: str) -> dict[str, Any]:
    settings = _settings(request)
    with _jobs(request).served_store() as served:
        members = served.group_members(recipient)
    return {
        "resourceType": "Group",
        "id": group_id(settings, recipient),
        "meta": {"lastUpdated": _instant(datetime.now(UTC))},
        "identifier": [{"system": settings.district.system("consented-students"), "value": recipient}],
        "active": True,
        "type": "person",
        "actual": True,
        "name": f"Students whose consent permits disclosure to {recipient}",
        "quantity": len(members),
        "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in members],
    }


def _instant(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def granted(client: ApiClient, resource_type: str) -> bool:
    """Whether the token's scopes let it read and search a type (`system/<Type>.rs`, or what grants as much)."""
    return allows(client.scopes, f"system/{resource_type}.rs")


_readers = {t: require(f"system/{t}.rs") for t in EXPORT_TYPES}


async def exporter(request: Request) -> ApiClient:
    """The caller of an export request: a valid token (401 otherwise, from api.smart) that grants the read of at
    least one exported type (403 otherwise); which types it may export is checked at kick-off."""
    refused: HTTPException | None = None
    for reader in _readers.values():
        try:
            return await reader(request)
        except HTTPException as e:
            if e.status_code != 403:
                raise
            refused = e
    assert refused is not None
    raise refused


Exporter = Annotated[ApiClient, Depends(exporter)]
PatientReader = Annotated[ApiClient, Depends(_read_patients)]


# -- the Group -------------------------------------------------------------------------------------------------


@router.get("/fhir/Group", include_in_schema=False)
def search_groups(request: Request, client: PatientReader) -> Response:
    settings = _settings(request)
    group = _group(request, client.recipient)
    wanted = True
    for name, value in request.query_params.multi_items():
        if name == "_id":
            wanted = wanted and group["id"] in {v.strip() for v in value.split(",")}
        elif name == "identifier":
            system, bar, code = value.rpartition("|")
            ident = group["identifier"][0]
            wanted = wanted and code == ident["value"] and (not bar or system in ("", ident["system"]))
        elif name not in ("_count", "_format"):
            return outcome(400, "not-supported", f"Group search supports _id and identifier, not {name}")
    entries = [{"fullUrl": f"{_fhir_base(settings)}/Group/{group['id']}", "resource": group}] if wanted else []
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": [dict(e, search={"mode": "match"}) for e in entries],
    }
    return FhirResponse(bundle)


@router.get("/fhir/Group/{gid}", include_in_schema=False)
def read_group(gid: str, request: Request, client: PatientReader) -> Response:
    settings = _settings(request)
    if gid != group_id(settings, client.recipient):
        return outcome(404, "not-found", f"Group/{gid} is not known")
    return FhirResponse(_group(request, client.recipient))


# -- kick-off --------------------------------------------------------------------------------------------------


def _prefer(request: Request) -> set[str]:
    return {p.strip().lower().replace(" ", "") for p in request.headers.get("prefer", "").split(",")}


def _accepts_fhir_json(request: Request) -> bool:
    accept = request.headers.get("accept")
    if accept is None:  # Bulk Data 2.0: a server MAY process a kick-off without Accept as application/fhir+json
        return True
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {FHIR_JSON, "application/json", "application/*", "*/*"})


def _kick_off(request: Request, client: ApiClient, group: str | None) -> Response:
    settings = _settings(request)
    prefer = _prefer(request)
    if "respond-async" not in prefer:
        return outcome(400, "invalid", "a $export needs the header Prefer: respond-async")
    if not _accepts_fhir_json(request):
        return outcome(400, "invalid", "a $export kick-off answers in application/fhir+json: Accept must allow it")
    if group is not None and group != group_id(settings, client.recipient):
        return outcome(404, "not-found", f"Group/{group} is not known")
    try:
        kick = parse_kick_off(request.query_params.multi_items(), lenient="handling=lenient" in prefer)
    except BadKickOff as e:
        return outcome(400, "invalid", str(e))
    asked = "_type" in request.query_params
    refused = [t for t in kick.types if not granted(client, t)]
    if asked and refused:
        return outcome(403, "forbidden", f"the access token grants no system/{refused[0]}.rs")
    types = [t for t in kick.types if t not in refused]
    if not types:
        names = ", ".join(f"system/{t}.rs" for t in EXPORT_TYPES)
        return outcome(403, "forbidden", f"the access token grants none of {names}")
    try:
        job = _jobs(request).kick_off(client.client_id, client.recipient, str(request.url), types, kick.since)
    except Busy:
        return outcome(
            429,
            "throttled",
            "an export of this client is still running: poll its status, or wait and kick off again",
            headers={"Retry-After": str(RETRY_SECONDS)},
        )
    location = f"{_fhir_base(settings)}/$export-status/{job.id}"
    return outcome(
        202, "informational", f"export started: poll {location}", {"Content-Location": location}, "information"
    )


@router.get("/fhir/$export", include_in_schema=False)
def export_system(request: Request, client: Exporter) -> Response:
    return _kick_off(request, client, None)


@router.get("/fhir/Group/{gid}/$export", include_in_schema=False)
def export_group(gid: str, request: Request, client: Exporter) -> Response:
    return _kick_off(request, client, gid)


# -- status, cancel, files -------------------------------------------------------------------------------------


def _gone(job_id: str) -> Response:
    return outcome(404, "not-found", f"no export {job_id} for this client: unknown, cancelled or expired")


@router.get("/fhir/$export-status/{job_id}", include_in_schema=False)
def export_status(job_id: str, request: Request, client: Exporter) -> Response:
    job = _jobs(request).status(client.client_id, job_id)
    if job is None:
        return _gone(job_id)
    if job.status == FAILED:
        return outcome(500, "exception", job.error or "the export failed")
    if job.status != COMPLETE:
        return Response(status_code=202, headers={"X-Progress": job.progress, "Retry-After": str(RETRY_SECONDS)})
    headers = {"Expires": format_datetime(job.expires_at, usegmt=True)} if job.expires_at else {}
    return JSONResponse(_manifest(_settings(request), job), headers=headers)


def _manifest(settings: Settings, job: ExportJob) -> dict[str, Any]:
    base = _fhir_base(settings)
    return {
        "transactionTime": _instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": True,
        "output": [
            {"type": f.type, "url": f"{base}/$export-file/{job.id}/{f.file}", "count": f.count} for f in job.output
        ],
        "error": [],
    }


@router.delete("/fhir/$export-status/{job_id}", include_in_schema=False)
def export_cancel(job_id: str, request: Request, client: Exporter) -> Response:
    if not _jobs(request).cancel(client.client_id, job_id):
        return _gone(job_id)
    return outcome(202, "informational", f"export {job_id} cancelled: its files are gone", severity="information")


@router.get("/fhir/$export-file/{job_id}/{name}", include_in_schema=False)
def export_file(job_id: str, name: str, request: Request, client: Exporter) -> Response:
    path = _jobs(request).file(client.client_id, job_id, name)
    if path is None:
        return outcome(404, "not-found", f"no file {name} in export {job_id} for this client")
    return FileResponse(path, media_type=NDJSON)
