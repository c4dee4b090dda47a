"""The example district's output against US Core Simple Observation 7.0.0, SDOHCC Observation Assessment and
SDOHCC Consent 3.0.0 (copies of their definitions: tests/fixtures/us-core/SOURCES.md), with the project's
validator: a resource names them in meta.profile only when it passes them, and every constraint that matters has
a failing variant here. docs/conformance.md says what is claimed and what is checked."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sis2fhir import terminology as t
from sis2fhir.map.profiles import claimed_profiles
from tests.support import paths
from tests.support.us_core import DEFINITIONS, EXTERNAL, errors, example_resources, us_core_validator

BUILD = paths.ROOT / "scripts" / "build-us-core-fixtures.py"
SUSHI = paths.ROOT / ".tools" / "node_modules" / ".bin" / "sushi"
US_CORE_OBS = t.US_CORE_SIMPLE_OBSERVATION_PROFILE
SDOHCC_OBS = t.SDOHCC_OBSERVATION_ASSESSMENT_PROFILE
SDOHCC_CONSENT = t.SDOHCC_CONSENT_PROFILE
Resource = dict[str, Any]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> list[Resource]:
    return example_resources(tmp_path_factory.mktemp("us-core") / "out")


def first(resources: list[Resource], kind: str) -> Resource:
    return copy.deepcopy(next(r for r in resources if r["resourceType"] == kind))


def rules(resource: Resource, profile: str) -> set[str]:
    return {i.rule for i in errors(resource, profile)}


def test_committed_definitions_equal_a_fresh_build(tmp_path: Path) -> None:
    if not SUSHI.exists():
        pytest.fail("SUSHI missing: run scripts/install-fhir-tools.sh", pytrace=False)
    build = subprocess.run([sys.executable, str(BUILD), str(tmp_path)], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_bytes() for p in DEFINITIONS.glob("*.json")}
    assert fresh.keys() == committed.keys()
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"run scripts/build-us-core-fixtures.py and commit: {stale}"


def test_the_definitions_are_the_published_profiles_with_snapshots() -> None:
    definitions = us_core_validator().definitions
    for url, base in (
        (US_CORE_OBS, "http://hl7.org/fhir/StructureDefinition/Observation"),
        (SDOHCC_OBS, f"{US_CORE_OBS}|7.0.0"),
        (SDOHCC_CONSENT, "http://hl7.org/fhir/StructureDefinition/Consent"),
    ):
        sd = definitions.structure(url)
        assert sd is not None and sd["snapshot"]["element"], url
        assert sd["baseDefinition"] == base
    root = definitions.structure(SDOHCC_OBS)["snapshot"]["element"][0]  # type: ignore[index]
    assert {"us-core-2", "SDOH-Obs-4"} <= {c["key"] for c in root["constraint"]}


def test_every_resource_of_the_example_district_claims_and_passes_us_core_and_sdohcc(
    example: list[Resource],
) -> None:
    kinds = {"Observation": 0, "Consent": 0}
    for resource in example:
        kind = resource["resourceType"]
        if kind not in kinds:
            continue  # Patient and Organization claim no profile of these two IGs
        own = t.OBSERVATION_PROFILE if kind == "Observation" else t.CONSENT_PROFILE
        assert resource["meta"]["profile"] == [own, *EXTERNAL[kind]], resource["id"]
        for profile in resource["meta"]["profile"]:
            found = errors(resource, profile)
            assert not found, f"{kind}/{resource['id']} against {profile}: {[str(i) for i in found]}"
        kinds[kind] += 1
    assert kinds["Observation"] >= 50 and kinds["Consent"] >= 20, kinds


# -- Observation: each requirement of US Core / SDOHCC broken once -----------------------------------------------


def _without_sdoh(obs: Resource) -> None:
    obs["category"] = [c for c in obs["category"] if c["coding"][0]["code"] != "sdoh"]


def _other_category(obs: Resource) -> None:
    obs["category"] = [{"coding": [{"system": "http://example.org/categories", "code": "school"}]}]


def _no_category(obs: Resource) -> None:
    del obs["category"]


def _no_subject(obs: Resource) -> None:
    del obs["subject"]


def _subject_practitioner(obs: Resource) -> None:
    obs["subject"] = {"reference": "Practitioner/123"}


def _performer_location(obs: Resource) -> None:
    obs["performer"] = [{"reference": "Location/school-1"}]


def _nothing_observed(obs: Resource) -> None:
    for key in ("valueQuantity", "dataAbsentReason", "component"):
        obs.pop(key, None)


def _status_unknown_code(obs: Resource) -> None:
    obs["status"] = "provisional"


OBSERVATION_BREAKS = [
    # (change, profile, rule the validator reports)
    (_without_sdoh, SDOHCC_OBS, "SDOH-Obs-4"),
    (_other_category, SDOHCC_OBS, "slice-cardinality"),  # category:us-core 1..*: a code of US Core's value set
    (_no_category, US_CORE_OBS, "cardinality"),
    (_no_subject, US_CORE_OBS, "cardinality"),
    (_subject_practitioner, US_CORE_OBS, "reference-target"),
    (_subject_practitioner, SDOHCC_OBS, "reference-target"),
    (_performer_location, SDOHCC_OBS, "reference-target"),
    (_nothing_observed, SDOHCC_OBS, "us-core-2"),
    (_status_unknown_code, US_CORE_OBS, "binding"),
]


@pytest.mark.parametrize(
    ("change", "profile", "rule"), OBSERVATION_BREAKS, ids=[f"{c.__name__}-{r}" for c, _, r in OBSERVATION_BREAKS]
)
def test_an_observation_that_breaks_a_constraint_fails_it_and_does_not_claim_the_profile(
    example: list[Resource], change: Any, profile: str, rule: str
) -> None:
    obs = first(example, "Observation")
    assert not errors(obs, profile)
    change(obs)

    assert rule in rules(obs, profile)
    assert profile not in claimed_profiles(obs)


def test_the_slice_by_value_set_takes_any_us_core_category_code(example: list[Resource]) -> None:
    """category:us-core is told apart by its required value set (us-core-category and observation-category)."""
    obs = first(example, "Observation")
    obs["category"] = [{"coding": [{"system": t.US_CORE_CATEGORY_CS, "code": "functional-status"}]}]

    assert not errors(obs, US_CORE_OBS)
    assert rules(obs, SDOHCC_OBS) == {"SDOH-Obs-4"}  # in the slice, but not sdoh


@pytest.mark.parametrize("status", ["preliminary", "final", "amended", "corrected"])
def test_a_preliminary_or_final_observation_may_claim_both(example: list[Resource], status: str) -> None:
    """SDOHCC Observation Assessment and US Core 7.0.0 leave Observation.status bound to the whole R4 value set:
    a year-to-date figure that still changes (`preliminary`) conforms as well as a closed one (`final`)."""
    obs = first(example, "Observation")
    obs["status"] = status

    assert not errors(obs, US_CORE_OBS) and not errors(obs, SDOHCC_OBS)
    assert claimed_profiles(obs)[1:] == [US_CORE_OBS, SDOHCC_OBS]


@pytest.mark.parametrize(
    "subject",
    [
        {"reference": "Patient/abc-123"},  # linked at a FHIR recipient
        {"reference": "https://ehr.example.org/fhir/Patient/abc-123/_history/2"},
        {"reference": "urn:uuid:0f5e1c56-3d7e-4d8e-a0a5-2f1f7c1d9b10", "type": "Patient"},  # in a transaction
    ],
)
def test_a_literal_patient_reference_still_passes_and_claims(example: list[Resource], subject: Resource) -> None:
    obs = first(example, "Observation")
    obs["subject"] = subject

    assert not errors(obs, SDOHCC_OBS)
    assert SDOHCC_OBS in claimed_profiles(obs)


# -- Consent ----------------------------------------------------------------------------------------------------


def _no_source(consent: Resource) -> None:
    consent.pop("sourceAttachment", None)
    consent.pop("sourceReference", None)


def _no_date(consent: Resource) -> None:
    del consent["dateTime"]


def _two_custodians(consent: Resource) -> None:
    consent["organization"] = consent["organization"] * 2


def _no_idscl(consent: Resource) -> None:
    consent["category"] = [c for c in consent["category"] if c["coding"][0]["code"] != "IDSCL"]


def _patient_as_group(consent: Resource) -> None:
    consent["patient"] = {"reference": "Group/class-3b"}


CONSENT_BREAKS = [
    (_no_source, "cardinality"),
    (_no_date, "cardinality"),
    (_two_custodians, "cardinality"),
    (_no_idscl, "slice-cardinality"),
    (_patient_as_group, "reference-target"),
]


@pytest.mark.parametrize(("change", "rule"), CONSENT_BREAKS, ids=[c.__name__ for c, _ in CONSENT_BREAKS])
def test_a_consent_that_breaks_a_constraint_fails_sdohcc_and_does_not_claim_it(
    example: list[Resource], change: Any, rule: str
) -> None:
    consent = first(example, "Consent")
    assert not errors(consent, SDOHCC_CONSENT)
    change(consent)

    assert rule in rules(consent, SDOHCC_CONSENT)
    assert SDOHCC_CONSENT not in claimed_profiles(consent)


def test_claims_are_never_wider_than_what_passes(example: list[Resource]) -> None:
    """Every broken variant above: whatever claimed_profiles names, the resource passes."""
    variants = []
    for change, _, _ in OBSERVATION_BREAKS:
        obs = first(example, "Observation")
        change(obs)
        variants.append(obs)
    for change, _ in CONSENT_BREAKS:
        consent = first(example, "Consent")
        change(consent)
        variants.append(consent)
    for resource in variants:
        for profile in claimed_profiles(resource)[1:]:
            assert not errors(resource, profile), (profile, json.dumps(resource)[:200])


def test_sources_are_recorded_for_every_copied_file() -> None:
    sources = (paths.FIXTURES / "us-core" / "SOURCES.md").read_text(encoding="utf-8")
    copied = sorted(p.relative_to(paths.FIXTURES / "us-core" / "source").as_posix()
                    for p in (paths.FIXTURES / "us-core" / "source").rglob("*") if p.is_file())  # fmt: skip
    missing = [name for name in copied if Path(name).name not in sources]
    assert not missing, f"not in SOURCES.md: {missing}"
