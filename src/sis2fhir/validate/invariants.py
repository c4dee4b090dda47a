"""FHIR invariants (constraint.expression): native checks for the ones we meet, fhirpathpy for the rest."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sis2fhir.terminology import ATTENDANCE_CS
from sis2fhir.validate.narrative import txt_1, txt_1_detail, txt_2

# Native check: (value of the element, %resource, %rootResource) -> True when the invariant holds.
NativeCheck = Callable[[Any, dict[str, Any], dict[str, Any]], bool]


# JSON names a choice element by its type: value[x] is present as one of these keys.
_TYPES = (
    "Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Markdown Oid PositiveInt String "
    "Time UnsignedInt Uri Url Uuid Address Age Annotation Attachment CodeableConcept Coding ContactPoint Count "
    "Distance Duration HumanName Identifier Money Period Quantity Range Ratio Reference SampledData Signature "
    "Timing ContactDetail Contributor DataRequirement Expression ParameterDefinition RelatedArtifact "
    "TriggerDefinition UsageContext Dosage Meta"
)
VALUE_KEYS = frozenset("value" + t for t in _TYPES.split())


def _has_value_key(obj: Any) -> bool:
    """value[x] present."""
    return isinstance(obj, dict) and not VALUE_KEYS.isdisjoint(obj)


def _strings_under(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for value in node.values():
            _strings_under(value, out)
    elif isinstance(node, list):
        for value in node:
            _strings_under(value, out)
    elif isinstance(node, str) and node.startswith("#"):
        out.add(node)


def _ele_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    if isinstance(value, dict):
        return len(value) > ("id" in value)
    return value is not None and value != ""


def _ext_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return bool(value.get("extension")) != _has_value_key(value)


def _dom_2(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return not any(isinstance(c, dict) and c.get("contained") for c in value.get("contained", ()))


def _dom_3(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    contained = value.get("contained")
    if not contained:
        return True
    # references, canonicals and uris that point inside the resource ("#id", or "#" = the container)
    local: set[str] = set()
    _strings_under(resource, local)
    for item in contained:
        if not isinstance(item, dict):
            continue
        inner: set[str] = set()
        _strings_under(item, inner)
        if "#" + str(item.get("id")) not in local and "#" not in inner:
            return False
    return True


def _dom_4(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    for item in value.get("contained", ()):
        meta = item.get("meta") if isinstance(item, dict) else None
        if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
            return False
    return True


def _dom_5(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    for item in value.get("contained", ()):
        meta = item.get("meta") if isinstance(item, dict) else None
        if isinstance(meta, dict) and meta.get("security"):
            return False
    return True


def _dom_6(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    text = value.get("text")
    return isinstance(text, dict) and "div" in text


def _obs_3(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "low" in value or "high" in value or "text" in value


def _obs_6(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "dataAbsentReason" not in value or not _has_value_key(value)


def _obs_7(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    if not _has_value_key(value):
        return True
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not codings:
        return True
    for component in value.get("component", ()):
        ccode = component.get("code") if isinstance(component, dict) else None
        if isinstance(ccode, dict):
            for coding in ccode.get("coding", ()):
                if coding in codings:
                    return False
    return True


def _ppc(scope_code: str) -> NativeCheck:
    def check(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
        if "patient" in value:
            return True
        scope = value.get("scope")
        codings = scope.get("coding", ()) if isinstance(scope, dict) else ()
        # R4 4.0.1 publishes these with system='something' (a known error in the spec), so as written they
        # never fire on real consentscope codings; kept to the letter of the published expression.
        return not any(c.get("system") == "something" and c.get("code") == scope_code for c in codings)

    return check


def _ppc_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "policy" in value or "policyRule" in value


_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def _date_parts(text: str) -> tuple[int, ...] | None:
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    return tuple(int(g) for g in match.groups() if g is not None)


def _le(start: str, end: str) -> bool | None:
    """FHIRPath start <= end for two dateTime strings; None when the precisions make it undecidable."""
    if "T" in start and "T" in end:
        try:
            first = datetime.fromisoformat(start)
            second = datetime.fromisoformat(end)
            return first <= second
        except (ValueError, TypeError):
            return None
    first_parts = _date_parts(start.split("T")[0])
    second_parts = _date_parts(end.split("T")[0])
    if first_parts is None or second_parts is None:
        return None
    common = min(len(first_parts), len(second_parts))
    if first_parts[:common] != second_parts[:common]:
        return first_parts[:common] < second_parts[:common]
    if len(first_parts) == len(second_parts) and "T" not in start and "T" not in end:
        return True
    return None


def _per_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    start, end = value.get("start"), value.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    return _le(start, end) is not False


def _ref_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    reference = value.get("reference")
    if not isinstance(reference, str) or not reference.startswith("#"):
        return True
    return any(isinstance(c, dict) and c.get("id") == reference[1:] for c in root.get("contained", ()))


def _qty_3(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "code" not in value or "system" in value


def _sqty_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "comparator" not in value


def _att_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "data" not in value or "contentType" in value


def _cpt_2(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "value" not in value or "system" in value


def _org_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return bool(value.get("identifier")) or "name" in value


def _pat_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return any(k in value for k in ("name", "telecom", "address", "organization"))


def _inv_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    has_value, has_resource = _has_value_key(value), "resource" in value
    if value.get("part"):
        return not has_value and not has_resource
    return has_value != has_resource


def _bdl_5(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "resource" in value or "request" in value or "response" in value


def _bdl_8(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    full_url = value.get("fullUrl")
    return not isinstance(full_url, str) or "/_history/" not in full_url


def _bdl_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return "total" not in value or value.get("type") in ("searchset", "history")


def _bdl_2(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    return value.get("type") == "searchset" or not any(
        isinstance(e, dict) and "search" in e for e in value.get("entry", ())
    )


def _bdl_request_response(key: str, types: tuple[str, ...]) -> NativeCheck:
    def check(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
        wanted = resource.get("type") in types
        return all((key in e) == wanted for e in value.get("entry", ()) if isinstance(e, dict))

    return check


def _first_values(observation: dict[str, Any]) -> tuple[Any, Any]:
    """valueQuantity.value of the first days-absent and first days-in-membership components that have one."""
    absent = membership = None
    for component in observation.get("component", ()):
        if type(component) is not dict:
            continue
        quantity = component.get("valueQuantity")
        code = component.get("code")
        if type(quantity) is not dict or "value" not in quantity or type(code) is not dict:
            continue
        for coding in code.get("coding", ()):
            if type(coding) is dict and coding.get("system") == ATTENDANCE_CS:
                which = coding.get("code")
                if which == "days-absent" and absent is None:
                    absent = quantity["value"]
                elif which == "days-in-membership" and membership is None:
                    membership = quantity["value"]
        if absent is not None and membership is not None:
            break  # both found: later components change neither (ours: the first two of seven)
    return absent, membership


def _sis_att_1(value: Any, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    first, second = _first_values(value)
    if first is None or second is None:
        return True
    if not isinstance(first, int | float) or not isinstance(second, int | float):
        return True
    return bool(first <= second)


def _where_attendance_code(code: str) -> str:
    return f"component.where(code.coding.where(system = '{ATTENDANCE_CS}' and code = '{code}').exists())"


_ABSENT = _where_attendance_code("days-absent") + ".value.ofType(Quantity).value"
_MEMBERSHIP = _where_attendance_code("days-in-membership") + ".value.ofType(Quantity).value"


@dataclass(frozen=True, slots=True)
class Native:
    expression: str  # the published expression this check implements; a profile that redefines it falls back
    check: NativeCheck
    detail: Callable[[Any], str] | None = None  # what in the value breaks it, for the message (no patient data)


NATIVE: dict[str, Native] = {
    "ele-1": Native("hasValue() or (children().count() > id.count())", _ele_1),
    "ext-1": Native("extension.exists() != value.exists()", _ext_1),
    "dom-2": Native("contained.contained.empty()", _dom_2),
    "dom-3": Native(
        "contained.where((('#'+id in (%resource.descendants().reference "
        "| %resource.descendants().as(canonical) | %resource.descendants().as(uri) "
        "| %resource.descendants().as(url))) or descendants().where(reference = '#').exists() "
        "or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')"
        ".exists()).not()).trace('unmatched', id).empty()",
        _dom_3,
    ),
    "dom-4": Native("contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()", _dom_4),
    "dom-5": Native("contained.meta.security.empty()", _dom_5),
    "dom-6": Native("text.`div`.exists()", _dom_6),
    "obs-3": Native("low.exists() or high.exists() or text.exists()", _obs_3),
    "obs-6": Native("dataAbsentReason.empty() or value.empty()", _obs_6),
    "obs-7": Native(
        "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
        _obs_7,
    ),
    "ppc-1": Native("policy.exists() or policyRule.exists()", _ppc_1),
    "ppc-2": Native(
        "patient.exists() or scope.coding.where(system='something' and code='patient-privacy').exists().not()",
        _ppc("patient-privacy"),
    ),
    "ppc-3": Native(
        "patient.exists() or scope.coding.where(system='something' and code='research').exists().not()",
        _ppc("research"),
    ),
    "ppc-4": Native(
        "patient.exists() or scope.coding.where(system='something' and code='adr').exists().not()",
        _ppc("adr"),
    ),
    "ppc-5": Native(
        "patient.exists() or scope.coding.where(system='something' and code='treatment').exists().not()",
        _ppc("treatment"),
    ),
    "per-1": Native("start.hasValue().not() or end.hasValue().not() or (start <= end)", _per_1),
    "ref-1": Native(
        "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
        "%rootResource.contained.id.trace('ids'))",
        _ref_1,
    ),
    "qty-3": Native("code.empty() or system.exists()", _qty_3),
    "sqty-1": Native("comparator.empty()", _sqty_1),
    "att-1": Native("data.empty() or contentType.exists()", _att_1),
    "cpt-2": Native("value.empty() or system.exists()", _cpt_2),
    "org-1": Native("(identifier.count() + name.count()) > 0", _org_1),
    "pat-1": Native("name.exists() or telecom.exists() or address.exists() or organization.exists()", _pat_1),
    "inv-1": Native(
        "(part.exists() and value.empty() and resource.empty()) or (part.empty() and (value.exists() xor "
        "resource.exists()))",
        _inv_1,
    ),
    "bdl-1": Native("total.empty() or (type = 'searchset') or (type = 'history')", _bdl_1),
    "bdl-2": Native("entry.search.empty() or (type = 'searchset')", _bdl_2),
    "bdl-3": Native(
        "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' or "
        "%resource.type = 'history'))",
        _bdl_request_response("request", ("batch", "transaction", "history")),
    ),
    "bdl-4": Native(
        "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type = "
        "'transaction-response' or %resource.type = 'history'))",
        _bdl_request_response("response", ("batch-response", "transaction-response", "history")),
    ),
    "bdl-5": Native("resource.exists() or request.exists() or response.exists()", _bdl_5),
    "bdl-8": Native("fullUrl.contains('/_history/').not()", _bdl_8),
    # htmlChecks() is no FHIRPath function: fhirpathpy cannot evaluate it, so these run natively in every mode
    "txt-1": Native("htmlChecks()", txt_1, txt_1_detail),
    "txt-2": Native("htmlChecks()", txt_2),
    # profiles/input/fsh/SchoolAttendanceObservation.fsh
    "sis-att-1": Native(
        f"({_ABSENT}.exists() and {_MEMBERSHIP}.exists()) implies ({_ABSENT}.first() <= {_MEMBERSHIP}.first())",
        _sis_att_1,
    ),
}

# invariants no FHIRPath engine here implements (validate/narrative.py): native even when native=False
ALWAYS_NATIVE = frozenset({"txt-1", "txt-2"})


def _normalise(expression: str) -> str:
    return " ".join(expression.split())


def native_for(key: str, expression: str) -> Native | None:
    native = NATIVE.get(key)
    if native is not None and _normalise(native.expression) == _normalise(expression):
        return native
    return None
