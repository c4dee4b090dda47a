"""What a district must set before anything goes over the network (FHIR REST, MLLP): its own identifier namespace,
the state student id system and MSH-3..6 (sis2fhir refuses network delivery on the shipped defaults). Made-up
values for the tests that deliver to the real servers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sis2fhir.config import DistrictSettings

NAMESPACE = "https://id.test-district.example/fhir/sis2fhir"  # a URL the (made-up) district controls

HL7 = {
    "sending_application": "SIS2FHIR",
    "sending_facility": "TEST-LEA",
    "receiving_application": "TEST-HIE",
    "receiving_facility": "TEST-HIE",
}


def district(namespace: str = NAMESPACE) -> dict[str, str]:
    """The `district:` section for `namespace`, the state id system being the one a run on it minted before
    (`<namespace>:state-student-id`), so tests that seed Patients under it keep working."""
    return {"namespace": namespace, "state_id_system": DistrictSettings(namespace=namespace).system("state-student-id")}


def env(namespace: str = NAMESPACE) -> dict[str, str]:
    """The same as SIS2FHIR_... variables, for runs without a config file (`--destination` only)."""
    values: dict[str, Any] = {f"SIS2FHIR_DISTRICT__{k.upper()}": v for k, v in district(namespace).items()}
    values.update({f"SIS2FHIR_HL7__{k.upper()}": v for k, v in HL7.items()})
    return values


def environ(namespace: str = NAMESPACE) -> dict[str, str]:
    """os.environ with `env()`: for subprocesses of the CLI."""
    return {**os.environ, **env(namespace)}


def write_config(path: Path, namespace: str = NAMESPACE, **sections: Any) -> Path:
    """A config file with the district's own identifiers and MSH-3..6 (and any other top-level `sections`)."""
    path.write_text(yaml.safe_dump({"district": district(namespace), "hl7": HL7, **sections}))
    return path
