"""Each native invariant gives the verdict fhirpathpy gives for the published FHIRPath expression."""

from __future__ import annotations

from typing import Any

import pytest

from sis2fhir.validate import Validator
from sis2fhir.validate.invariants import NATIVE, native_for
from tests.validate.test_validate_cases import (
    BROKEN_CORE,
    BROKEN_PROFILE,
    CORE_EXAMPLES,
    VALID_PROFILE,
    Broken,
    example,
)

NATIVE_VALIDATOR = Validator()
FHIRPATH_VALIDATOR = Validator(native=False)  # every invariant through fhirpathpy


def invariant_verdicts(validator: Validator, resource: dict[str, Any]) -> set[tuple[str, str, str]]:
    issues = validator.validate(resource)
    # an invariant fhirpathpy cannot evaluate would make the comparison empty, so that is a failure too
    assert [i.rule for i in issues if i.code == "not-supported" and i.rule in NATIVE] == []
    return {(i.rule, i.expression, i.severity) for i in issues if i.code == "invariant"}


def test_fhirpath_validator_really_uses_fhirpathpy() -> None:
    rule = FHIRPATH_VALIDATOR.compiler.structure("http://hl7.org/fhir/StructureDefinition/Observation")
    assert rule is not None
    assert rule.invariants and all(i.native is None and i.fhirpath is not None for i in rule.invariants)


def test_native_checks_apply_only_to_the_expression_they_implement() -> None:
    assert native_for("obs-6", NATIVE["obs-6"].expression) is not None
    assert native_for("obs-6", "dataAbsentReason.empty()") is None


@pytest.mark.parametrize("name", CORE_EXAMPLES)
def test_agree_on_official_examples(name: str) -> None:
    resource = example(name)
    assert invariant_verdicts(NATIVE_VALIDATOR, resource) == invariant_verdicts(FHIRPATH_VALIDATOR, resource)


@pytest.mark.parametrize("name", sorted(VALID_PROFILE))
def test_agree_on_our_profile_resources(name: str) -> None:
    resource = VALID_PROFILE[name]()
    assert invariant_verdicts(NATIVE_VALIDATOR, resource) == invariant_verdicts(FHIRPATH_VALIDATOR, resource)


@pytest.mark.parametrize("case", BROKEN_CORE + BROKEN_PROFILE, ids=lambda c: c.name)
def test_agree_on_broken_variant(case: Broken) -> None:
    resource = case.resource()
    native = invariant_verdicts(NATIVE_VALIDATOR, resource)
    expected = (case.rule, case.expression, case.severity)
    if case.fhirpathpy_wrong:
        assert invariant_verdicts(FHIRPATH_VALIDATOR, resource) == native - {expected}
    else:
        assert native == invariant_verdicts(FHIRPATH_VALIDATOR, resource)
    if case.rule in NATIVE:
        assert expected in native


def test_fhirpathpy_compares_zoned_literals_as_the_native_per_1_does() -> None:
    """Evidence for the one documented disagreement: with literals fhirpathpy honours time zones."""
    from fhirpathpy import evaluate

    assert evaluate({}, "@2013-04-02T10:00:00Z <= @2013-04-02T11:30:00+02:00") == [False]
