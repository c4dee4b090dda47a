"""Shared pytest fixtures: real servers started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sekmet import running_sekmet


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[str]:
    """Base URL of a real sekmet-fhir R4 server with a fresh data dir, shared by the session."""
    with running_sekmet() as base:
        yield base
