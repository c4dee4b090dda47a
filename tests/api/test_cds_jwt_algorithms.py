"""Which signatures a CDS Hooks JWT may carry: RS384 and ES384 (as SMART Backend Services), and ES256, which the CDS
Hooks sandbox signs with; the API's SMART clients stay at RS384 and ES384."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from sis2fhir.api.cds_auth import CdsRefused, check_cds_jwt
from sis2fhir.api_config import ApiClientSettings, CdsClientSettings
from sis2fhir.keys import CDS_JWT_ALGS, load_jwks
from tests.support import smart

ISSUER = "https://sandbox.cds-hooks.example"
SERVICE = "https://sis2fhir.example/cds-services/sis2fhir-school-attendance"


def _check(keys: smart.ClientKeys, token: str) -> str:
    client = CdsClientSettings(issuer=ISSUER, recipient="1234567893", jwks=keys.jwks)
    known = load_jwks(keys.jwks, "test", CDS_JWT_ALGS)
    call = check_cds_jwt(
        f"{token}",
        service_url=SERVICE,
        client_of=lambda iss: client if iss == ISSUER else None,
        key_of=lambda issuer, kid: known.get(kid) if issuer == ISSUER else None,
        now=time.time(),
    )
    return call.client.recipient


@pytest.mark.parametrize("alg", ["RS384", "ES384", "ES256"])
def test_a_cds_jwt_signed_with_each_accepted_algorithm_binds_its_recipient(alg: str) -> None:
    keys = smart.make_client_keys(alg)
    assert _check(keys, smart.client_assertion(ISSUER, SERVICE, keys)) == "1234567893"


def test_an_es256_jwt_checked_with_a_p384_key_is_refused() -> None:
    p384, p256 = smart.make_client_keys("ES384"), smart.make_client_keys("ES256", kid=None)
    forged = smart.client_assertion(ISSUER, SERVICE, p256, kid=p384.kid)  # names the registered P-384 key
    with pytest.raises(CdsRefused):
        _check(p384, forged)


def test_smart_backend_clients_still_need_p384_for_ec() -> None:
    keys = smart.make_client_keys("ES256")
    with pytest.raises(ValidationError, match="ES256"):
        ApiClientSettings(client_id="c", recipient="r", jwks=keys.jwks, scopes="system/Observation.rs")
