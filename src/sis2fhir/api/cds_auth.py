"""The CDS Hooks 2.0 JWT a CDS client sends with every service call (Authorization: Bearer): the checks, and the
client (so the recipient organization) it binds the call to.

Rules (CDS Hooks 2.0, "Trusting CDS Clients"): signed with a key of the JWKS configured for its `iss` (an
allow-list: `api.cds_clients`; a `jku` in the header is never fetched, the configured keys decide), RS384, ES384 or
ES256 (what the CDS Hooks sandbox signs with), `aud` = the URL of the service called, `exp` present, not past and at
most five minutes ahead, `jti`
present and never seen before for that issuer (the store's client_assertions table, shared with the token
endpoint under a `cds:` prefix, so a replay is refused across processes and restarts). Messages name the rule,
never the token or a key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from sis2fhir.api.assertion import BrokenRule, verified_claims
from sis2fhir.api_config import CdsClientSettings
from sis2fhir.keys import CDS_JWT_ALGS, ClientKey
from sis2fhir.store.assertions import MAX_JTI_LENGTH

KeyLookup = Callable[[str, str], ClientKey | None]  # (issuer, kid) -> the key, or None


class CdsRefused(Exception):
    """A service call refused for its JWT: 401 with a description of the rule broken."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True, slots=True)
class CdsCall:
    client: CdsClientSettings
    jti: str
    expires_at: datetime

    @property
    def replay_key(self) -> str:
        """client_assertions.client_id for this issuer's jtis (200 characters at most)."""
        key = f"cds:{self.client.issuer}"
        return key if len(key) <= 200 else "cds:" + hashlib.sha256(self.client.issuer.encode()).hexdigest()


def bearer(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


_JTI = f"the JWT's jti must be a non-empty string of at most {MAX_JTI_LENGTH} characters"
_CDS_RULES = {
    "signature": "the JWT's signature does not verify with its issuer's key",
    "expired": "the JWT has expired (exp is past)",
    "missing": "the JWT has no {detail} claim",
    "audience": "the JWT's aud must be the service URL {url}",
    "other": "the JWT cannot be accepted: {detail}",
    "exp-type": "the JWT's exp must be a number of seconds since the epoch",
    "exp-ahead": "the JWT's exp is more than five minutes ahead",
    "jti-empty": _JTI,
    "jti-long": _JTI,
}


def check_cds_jwt(
    token: str | None,
    *,
    service_url: str,
    client_of: Callable[[str], CdsClientSettings | None],
    key_of: KeyLookup,
    now: float,
) -> CdsCall:
    """The configured client a CDS Hooks JWT authenticates, after every rule but the replay (the store's)."""
    if token is None:
        raise CdsRefused("a CDS Hooks JWT is required (Authorization: Bearer <JWT>, signed by the CDS client)")
    try:
        header = jwt.get_unverified_header(token)
        unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise CdsRefused("the bearer token is not a signed JWT") from None
    alg = header.get("alg")
    if alg not in CDS_JWT_ALGS:
        raise CdsRefused("the JWT must be signed with RS384, ES384 or ES256")
    iss = unverified.get("iss")
    client = client_of(iss) if isinstance(iss, str) and iss else None
    if client is None:
        raise CdsRefused("the JWT's iss is not a CDS client configured here (api.cds_clients)")
    kid = header.get("kid")
    key = key_of(client.issuer, kid) if isinstance(kid, str) and kid else None
    if key is None:
        raise CdsRefused("the JWT's kid is not a key of the configured JWKS of its issuer")
    if not key.accepts(alg):
        raise CdsRefused(f"the JWT's key is not a key for {alg}")
    try:
        claims, jti = verified_claims(token, key, alg, service_url, now)
    except BrokenRule as e:
        raise CdsRefused(_CDS_RULES[e.rule].format(url=service_url, detail=e.detail)) from None
    exp = claims["exp"]
    return CdsCall(client=client, jti=jti, expires_at=datetime.fromtimestamp(exp, UTC))
