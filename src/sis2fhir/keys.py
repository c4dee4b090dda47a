"""The keys of the API's authorization server: each client's JWKS (the public keys its assertions are checked with)
and the key sis2fhir signs its access tokens with. Layer 0: the configuration checks them when it is loaded.

Messages say what is wrong and never repeat key material (a private key pasted in by mistake must not reach a log).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

# What SMART Backend Services lets a client sign its assertion with, and the key type each needs.
ASSERTION_ALGS = ("RS384", "ES384")
# What a CDS Hooks client's JWT may be signed with: the two above, and ES256, which the CDS Hooks sandbox (and
# clients built from it) sign with.
CDS_JWT_ALGS = ("RS384", "ES384", "ES256")
_CURVE_ALGS = {"P-384": "ES384", "P-256": "ES256"}
SigningPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def read_reference(ref: str, what: str = "secret reference") -> str:
    """The text an `env:NAME` or `file:/path` reference names (secrets and keys never sit in the configuration
    itself); ValueError naming the variable or the file, never the value. The one reader of such references: the
    delivery secrets (deliver/factory.py) and the API's keys use it."""
    kind, sep, where = ref.partition(":")
    where = where.strip()
    if kind == "env" and sep and where:
        value = os.environ.get(where)
        if value is None:
            raise ValueError(f"{what}: the environment variable {where} is not set")
        return value
    if kind == "file" and sep and where:
        path = Path(where).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{what}: cannot read {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{what}: {path} is not UTF-8 text") from None
    raise ValueError(f"{what}: must be 'env:NAME' or 'file:/path'")


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One public key of a client: its kid, its key type (RSA or EC P-384) and the key itself."""

    kid: str
    alg: str | None  # the JWK's own `alg`, when it names one: then only that algorithm is accepted with it
    key: Any  # cryptography public key

    def accepts(self, alg: str) -> bool:
        """True when a JWT signed with `alg` (RS384, ES384 or ES256) may be checked with this key."""
        if self.alg is not None and self.alg != alg:
            return False
        if alg == "RS384":
            return isinstance(self.key, rsa.RSAPublicKey)
        if alg == "ES384":
            return isinstance(self.key, ec.EllipticCurvePublicKey) and isinstance(self.key.curve, ec.SECP384R1)
        if alg == "ES256":
            return isinstance(self.key, ec.EllipticCurvePublicKey) and isinstance(self.key.curve, ec.SECP256R1)
        return False


def load_jwks(value: str | dict[str, Any], what: str, algs: tuple[str, ...] = ASSERTION_ALGS) -> dict[str, ClientKey]:
    """A client's JWKS (`file:PATH`, `env:NAME` holding the JSON, or the JWKS object itself) as keys by kid.

    Every key needs a kid, must be an RSA or EC public key for one of `algs` (SMART Backend Services: RS384 or
    ES384, so EC on P-384; CDS Hooks clients also ES256 on P-256), and must not hold private parts."""
    if isinstance(value, str):
        text = read_reference(value, what)
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError(f"{what}: not JSON; give a JWKS object {{'keys': [...]}}") from None
    else:
        data = value
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ValueError(f"{what}: not a JWKS: give an object with a non-empty list `keys`")
    keys: dict[str, ClientKey] = {}
    for n, jwk in enumerate(data["keys"], start=1):
        keys_n = f"{what}: key {n}"
        if not isinstance(jwk, dict):
            raise ValueError(f"{keys_n} is not an object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid.strip():
            raise ValueError(f"{keys_n} has no kid; the client's assertions name their key by kid")
        if kid in keys:
            raise ValueError(f"{what}: two keys with the kid {kid!r}")
        if jwk.get("kty") not in ("RSA", "EC"):
            raise ValueError(f"{keys_n} ({kid!r}) must be an RSA or EC key (RS384 or ES384), not {jwk.get('kty')!r}")
        if any(part in jwk for part in ("d", "p", "q", "dp", "dq", "qi")):
            raise ValueError(f"{keys_n} ({kid!r}) holds private key parts: register only the client's public keys")
        alg = jwk.get("alg")
        if alg is not None and alg not in algs:
            raise ValueError(f"{keys_n} ({kid!r}) has alg {alg!r}; allowed: {' or '.join(algs)}")
        implied = "RS384" if jwk["kty"] == "RSA" else _CURVE_ALGS.get(str(jwk.get("crv")), "ES384")
        if implied not in algs:
            implied = "ES384"  # then the curve check below says which curves are allowed
        try:
            key = jwt.PyJWK(jwk, algorithm=alg or implied).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise ValueError(f"{keys_n} ({kid!r}) is not a usable {jwk['kty']} public key") from None
        entry = ClientKey(kid=kid, alg=alg, key=key)
        if not entry.accepts(alg or implied):
            curves = " or ".join(f"{c} ({a})" for c, a in _CURVE_ALGS.items() if a in algs)
            raise ValueError(f"{keys_n} ({kid!r}): an EC key must be on {curves}")
        keys[kid] = entry
    return keys


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key sis2fhir signs access tokens with: ES256 (EC P-256) or RS256 (RSA, 2048 bits or more)."""

    alg: str
    private_key: SigningPrivateKey
    kid: str

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()


def load_signing_key(value: str, what: str = "api.signing_key") -> SigningKey:
    """The configured signing key: `env:NAME`, `file:/path` or the PEM itself (PKCS#8 or traditional, no password)."""
    text = value if value.lstrip().startswith("-----BEGIN") else read_reference(value, what)
    try:
        key = serialization.load_pem_private_key(text.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{what}: not an unencrypted PEM private key (EC P-256 or RSA)") from None
    return signing_key_of(key, what)


def ephemeral_signing_key() -> SigningKey:
    """A key made for this process: its tokens do not survive a restart nor reach another process."""
    return signing_key_of(ec.generate_private_key(ec.SECP256R1()), "ephemeral key")


def signing_key_of(key: Any, what: str) -> SigningKey:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        alg = "ES256"
    elif isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        alg = "RS256"
    else:
        raise ValueError(f"{what}: must be an EC P-256 key (ES256) or an RSA key of 2048 bits or more (RS256)")
    return SigningKey(alg=alg, private_key=key, kid=_thumbprint(key.public_key()))


def _thumbprint(public_key: Any) -> str:
    """The RFC 7638 thumbprint of the public key, as the kid of the access tokens."""
    algorithm = jwt.algorithms.ECAlgorithm if isinstance(public_key, ec.EllipticCurvePublicKey) else None
    jwk = json.loads((algorithm or jwt.algorithms.RSAAlgorithm).to_jwk(public_key))
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
