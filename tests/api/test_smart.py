"""SMART Backend Services with sis2fhir as the authorization server: the app served by a real uvicorn process on
loopback (tests/support/smart_app.py: the SMART router and two protected routes), real httpx, keys made in the
test; a refusal for every rule of the token flow and of the access token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sis2fhir.deliver.smart_auth import SmartBackendAuth, _token_url_from_capabilities
from tests.support.api_server import serve_app
from tests.support.sekmet import free_port
from tests.support.smart import (
    ClientKeys,
    client_assertion,
    get_token,
    make_client_keys,
    request_token,
    token_form,
)

pytestmark = pytest.mark.integration

CLIENT = "riverside-ehr"
RECIPIENT = "1582147033"
SCOPES = "system/Patient.rs system/Observation.rs system/Consent.rs"


@dataclass(frozen=True)
class Server:
    base: str
    signing_pem: str  # the configured api.signing_key (EC P-256)

    @property
    def token_url(self) -> str:
        return f"{self.base}/auth/token"

    @property
    def fhir(self) -> str:
        return f"{self.base}/fhir"


def signing_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def write_api_config(folder: Path, port: int, clients: list[dict[str, Any]], **api: Any) -> Path:
    config = {
        "store_url": f"sqlite:///{folder / 'state.sqlite'}",
        "api": {"base_url": f"http://127.0.0.1:{port}", "clients": clients, **api},
    }
    path = folder / f"config-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def keys() -> dict[str, ClientKeys]:
    return {"ES384": make_client_keys("ES384"), "RS384": make_client_keys("RS384")}


@pytest.fixture(scope="module")
def clients(keys: dict[str, ClientKeys]) -> list[dict[str, Any]]:
    jwks = {"keys": [keys["ES384"].public_jwk, keys["RS384"].public_jwk]}
    return [{"client_id": CLIENT, "recipient": RECIPIENT, "jwks": jwks, "scopes": SCOPES}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, clients: list[dict[str, Any]]) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("smart")
    pem = signing_pem()
    (folder / "signing.pem").write_text(pem)
    port = free_port()
    config = write_api_config(folder, port, clients, signing_key=f"file:{folder / 'signing.pem'}")
    with serve_app(config, port) as base:
        yield Server(base, pem)


def refusal(response: httpx.Response, status: int, error: str) -> str:
    """The error_description of an OAuth error answer, after checking its status and error code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert response.headers["cache-control"] == "no-store"
    return str(body["error_description"])


def post_assertion(server: Server, assertion: str, scope: str = "system/Observation.rs") -> httpx.Response:
    response = httpx.post(server.token_url, data=token_form(assertion, scope))
    assert assertion not in response.text  # the assertion is never repeated
    return response


# -- discovery --


