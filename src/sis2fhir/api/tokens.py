"""The access tokens the API issues and checks: short-lived JWTs (RFC 9068 shape) signed with the configured key,
or with a key made per process when none is configured (then a restart forgets every token, and several processes
behind one URL refuse each other's: configure `api.signing_key` for those)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from sis2fhir.keys import SigningKey


class InvalidToken(Exception):
    """The bearer token cannot be used; `expired` when only its time ran out."""

    def __init__(self, description: str, *, expired: bool = False) -> None:
        super().__init__(description)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class TokenClaims:
    client_id: str
    recipient: str
    scope: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class AccessTokens:
    signing: SigningKey
    audience: str  # the FHIR base: iss and aud of every token
    lifetime: int

    def issue(self, client_id: str, recipient: str, scope: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.audience,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "recipient": recipient,
            "scope": scope,
            "iat": issued,
            "exp": issued + self.lifetime,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(
            claims,
            self.signing.private_key,
            algorithm=self.signing.alg,
            headers={"kid": self.signing.kid, "typ": "at+jwt"},
        )

    def verify(self, token: str) -> TokenClaims:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.signing.public_key,
                algorithms=[self.signing.alg],
                audience=self.audience,
                issuer=self.audience,
                options={"require": ["exp", "iss", "aud", "sub", "scope"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the access token has expired: get a new one", expired=True) from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the access token was issued for another server (aud)") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the access token was issued by another server (iss)") from None
        except jwt.PyJWTError:
            raise InvalidToken("the access token is not one this server issued") from None
        sub, recipient, scope = claims.get("sub"), claims.get("recipient"), claims.get("scope")
        if not all(isinstance(v, str) and v for v in (sub, recipient, scope)):
            raise InvalidToken("the access token is not one this server issued")
        return TokenClaims(
            client_id=str(sub), recipient=str(recipient), scope=str(scope), expires_at=int(claims["exp"])
        )
