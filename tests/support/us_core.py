"""The validator with the test-only US Core / SDOHCC definitions (tests/fixtures/us-core/, built by
scripts/build-us-core-fixtures.py) added to the project's own profiles; the example district's output."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sis2fhir import terminology as t
from sis2fhir.cli import app
from sis2fhir.validate import Issue, Validator
from sis2fhir.validate.definitions import Definitions
from tests.support import paths

US_CORE = paths.FIXTURES / "us-core"
DEFINITIONS = paths.ROOT / "src" / "sis2fhir" / "data" / "external"
SOURCE = US_CORE / "source"
OWN_PROFILES = paths.ROOT / "src" / "sis2fhir" / "data" / "profiles"
EXTERNAL = {
    "Observation": [t.US_CORE_SIMPLE_OBSERVATION_PROFILE, t.SDOHCC_OBSERVATION_ASSESSMENT_PROFILE],
    "Consent": [t.SDOHCC_CONSENT_PROFILE],
}


@cache
def us_core_validator() -> Validator:
    """The validator as `sis2fhir validate` builds it: our profiles and the shipped US Core / SDOHCC ones."""
    return Validator(Definitions([OWN_PROFILES, DEFINITIONS]))


def errors(resource: dict[str, Any], profile: str) -> list[Issue]:
    return [i for i in us_core_validator().validate(resource, profile) if i.severity == "error"]


def example_resources(out: Path) -> list[dict[str, Any]]:
    """Every resource the example district's sync writes into `out` (as of 2026-03-31, the CLI in process)."""
    result = CliRunner().invoke(app, ["sync", str(paths.EXAMPLE), "--as-of", "2026-03-31", "--out", str(out),
                                      "--workers", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for p in sorted(out.glob("*/*.ndjson")) for line in p.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]
