"""schemathesis over the non-FHIR endpoints the app describes in OpenAPI (/healthz, /readyz, the token endpoint,
the SMART configuration), against `sis2fhir serve` as a real process: whatever it is sent, never a 5xx. The FHIR
routes are left out of the OpenAPI schema (the CapabilityStatement describes them); the schema is built from the
same app in this process, since the server publishes no /openapi.json (nothing else answers without a token)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from sis2fhir.api.app import create_app
from sis2fhir.config import Settings
from tests.support.served_district import District, served_district

pytestmark = pytest.mark.integration

APP_SCHEMA = create_app(Settings(api={"base_url": "http://127.0.0.1:1"})).openapi()
schema = schemathesis.openapi.from_dict(APP_SCHEMA)


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Iterator[District]:
    with served_district(tmp_path_factory.mktemp("openapi")) as d:
        yield d


def test_the_schema_holds_only_the_endpoints_without_student_data() -> None:
    assert set(APP_SCHEMA["paths"]) == {"/healthz", "/readyz", "/auth/token", "/fhir/.well-known/smart-configuration"}


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case: schemathesis.Case, district: District) -> None:
    case.call_and_validate(base_url=district.url, checks=[not_a_server_error])
