"""Checks of one value against its element: the required value set, a Reference's target type, a UCUM code; how
a fixed or pattern value is shown in a message."""

from __future__ import annotations

from typing import Any

from sis2fhir.validate.compiler import ElementRule
from sis2fhir.validate.issues import Issue
from sis2fhir.validate.ucum import ucum_problem

# Quantity and the datatypes that specialise it (MoneyQuantity and SimpleQuantity are profiles of Quantity)
QUANTITY_TYPES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration"})


def binding_issue(element: ElementRule, type_code: str, item: Any, path: str) -> Issue | None:
    """The item against the element's required value set (a CodeableConcept passes with one coding in it)."""
    codes = element.binding
    assert codes is not None
    if type_code == "CodeableConcept":
        codings = item.get("coding") or ()
        ok = any(isinstance(c, dict) and c.get("code") in codes.get(c.get("system", ""), ()) for c in codings)
        shown = ", ".join(f"{c.get('system')}#{c.get('code')}" for c in codings if isinstance(c, dict))
    elif type_code in ("Coding", "Quantity"):
        ok = item.get("code") in codes.get(item.get("system", ""), ())
        shown = f"{item.get('system')}#{item.get('code')}"
    elif isinstance(item, str):
        ok = any(item in system_codes for system_codes in codes.values())
        shown = repr(item)
    else:
        return None
    if ok:
        return None
    message = f"{shown or 'no coding'} is not in the required value set {element.binding_url}"
    return Issue("error", "code-invalid", path, message, "binding")


def reference_target_issue(
    item: dict[str, Any], targets: frozenset[str], element: ElementRule, path: str, resource_types: frozenset[str]
) -> Issue | None:
    """A Reference's target type (from its reference, or its type) against the element's allowed targets."""
    reference = item.get("reference")
    target = None
    if isinstance(reference, str) and not reference.startswith(("#", "urn:")):
        parts = reference.split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            target = parts[-2]
            if target not in resource_types:
                message = f"{target!r} is not a FHIR resource type"
                return Issue("error", "value", f"{path}.reference", message, "reference")
    declared = item.get("type")
    for found in (target, declared if isinstance(declared, str) else None):
        if found is not None and found not in targets:
            where = f"{path}.reference" if found is target else f"{path}.type"
            message = f"{element.path} may refer to {', '.join(sorted(targets))}, not {found}"
            return Issue("error", "value", where, message, "reference-target")
    return None


def ucum_issue(quantity: dict[str, Any], path: str) -> Issue | None:
    """A Quantity in UCUM needs a code UCUM can parse ('d', not 'days'); whether it matches unit is not checked."""
    code = quantity.get("code")
    problem = ucum_problem(code) if type(code) is str else None
    if problem is None:
        return None
    return Issue("error", "code-invalid", f"{path}.code", f"not a UCUM code: {problem}", "ucum")


def show(value: Any) -> str:
    """A fixed or pattern value as a message shows it."""
    if isinstance(value, dict) and "coding" in value:
        return ", ".join(f"{c.get('system')}#{c.get('code')}" for c in value["coding"])
    if isinstance(value, dict) and "code" in value:
        return f"{value.get('system')}#{value.get('code')}"
    return repr(value)