def test_the_discovery_document_says_what_a_backend_service_needs(server: Server) -> None:
    response = httpx.get(f"{server.fhir}/.well-known/smart-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["token_endpoint"] == server.token_url
    assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert doc["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert doc["grant_types_supported"] == ["client_credentials"]
    assert set(doc["capabilities"]) == {"client-confidential-asymmetric", "permission-v2"}
    assert "system/Observation.rs" in doc["scopes_supported"]
    assert "system/Subscription.cruds" in doc["scopes_supported"]


def test_the_capability_statement_names_the_token_url(server: Server) -> None:
    capabilities = httpx.get(f"{server.fhir}/metadata").json()
    security = capabilities["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert _token_url_from_capabilities(capabilities) == server.token_url  # as sis2fhir's own client finds it


def test_sis2fhirs_own_smart_client_reads_with_a_token_from_it(server: Server, keys: dict[str, ClientKeys]) -> None:
    """The client sis2fhir delivers with (deliver/smart_auth.py): discovery, assertion, token, the request."""
    for alg in ("ES384", "RS384"):
        key = keys[alg]
        auth = SmartBackendAuth(server.fhir, CLIENT, key.private_pem, key.kid, alg, scope="system/Observation.rs")
        with httpx.Client(auth=auth) as client:
            answer = client.get(f"{server.fhir}/Observation")
        assert answer.status_code == 200
        assert answer.json()["client_id"] == CLIENT


# -- the token flow --


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_client_gets_a_token_and_reads_with_it(server: Server, keys: dict[str, ClientKeys], alg: str) -> None:
    response = request_token(server.base, CLIENT, keys[alg], "system/Observation.rs system/Patient.rs")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Patient.rs system/Observation.rs"
    answer = httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert answer.status_code == 200
    assert answer.json() == {"client_id": CLIENT, "recipient": RECIPIENT, "scopes": body["scope"]}


def test_the_access_token_carries_the_client_its_recipient_and_the_server(
    server: Server, keys: dict[str, ClientKeys]
) -> None:
    token = get_token(server.base, CLIENT, keys["ES384"], "system/Consent.rs")
    public = serialization.load_pem_private_key(server.signing_pem.encode(), None).public_key()
    claims = jwt.decode(token, public, algorithms=["ES256"], audience=server.fhir)
    assert claims["iss"] == claims["aud"] == server.fhir
    assert claims["sub"] == CLIENT
    assert claims["recipient"] == RECIPIENT
    assert claims["scope"] == "system/Consent.rs"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]


def test_the_granted_scope_is_what_was_asked_cut_to_what_is_configured(
    server: Server, keys: dict[str, ClientKeys]
) -> None:
    asked = "system/Observation.rs system/Organization.rs system/Subscription.crud"  # the last two: not configured
    response = request_token(server.base, CLIENT, keys["ES384"], asked)
    assert response.json()["scope"] == "system/Observation.rs"


def test_a_v1_read_scope_is_taken_as_rs_and_a_wildcard_gets_every_configured_type(
    server: Server, keys: dict[str, ClientKeys]
) -> None:
    assert request_token(server.base, CLIENT, keys["ES384"], "system/Observation.read").json()["scope"] == (
        "system/Observation.rs"
    )
    assert request_token(server.base, CLIENT, keys["ES384"], "system/*.rs").json()["scope"] == SCOPES
    # read only: the token holds r, and a route needing r and s refuses it
    token = request_token(server.base, CLIENT, keys["ES384"], "system/Observation.r").json()["access_token"]
    answer = httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS384", "HS256", "HS384", "none"])
def test_only_rs384_and_es384_assertions_are_accepted(server: Server, alg: str) -> None:
    if alg.startswith("HS"):
        # the classic confusion: HMAC with the client's registered public key as the secret (PyJWT will not sign it)
        keys = make_client_keys("ES384")
        assertion = hmac_jwt(alg, keys.kid, json.dumps(keys.public_jwk), CLIENT, server.token_url)
        assert "RS384 and ES384" in refusal(post_assertion(server, assertion), 401, "invalid_client")
        return
    key: Any
    if alg == "none":
        key, keys = "", make_client_keys("ES384")
    elif alg == "ES256":
        keys = make_client_keys("ES384")
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        keys, key = make_client_keys("RS384"), None
    assertion = client_assertion(CLIENT, server.token_url, keys, alg=alg, signing_key=key)
    assert "RS384 and ES384" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def hmac_jwt(alg: str, kid: str, secret: str, client_id: str, token_url: str) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": int(time.time()) + 200, "jti": "hs"}
    body = part(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[alg]
    signature = part(hmac.new(secret.encode(), f"{header}.{body}".encode(), digest).digest())
    return f"{header}.{body}.{signature}"


def test_iss_and_sub_must_both_be_the_client(server: Server, keys: dict[str, ClientKeys]) -> None:
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], sub="someone-else")
    assert "iss and sub" in refusal(post_assertion(server, assertion), 401, "invalid_client")
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], iss=None)
    assert "no iss" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_an_unknown_client_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    assertion = client_assertion("stranger-ehr", server.token_url, keys["ES384"])
    assert "not registered" in refusal(post_assertion(server, assertion), 401, "invalid_client")


@pytest.mark.parametrize(
    "aud", ["http://127.0.0.1:1/auth/token", "{base}/fhir", "{base}/auth/token/", ["{base}/somewhere-else"]]
)
def test_aud_must_be_the_token_url(server: Server, keys: dict[str, ClientKeys], aud: Any) -> None:
    aud = [a.format(base=server.base) for a in aud] if isinstance(aud, list) else aud.format(base=server.base)
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], aud=aud)
    assert "aud must be the token URL" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_an_assertion_valid_for_more_than_five_minutes_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], exp_in=600)
    assert "five minutes" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_an_expired_assertion_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], exp_in=-5)
    assert "expired" in refusal(post_assertion(server, assertion), 401, "invalid_client")


