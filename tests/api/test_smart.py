"""SMART Backend Services with sis2fhir as the authorization server: the app served by a real uvicorn process on
loopback, real httpx, keys made in the test; a refusal for every rule of the token flow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.api_server import serve_app
from tests.support.sekmet import free_port
from tests.support.smart import ClientKeys, make_client_keys, request_token

pytestmark = pytest.mark.integration

CLIENT = "riverside-ehr"
RECIPIENT = "1582147033"
SCOPES = "system/Patient.rs system/Observation.rs system/Consent.rs"


@pytest.fixture(scope="module")
def keys() -> dict[str, ClientKeys]:
    return {"ES384": make_client_keys("ES384"), "RS384": make_client_keys("RS384")}


def write_api_config(path: Path, port: int, clients: list[dict[str, Any]], **api: Any) -> Path:
    config = {
        "store_url": f"sqlite:///{path.parent / 'state.sqlite'}",
        "api": {"base_url": f"http://127.0.0.1:{port}", "clients": clients, **api},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, ClientKeys]) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("smart")
    port = free_port()
    jwks = {"keys": [keys["ES384"].public_jwk, keys["RS384"].public_jwk]}
    clients = [{"client_id": CLIENT, "recipient": RECIPIENT, "jwks": jwks, "scopes": SCOPES}]
    with serve_app(write_api_config(folder / "config.yaml", port, clients), port) as base:
        yield base


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_client_gets_a_token_and_reads_with_it(server: str, keys: dict[str, ClientKeys], alg: str) -> None:
    response = request_token(server, CLIENT, keys[alg], "system/Observation.rs system/Patient.rs")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Patient.rs system/Observation.rs"
    answer = httpx.get(f"{server}/fhir/Observation", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert answer.status_code == 200
    assert answer.json() == {"client_id": CLIENT, "recipient": RECIPIENT, "scopes": body["scope"]}
