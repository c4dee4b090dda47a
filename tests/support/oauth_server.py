"""A real SMART Backend Services token endpoint on loopback, and a proxy letting only its tokens reach FHIR.

Checks every rule of SMART App Launch 2.2 backend-services.md on the client assertion, verifying it with
joserfc against the JWKS registered for the client. Errors follow RFC 6749 section 5.2 (error, description).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.sekmet import free_port
from tests.support.threaded_app import serving_in_thread

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALLOWED_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300  # seconds: SMART says exp no more than five minutes in the future
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
FORWARDED_HEADERS = ("content-type", "accept", "if-none-exist", "if-match", "prefer")
HOP_BY_HOP = {"content-length", "content-encoding", "transfer-encoding", "connection"}


class OAuthRejection(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass
class OAuthTestServer:
    """Token endpoint at {root}/auth/token; FHIR proxy to `upstream` at {root}/fhir."""

    upstream: str
    token_lifetime: int = 300
    advertise_well_known: bool = True  # False: discovery must fall back to the CapabilityStatement
    root: str = ""
    clients: dict[str, KeySet] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch seconds)
    seen_jti: dict[str, float] = field(default_factory=dict)
    token_requests: int = 0
    rejections: list[str] = field(default_factory=list)  # error_description of every refused token request
    fhir_refused: int = 0  # FHIR calls refused for a missing or bad token

    @property
    def token_url(self) -> str:
        return f"{self.root}/auth/token"

    @property
    def fhir_base(self) -> str:
        return f"{self.root}/fhir"

    def register(self, client_id: str, public_jwks: dict[str, Any]) -> None:
        self.clients[client_id] = KeySet.import_key_set(public_jwks)

    def expire_all_tokens(self) -> None:
        """The server forgets every token it issued (as after a restart or a revocation)."""
        self.tokens.clear()

    # -- token endpoint --

    def check_assertion(self, form: dict[str, str]) -> str:
        """Return the client id of a valid client assertion, or raise OAuthRejection."""
        if form.get("grant_type") != "client_credentials":
            raise OAuthRejection(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthRejection(400, "invalid_request", "client_assertion_type must be jwt-bearer")
        assertion = form.get("client_assertion", "")
        try:
            header_b64, claims_b64, _ = assertion.split(".")
            header = json.loads(_b64decode(header_b64))
            unverified = json.loads(_b64decode(claims_b64))
        except ValueError:
            raise OAuthRejection(400, "invalid_request", "client_assertion is not a compact JWS") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise OAuthRejection(401, "invalid_client", f"alg {alg!r} not accepted; use RS384 or ES384")
        if header.get("typ") != "JWT":
            raise OAuthRejection(401, "invalid_client", "typ header must be JWT")
        client_id = unverified.get("iss")
        keys = self.clients.get(client_id) if isinstance(client_id, str) else None
        if keys is None:
            raise OAuthRejection(401, "invalid_client", f"unknown client {client_id!r}")
        kid = header.get("kid")
        if not kid or all(k.kid != kid for k in keys.keys):
            raise OAuthRejection(401, "invalid_client", f"unknown kid {kid!r}")
        try:
            token = jwt.decode(assertion, keys, algorithms=[alg])
        except JoseError as e:
            raise OAuthRejection(401, "invalid_client", f"signature not verified: {e.error}") from None
        claims = token.claims
        now = time.time()
        if claims.get("sub") != client_id:
            raise OAuthRejection(401, "invalid_client", "iss and sub must both be the client id")
        aud = claims.get("aud")
        if aud != self.token_url and not (isinstance(aud, list) and self.token_url in aud):
            raise OAuthRejection(401, "invalid_client", "aud must be the token endpoint URL")
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise OAuthRejection(401, "invalid_client", "exp is required")
        if exp <= now:
            raise OAuthRejection(401, "invalid_client", "client assertion has expired")
        if exp > now + MAX_ASSERTION_LIFETIME:
            raise OAuthRejection(401, "invalid_client", "exp must be no more than five minutes ahead")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise OAuthRejection(401, "invalid_client", "jti is required")
        self.seen_jti = {j: e for j, e in self.seen_jti.items() if e > now}
        if jti in self.seen_jti:
            raise OAuthRejection(401, "invalid_client", "jti already used (replayed assertion)")
        self.seen_jti[jti] = float(exp)
        return client_id

    async def token_endpoint(self, request: Request) -> Response:
        self.token_requests += 1
        try:
            if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                raise OAuthRejection(400, "invalid_request", "the token request must be form-encoded")
            form = dict(parse_qsl((await request.body()).decode()))
            self.check_assertion(form)
        except OAuthRejection as e:
            self.rejections.append(e.description)
            return JSONResponse(
                {"error": e.error, "error_description": e.description},
                status_code=e.status,
                headers={"Cache-Control": "no-store"},
            )
        access = secrets.token_urlsafe(32)
        self.tokens[access] = time.time() + self.token_lifetime
        body = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "scope": form.get("scope", ""),
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    # -- FHIR side --

    async def smart_configuration(self, request: Request) -> Response:
        if not self.advertise_well_known:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(
            {
                "token_endpoint": self.token_url,
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": list(ALLOWED_ALGS),
                "capabilities": ["client-confidential-asymmetric", "permission-v2"],
            }
        )

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self.tokens.get(token) if scheme.lower() == "bearer" else None
        return expiry is not None and expiry > time.time()

    async def fhir_proxy(self, request: Request) -> Response:
        path = request.path_params.get("path", "")
        if path != "metadata" and not self._authorized(request):
            self.fhir_refused += 1
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "login", "diagnostics": "valid bearer token required"}],
            }
            return JSONResponse(
                outcome,
                status_code=401,
                media_type="application/fhir+json",
                headers={"WWW-Authenticate": 'Bearer realm="sis2fhir-test"'},
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        async with httpx.AsyncClient(timeout=30.0) as client:
            upstream = await client.request(
                request.method,
                f"{self.upstream}/{path}" if path else self.upstream,
                params=list(request.query_params.multi_items()),
                content=await request.body(),
                headers=headers,
            )
        content = upstream.content
        if path == "metadata" and upstream.status_code == 200:
            content = self._with_oauth_uris(upstream.json())
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(content, status_code=upstream.status_code, headers=out_headers)

    def _with_oauth_uris(self, capabilities: dict[str, Any]) -> bytes:
        security = capabilities["rest"][0].setdefault("security", {})
        security["extension"] = [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": self.token_url}]}]
        return json.dumps(capabilities).encode()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/auth/token", self.token_endpoint, methods=["POST"]),
                Route("/fhir/.well-known/smart-configuration", self.smart_configuration, methods=["GET"]),
                Route("/fhir", self.fhir_proxy, methods=["POST"]),  # transaction and batch
                Route("/fhir/{path:path}", self.fhir_proxy, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            ]
        )


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@contextmanager
def running_oauth_server(upstream: str, **options: Any) -> Iterator[OAuthTestServer]:
    """Serve an OAuthTestServer on a free loopback port in a thread; yield it; stop it after."""
    port = free_port()
    server = OAuthTestServer(upstream=upstream.rstrip("/"), root=f"http://127.0.0.1:{port}", **options)
    with serving_in_thread(server.app(), port, "OAuth test server"):
        yield server
