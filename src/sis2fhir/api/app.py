"""The ASGI app of `sis2fhir serve` (create_app): the health endpoints, SMART Backend Services (api.smart), the
FHIR read API (api.fhir), Bulk $export (api.bulk), an OperationOutcome for every error and one log line per
request (api.request_log). One process, one event loop; the store calls run in its thread pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from sis2fhir.api import bulk, cds, health, launch, smart
from sis2fhir.api.capability import SERVED_TYPES, capability_statement
from sis2fhir.api.fhir import fhir_router
from sis2fhir.api.outcome import FHIR_JSON, FhirResponse, outcome_response
from sis2fhir.api.request_log import RequestLog
from sis2fhir.config import Settings
from sis2fhir.service.served import ServedStore, open_served


def create_app(settings: Settings, served: ServedStore | None = None) -> FastAPI:
    """The app for these settings (`api.base_url` and `api.clients` must be set: cli/serve.py checks). `served`:
    an open served store to use (else one is opened for the app's lifetime)."""
    base_url = settings.api.base_url.rstrip("/")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        software = version("sis2fhir")
    except PackageNotFoundError:  # pragma: no cover
        software = "unknown"
    metadata = FhirResponse(capability_statement(settings, software, started)).body

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            with nullcontext(served) if served is not None else open_served(settings) as store:
                app.state.served = store
                yield
        finally:
            if (authority := getattr(app.state, "smart", None)) is not None:
                authority.close()

    app = FastAPI(
        title="sis2fhir",
        version=software,
        summary="Consented school attendance as FHIR R4 (the FHIR API at /fhir is described by /fhir/metadata)",
        lifespan=lifespan,
        openapi_url=None,  # nothing but metadata, the SMART configuration and health answers without a token
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings  # api.smart and api.bulk find the clients, keys and export settings here
    app.add_middleware(RequestLog)
    app.add_exception_handler(smart.Refused, smart.refused_response)  # 401/403: OperationOutcome, WWW-Authenticate
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.get("/fhir/metadata", include_in_schema=False)
    def capability() -> Response:
        return FhirResponse(metadata)

    app.include_router(health.router)
    app.include_router(smart.router)
    app.include_router(cds.router)  # CDS Hooks: /cds-services
    app.include_router(launch.router)  # the SMART-launched chart: /app
    app.include_router(bulk.router)  # before the FHIR router: Group and $export are its paths
    app.include_router(fhir_router(base_url))  # last: its routes are the served types only
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """HTTPException (ours, api.smart's, Starlette's 404 and 405) as an OperationOutcome; a dict detail (an
    OperationOutcome or an OAuth error) is answered as it is."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    detail: Any = exc.detail
    if isinstance(detail, dict):
        kind = FHIR_JSON if detail.get("resourceType") == "OperationOutcome" else "application/json"
        return JSONResponse(detail, status_code=exc.status_code, headers=headers, media_type=kind)
    if exc.status_code == 404:
        message = f"no such resource type or path here; this server serves {', '.join(SERVED_TYPES)} under /fhir"
    elif exc.status_code == 405:
        message = "this method is not supported here (the API is read-only: GET, and POST for _search)"
    else:
        message = str(detail)
    return outcome_response(exc.status_code, message, headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """A request FastAPI could not read (a form field missing): 400, naming where, never the value sent."""
    assert isinstance(exc, RequestValidationError)
    where = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
    )
    if request.url.path.startswith("/auth/"):  # the OAuth token endpoint answers in OAuth's terms (RFC 6749 5.2)
        return JSONResponse({"error": "invalid_request", "error_description": where}, status_code=400)
    return outcome_response(400, f"the request is not valid: {where}")
