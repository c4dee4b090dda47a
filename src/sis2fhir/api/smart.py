"""SMART Backend Services with sis2fhir as the authorization server (SMART App Launch 2.x backend-services, the
auth part of Bulk Data 2.0): discovery, the token endpoint, and `require(scope)` guarding every FHIR route.

Wiring (api/app.py): `app.state.settings = settings`, `app.include_router(smart.router)` and
`app.add_exception_handler(smart.Refused, smart.refused_response)` (a FHIR OperationOutcome with its
WWW-Authenticate header). The routes and `require` find the settings on `app.state`; the keys, the token signer
and the store connection are made on first use and kept on `app.state.smart`.

    @app.get("/fhir/Observation")
    def search(client: Annotated[ApiClient, Depends(require("system/Observation.rs"))]) -> ...: ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from sis2fhir.api.assertion import OAuthError, check_assertion, invalid_client
from sis2fhir.api.tokens import AccessTokens, InvalidToken
from sis2fhir.config import ApiClientSettings, Settings
from sis2fhir.deliver.smart_auth import ASSERTION_TYPE, OAUTH_URIS_EXTENSION
from sis2fhir.keys import ClientKey, SigningKey, ephemeral_signing_key, load_jwks, load_signing_key
from sis2fhir.scopes import SUPPORTED, allows, granted, parse_scope
from sis2fhir.store import open_store
from sis2fhir.store.assertions import remember_jti

router = APIRouter()
MAX_FORM_BYTES = 64 * 1024  # a token request is a few kilobytes: anything larger is refused unread
JWKS_RELOAD_SECONDS = 5.0  # an unknown kid re-reads a file: JWKS at most this often per client (key rotation)
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


@dataclass(frozen=True, slots=True)
class ApiClient:
    """The caller of a request, as its access token says: the client, its recipient organization, the scopes."""

    client_id: str
    recipient: str
    scopes: str


class Authority:
    """The authorization server of one app: the clients' keys, the token signer and the store of seen jtis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = settings.api
        signing: SigningKey = (
            load_signing_key(self.api.signing_key) if self.api.signing_key else ephemeral_signing_key()
        )
        self.tokens = AccessTokens(signing, self.api.fhir_base, self.api.token_lifetime_seconds)
        self._keys: dict[str, dict[str, ClientKey]] = {
            c.client_id: load_jwks(c.jwks, f"client {c.client_id!r}: jwks") for c in self.api.clients
        }
        self._loaded_at: dict[str, float] = {}  # client id -> when an unknown kid last re-read its JWKS
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def client(self, client_id: str) -> ApiClientSettings | None:
        return self.api.client(client_id)

    def key_of(self, client_id: str, kid: str) -> ClientKey | None:
        """The client's key `kid`; an unknown kid re-reads a `file:` JWKS (a client rotating its keys adds the new
        one to the file: no restart needed), at most every JWKS_RELOAD_SECONDS."""
        key = self._keys.get(client_id, {}).get(kid)
        client = self.client(client_id)
        if key is not None or client is None or not isinstance(client.jwks, str) or not client.jwks.startswith("file:"):
            return key
        with self._lock:
            last = self._loaded_at.get(client_id)
            if last is None or time.monotonic() - last >= JWKS_RELOAD_SECONDS:
                self._loaded_at[client_id] = time.monotonic()
                with suppress(ValueError):  # a file caught mid-write or broken: keep the keys read before
                    self._keys[client_id] = load_jwks(client.jwks, f"client {client_id!r}: jwks")
        return self._keys.get(client_id, {}).get(kid)

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = open_store(self.settings.store_url)
            return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def authority(app: FastAPI) -> Authority:
    """The app's Authority, made from `app.state.settings` on first use."""
    found = getattr(app.state, "smart", None)
    if found is None:
        found = app.state.smart = Authority(app.state.settings)
    return found


def smart_configuration(settings: Settings) -> dict[str, Any]:
    """The SMART discovery document (SMART App Launch 2.x, conformance: what a backend service needs)."""
    return {
        "token_endpoint": settings.api.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": list(SUPPORTED),
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }


def security_extension(settings: Settings) -> dict[str, Any]:
    """`CapabilityStatement.rest.security`: the SMART oauth-uris extension (the token URL) and the service coding."""
    return {
        "extension": [
            {"url": OAUTH_URIS_EXTENSION, "extension": [{"url": "token", "valueUri": settings.api.token_url}]}
        ],
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}], "text": "SMART-on-FHIR"}],
        "description": "SMART Backend Services: client_credentials with a private_key_jwt client assertion "
        "(RS384 or ES384); SMART v2 system scopes",
    }


