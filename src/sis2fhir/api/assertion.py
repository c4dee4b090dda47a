"""The checks on a client assertion (SMART Backend Services, private_key_jwt; RFC 7523), before its jti is recorded.

Every failure is an OAuthError whose description says which rule was broken, never the assertion or a key. Values
the client sent are repeated only when short and only as names (an alg, a kid): never a whole claim set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from sis2fhir.keys import ASSERTION_ALGS, ClientKey
from sis2fhir.store.assertions import MAX_JTI_LENGTH

MAX_ASSERTION_LIFETIME = 300  # SMART: exp no more than five minutes in the future
CLOCK_SKEW = 30  # seconds a client's clock may run ahead of ours when it sets exp to the full five minutes
KeyLookup = Callable[[str, str], ClientKey | None]  # (client id, kid) -> the key, or None


class OAuthError(Exception):
    """An OAuth 2.0 error response (RFC 6749 section 5.2): HTTP status, error code, a description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def invalid_client(description: str) -> OAuthError:
    return OAuthError(401, "invalid_client", description)


@dataclass(frozen=True, slots=True)
class AcceptedAssertion:
    client_id: str
    jti: str
    expires_at: datetime


class BrokenRule(Exception):
    """A signed JWT broke one of the rules `verified_claims` checks: `rule` names it (signature, expired, missing,
    audience, exp-type, exp-ahead, jti-empty, jti-long, other), `detail` the claim or the exception's name."""

    def __init__(self, rule: str, detail: str = "") -> None:
        super().__init__(rule)
        self.rule = rule
        self.detail = detail


def verified_claims(token: str, key: ClientKey, alg: str, audience: str, now: float) -> tuple[dict[str, Any], str]:
    """The claims of a JWT and its jti, once its signature verifies with `key` and `aud` is `audience`, `exp` is
    present, not past and at most five minutes ahead, and `jti` a non-empty string of at most MAX_JTI_LENGTH: the
    rules a SMART client assertion and a CDS Hooks JWT share. BrokenRule says which one failed."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=audience,
            options={"require": ["exp", "jti", "aud"], "verify_iat": False},
            leeway=0,
        )
    except jwt.InvalidSignatureError:
        raise BrokenRule("signature") from None
    except jwt.ExpiredSignatureError:
        raise BrokenRule("expired") from None
    except jwt.MissingRequiredClaimError as e:
        raise BrokenRule("missing", e.claim) from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise BrokenRule("audience") from None
    except jwt.PyJWTError as e:
        raise BrokenRule("other", type(e).__name__) from None
    exp, jti = claims["exp"], claims["jti"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise BrokenRule("exp-type")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise BrokenRule("exp-ahead")
    if not isinstance(jti, str) or not jti.strip():
        raise BrokenRule("jti-empty")
    if len(jti) > MAX_JTI_LENGTH:
        raise BrokenRule("jti-long")
    return claims, jti


def _shown(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:40] + "...")


_ASSERTION_RULES = {
    "signature": "client_assertion: the signature does not verify with the key {kid}",
    "expired": "client_assertion has expired (exp is past)",
    "missing": "client_assertion has no {detail} claim",
    "audience": "client_assertion: aud must be the token URL {url}",
    "other": "client_assertion cannot be accepted: {detail}",
    "exp-type": "client_assertion: exp must be a number of seconds since the epoch",
    "exp-ahead": "client_assertion: exp is more than five minutes ahead",
    "jti-empty": "client_assertion: jti must be a non-empty string",
    "jti-long": f"client_assertion: jti is longer than {MAX_JTI_LENGTH} characters",
}


def check_assertion(
    assertion: str, *, token_url: str, known_client: Callable[[str], bool], key_of: KeyLookup, now: float
) -> AcceptedAssertion:
    """The client an assertion authenticates, after every SMART rule: alg RS384 or ES384, iss = sub = a configured
    client, kid in its JWKS and the signature verifying with that key, aud = the token URL, exp present, not past
    and at most five minutes ahead, a jti present. (Whether the jti was seen before is the store's to say.)"""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified: dict[str, Any] = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid_client("client_assertion is not a signed JWT") from None
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise invalid_client(f"client_assertion is signed with {_shown(alg)}; only RS384 and ES384 are accepted")
    if "jku" in header or "jwk" in header or "x5u" in header:
        # SMART lets a client name a JWKS URL it registered; this server registers keys, never fetches them
        raise invalid_client("client_assertion names its key by URL or inline (jku/jwk/x5u); only kid is accepted")
    iss, sub = unverified.get("iss"), unverified.get("sub")
    if not isinstance(iss, str) or not iss:
        raise invalid_client("client_assertion has no iss: it must be the client id")
    if iss != sub:
        raise invalid_client("client_assertion: iss and sub must both be the client id")
    if not known_client(iss):
        raise invalid_client("client_assertion: the client named in iss is not registered here")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise invalid_client("client_assertion has no kid in its header: name the key of the client's JWKS")
    key = key_of(iss, kid)
    if key is None:
        raise invalid_client(f"client_assertion: kid {_shown(kid)} is not in the client's JWKS")
    if not key.accepts(alg):
        raise invalid_client(f"client_assertion: the key {_shown(kid)} is not a key for {alg}")
    try:
        claims, jti = verified_claims(assertion, key, alg, token_url, now)
    except BrokenRule as e:
        raise invalid_client(_ASSERTION_RULES[e.rule].format(kid=_shown(kid), url=token_url, detail=e.detail)) from None
    exp = claims["exp"]
    return AcceptedAssertion(client_id=iss, jti=jti, expires_at=datetime.fromtimestamp(exp, UTC))
