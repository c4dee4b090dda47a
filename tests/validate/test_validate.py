"""The validator on the official R4 examples, our profiles, and one broken variant per rule."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from sis2fhir.terminology import ATTENDANCE_CS, CONSENT_PROFILE, OBSERVATION_PROFILE, TIER_CS, TIER_VS, TIERS
from sis2fhir.validate import Issue, Validator, validate_resource
from sis2fhir.validate.definitions import Definitions
from sis2fhir.validate.engine import default_validator
from sis2fhir.validate.invariants import NATIVE
from tests.validate.test_validate_cases import (
    BROKEN_CORE,
    BROKEN_PROFILE,
    CORE_EXAMPLES,
    VALID_PROFILE,
    Broken,
    attendance_observation,
    example,
    ferpa_consent,
)

# The published clinical-gender example names an Encounter as Observation.performer, which R4 does not allow.
KNOWN_DEFECTS = {
    "observation-example-clinical-gender.json": [("reference-target", "Observation.performer[0].reference")]
}


def errors(issues: list[Issue]) -> list[tuple[str, str]]:
    return [(i.rule, i.expression) for i in issues if i.severity == "error"]


@pytest.mark.parametrize("name", CORE_EXAMPLES)
def test_official_r4_example_passes(name: str) -> None:
    assert errors(validate_resource(example(name))) == KNOWN_DEFECTS.get(name, [])


@pytest.mark.parametrize("name", sorted(VALID_PROFILE))
def test_resource_built_to_our_profile_passes(name: str) -> None:
    assert errors(validate_resource(VALID_PROFILE[name]())) == []


@pytest.mark.parametrize("case", BROKEN_CORE + BROKEN_PROFILE, ids=lambda c: c.name)
def test_broken_variant_fails_with_rule_and_location(case: Broken) -> None:
    before = [(i.rule, i.expression, i.severity) for i in validate_resource(case.base())]
    after = [(i.rule, i.expression, i.severity) for i in validate_resource(case.resource())]
    assert (case.rule, case.expression, case.severity) not in before
    assert (case.rule, case.expression, case.severity) in after


def test_every_native_invariant_has_a_broken_variant() -> None:
    covered = {case.rule for case in BROKEN_CORE + BROKEN_PROFILE}
    assert set(NATIVE) <= covered


def test_our_profiles_run_native_invariants_only() -> None:
    """The pipeline validates every resource it sends: no invariant of our profiles may fall back to fhirpathpy."""
    compiler = default_validator().compiler
    for url in (OBSERVATION_PROFILE, CONSENT_PROFILE):
        rule = compiler.structure(url)
        assert rule is not None
        assert [i.key for i in rule.invariants if i.native is None] == []


def test_profile_given_explicitly_applies_without_meta_profile() -> None:
    observation = attendance_observation()
    del observation["meta"]
    observation["category"].pop()
    assert errors(validate_resource(observation)) == []  # the R4 core Observation allows one category
    assert ("slice-cardinality", "Observation.category") in errors(
        validate_resource(observation, profile=OBSERVATION_PROFILE)
    )


def test_unknown_profile_is_an_error_not_a_pass() -> None:
    issues = validate_resource(ferpa_consent(), profile="http://example.org/StructureDefinition/nothing")
    assert [(i.rule, i.code) for i in issues] == [("profile", "not-supported")]


def test_profile_for_another_resource_type_is_rejected() -> None:
    assert errors(validate_resource(ferpa_consent(), profile=OBSERVATION_PROFILE)) == [("profile", "Consent")]


def test_not_a_resource() -> None:
    assert errors(validate_resource([1, 2])) == [("structure", "")]  # type: ignore[arg-type]
    assert errors(validate_resource({"id": "x"})) == [("resourceType", "")]


def test_messages_do_not_echo_a_birth_date() -> None:
    patient = example("patient-example.json")
    patient["birthDate"] = "1974-12-32"
    (issue,) = [i for i in validate_resource(patient) if i.severity == "error"]
    assert issue.expression == "Patient.birthDate"
    assert "1974" not in issue.message


def test_repeated_validation_gives_the_same_verdicts() -> None:
    """The memo of element verdicts must not change what is reported, nor where."""
    validator = Validator()
    fresh = Validator(memo=False)
    for case in BROKEN_CORE + BROKEN_PROFILE:
        resource = case.resource()
        first = validator.validate(resource)
        assert validator.validate(resource) == first
        assert fresh.validate(resource) == first


def test_bundle_entries_are_each_checked_against_their_own_profile() -> None:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": attendance_observation(), "request": {"method": "POST", "url": "Observation"}},
            {"resource": ferpa_consent(), "request": {"method": "POST", "url": "Consent"}},
        ],
    }
    assert errors(validate_resource(bundle)) == []
    bundle["entry"][1]["resource"]["policy"][0]["uri"] = "https://www.hhs.gov/hipaa"
    assert errors(validate_resource(bundle)) == [("fixed", "Bundle.entry[1].resource.policy[0].uri")]


# -- fhir.resources R4B: where it has an opinion, it must agree ------------------------------------------------


def _r4b_accepts(resource: dict[str, Any]) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", CORE_EXAMPLES)
def test_r4b_also_accepts_the_official_examples(name: str) -> None:
    assert _r4b_accepts(example(name))


@pytest.mark.parametrize("name", sorted(VALID_PROFILE))
def test_r4b_also_accepts_our_profile_resources(name: str) -> None:
    assert _r4b_accepts(VALID_PROFILE[name]())


@pytest.mark.parametrize("case", [c for c in BROKEN_CORE if c.r4b_rejects], ids=lambda c: c.name)
def test_r4b_also_rejects_structural_breakage(case: Broken) -> None:
    assert not _r4b_accepts(case.resource())


# -- slicing rules and terminology from the compiled profiles ---------------------------------------------------


def _profiles_with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Validator:
    """A validator over a copy of our compiled profiles, with one change to the Observation profile."""
    source = Path(str(resources.files("sis2fhir") / "data" / "profiles"))
    for path in source.glob("*.json"):
        doc = orjson.loads(path.read_bytes())
        if doc.get("url") == OBSERVATION_PROFILE:
            change(doc)
        (tmp_path / path.name).write_bytes(orjson.dumps(doc))
    return Validator(Definitions([tmp_path]))


def _close_component_slicing(profile: dict[str, Any]) -> None:
    for element in profile["snapshot"]["element"]:
        if element["id"] == "Observation.component":
            element["slicing"]["rules"] = "closed"


def test_open_slicing_lets_an_extra_component_through_and_closed_slicing_does_not(tmp_path: Path) -> None:
    observation = attendance_observation()
    observation["component"].append(
        {"code": {"coding": [{"system": ATTENDANCE_CS, "code": "days-tardy"}]}, "valueQuantity": {"value": 3}}
    )
    assert errors(validate_resource(observation)) == []
    closed = _profiles_with(tmp_path, _close_component_slicing)
    assert errors(closed.validate(observation)) == [("slice", "Observation.component[7]")]


def test_tier_value_set_holds_exactly_the_tiers_the_measures_produce() -> None:
    expansion = default_validator().definitions.value_set(TIER_VS)
    assert expansion == {TIER_CS: frozenset(TIERS)}


def test_core_required_value_sets_are_expanded_offline() -> None:
    definitions = default_validator().definitions
    status = definitions.value_set("http://hl7.org/fhir/ValueSet/observation-status|4.0.1")
    assert status is not None
    assert set(status["http://hl7.org/fhir/observation-status"]) >= {"final", "amended", "entered-in-error"}
    assert "Observation" in definitions.resource_types and "Obsrvation" not in definitions.resource_types
