"""The `api:` settings of the card and the chart: CDS clients and launching EHRs, checked when the configuration is
loaded, and served like API clients (sync writes their recipients' served set)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sis2fhir.config import Settings
from sis2fhir.deliver.served import served_recipients
from tests.support import smart


def settings(**api: Any) -> Settings:
    return Settings.model_validate({"api": {"base_url": "https://sis2fhir.example", **api}})


def test_cds_clients_and_launching_ehrs_are_served_like_api_clients() -> None:
    keys = smart.make_client_keys("ES384")
    found = settings(
        cds_clients=[{"issuer": "https://ehr.example", "recipient": "111", "jwks": keys.jwks}],
        ehr_launch=[{"iss": "https://fhir.ehr.example/R4/", "client_id": "chart", "recipient": "222"}],
    )
    assert served_recipients(found) == {"111", "222"}
    assert found.api.cds_client("https://ehr.example") is not None and found.api.cds_client("https://x") is None
    assert found.api.ehr("https://fhir.ehr.example/R4") is not None  # a trailing slash is the same base
    assert found.api.ehr_launch[0].scope == "launch openid fhirUser patient/Patient.rs"


@pytest.mark.parametrize(
    ("api", "says"),
    [
        ({"cds_clients": [{"issuer": "https://e", "recipient": "1", "jwks": {"keys": []}}]}, "not a JWKS"),
        ({"ehr_launch": [{"iss": "not a url", "client_id": "c", "recipient": "1"}]}, "ehr_launch.iss"),
        (
            {
                "ehr_launch": [
                    {"iss": "https://f.example", "client_id": "a", "recipient": "1"},
                    {"iss": "https://f.example/", "client_id": "b", "recipient": "2"},
                ]
            },
            "configured twice",
        ),
    ],
)
def test_bad_entries_stop_when_the_configuration_loads(api: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(**api)


def test_a_cds_client_needs_the_base_url() -> None:
    keys = smart.make_client_keys("RS384")
    with pytest.raises(ValidationError, match="base_url is needed"):
        Settings.model_validate({"api": {"cds_clients": [{"issuer": "i", "recipient": "1", "jwks": keys.jwks}]}})


def test_fhir_servers_limit_where_a_cds_call_may_send_the_service() -> None:
    keys = smart.make_client_keys("ES384")
    entry = {"issuer": "https://ehr.example", "recipient": "1", "jwks": keys.jwks}
    open_client = settings(cds_clients=[entry]).api.cds_clients[0]
    assert open_client.allows_fhir_server("http://anything.example/fhir")
    limited = settings(cds_clients=[{**entry, "fhir_servers": ["https://fhir.ehr.example/"]}]).api.cds_clients[0]
    assert limited.allows_fhir_server("https://fhir.ehr.example/R4")
    assert not limited.allows_fhir_server("http://169.254.169.254/latest")
