"""SMART Backend Services against a real token endpoint guarding a real FHIR server; bearer; secrets."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from sis2fhir.deliver.smart_auth import (
    ASSERTION_TYPE,
    NoAuth,
    SmartAuthError,
    SmartBackendAuth,
    StaticBearerAuth,
)
from sis2fhir.keys import read_reference
from tests.support.oauth_server import OAuthTestServer, running_oauth_server

pytestmark = pytest.mark.integration

CLIENT_ID = "sis2fhir-district-test"


@dataclass(frozen=True)
class ClientKey:
    alg: str
    kid: str
    private_pem: str
    public_jwk: dict[str, Any]


def _pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_key(alg: str, kid: str) -> ClientKey:
    if alg == "RS384":
        pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        public = RSAKey.import_key(pem).as_dict(private=False)
    else:
        pem = _pem(ec.generate_private_key(ec.SECP384R1()))
        public = ECKey.import_key(pem).as_dict(private=False)
    return ClientKey(alg, kid, pem, {**public, "kid": kid, "alg": alg, "use": "sig"})


@pytest.fixture(scope="module")
def keys() -> dict[str, ClientKey]:
    return {"RS384": make_key("RS384", "rsa-2026"), "ES384": make_key("ES384", "ec-2026")}


@pytest.fixture()
def oauth(fhir_server: str, keys: dict[str, ClientKey]) -> Iterator[OAuthTestServer]:
    with running_oauth_server(fhir_server) as server:
        server.register(CLIENT_ID, {"keys": [k.public_jwk for k in keys.values()]})
        yield server


def smart(oauth: OAuthTestServer, key: ClientKey, **options: Any) -> SmartBackendAuth:
    return SmartBackendAuth(oauth.fhir_base, CLIENT_ID, key.private_pem, key.kid, alg=key.alg, **options)  # type: ignore[arg-type]


def assertion(oauth: OAuthTestServer, key: ClientKey, **overrides: Any) -> str:
    """A client assertion as a client would build it, with some claims or header fields changed."""
    now = int(time.time())
    claims = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": oauth.token_url,
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    header = {"kid": key.kid, "typ": "JWT"}
    signing_key: str = key.private_pem
    alg = key.alg
    for name, value in overrides.items():
        if name == "kid":
            header["kid"] = value
        elif name == "alg":
            alg = value
        elif name == "signing_key":
            signing_key = value
        elif value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, signing_key, algorithm=alg, headers=header)


def post_assertion(oauth: OAuthTestServer, client_assertion: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Observation.cu",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
    }
    return httpx.post(oauth.token_url, data=form)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_backend_client_reads_the_protected_fhir_server_with_either_algorithm(
    oauth: OAuthTestServer, keys: dict[str, ClientKey], alg: str
) -> None:
    with httpx.Client(auth=NoAuth()) as anonymous:
        assert anonymous.get(f"{oauth.fhir_base}/Patient").status_code == 401
    with httpx.Client(auth=smart(oauth, keys[alg])) as client:
        response = client.get(f"{oauth.fhir_base}/Patient")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "Bundle"
    assert oauth.token_requests == 1
    assert oauth.rejections == []


def test_the_assertion_carries_the_claims_smart_requires(keys: dict[str, ClientKey]) -> None:
    auth = SmartBackendAuth("https://ehr.example.org/fhir", CLIENT_ID, keys["ES384"].private_pem, "ec-2026", "ES384")
    first = auth.client_assertion("https://ehr.example.org/token")
    second = auth.client_assertion("https://ehr.example.org/token")
    header = jwt.get_unverified_header(first)
    claims = jwt.decode(first, options={"verify_signature": False})
    assert header == {"alg": "ES384", "kid": "ec-2026", "typ": "JWT"}
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == "https://ehr.example.org/token"
    assert 0 < claims["exp"] - time.time() <= 300
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://elsewhere.example.org/token"}, "aud must be the token endpoint"),
        ({"sub": "someone-else"}, "iss and sub"),
        ({"exp": int(time.time()) + 3600}, "no more than five minutes"),
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"exp": None}, "exp is required"),
        ({"jti": None}, "jti is required"),
        ({"kid": "not-registered"}, "unknown kid"),
        ({"iss": "stranger", "sub": "stranger"}, "unknown client"),
    ],
    ids=[
        "wrong-aud",
        "iss-not-sub",
        "exp-too-far",
        "expired",
        "no-exp",
        "no-jti",
        "unknown-kid",
        "unknown-client",
    ],
)
def test_the_token_endpoint_refuses_a_bad_claim(
    oauth: OAuthTestServer, keys: dict[str, ClientKey], overrides: dict[str, Any], reason: str
) -> None:
    response = post_assertion(oauth, assertion(oauth, keys["RS384"], **overrides))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert reason in response.json()["error_description"]


def test_a_replayed_assertion_is_refused(oauth: OAuthTestServer, keys: dict[str, ClientKey]) -> None:
    once = assertion(oauth, keys["ES384"])
    assert post_assertion(oauth, once).status_code == 200
    replay = post_assertion(oauth, once)
    assert replay.status_code == 401
    assert "replayed" in replay.json()["error_description"]


@pytest.mark.parametrize("alg", ["HS256", "none", "RS256"])
def test_only_rs384_and_es384_are_accepted(oauth: OAuthTestServer, keys: dict[str, ClientKey], alg: str) -> None:
    signing_key = {"HS256": "a-shared-secret-of-32-bytes-or-more!", "none": None}.get(alg, keys["RS384"].private_pem)
    response = post_assertion(oauth, assertion(oauth, keys["RS384"], alg=alg, signing_key=signing_key))
    assert response.status_code == 401
    assert "not accepted" in response.json()["error_description"]


def test_an_assertion_signed_with_another_key_is_refused(oauth: OAuthTestServer, keys: dict[str, ClientKey]) -> None:
    impostor = make_key("RS384", "rsa-2026")  # the registered kid, a different private key
    response = post_assertion(oauth, assertion(oauth, keys["RS384"], signing_key=impostor.private_pem))
    assert response.status_code == 401
    assert "signature not verified" in response.json()["error_description"]


def test_grant_type_and_assertion_type_are_checked(oauth: OAuthTestServer, keys: dict[str, ClientKey]) -> None:
    good = assertion(oauth, keys["RS384"])
    wrong_grant = httpx.post(oauth.token_url, data={"grant_type": "password", "client_assertion": good})
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    wrong_type = httpx.post(
        oauth.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "bearer",
            "client_assertion": good,
        },
    )
    assert (wrong_type.status_code, wrong_type.json()["error"]) == (400, "invalid_request")


def test_a_refused_client_gets_the_endpoint_error_not_a_crash(oauth: OAuthTestServer) -> None:
    unregistered = make_key("RS384", "rsa-2026")
    with (
        httpx.Client(auth=smart(oauth, unregistered)) as client,
        pytest.raises(SmartAuthError, match="invalid_client: signature not verified"),
    ):
        client.get(f"{oauth.fhir_base}/Patient")


def test_the_token_is_reused_while_valid(oauth: OAuthTestServer, keys: dict[str, ClientKey]) -> None:
    auth = smart(oauth, keys["RS384"])
    with httpx.Client(auth=auth) as client:
        statuses = [client.get(f"{oauth.fhir_base}/Patient").status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert oauth.token_requests == 1
    assert auth.tokens_fetched == 1


def test_the_token_is_renewed_before_it_expires(oauth: OAuthTestServer, keys: dict[str, ClientKey]) -> None:
    now = [1000.0]
    auth = smart(oauth, keys["ES384"], clock=lambda: now[0])
    with httpx.Client(auth=auth) as client:
        assert client.get(f"{oauth.fhir_base}/Patient").status_code == 200
        now[0] += oauth.token_lifetime - 29  # inside the last 30 s of the token's life
        assert client.get(f"{oauth.fhir_base}/Patient").status_code == 200
    assert oauth.token_requests == 2
    assert oauth.fhir_refused == 0


def test_one_reauthentication_after_a_401(oauth: OAuthTestServer, keys: dict[str, ClientKey]) -> None:
    auth = smart(oauth, keys["RS384"])
    with httpx.Client(auth=auth) as client:
        assert client.get(f"{oauth.fhir_base}/Patient").status_code == 200
        oauth.expire_all_tokens()
        assert client.get(f"{oauth.fhir_base}/Patient").status_code == 200
    assert oauth.fhir_refused == 1
    assert oauth.token_requests == 2


def test_a_server_that_keeps_refusing_gets_only_one_reauthentication(
    fhir_server: str, keys: dict[str, ClientKey]
) -> None:
    with running_oauth_server(fhir_server, token_lifetime=0) as oauth:  # tokens dead on arrival
        oauth.register(CLIENT_ID, {"keys": [keys["RS384"].public_jwk]})
        with httpx.Client(auth=smart(oauth, keys["RS384"])) as client:
            response = client.get(f"{oauth.fhir_base}/Patient")
        assert response.status_code == 401
        assert oauth.token_requests == 2


def test_discovery_falls_back_to_the_capability_statement(fhir_server: str, keys: dict[str, ClientKey]) -> None:
    with running_oauth_server(fhir_server, advertise_well_known=False) as oauth:
        oauth.register(CLIENT_ID, {"keys": [keys["ES384"].public_jwk]})
        auth = smart(oauth, keys["ES384"])
        with httpx.Client(auth=auth) as client:
            assert client.get(f"{oauth.fhir_base}/Patient").status_code == 200
        assert auth.token_url == oauth.token_url


def test_concurrent_async_requests_share_one_token(oauth: OAuthTestServer, keys: dict[str, ClientKey]) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(auth=smart(oauth, keys["RS384"])) as client:
            responses = await asyncio.gather(*(client.get(f"{oauth.fhir_base}/Patient") for _ in range(8)))
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [200] * 8
    assert oauth.token_requests == 1


def test_static_bearer_sends_the_token() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200)

    with httpx.Client(auth=StaticBearerAuth("tok-123\n"), transport=httpx.MockTransport(handler)) as client:
        client.get("https://ehr.example.org/fhir/metadata")
    assert seen == ["Bearer tok-123"]


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIS2FHIR_TEST_SECRET", "from-env")
    key_file = tmp_path / "client.pem"
    key_file.write_text("-----BEGIN PRIVATE KEY-----\n...")
    assert read_reference("env:SIS2FHIR_TEST_SECRET") == "from-env"
    assert read_reference(f"file:{key_file}").startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("plain-secret-in-config", "must be 'env:NAME' or 'file:/path'"),
        ("env:SIS2FHIR_SURELY_UNSET", "is not set"),
        ("file:/nonexistent/key.pem", "cannot read /nonexistent/key.pem"),
        ("vault:kv/key", "must be 'env:NAME' or 'file:/path'"),
    ],
)
def test_a_bad_secret_reference_says_what_is_wrong(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_reference(ref)
