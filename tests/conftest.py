"""Shared pytest fixtures: real servers started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.sekmet import running_sekmet


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[str]:
    """Base URL of a real sekmet-fhir R4 server with a fresh data dir, shared by the session."""
    with running_sekmet() as base:
        yield base


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL cluster on loopback, shared by the session (each test makes its own database)."""
    from tests.support.postgres import running_postgres

    with running_postgres() as url:
        yield url


# Shared machines (CI included) stall now and then: a property test is about correctness, not speed.
settings.register_profile("sis2fhir", deadline=None)
settings.load_profile("sis2fhir")
