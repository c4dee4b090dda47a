"""Configuration: the example file, environment overrides, secrets by reference, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sis2fhir.config import ConfigError, load_settings
from sis2fhir.deliver.factory import configured_routes
from tests.support import paths

ROOT = paths.ROOT
EXAMPLE_CONFIG = ROOT / "examples" / "sis2fhir.yaml"


def test_the_example_configuration_builds_every_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    cfg = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    cfg["recipients"][0]["destinations"][0]["auth"]["private_key"] = f"file:{tmp_path / 'key.pem'}"
    cfg["recipients"][2]["destinations"][0]["folder"] = str(tmp_path / "files")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    routes, destinations = configured_routes(load_settings(tmp_path / "c.yaml"))
    assert sorted(routes) == ["1582147033", "1729034169", "1904672353"]
    assert {rt.takes for rts in routes.values() for rt in rts} == {"fhir", "hl7v2"}
    assert sorted(name.split(":")[0] for name in destinations) == ["fhir", "mllp", "ndjson"]


def test_the_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIS2FHIR_STORE_URL", "sqlite:////tmp/elsewhere.sqlite")
    monkeypatch.setenv("SIS2FHIR_DISTRICT__NAMESPACE", "https://data.example.org/sis2fhir/")
    s = load_settings(EXAMPLE_CONFIG)
    assert s.store_url == "sqlite:////tmp/elsewhere.sqlite"
    assert s.district.system("consent") == "https://data.example.org/sis2fhir/consent"


def test_a_missing_secret_is_a_clear_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIS2FHIR_TEST_TOKEN", raising=False)
    cfg = {
        "recipients": [
            {
                "identifier": "1",
                "destinations": [
                    {
                        "type": "fhir",
                        "url": "https://ehr.example.org/fhir",
                        "auth": {"type": "bearer", "token": "env:SIS2FHIR_TEST_TOKEN"},
                    }
                ],
            }
        ]
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="SIS2FHIR_TEST_TOKEN"):
        configured_routes(load_settings(tmp_path / "c.yaml"))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("policy: {preset: nope}", "nope"),
        ("policy: {preset: essa, at_risk_from: 50}", "tier bounds"),
        ("recipients: [{identifier: '1', destinations: [{type: carrier-pigeon}]}]", "type"),
        ("[1, 2", "not valid YAML"),
        ("- a list", "mapping"),
    ],
)
def test_bad_configuration_is_refused_with_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=says):
        load_settings(tmp_path / "c.yaml")
