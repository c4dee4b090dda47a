"""Network delivery (FHIR REST, MLLP) is refused, exit 1 and nothing sent, while the district's identifiers are
the shipped defaults (two districts on them would overwrite each other's students at one recipient) or MSH-3..6
are empty; a local NDJSON folder is not a network and is written on the defaults as before."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.config import DEFAULT_NAMESPACE, DistrictSettings
from tests.support import network, paths

EXAMPLE = paths.ROOT / "examples" / "district"
AS_OF = "2026-03-31"
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_identity_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in network.env():
        monkeypatch.delenv(name, raising=False)


def sync(tmp_path: Path, *extra: str) -> tuple[int, str]:
    store = tmp_path / "state.sqlite"
    res = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", AS_OF, "--store", f"sqlite:///{store}",
                              "--report", str(tmp_path / "rows.csv"), *extra])  # fmt: skip
    return res.exit_code, " ".join(res.output.split())


def config(tmp_path: Path, **sections: object) -> str:
    path = tmp_path / "sis2fhir.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


@pytest.mark.integration
def test_fhir_delivery_on_the_default_namespace_is_refused_and_nothing_reaches_the_server(
    fhir_server: str, tmp_path: Path
) -> None:
    code, output = sync(tmp_path, "--destination", fhir_server)
    assert code == 1, output
    assert "nothing is sent over the network until these are set" in output
    assert f"district.namespace: still the shipped example '{DEFAULT_NAMESPACE}'" in output
    assert "https://id.<district-domain>/fhir" in output and "urn:oid:" in output  # the recipe
    assert "district.state_id_system: not set" in output
    assert not (tmp_path / "state.sqlite").exists()  # stopped before the store was opened
    system = DistrictSettings().system("attendance-summary")
    held = httpx.get(f"{fhir_server}/Observation", params={"identifier": f"{system}|", "_summary": "count"})
    assert held.json()["total"] == 0


def test_a_namespace_of_its_own_without_the_state_id_system_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, district={"namespace": network.NAMESPACE})
    code, output = sync(tmp_path, "--config", cfg, "--destination", "https://ehr.example.org/fhir")
    assert code == 1, output
    assert "district.state_id_system: not set" in output
    assert "district.namespace" not in output


def test_the_environment_can_set_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIS2FHIR_DISTRICT__NAMESPACE", "urn:oid:2.16.840.1.113883.3.77777")
    code, output = sync(tmp_path, "--destination", "https://ehr.example.org/fhir")
    assert code == 1 and "district.namespace" not in output and "district.state_id_system" in output, output


def test_mllp_delivery_needs_msh_3_to_6(tmp_path: Path) -> None:
    cfg = config(tmp_path, district=network.district(), hl7={"receiving_application": "HIE"})
    code, output = sync(tmp_path, "--config", cfg, "--destination", "mllp://127.0.0.1:2575")
    assert code == 1, output
    assert "MSH-4 is empty" in output and "MSH-6 is empty" in output
    assert "MSH-5" not in output and "MSH-3" not in output  # set, and SIS2FHIR by default
    assert "district." not in output


def test_mllp_delivery_on_the_defaults_names_every_missing_setting(tmp_path: Path) -> None:
    code, output = sync(tmp_path, "--destination", "mllp://127.0.0.1:2575")
    assert code == 1, output
    for setting in ("district.namespace", "district.state_id_system", "hl7.sending_facility",
                    "hl7.receiving_application", "hl7.receiving_facility"):  # fmt: skip
        assert setting in output


def test_a_local_folder_is_written_on_the_defaults(tmp_path: Path) -> None:
    code, output = sync(tmp_path, "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert list((tmp_path / "out").glob("*/Observation.ndjson"))


def test_outbox_retry_to_a_network_destination_is_refused_on_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "state.sqlite"
    for name, value in network.env().items():
        monkeypatch.setenv(name, value)
    code, output = sync(tmp_path, "--destination", "mllp://127.0.0.1:9")  # nobody there: items wait
    assert code == 4, output
    for name in network.env():
        monkeypatch.delenv(name)
    res = runner.invoke(app, ["outbox", "retry", "--store", f"sqlite:///{store}"])
    assert res.exit_code == 1, res.output
    assert "district.namespace" in res.output
