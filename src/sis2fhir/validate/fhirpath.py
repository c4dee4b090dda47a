"""FHIR invariants evaluated with fhirpathpy: the ones without a native check (invariants.py), and all of them
when the validator cross-checks the native ones (Validator(native=False))."""

from __future__ import annotations

from typing import Any

from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse

R4_MODEL = models["r4"]


def _has_value(coll: list[Any]) -> bool:
    """FHIR's hasValue(): a single primitive with a value (fhirpathpy hands user functions unwrapped data)."""
    return len(coll) == 1 and coll[0] is not None and not isinstance(coll[0], dict | list)


def _html_checks(coll: list[Any]) -> bool:
    return True


FHIRPATH_OPTIONS: dict[str, Any] = {
    "userInvocationTable": {
        # fhirpathpy 2.2 lacks these FHIR additions to FHIRPath.
        "hasValue": {"fn": _has_value, "arity": {0: []}},
        "htmlChecks": {"fn": _html_checks, "arity": {0: []}},
    },
    "traceFn": lambda label, value: None,  # fhirpathpy prints trace() output to stdout otherwise
}


class FhirpathInvariant:
    """Evaluates one constraint's expression with fhirpathpy; parsed once, evaluated per element."""

    def __init__(self, expression: str, type_path: str) -> None:
        self.expression = expression
        self.type_path = type_path  # FHIR type of the context element, e.g. "Period" or "Observation.referenceRange"
        # fhirpathpy 2.2 refuses as() on a collection (dom-3 uses descendants().as(canonical)); the R4
        # validators read it as a filter, which is what ofType() does.
        self._parsed = parse(expression.replace(".as(", ".ofType("))

    def __call__(self, value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
        """True when it holds; an empty result (undecidable: dates of different precision) holds."""
        node = ResourceNode.create_node(value, self.type_path)
        variables = {"resource": resource, "rootResource": root, "context": value}
        result = apply_parsed_path(node, self._parsed, variables, R4_MODEL, FHIRPATH_OPTIONS)
        return not (len(result) == 1 and result[0] is False)
