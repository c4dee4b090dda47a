"""A test EHR for the SMART App Launch of the chart: an authorization server on loopback that checks what SMART 2
asks of an app (PKCE S256 only, `state` sent back unchanged, `aud` = its FHIR base, the registered redirect URI and
client id, the launch id it issued, the code used once and by the same client), and a FHIR proxy to a real FHIR
server (sekmet) that lets only its own tokens read, each token only its launched Patient.

ehr.new_launch(patient_id) -> the launch id an EHR would pass to the app (with iss = ehr.fhir_base).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.sekmet import free_port
from tests.support.threaded_app import serving_in_thread

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 4.1


@dataclass
class TestEhr:
    upstream: str  # the real FHIR server's base
    root: str
    client_id: str = "sis2fhir-chart"
    redirect_uri: str = ""  # the app's registered callback (set before a launch)
    advertise_well_known: bool = True  # False: the app must fall back to the CapabilityStatement
    launches: dict[str, str] = field(default_factory=dict)  # launch id -> patient id
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> patient id
    refusals: list[str] = field(default_factory=list)  # why each refused request was refused
    authorized: list[dict[str, str]] = field(default_factory=list)  # the authorize requests accepted

    @property
    def fhir_base(self) -> str:
        return f"{self.root}/fhir"

    def new_launch(self, patient_id: str) -> str:
        launch = secrets.token_urlsafe(12)
        self.launches[launch] = patient_id
        return launch

    def _refuse(self, status: int, why: str) -> Response:
        self.refusals.append(why)
        return JSONResponse({"error": "invalid_request", "error_description": why}, status_code=status)

    async def smart_configuration(self, request: Request) -> Response:
        if not self.advertise_well_known:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(
            {
                "issuer": self.root,
                "authorization_endpoint": f"{self.root}/auth/authorize",
                "token_endpoint": f"{self.root}/auth/token",
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code"],
                "scopes_supported": ["launch", "openid", "fhirUser", "patient/Patient.rs"],
                "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "permission-v2"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = dict(request.query_params)
        if q.get("response_type") != "code":
            return self._refuse(400, "response_type must be code")
        if q.get("client_id") != self.client_id:
            return self._refuse(400, "unknown client_id")
        if q.get("redirect_uri") != self.redirect_uri:
            return self._refuse(400, "redirect_uri is not the registered one")
        if q.get("aud") != self.fhir_base:
            return self._refuse(400, "aud must be the EHR's FHIR base")
        if q.get("code_challenge_method") != "S256":
            return self._refuse(400, "code_challenge_method must be S256 (plain is not supported)")
        if not re.fullmatch(r"[A-Za-z0-9\-_]{43}", q.get("code_challenge", "")):
            return self._refuse(400, "code_challenge must be a base64url SHA-256")
        if not q.get("state"):
            return self._refuse(400, "state is required")
        patient = self.launches.pop(q.get("launch", ""), None)
        if patient is None:
            return self._refuse(400, "unknown or used launch")
        if "launch" not in q.get("scope", "").split():
            return self._refuse(400, "scope must ask for launch")
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"challenge": q["code_challenge"], "patient": patient, "scope": q["scope"]}
        self.authorized.append(q)
        return RedirectResponse(f"{self.redirect_uri}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("grant_type") != "authorization_code":
            return self._refuse(400, "grant_type must be authorization_code")
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None:
            return self._refuse(400, "unknown or used code")
        if form.get("client_id") != self.client_id or form.get("redirect_uri") != self.redirect_uri:
            return self._refuse(400, "client_id or redirect_uri differ from the authorize request")
        verifier = form.get("code_verifier", "")
        if not VERIFIER.fullmatch(verifier):
            return self._refuse(400, "code_verifier is missing or malformed")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if digest != grant["challenge"]:
            return self._refuse(400, "code_verifier does not match the S256 code_challenge")
        access = secrets.token_urlsafe(32)
        self.tokens[access] = grant["patient"]
        body = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 300,
            "scope": grant["scope"],
            "patient": grant["patient"],
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def metadata(self, request: Request) -> Response:
        async with httpx.AsyncClient(timeout=30) as client:
            capability = (await client.get(f"{self.upstream}/metadata")).json()
        security = capability["rest"][0].setdefault("security", {})
        uris = [
            {"url": "authorize", "valueUri": f"{self.root}/auth/authorize"},
            {"url": "token", "valueUri": f"{self.root}/auth/token"},
        ]
        security["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
        return Response(json.dumps(capability), media_type="application/fhir+json")

    async def patient(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        pid = request.path_params["pid"]
        if scheme.lower() != "bearer" or self.tokens.get(token) != pid:
            return self._refuse(401, "a token for this patient is required")
        async with httpx.AsyncClient(timeout=30) as client:
            upstream = await client.get(f"{self.upstream}/Patient/{pid}", headers={"Accept": "application/fhir+json"})
        return Response(upstream.content, status_code=upstream.status_code, media_type="application/fhir+json")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/fhir/.well-known/smart-configuration", self.smart_configuration),
                Route("/fhir/metadata", self.metadata),
                Route("/fhir/Patient/{pid}", self.patient),
                Route("/auth/authorize", self.authorize),
                Route("/auth/token", self.token, methods=["POST"]),
                Route("/", lambda r: PlainTextResponse("test EHR")),
            ]
        )


@contextmanager
def running_ehr(upstream: str, **options: Any) -> Iterator[TestEhr]:
    """A TestEhr on a free loopback port (a thread of this process) until the block ends."""
    port = free_port()
    ehr = TestEhr(upstream=upstream.rstrip("/"), root=f"http://127.0.0.1:{port}", **options)
    with serving_in_thread(ehr.app(), port, "the test EHR"):
        yield ehr
