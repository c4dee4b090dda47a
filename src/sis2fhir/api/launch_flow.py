"""The app side of a SMART App Launch 2.x EHR launch: discovering the EHR's authorization server, the PKCE S256
pair, the authorize URL, the code exchange and the read of the launched Patient. Every EHR call is to a configured
`iss` or to the endpoints its discovery names; redirects are not followed."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from sis2fhir.api_config import EhrLaunchSettings

TIMEOUT = 10.0
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class LaunchFailed(Exception):
    """The launch cannot go on; the message says why for the page shown, and names no patient."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorize: str
    token: str


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for S256 (RFC 7636): 43+ characters of entropy, the SHA-256 base64url."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _absolute(url: Any, what: str) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
        raise LaunchFailed(f"the EHR's {what} is not an absolute http(s) URL")
    return url


async def discover(client: httpx.AsyncClient, iss: str) -> Endpoints:
    """The authorize and token endpoints: `.well-known/smart-configuration`, else (older servers) the
    CapabilityStatement's oauth-uris extension. An EHR whose configuration lists PKCE methods without S256 is
    refused (SMART 2: S256 is required)."""
    try:
        found = await client.get(f"{iss}/.well-known/smart-configuration", headers={"Accept": "application/json"})
        config = found.json() if found.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        config = None
    if isinstance(config, dict) and config.get("authorization_endpoint") and config.get("token_endpoint"):
        methods = config.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise LaunchFailed("the EHR's authorization server does not support PKCE S256")
        return Endpoints(
            _absolute(config["authorization_endpoint"], "authorization endpoint"),
            _absolute(config["token_endpoint"], "token endpoint"),
        )
    try:
        found = await client.get(f"{iss}/metadata", headers={"Accept": "application/fhir+json"})
        capability = found.json() if found.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        capability = None
    uris: dict[str, Any] = {}
    for rest in (capability or {}).get("rest", []) if isinstance(capability, dict) else []:
        for ext in (rest.get("security") or {}).get("extension", []):
            if ext.get("url") == OAUTH_URIS:
                uris.update({e.get("url"): e.get("valueUri") for e in ext.get("extension", [])})
    if not uris.get("authorize") or not uris.get("token"):
        raise LaunchFailed("the EHR's authorization server could not be discovered (no smart-configuration)")
    return Endpoints(_absolute(uris["authorize"], "authorization endpoint"), _absolute(uris["token"], "token endpoint"))


def authorize_url(
    endpoints: Endpoints, ehr: EhrLaunchSettings, redirect_uri: str, launch: str, state: str, challenge: str
) -> str:
    query = {
        "response_type": "code",
        "client_id": ehr.client_id,
        "redirect_uri": redirect_uri,
        "launch": launch,
        "scope": ehr.scope,
        "state": state,
        "aud": ehr.iss,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in endpoints.authorize else "?"
    return f"{endpoints.authorize}{separator}{urlencode(query)}"


@dataclass(frozen=True, slots=True)
class Granted:
    access_token: str
    patient: str  # the launched patient's id at the EHR


async def exchange(
    client: httpx.AsyncClient, token_url: str, ehr: EhrLaunchSettings, code: str, redirect_uri: str, verifier: str
) -> Granted:
    """The authorization code for a token (a public client: client_id and the PKCE verifier, no secret)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": ehr.client_id,
        "code_verifier": verifier,
    }
    try:
        answer = await client.post(token_url, data=form, headers={"Accept": "application/json"})
        body = answer.json()
    except (httpx.HTTPError, ValueError):
        raise LaunchFailed("the EHR's token endpoint did not answer") from None
    if answer.status_code != 200 or not isinstance(body, dict):
        raise LaunchFailed("the EHR refused the authorization code")
    token, patient = body.get("access_token"), body.get("patient")
    if not isinstance(token, str) or not token:
        raise LaunchFailed("the EHR's token response has no access token")
    if not isinstance(patient, str) or not patient:
        raise LaunchFailed("the EHR's token response names no patient (launch context)")
    return Granted(token, patient)


async def read_patient(client: httpx.AsyncClient, iss: str, granted: Granted) -> dict[str, Any]:
    try:
        answer = await client.get(
            f"{iss}/Patient/{granted.patient}",
            headers={"Authorization": f"Bearer {granted.access_token}", "Accept": "application/fhir+json"},
        )
        found = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        found = None
    if not isinstance(found, dict) or found.get("resourceType") != "Patient":
        raise LaunchFailed("the launched Patient could not be read from the EHR")
    return found
