"""How sis2fhir authenticates to FHIR servers, as httpx.Auth: none, static bearer, SMART Backend Services."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Literal

import httpx
import jwt

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
DEFAULT_SCOPE = "system/Observation.cu system/Consent.cu system/Patient.rs"
ASSERTION_LIFETIME = 270  # seconds; SMART allows at most 5 minutes, leave room for clock skew
RENEW_EARLY = 30.0  # seconds before expiry a cached token is replaced
DEFAULT_EXPIRES_IN = 300  # when the token response leaves out expires_in (SMART says SHOULD be <= 300)


class SmartAuthError(RuntimeError):
    """No SMART token could be obtained; the message says what the token endpoint or discovery answered."""


class NoAuth(httpx.Auth):
    """Send requests as they are (an open test server)."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


class StaticBearerAuth(httpx.Auth):
    """A long-lived bearer token issued out of band."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token.strip()}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class SmartBackendAuth(httpx.Auth):
    """SMART Backend Services (client_credentials + private_key_jwt), token cached and renewed before expiry.

    Works in sync and async httpx clients: discovery and token requests are sent through the same client.
    """

    def __init__(
        self,
        fhir_base: str,
        client_id: str,
        private_key_pem: str,
        key_id: str,
        alg: Literal["RS384", "ES384"] = "RS384",
        scope: str = DEFAULT_SCOPE,
        token_url: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if alg not in ("RS384", "ES384"):
            raise ValueError(f"alg must be RS384 or ES384 (SMART Backend Services), not {alg!r}")
        if not client_id or not key_id:
            raise ValueError("SMART Backend Services needs both a client id and a key id (kid)")
        self.fhir_base = fhir_base.rstrip("/")
        self.client_id = client_id
        self.key_id = key_id
        self.alg = alg
        self.scope = scope
        self.token_url = token_url
        self._private_key = private_key_pem
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self.tokens_fetched = 0
        self._thread_lock = threading.Lock()
        self._async_locks: dict[int, asyncio.Lock] = {}

    # -- the parts that do not touch the network --

    def client_assertion(self, token_url: str) -> str:
        """A signed JWT: iss = sub = client id, aud = token URL, exp inside five minutes, a fresh jti."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        try:
            return jwt.encode(claims, self._private_key, algorithm=self.alg, headers={"kid": self.key_id, "typ": "JWT"})
        except (ValueError, TypeError, jwt.PyJWTError) as e:
            raise SmartAuthError(f"cannot sign the client assertion with the configured {self.alg} key: {e}") from None

    def _token_request(self, token_url: str) -> httpx.Request:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(token_url),
        }
        return httpx.Request("POST", token_url, data=form, headers={"Accept": "application/json"})

    def _accept_token(self, response: httpx.Response) -> None:
        body = _json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error", "") if isinstance(body, dict) else ""
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            said = f"{error}: {description}".strip(": ") or response.text[:200]
            raise SmartAuthError(f"token endpoint {response.request.url} answered {response.status_code}: {said}")
        expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRES_IN
        self._token = str(body["access_token"])
        self._renew_at = self._clock() + lifetime - min(RENEW_EARLY, lifetime / 2)
        self.tokens_fetched += 1

    def _token_valid(self) -> bool:
        return self._token is not None and self._clock() < self._renew_at

    def _authorize(self, request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    # -- discovery and token fetch, as generators so one code path serves sync and async clients --

    def _discover(self) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token_url:
            return
        # Servers rarely advertise correctly: .well-known first, then CapabilityStatement oauth-uris.
        # The only thing we need is the token endpoint.
        well_known = f"{self.fhir_base}/.well-known/smart-configuration"
        response = yield httpx.Request("GET", well_known, headers={"Accept": "application/json"})
        body = _json_or_none(response)
        if response.status_code == 200 and isinstance(body, dict) and isinstance(body.get("token_endpoint"), str):
            self.token_url = body["token_endpoint"]
            return
        response = yield httpx.Request("GET", f"{self.fhir_base}/metadata", headers={"Accept": "application/fhir+json"})
        self.token_url = _token_url_from_capabilities(_json_or_none(response))
        if not self.token_url:
            raise SmartAuthError(
                f"no token endpoint found at {well_known} nor in {self.fhir_base}/metadata "
                "(oauth-uris extension); set token_url in the recipient's config"
            )

    def _fetch_token(self) -> Generator[httpx.Request, httpx.Response, None]:
        yield from self._discover()
        assert self.token_url is not None
        response = yield self._token_request(self.token_url)
        self._accept_token(response)

    def _needs_token(self, attempt: int, sent_with: str | None) -> bool:
        # attempt 1 follows a 401: fetch again unless another request already replaced the rejected token
        return not self._token_valid() if attempt == 0 else self._token == sent_with

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent_with: str | None = None
        for attempt in range(2):  # one re-authentication on 401, no more
            with self._thread_lock:
                if self._needs_token(attempt, sent_with):
                    fetch = self._fetch_token()
                    outgoing = next(fetch)
                    while True:
                        response = yield outgoing
                        response.read()
                        try:
                            outgoing = fetch.send(response)
                        except StopIteration:
                            break
                sent_with = self._token
            response = yield self._authorize(request)
            if response.status_code != 401:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        lock = self._async_lock()
        sent_with: str | None = None
        for attempt in range(2):  # one re-authentication on 401, no more
            async with lock:
                if self._needs_token(attempt, sent_with):
                    fetch = self._fetch_token()
                    outgoing = next(fetch)
                    while True:
                        response = yield outgoing
                        await response.aread()
                        try:
                            outgoing = fetch.send(response)
                        except StopIteration:
                            break
                sent_with = self._token
            response = yield self._authorize(request)
            if response.status_code != 401:
                return

    def _async_lock(self) -> asyncio.Lock:
        loop_id = id(asyncio.get_running_loop())
        lock = self._async_locks.get(loop_id)
        if lock is None:
            self._async_locks = {loop_id: asyncio.Lock()}
            lock = self._async_locks[loop_id]
        return lock


def _token_url_from_capabilities(capabilities: Any) -> str | None:
    if not isinstance(capabilities, dict):
        return None
    for rest in capabilities.get("rest") or []:
        for ext in (rest.get("security") or {}).get("extension") or []:
            if ext.get("url") != OAUTH_URIS_EXTENSION:
                continue
            for sub in ext.get("extension") or []:
                if sub.get("url") == "token" and isinstance(sub.get("valueUri"), str):
                    return str(sub["valueUri"])
    return None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
