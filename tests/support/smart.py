"""Client keys and client assertions for the API's SMART Backend Services tests (keys made in the test).

keys = make_client_keys("ES384")                 # a private key, its public JWKS, the kid
api_client_config("riverside-ehr", "1582147033", keys)   # an `api.clients` entry (inline JWKS)
token = get_token(base_url, "riverside-ehr", keys, "system/Observation.rs")   # a real token from the server
client_assertion("riverside-ehr", token_url, keys, exp_in=600)               # any claim or header changed
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_UNSET: Any = object()


@dataclass(frozen=True)
class ClientKeys:
    alg: str  # RS384, ES384 or ES256 (CDS Hooks clients only)
    kid: str
    private_pem: str
    public_jwk: dict[str, Any]

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWKS to register for the client."""
        return {"keys": [self.public_jwk]}


def make_client_keys(alg: str = "ES384", kid: str | None = None) -> ClientKeys:
    """A fresh key pair: RS384 (RSA 2048), ES384 (EC P-384) or ES256 (EC P-256: CDS Hooks clients only)."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if alg == "RS384":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg in ("ES384", "ES256"):
        private = ec.generate_private_key(ec.SECP384R1() if alg == "ES384" else ec.SECP256R1())
        public = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(alg)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
    return ClientKeys(alg, kid, pem, {**public, "kid": kid, "alg": alg, "use": "sig"})


def client_assertion(
    client_id: str,
    token_url: str,
    keys: ClientKeys,
    *,
    exp_in: float | None = 240,
    jti: str | None = _UNSET,
    iss: str | None = _UNSET,
    sub: str | None = _UNSET,
    aud: str | None = _UNSET,
    kid: str | None = _UNSET,
    alg: str | None = None,
    signing_key: Any = None,
) -> str:
    """A signed client assertion as SMART wants it; any part can be changed (None leaves a claim out) to make
    a bad one (exp_in=None: no exp). `signing_key` signs with another key (an HS256 secret, a stranger's PEM)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id if iss is _UNSET else iss,
        "sub": client_id if sub is _UNSET else sub,
        "aud": token_url if aud is _UNSET else aud,
        "exp": None if exp_in is None else int(now + exp_in),
        "iat": now,
        "jti": str(uuid.uuid4()) if jti is _UNSET else jti,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    headers = {"typ": "JWT", "kid": keys.kid if kid is _UNSET else kid}
    headers = {k: v for k, v in headers.items() if v is not None}
    return jwt.encode(
        claims, keys.private_pem if signing_key is None else signing_key, algorithm=alg or keys.alg, headers=headers
    )


def token_form(assertion: str, scope: str = "system/Observation.rs", **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": scope,
    }
    form.update(changes)
    return form


def request_token(base_url: str, client_id: str, keys: ClientKeys, scope: str, **assertion: Any) -> httpx.Response:
    """POST a token request to `<base_url>/auth/token`; the response as the server gave it."""
    token_url = f"{base_url}/auth/token"
    form = token_form(client_assertion(client_id, token_url, keys, **assertion), scope)
    return httpx.post(token_url, data=form, headers={"Accept": "application/json"})


def get_token(base_url: str, client_id: str, keys: ClientKeys, scope: str) -> str:
    """A real access token from the server (AssertionError with the server's answer when it refuses)."""
    response = request_token(base_url, client_id, keys, scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def api_client_config(client_id: str, recipient: str, keys: ClientKeys, scopes: str) -> dict[str, Any]:
    """An `api.clients` entry with the client's public JWKS inline."""
    return {"client_id": client_id, "recipient": recipient, "jwks": keys.jwks, "scopes": scopes}