@router.get("/fhir/.well-known/smart-configuration", include_in_schema=True)
async def well_known(request: Request) -> JSONResponse:
    return JSONResponse(smart_configuration(request.app.state.settings))


def _oauth_error(e: OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": e.error, "error_description": e.description},
        status_code=e.status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "send the token request as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError(400, "invalid_request", "the token request is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "the token request is not a readable form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError(400, "invalid_request", f"the parameter {name!r} is sent more than once")
        form[name] = value
    return form


@router.post("/auth/token")
async def token(request: Request) -> JSONResponse:
    """client_credentials with a private_key_jwt assertion; answers an access token for the granted scopes."""
    try:
        return JSONResponse(await _grant(request), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
    except OAuthError as e:
        return _oauth_error(e)


async def _grant(request: Request) -> dict[str, Any]:
    auth = authority(request.app)
    form = await _form(request)
    grant_type = form.get("grant_type", "")
    if not grant_type:
        raise OAuthError(400, "invalid_request", "grant_type is missing: send grant_type=client_credentials")
    if grant_type != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise invalid_client(f"client_assertion_type must be {ASSERTION_TYPE} (private_key_jwt)")
    if not form.get("client_assertion"):
        raise OAuthError(400, "invalid_request", "client_assertion is missing")
    if not form.get("scope", "").strip():
        raise OAuthError(400, "invalid_request", "scope is missing: ask for SMART system scopes")
    accepted = check_assertion(
        form["client_assertion"],
        token_url=auth.api.token_url,
        known_client=lambda cid: auth.client(cid) is not None,
        key_of=auth.key_of,
        now=time.time(),
    )
    fresh = await run_in_threadpool(  # the first call opens (and if need be migrates) the store: not in the loop
        lambda: remember_jti(auth.engine(), accepted.client_id, accepted.jti, accepted.expires_at, datetime.now(UTC))
    )
    if not fresh:
        raise invalid_client("client_assertion: its jti was used before (a replayed assertion)")
    client = auth.client(accepted.client_id)
    assert client is not None  # check_assertion accepted only a configured client
    scope = granted(form["scope"], client.scopes)
    if not scope:
        raise OAuthError(
            400, "invalid_scope", f"none of the requested scopes is granted to this client: {client.scopes}"
        )
    return {
        "access_token": auth.tokens.issue(client.client_id, client.recipient, scope),
        "token_type": "bearer",
        "expires_in": auth.api.token_lifetime_seconds,
        "scope": scope,
    }


class Refused(HTTPException):
    """A FHIR request refused for its token: 401 (none or invalid) or 403 (the scope does not grant it)."""

    def __init__(self, status: int, code: str, diagnostics: str, challenge: str) -> None:
        super().__init__(status_code=status, detail=diagnostics, headers={"WWW-Authenticate": challenge})
        self.code = code

    def outcome(self) -> dict[str, Any]:
        return {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": self.code, "diagnostics": self.detail}],
        }


async def refused_response(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for Refused: the OperationOutcome as application/fhir+json."""
    assert isinstance(exc, Refused)
    return JSONResponse(
        exc.outcome(), status_code=exc.status_code, headers=exc.headers, media_type="application/fhir+json"
    )


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def require(scope: str) -> Callable[[Request], Awaitable[ApiClient]]:
    """A FastAPI dependency: the ApiClient of a request whose bearer token this server issued, is not expired, is
    for this server (aud) and whose scopes hold every permission of `scope`; Refused (401, 403) otherwise."""
    if parse_scope(scope) is None:
        raise ValueError(f"{scope!r} is not a SMART system scope such as system/Observation.rs")

    async def dependency(request: Request) -> ApiClient:
        auth = authority(request.app)
        realm = f'Bearer realm="{auth.api.fhir_base}"'
        token = _bearer(request)
        if token is None:
            raise Refused(401, "login", f"an access token is required: get one at {auth.api.token_url}", realm)
        try:
            claims = auth.tokens.verify(token)
        except InvalidToken as e:
            raise Refused(401, "expired" if e.expired else "login", str(e), f'{realm}, error="invalid_token"') from None
        client = auth.client(claims.client_id)
        if client is None or client.recipient != claims.recipient:
            # the client was removed or bound to another recipient since the token was issued
            raise Refused(
                401,
                "login",
                "the access token's client is no longer registered for that recipient",
                f'{realm}, error="invalid_token"',
            )
        if not allows(claims.scope, scope):
            raise Refused(
                403,
                "forbidden",
                f"the access token's scopes do not grant {scope}",
                f'{realm}, error="insufficient_scope", scope="{scope}"',
            )
        return ApiClient(client_id=claims.client_id, recipient=claims.recipient, scopes=claims.scope)

    return dependency