@pytest.mark.parametrize("claim", ["exp", "jti", "aud"])
def test_a_missing_claim_is_refused(server: Server, keys: dict[str, ClientKeys], claim: str) -> None:
    left_out = {"exp_in" if claim == "exp" else claim: None}
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], **left_out)
    assert f"no {claim} claim" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_a_replayed_assertion_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"])
    assert post_assertion(server, assertion).status_code == 200
    assert "used before" in refusal(post_assertion(server, assertion), 401, "invalid_client")
    # the same jti in a new assertion is a replay too
    again = client_assertion(
        CLIENT, server.token_url, keys["RS384"], jti=jwt.decode(assertion, options={"verify_signature": False})["jti"]
    )
    assert "used before" in refusal(post_assertion(server, again), 401, "invalid_client")


def test_an_unknown_kid_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], kid="not-registered")
    assert "not in the client's JWKS" in refusal(post_assertion(server, assertion), 401, "invalid_client")
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], kid=None)
    assert "no kid" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_a_signature_by_another_key_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    stranger = make_client_keys("ES384")
    assertion = client_assertion(CLIENT, server.token_url, stranger, kid=keys["ES384"].kid)
    assert "signature does not verify" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_an_es384_assertion_naming_the_rsa_key_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    assertion = client_assertion(CLIENT, server.token_url, keys["ES384"], kid=keys["RS384"].kid)
    assert "not a key for ES384" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_a_key_named_by_url_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    claims = {"iss": CLIENT, "sub": CLIENT, "aud": server.token_url, "exp": int(time.time()) + 200, "jti": "j-jku"}
    headers = {"kid": keys["ES384"].kid, "jku": "https://attacker.example/jwks.json"}
    assertion = jwt.encode(claims, keys["ES384"].private_pem, algorithm="ES384", headers=headers)
    assert "jku" in refusal(post_assertion(server, assertion), 401, "invalid_client")


def test_the_grant_type_and_the_assertion_type_are_checked(server: Server, keys: dict[str, ClientKeys]) -> None:
    form = token_form(client_assertion(CLIENT, server.token_url, keys["ES384"]), grant_type="authorization_code")
    refusal(httpx.post(server.token_url, data=form), 400, "unsupported_grant_type")
    form = token_form(client_assertion(CLIENT, server.token_url, keys["ES384"]), grant_type="")
    refusal(httpx.post(server.token_url, data=form), 400, "invalid_request")
    form = token_form(client_assertion(CLIENT, server.token_url, keys["ES384"]), client_assertion_type="basic")
    refusal(httpx.post(server.token_url, data=form), 401, "invalid_client")
    form = token_form("", scope="system/Observation.rs")
    refusal(httpx.post(server.token_url, data=form), 400, "invalid_request")
    refusal(httpx.post(server.token_url, json=form), 400, "invalid_request")  # JSON is not the OAuth form
    refusal(httpx.post(server.token_url, data=token_form("not-a-jwt")), 401, "invalid_client")


def test_a_request_granting_nothing_is_refused(server: Server, keys: dict[str, ClientKeys]) -> None:
    for scope in ("system/Organization.rs", "patient/Observation.rs", "system/Observation.cud", "openid"):
        response = request_token(server.base, CLIENT, keys["ES384"], scope)
        refusal(response, 400, "invalid_scope")
    refusal(request_token(server.base, CLIENT, keys["ES384"], ""), 400, "invalid_request")


# -- the access token at a protected route --


def test_no_token_is_answered_401_with_an_operation_outcome(server: Server) -> None:
    response = httpx.get(f"{server.fhir}/Observation")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    assert server.token_url in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic cml2ZXJzaWRlOnNlY3JldA==", "Bearer"])
