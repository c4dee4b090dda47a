"""SMART v2 scopes as the API grants and checks them, and the store of accepted assertion jtis (SQLite and
PostgreSQL: a replay is refused across processes sharing the store, and expired jtis are pruned)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sis2fhir.scopes import SUPPORTED, allows, check_configured, granted, parse_scope
from sis2fhir.store import open_store
from sis2fhir.store.assertions import remember_jti
from sis2fhir.store.schema import client_assertions
from tests.support.postgres import STORES, new_store_url

CONFIGURED = "system/Patient.rs system/Observation.rs system/Consent.rs"


@pytest.mark.parametrize(
    ("scope", "parsed"),
    [
        ("system/Observation.rs", ("Observation", {"r", "s"})),
        ("system/Observation.read", ("Observation", {"r", "s"})),
        ("system/Subscription.crud", ("Subscription", {"c", "r", "u", "d"})),
        ("system/*.rs", ("*", {"r", "s"})),
        ("system/Observation.write", ("Observation", {"c", "u", "d"})),
        ("system/Observation.sr", None),  # v2 letters in the order c r u d s
        ("system/Observation.rr", None),
        ("system/Observation.x", None),
        ("system/Observation.rs?category=laboratory", None),  # granular scopes are not granted
        ("patient/Observation.rs", None),
        ("user/*.read", None),
        ("launch", None),
    ],
)
def test_a_system_scope_is_read_as_type_and_permissions(scope: str, parsed: tuple[str, set[str]] | None) -> None:
    assert parse_scope(scope) == (None if parsed is None else (parsed[0], frozenset(parsed[1])))


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("system/Observation.rs", "system/Observation.rs"),
        ("system/Observation.r", "system/Observation.r"),
        ("system/Observation.cruds", "system/Observation.rs"),  # cut to what is configured
        ("system/Observation.read system/Patient.read", "system/Patient.rs system/Observation.rs"),
        ("system/*.rs", CONFIGURED),
        ("system/*.s system/Consent.r", "system/Patient.s system/Observation.s system/Consent.rs"),
        ("system/Organization.rs system/Subscription.crud", ""),
        ("system/Observation.cud", ""),
        ("patient/*.rs openid fhirUser", ""),
    ],
)
def test_the_grant_is_the_request_cut_to_the_configured_scopes(requested: str, expected: str) -> None:
    assert granted(requested, CONFIGURED) == expected


def test_a_token_scope_allows_what_it_holds_and_nothing_more() -> None:
    assert allows("system/Observation.rs", "system/Observation.rs")
    assert allows("system/Observation.rs", "system/Observation.r")
    assert not allows("system/Observation.r", "system/Observation.rs")
    assert not allows("system/Patient.rs", "system/Observation.rs")
    assert allows("system/Subscription.crud", "system/Subscription.c")
    assert not allows("system/Subscription.crud", "system/Subscription.s")
    with pytest.raises(ValueError):
        allows("system/Observation.rs", "nonsense")


def test_every_supported_scope_can_be_configured() -> None:
    assert check_configured(" ".join(SUPPORTED)) == " ".join(SUPPORTED)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_store_url(request, tmp_path, "jti")


def test_a_jti_is_accepted_once_and_pruned_after_its_assertion_expired(store_url: str) -> None:
    now = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    first, second = open_store(store_url), open_store(store_url)  # two server processes on one store
    try:
        assert remember_jti(first, "riverside-ehr", "j1", now + timedelta(minutes=4), now)
        assert not remember_jti(second, "riverside-ehr", "j1", now + timedelta(minutes=4), now)
        assert remember_jti(second, "other-hie", "j1", now + timedelta(minutes=4), now)  # jti is per client
        assert remember_jti(first, "riverside-ehr", "j-old", now + timedelta(seconds=1), now)
        later = now + timedelta(minutes=2)
        assert remember_jti(first, "riverside-ehr", "j2", later + timedelta(minutes=4), later)
        with first.connect() as conn:
            kept = {r.jti for r in conn.execute(select(client_assertions.c.jti))}
            assert kept == {"j1", "j2"}  # j-old expired by then: pruned (it would be refused as expired anyway)
            assert conn.execute(select(func.count()).select_from(client_assertions)).scalar_one() == 3
    finally:
        first.dispose()
        second.dispose()
