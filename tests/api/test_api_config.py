"""The `api:` section: the clients' JWKS and scopes and the signing key are checked when the configuration is
loaded; a bad one stops the command with exit 1, names the client and never repeats key material."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sis2fhir.config import ApiClientSettings, ConfigError, Settings, load_settings
from tests.support.paths import EXAMPLE
from tests.support.smart import ClientKeys, make_client_keys

SIS2FHIR = Path(sys.executable).parent / "sis2fhir"
ISSUE_EXAMPLE = """
api:
  base_url: https://sis2fhir.example-hie.org      # the public base the clients see
  clients:
    - client_id: riverside-ehr
      recipient: "1582147033"                     # as in consents.csv recipientOrganization
      jwks: "file:{jwks}"   # or env:NAME, or an inline JWKS object
      scopes: "system/Patient.rs system/Observation.rs system/Consent.rs"
"""


def pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def config_with(tmp_path: Path, client: dict[str, Any], **api: Any) -> Path:
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump({"api": {"base_url": "https://sis2fhir.example.org", "clients": [client], **api}}))
    return path


def client(keys: ClientKeys, **changes: Any) -> dict[str, Any]:
    base = {"client_id": "riverside-ehr", "recipient": "1582147033", "jwks": keys.jwks, "scopes": "system/Patient.rs"}
    return base | changes


def test_the_issue_example_loads(tmp_path: Path) -> None:
    keys = make_client_keys("RS384")
    (tmp_path / "riverside.jwks.json").write_text(json.dumps(keys.jwks))
    (tmp_path / "c.yaml").write_text(ISSUE_EXAMPLE.format(jwks=tmp_path / "riverside.jwks.json"))
    api = load_settings(tmp_path / "c.yaml").api
    assert api.token_url == "https://sis2fhir.example-hie.org/auth/token"
    assert api.fhir_base == "https://sis2fhir.example-hie.org/fhir"
    assert api.token_lifetime_seconds == 300
    assert api.signing_key is None
    assert api.clients == [
        ApiClientSettings(
            client_id="riverside-ehr",
            recipient="1582147033",
            jwks=f"file:{tmp_path / 'riverside.jwks.json'}",
            scopes="system/Patient.rs system/Observation.rs system/Consent.rs",
        )
    ]


def test_no_api_section_means_no_clients() -> None:
    assert Settings().api.clients == []


def test_the_jwks_may_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = make_client_keys("ES384")
    monkeypatch.setenv("RIVERSIDE_JWKS", json.dumps(keys.jwks))
    assert load_settings(config_with(tmp_path, client(keys, jwks="env:RIVERSIDE_JWKS"))).api.clients[0].jwks


def test_v1_scopes_are_kept_as_their_v2_meaning(tmp_path: Path) -> None:
    keys = make_client_keys("ES384")
    path = config_with(tmp_path, client(keys, scopes="system/Observation.read system/Patient.rs"))
    assert load_settings(path).api.clients[0].scopes == "system/Patient.rs system/Observation.rs"


def _private_jwk() -> dict[str, Any]:
    return {**jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()), as_dict=True), "kid": "k"}


def _p256_jwk() -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {**jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True), "kid": "p256"}


@pytest.mark.parametrize(
    ("jwks", "says"),
    [
        ("file:/nonexistent/riverside.jwks.json", "cannot read /nonexistent/riverside.jwks.json"),
        ("env:SIS2FHIR_TEST_NO_SUCH_JWKS", "SIS2FHIR_TEST_NO_SUCH_JWKS is not set"),
        ("https://riverside.example/jwks.json", "file:/path, env:NAME"),
        ({"keys": []}, "non-empty list"),
        ({"kty": "EC"}, "non-empty list"),
        ({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}, "no kid"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}, "RSA or EC"),
        ({"keys": [_private_jwk()]}, "private key parts"),
        ({"keys": [_p256_jwk()]}, "P-384"),
        ({"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB", "alg": "RS256"}]}, "RS384 or ES384"),
        ({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "bad"}]}, "not a usable EC"),
    ],
)
def test_a_bad_jwks_is_a_config_error_naming_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jwks: Any, says: str
) -> None:
    monkeypatch.delenv("SIS2FHIR_TEST_NO_SUCH_JWKS", raising=False)
    keys = make_client_keys("ES384")
    with pytest.raises(ConfigError) as refused:
        load_settings(config_with(tmp_path, client(keys, jwks=jwks)))
    message = str(refused.value)
    assert "client 'riverside-ehr'" in message
    assert says in message
    for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        for part in ("d", "x", "n", "k"):
            if len(str(jwk.get(part, ""))) > 4:
                assert str(jwk[part]) not in message


@pytest.mark.parametrize(
    ("scopes", "says"),
    [
        ("system/Practitioner.rs", "not one this server grants"),
        ("system/Observation.cud", "not one this server grants"),
        ("patient/Observation.rs", "not a SMART system scope"),
        ("system/*.rs", "not a SMART system scope"),
        ("system/Observation.sr", "not a SMART system scope"),
        ("", "no scope given"),
    ],
)
def test_a_scope_this_server_cannot_grant_is_a_config_error(tmp_path: Path, scopes: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as refused:
        load_settings(config_with(tmp_path, client(make_client_keys("ES384"), scopes=scopes)))
    assert "client 'riverside-ehr'" in str(refused.value)


def test_clients_need_a_base_url_and_distinct_ids(tmp_path: Path) -> None:
    keys = make_client_keys("ES384")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"api": {"clients": [client(keys)]}}))
    with pytest.raises(ConfigError, match="base_url is needed"):
        load_settings(path)
    path.write_text(yaml.safe_dump({"api": {"base_url": "https://a.example", "clients": [client(keys), client(keys)]}}))
    with pytest.raises(ConfigError, match="configured twice"):
        load_settings(path)
    path.write_text(yaml.safe_dump({"api": {"base_url": "ftp://a.example"}}))
    with pytest.raises(ConfigError, match="https://"):
        load_settings(path)


def test_the_signing_key_is_checked_without_repeating_it(tmp_path: Path) -> None:
    keys = make_client_keys("ES384")
    good = pem(ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / "signing.pem").write_text(good)
    assert load_settings(config_with(tmp_path, client(keys), signing_key=f"file:{tmp_path / 'signing.pem'}"))
    assert load_settings(config_with(tmp_path, client(keys), signing_key=good)).api.signing_key == good
    for bad, says in [
        (pem(ec.generate_private_key(ec.SECP384R1())), "EC P-256"),
        (pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048 bits"),
        ("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", "not an unencrypted PEM"),
        ("file:/nonexistent/signing.pem", "cannot read"),
    ]:
        with pytest.raises(ConfigError, match=says) as refused:
            load_settings(config_with(tmp_path, client(keys), signing_key=bad))
        assert "PRIVATE KEY" not in str(refused.value)


def test_the_command_line_stops_with_exit_1_on_a_bad_jwks(tmp_path: Path) -> None:
    private = _private_jwk()
    path = config_with(tmp_path, client(make_client_keys("ES384"), jwks={"keys": [private]}))
    done = subprocess.run(
        [str(SIS2FHIR), "check", str(EXAMPLE), "--as-of", "2026-03-31", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "client 'riverside-ehr'" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert private["d"] not in done.stderr + done.stdout