def test_a_token_this_server_did_not_issue_is_refused(server: Server, header: str) -> None:
    response = httpx.get(f"{server.fhir}/Observation", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_token_signed_by_another_key_is_refused(server: Server) -> None:
    forged = jwt.encode(
        {
            "iss": server.fhir,
            "aud": server.fhir,
            "sub": CLIENT,
            "recipient": RECIPIENT,
            "scope": SCOPES,
            "exp": int(time.time()) + 200,
        },
        signing_pem(),
        algorithm="ES256",
    )
    response = httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_an_expired_access_token_is_refused(server: Server) -> None:
    claims = {"iss": server.fhir, "aud": server.fhir, "sub": CLIENT, "recipient": RECIPIENT, "scope": SCOPES}
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, server.signing_pem, algorithm="ES256")
    response = httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "expired"
    # the same claims, not expired: accepted (so it is the expiry that was refused)
    fresh = jwt.encode({**claims, "exp": int(time.time()) + 100}, server.signing_pem, algorithm="ES256")
    assert httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_a_token_for_another_recipient_than_the_client_is_bound_to_is_refused(server: Server) -> None:
    claims = {"iss": server.fhir, "aud": server.fhir, "sub": CLIENT, "recipient": "1999999999", "scope": SCOPES}
    token = jwt.encode({**claims, "exp": int(time.time()) + 100}, server.signing_pem, algorithm="ES256")
    assert httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_token_of_another_server_is_refused(
    server: Server, tmp_path: Path, clients: list[dict[str, Any]], keys: dict[str, ClientKeys]
) -> None:
    """Two servers with the same signing key: a token issued by one (its aud) does not open the other."""
    (tmp_path / "signing.pem").write_text(server.signing_pem)
    port = free_port()
    config = write_api_config(tmp_path, port, clients, signing_key=f"file:{tmp_path / 'signing.pem'}")
    with serve_app(config, port) as other:
        token = get_token(other, CLIENT, keys["ES384"], "system/Observation.rs")
        assert httpx.get(f"{other}/fhir/Observation", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    response = httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "another server" in response.json()["issue"][0]["diagnostics"]


def test_a_route_needing_a_scope_the_token_lacks_is_refused_403(server: Server, keys: dict[str, ClientKeys]) -> None:
    token = get_token(server.base, CLIENT, keys["ES384"], "system/Patient.rs")
    response = httpx.get(f"{server.fhir}/Observation", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json()["issue"][0]["code"] == "forbidden"
    response = httpx.post(f"{server.fhir}/Subscription", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


# -- keys over time --


def test_without_a_signing_key_tokens_do_not_survive_a_restart(
    tmp_path: Path, clients: list[dict[str, Any]], keys: dict[str, ClientKeys]
) -> None:
    port = free_port()
    config = write_api_config(tmp_path, port, clients)  # no signing_key: a key made per process
    with serve_app(config, port) as base:
        token = get_token(base, CLIENT, keys["ES384"], "system/Observation.rs")
        assert httpx.get(f"{base}/fhir/Observation", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with serve_app(config, port) as base:
        assert httpx.get(f"{base}/fhir/Observation", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_client_rotates_its_key_by_adding_it_to_the_jwks_file(tmp_path: Path, keys: dict[str, ClientKeys]) -> None:
    jwks_file = tmp_path / "riverside.jwks.json"
    jwks_file.write_text(json.dumps(keys["ES384"].jwks))
    port = free_port()
    clients = [{"client_id": CLIENT, "recipient": RECIPIENT, "jwks": f"file:{jwks_file}", "scopes": SCOPES}]
    with serve_app(write_api_config(tmp_path, port, clients), port) as base:
        assert request_token(base, CLIENT, keys["ES384"], "system/Observation.rs").status_code == 200
        new = make_client_keys("RS384")
        jwks_file.write_text(json.dumps({"keys": [keys["ES384"].public_jwk, new.public_jwk]}))
        # no restart: the unknown kid makes the server read the file again
        assert request_token(base, CLIENT, new, "system/Observation.rs").status_code == 200
        assert request_token(base, CLIENT, keys["ES384"], "system/Observation.rs").status_code == 200
        # the old key retired: the next unknown kid re-reads it (at most every 5 seconds), a retired kid stays
        # known until then; so here only that the new key keeps working
        jwks_file.write_text(json.dumps(new.jwks))
        assert request_token(base, CLIENT, new, "system/Observation.rs").status_code == 200
