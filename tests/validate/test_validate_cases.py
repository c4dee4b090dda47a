"""Valid resources and one broken variant per validation rule, shared by the tests of sis2fhir.validate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sis2fhir.terminology import (
    ATTENDANCE_CS,
    CONSENT_ACTION_CS,
    CONSENT_PROFILE,
    CONSENT_SCOPE_CS,
    MEASURES,
    OBSERVATION_CATEGORY_CS,
    OBSERVATION_PROFILE,
    RESOURCE_TYPES_CS,
    TIER_CS,
    TIERS,
    V3_ACT_CODE,
    V3_CONFIDENTIALITY,
    V3_OBSERVATION_INTERPRETATION,
    V3_PARTICIPATION_TYPE,
)
from tests.support import attendance_items, paths

EXAMPLES = paths.FIXTURES / "r4-examples"
Resource = dict[str, Any]


def example(name: str) -> Resource:
    return orjson.loads((EXAMPLES / name).read_bytes())


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# The valid resources are the real mapper's (tests/support/attendance_items.py: map/observation.py and
# map/consent.py over a measured summary and a consents.csv row); each broken variant changes one thing in them.
STUDENT = "S0000007"
# days absent of 100 in membership that give each tier under the default policy (ESSA: 10 % of days)
DAYS_ABSENT_FOR_TIER = {"satisfactory": 3, "at-risk": 7, "moderate-chronic": 12.5, "severe-chronic": 25}


# what every disclosed resource carries (FERPA 34 CFR 99.33)
SECURITY = [{"system": V3_CONFIDENTIALITY, "code": "R"}, {"system": V3_ACT_CODE, "code": "NORDSCLCD"}]
FLAG = {"moderate-chronic": "A", "severe-chronic": "A", "satisfactory": "N", "at-risk": "N"}


def attendance_observation(absent: float = 12.5, membership: int = 100, student: str = STUDENT) -> Resource:
    """The mapper's attendance summary for one student (all absences unexcused); tier from the default policy."""
    return attendance_items.attendance_observation(student, days_absent=absent, days_in_membership=membership)


def ferpa_consent(student: str = STUDENT) -> Resource:
    """The mapper's FERPA Consent for one student, from an active consents.csv row."""
    return attendance_items.ferpa_consent(student)


def _component_path(code: str) -> str:
    """Where the mapper puts the component of one measure (Observation.component[i])."""
    components = attendance_observation()["component"]
    index = next(i for i, c in enumerate(components) if c["code"]["coding"][0]["code"] == code)
    return f"Observation.component[{index}]"


@dataclass(frozen=True)
class Broken:
    """A valid resource, one change, and the issue a user should then see (rule id and FHIRPath location)."""

    name: str
    base: Callable[[], Resource]
    change: Callable[[Resource], None]
    rule: str
    expression: str
    severity: str = "error"
    # fhir.resources R4B checks structure, cardinality, choice and primitive formats: where it has an opinion
    # it must reject the same resource.
    r4b_rejects: bool = False
    # fhirpathpy gets this one wrong (why, in words); the cross-check then expects it to disagree
    fhirpathpy_wrong: str = ""

    def resource(self) -> Resource:
        resource = copy.deepcopy(self.base())
        self.change(resource)
        return resource


def glucose() -> Resource:
    return example("observation-example-f001-glucose.json")


def consent_core() -> Resource:
    return example("consent-example-notThis.json")


def patient() -> Resource:
    return example("patient-example.json")


def transaction() -> Resource:
    return example("bundle-transaction.json")


def _set(path: str, value: Any) -> Callable[[Resource], None]:
    def change(resource: Resource) -> None:
        *parents, last = path.split(".")
        target: Any = resource
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _drop(path: str) -> Callable[[Resource], None]:
    def change(resource: Resource) -> None:
        *parents, last = path.split(".")
        target: Any = resource
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            del target[int(last)]
        else:
            del target[last]

    return change


def _all(*changes: Callable[[Resource], None]) -> Callable[[Resource], None]:
    def change(resource: Resource) -> None:
        for one in changes:
            one(resource)

    return change


def _observation_component(resource: Resource, code: str) -> dict[str, Any]:
    return next(c for c in resource["component"] if c["code"]["coding"][0]["code"] == code)


CONTAINED_PATIENT = {"resourceType": "Patient", "id": "p1", "active": True}
UNKNOWN_EXTENSION = "http://example.org/fhir/StructureDefinition/do-not-disclose"
# A profile the validator does not ship (no US Core package loads offline here)
# A profile from elsewhere that the validator does not ship (it ships US Core Simple Observation and SDOHCC's).
FOREIGN_OBSERVATION_PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"


def _div(inner: str) -> str:
    return f'<div xmlns="http://www.w3.org/1999/xhtml">{inner}</div>'


BROKEN_CORE: list[Broken] = [
    # structure
    Broken(
        "unknown element",
        glucose,
        _set("colour", "red"),
        "unknown-element",
        "Observation.colour",
        r4b_rejects=True,
    ),
    Broken(
        "required element missing",
        glucose,
        _drop("status"),
        "cardinality",
        "Observation.status",
        r4b_rejects=True,
    ),
    Broken(
        "object where an array belongs",
        glucose,
        _set("identifier", {"value": "6323"}),
        "array",
        "Observation.identifier",
    ),
    Broken(
        "array where an object belongs",
        glucose,
        _set("subject", [{"reference": "Patient/f001"}]),
        "array",
        "Observation.subject",
        r4b_rejects=True,
    ),
    Broken(
        "two types of one choice",
        glucose,
        _set("valueString", "high"),
        "choice",
        "Observation.valueString",
        r4b_rejects=True,
    ),
    Broken("object expected", glucose, _set("code", "glucose"), "structure", "Observation.code", r4b_rejects=True),
    Broken("empty array", glucose, _set("identifier", []), "array", "Observation.identifier"),
    Broken("unknown resourceType", glucose, _set("resourceType", "Obsrvation"), "resourceType", "Obsrvation"),
    # primitive formats
    Broken(
        "instant without time",
        glucose,
        _set("issued", "2013-04-03"),
        "format",
        "Observation.issued",
        r4b_rejects=True,
    ),
    Broken("id with a space", glucose, _set("id", "f 001"), "format", "Observation.id", r4b_rejects=True),
    Broken(
        "impossible month",
        glucose,
        _set("effectivePeriod.start", "2013-13-03"),
        "format",
        "Observation.effectivePeriod.start",
        r4b_rejects=True,
    ),
    Broken(
        "decimal as a string",
        glucose,
        _set("valueQuantity.value", "6.3"),
        "format",
        "Observation.valueQuantity.value",
    ),
    Broken(
        "uri with a space",
        glucose,
        _set("code.coding.0.system", "http://loinc .org"),
        "format",
        "Observation.code.coding[0].system",
        r4b_rejects=False,  # fhir.resources R4B lets whitespace through in a uri
    ),
    Broken(
        "code with double space",
        glucose,
        _set("valueQuantity.code", "mmol  L"),
        "format",
        "Observation.valueQuantity.code",
        r4b_rejects=True,
    ),
    Broken("empty string", glucose, _set("code.text", ""), "format", "Observation.code.text"),
    Broken("boolean as a string", patient, _set("active", "true"), "format", "Patient.active"),
    Broken(
        "integer with a fraction",
        patient,
        _set("multipleBirthInteger", 1.5),
        "format",
        "Patient.multipleBirthInteger",
        r4b_rejects=True,
    ),
    Broken(
        "date with time",
        patient,
        _set("birthDate", "1974-12-25T10:00:00Z"),
        "format",
        "Patient.birthDate",
        r4b_rejects=True,
    ),
    # required bindings
    Broken("status not in ValueSet", glucose, _set("status", "done"), "binding", "Observation.status"),
    Broken("gender not in ValueSet", patient, _set("gender", "m"), "binding", "Patient.gender"),
    Broken(
        "comparator not in ValueSet",
        glucose,
        _set("valueQuantity.comparator", "~"),
        "binding",
        "Observation.valueQuantity.comparator",
    ),
    Broken("bundle type not in ValueSet", transaction, _set("type", "transactions"), "binding", "Bundle.type"),
    # references
    Broken(
        "subject is a Medication",
        glucose,
        _set("subject", {"reference": "Medication/m1"}),
        "reference-target",
        "Observation.subject.reference",
    ),
    Broken(
        "reference to no resource type",
        glucose,
        _set("subject", {"reference": "Pateint/f001"}),
        "reference",
        "Observation.subject.reference",
    ),
    Broken(
        "Reference.type outside the targets",
        glucose,
        _set("subject", {"type": "Medication", "identifier": {"value": "x"}}),
        "reference-target",
        "Observation.subject.type",
    ),
    # invariants
    Broken("ele-1 empty object", glucose, _set("code", {}), "ele-1", "Observation.code"),
    Broken("ele-1 object with only an id", glucose, _set("method", {"id": "m"}), "ele-1", "Observation.method"),
    Broken(
        "ext-1 extension without value",
        glucose,
        _set("extension", [{"url": "http://example.org/x"}]),
        "ext-1",
        "Observation.extension[0]",
    ),
    Broken(
        "dom-2 nested contained",
        glucose,
        _all(
            _set(
                "contained",
                [
                    {
                        **CONTAINED_PATIENT,
                        "contained": [{"resourceType": "Patient", "id": "p2", "active": True}],
                    }
                ],
            ),
            _set("subject", {"reference": "#p1"}),
        ),
        "dom-2",
        "Observation",
    ),
    Broken(
        "dom-3 contained not referenced",
        glucose,
        _set("contained", [CONTAINED_PATIENT]),
        "dom-3",
        "Observation",
    ),
    Broken(
        "dom-4 contained with versionId",
        glucose,
        _all(
            _set("contained", [{**CONTAINED_PATIENT, "meta": {"versionId": "2"}}]),
            _set("subject", {"reference": "#p1"}),
        ),
        "dom-4",
        "Observation",
    ),
    Broken(
        "dom-5 contained with security labels",
        glucose,
        _all(
            _set("contained", [{**CONTAINED_PATIENT, "meta": {"security": [{"code": "R"}]}}]),
            _set("subject", {"reference": "#p1"}),
        ),
        "dom-5",
        "Observation",
    ),
    Broken("dom-6 no narrative", glucose, _drop("text"), "dom-6", "Observation", severity="warning"),
    Broken(
        "obs-3 empty reference range",
        glucose,
        _set("referenceRange", [{"appliesTo": [{"text": "adults"}]}]),
        "obs-3",
        "Observation.referenceRange[0]",
    ),
    Broken(
        "obs-6 value and dataAbsentReason",
        glucose,
        _set("dataAbsentReason", {"text": "lost"}),
        "obs-6",
        "Observation",
    ),
    Broken(
        "obs-7 component repeats the code",
        glucose,
        lambda r: r.__setitem__("component", [{"code": r["code"], "valueQuantity": {"value": 1}}]),
        "obs-7",
        "Observation",
    ),
    Broken(
        "per-1 end before start",
        glucose,
        _set("effectivePeriod", {"start": "2013-04-02", "end": "2013-04-01"}),
        "per-1",
        "Observation.effectivePeriod",
    ),
    Broken(
        "per-1 end before start (times)",
        glucose,
        _set("effectivePeriod", {"start": "2013-04-02T10:00:00Z", "end": "2013-04-02T11:30:00+02:00"}),
        "per-1",
        "Observation.effectivePeriod",
        fhirpathpy_wrong="compares dateTimes read from a resource without their time zones",
    ),
    Broken(
        "ref-1 local reference to nothing",
        glucose,
        _set("subject", {"reference": "#p9"}),
        "ref-1",
        "Observation.subject",
    ),
    Broken(
        "qty-3 code without system",
        glucose,
        _drop("valueQuantity.system"),
        "qty-3",
        "Observation.valueQuantity",
    ),
    Broken(
        "sqty-1 comparator in a SimpleQuantity",
        glucose,
        _set("referenceRange", [{"low": {"value": 3.1, "comparator": ">", "unit": "mmol/l"}}]),
        "sqty-1",
        "Observation.referenceRange[0].low",
    ),
    Broken(
        "att-1 data without contentType",
        patient,
        _set("photo", [{"data": "aGVsbG8="}]),
        "att-1",
        "Patient.photo[0]",
    ),
    Broken(
        "cpt-2 telecom value without system",
        patient,
        _set("telecom", [{"value": "555-0100"}]),
        "cpt-2",
        "Patient.telecom[0]",
    ),
    Broken("pat-1 empty contact", patient, _set("contact", [{"gender": "female"}]), "pat-1", "Patient.contact[0]"),
    Broken(
        "org-1 organization without identifier or name",
        transaction,
        lambda r: r["entry"].append(
            {
                "fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
                "resource": {"resourceType": "Organization", "active": True},
                "request": {"method": "POST", "url": "Organization"},
            }
        ),
        "org-1",
        "Bundle.entry[10].resource",
    ),
    Broken("ppc-1 no policy", consent_core, _drop("policyRule"), "ppc-1", "Consent"),
    # R4 4.0.1 publishes ppc-2..5 against system 'something' (a defect of the spec): only that system fires.
    *[
        Broken(
            f"ppc-{n} scope {code} without patient",
            consent_core,
            _all(_drop("patient"), _set("scope", {"coding": [{"system": "something", "code": code}]})),
            f"ppc-{n}",
            "Consent",
        )
        for n, code in ((2, "patient-privacy"), (3, "research"), (4, "adr"), (5, "treatment"))
    ],
    Broken("bdl-1 total in a transaction", transaction, _set("total", 4), "bdl-1", "Bundle"),
    Broken(
        "bdl-2 search in a transaction",
        transaction,
        _set("entry.0.search", {"mode": "match"}),
        "bdl-2",
        "Bundle",
    ),
    Broken("bdl-3 transaction entry without request", transaction, _drop("entry.0.request"), "bdl-3", "Bundle"),
    Broken(
        "bdl-4 response in a transaction",
        transaction,
        _set("entry.0.response", {"status": "200"}),
        "bdl-4",
        "Bundle",
    ),
    Broken(
        "bdl-5 entry with nothing",
        transaction,
        lambda r: r["entry"].append({"fullUrl": "urn:uuid:5"}),
        "bdl-5",
        "Bundle.entry[10]",
    ),
    Broken(
        "bdl-8 fullUrl with a version",
        transaction,
        _set("entry.0.fullUrl", "http://example.org/fhir/Patient/1/_history/2"),
        "bdl-8",
        "Bundle.entry[0]",
    ),
    Broken(
        "inv-1 parameter with value and resource",
        lambda: {"resourceType": "Parameters", "parameter": [{"name": "p", "valueString": "x"}]},
        _set("parameter.0.resource", CONTAINED_PATIENT),
        "inv-1",
        "Parameters.parameter[0]",
    ),
    # an entry is validated as a resource of its own
    Broken(
        "bad entry inside a Bundle",
        transaction,
        _set("entry.0.resource.gender", "m"),
        "binding",
        "Bundle.entry[0].resource.gender",
    ),
    # calendar dates: the R4 regexes take any day 01-31 in any month
    Broken(
        "no 30 February in a Period",
        glucose,
        _set("effectivePeriod.start", "2025-02-30"),
        "format",
        "Observation.effectivePeriod.start",
        r4b_rejects=True,
    ),
    Broken(
        "no 29 February in 2023",
        patient,
        _set("birthDate", "2023-02-29"),
        "format",
        "Patient.birthDate",
        r4b_rejects=True,
    ),
    Broken(
        "no 31 April in an instant",
        glucose,
        _set("issued", "2025-04-31T10:00:00Z"),
        "format",
        "Observation.issued",
        r4b_rejects=True,
    ),
    # UCUM
    Broken(
        "unit code not UCUM",
        glucose,
        _set("valueQuantity.code", "mmol/liter"),
        "ucum",
        "Observation.valueQuantity.code",
    ),
    Broken(
        "reference range unit not UCUM",
        glucose,
        _set("referenceRange.0.low.code", "millimole/L"),
        "ucum",
        "Observation.referenceRange[0].low.code",
    ),
    # modifier extensions
    Broken(
        "unknown modifier extension",
        glucose,
        _set("modifierExtension", [{"url": UNKNOWN_EXTENSION, "valueBoolean": True}]),
        "modifier-extension",
        "Observation.modifierExtension[0]",
    ),
    Broken(
        "unknown modifier extension in a backbone element",
        glucose,
        _set("referenceRange.0.modifierExtension", [{"url": UNKNOWN_EXTENSION, "valueCode": "ignore-me"}]),
        "modifier-extension",
        "Observation.referenceRange[0].modifierExtension[0]",
    ),
    # narrative (txt-1, txt-2, and the xhtml itself)
    Broken(
        "txt-1 script in the narrative",
        glucose,
        _set("text.div", _div("<p>ok</p><script>x()</script>")),
        "txt-1",
        "Observation.text.div",
    ),
    Broken(
        "txt-1 event attribute", patient, _set("text.div", _div('<p onclick="x()">ok</p>')), "txt-1", "Patient.text.div"
    ),
    Broken(
        "txt-1 javascript link",
        glucose,
        _set("text.div", _div('<a href=" JavaScript:x()">chart</a>')),
        "txt-1",
        "Observation.text.div",
    ),
    Broken("txt-1 form", consent_core, _set("text.div", _div("<form><p>sign</p></form>")), "txt-1", "Consent.text.div"),
    Broken("txt-2 blank narrative", glucose, _set("text.div", _div(" <p> </p> ")), "txt-2", "Observation.text.div"),
    Broken(
        "narrative not well-formed",
        glucose,
        _set("text.div", _div("<p>a &nbsp; b</p>")),
        "format",
        "Observation.text.div",
    ),
    Broken(
        "narrative outside the XHTML namespace",
        glucose,
        _set("text.div", "<div><p>ok</p></div>"),
        "format",
        "Observation.text.div",
    ),
    # meta.profile
    Broken(
        "claims a sis2fhir profile that does not exist",
        glucose,
        _set("meta", {"profile": [OBSERVATION_PROFILE + "-v2"]}),
        "profile",
        "Observation.meta.profile[0]",
    ),
    Broken(
        "claims a profile from elsewhere",
        glucose,
        _set("meta", {"profile": [FOREIGN_OBSERVATION_PROFILE]}),
        "profile",
        "Observation.meta.profile[0]",
        severity="warning",
    ),
]


def _tier(resource: Resource, code: str) -> None:
    _observation_component(resource, "chronic-absence-tier")["valueCodeableConcept"] = _coded(TIER_CS, code)


BROKEN_PROFILE: list[Broken] = [
    Broken(
        "sdoh category missing",
        attendance_observation,
        _drop("category.1"),
        "slice-cardinality",
        "Observation.category",
    ),
    Broken(
        "social-history category is another code",
        attendance_observation,
        _set("category.0", _coded(OBSERVATION_CATEGORY_CS, "survey")),
        "slice-cardinality",
        "Observation.category",
    ),
    Broken(
        "code is not attendance-summary",
        attendance_observation,
        _set("code", _coded(ATTENDANCE_CS, "days-absent")),
        "pattern",
        "Observation.code",
    ),
    Broken(
        "days-absent component missing",
        attendance_observation,
        lambda r: r["component"].remove(_observation_component(r, "days-absent")),
        "slice-cardinality",
        "Observation.component",
    ),
    Broken(
        "days counted in hours",
        attendance_observation,
        lambda r: _observation_component(r, "days-absent")["valueQuantity"].update(code="h", unit="h"),
        "pattern",
        _component_path("days-absent") + ".valueQuantity",
    ),
    Broken(
        "component days without a value",
        attendance_observation,
        lambda r: _observation_component(r, "days-absent-oss")["valueQuantity"].pop("value"),
        "cardinality",
        _component_path("days-absent-oss") + ".valueQuantity.value",
    ),
    Broken(
        "rate not in percent",
        attendance_observation,
        _set("valueQuantity.code", "d"),
        "pattern",
        "Observation.valueQuantity.code",
    ),
    Broken(
        "tier code not in the ValueSet",
        attendance_observation,
        _set("interpretation.0", _coded(TIER_CS, "chronic")),
        "binding",
        "Observation.interpretation[0]",
    ),
    Broken(
        "v3 flag not in the ValueSet",
        attendance_observation,
        _set("interpretation.1", _coded(V3_OBSERVATION_INTERPRETATION, "H")),
        "binding",
        "Observation.interpretation[1]",
    ),
    Broken(
        "interpretation from another system",
        attendance_observation,
        _set("interpretation.1", _coded("http://example.org/flags", "A")),
        "slice",
        "Observation.interpretation[1]",
    ),
    Broken(
        "tier missing, only the v3 flag",
        attendance_observation,
        _drop("interpretation.0"),
        "slice-cardinality",
        "Observation.interpretation",
    ),
    Broken("no policy as method", attendance_observation, _drop("method"), "cardinality", "Observation.method"),
    Broken(
        "policy without its thresholds",
        attendance_observation,
        _drop("method.text"),
        "cardinality",
        "Observation.method.text",
    ),
    Broken(
        "policy code unknown",
        attendance_observation,
        _set("method.coding.0.code", "ten-percent"),
        "binding",
        "Observation.method",
    ),
    Broken("no issued", attendance_observation, _drop("issued"), "cardinality", "Observation.issued"),
    Broken(
        "no redisclosure label missing",
        attendance_observation,
        _drop("meta.security.1"),
        "slice-cardinality",
        "Observation.meta.security",
    ),
    Broken(
        "confidentiality normal, not restricted",
        ferpa_consent,
        _set("meta.security.0", {"system": V3_CONFIDENTIALITY, "code": "N"}),
        "slice-cardinality",
        "Consent.meta.security",
    ),
    Broken("consent without its source", ferpa_consent, _drop("sourceAttachment"), "cardinality", "Consent.source"),
    Broken(
        "consent source without its signing date",
        ferpa_consent,
        _drop("sourceAttachment.creation"),
        "cardinality",
        "Consent.sourceAttachment.creation",
    ),
    Broken(
        "tier component not in the ValueSet",
        attendance_observation,
        lambda r: _tier(r, "very-bad"),
        "binding",
        _component_path("chronic-absence-tier") + ".valueCodeableConcept",
    ),
    Broken(
        "two performers",
        attendance_observation,
        lambda r: r["performer"].append({"reference": "Organization/sch-2"}),
        "cardinality",
        "Observation.performer",
    ),
    Broken("no identifier", attendance_observation, _drop("identifier"), "cardinality", "Observation.identifier"),
    Broken(
        "period without end",
        attendance_observation,
        _drop("effectivePeriod.end"),
        "cardinality",
        "Observation.effectivePeriod.end",
    ),
    Broken(
        "sis-att-1 more absences than membership",
        attendance_observation,
        lambda r: _observation_component(r, "days-absent")["valueQuantity"].update(value=100.5),
        "sis-att-1",
        "Observation",
    ),
    Broken(
        "IRCP recipient missing",
        ferpa_consent,
        _set("provision.actor.0.role", _coded(V3_PARTICIPATION_TYPE, "CST")),
        "slice-cardinality",
        "Consent.provision.actor",
    ),
    Broken(
        "policy is not FERPA",
        ferpa_consent,
        _set("policy.0.uri", "https://www.hhs.gov/hipaa"),
        "fixed",
        "Consent.policy[0].uri",
    ),
    Broken(
        "scope is research",
        ferpa_consent,
        _set("scope", _coded(CONSENT_SCOPE_CS, "research")),
        "pattern",
        "Consent.scope",
    ),
    Broken(
        "disclose action missing",
        ferpa_consent,
        _set("provision.action", [_coded(CONSENT_ACTION_CS, "access")]),
        "slice-cardinality",
        "Consent.provision.action",
    ),
    Broken(
        "data class is not Observation",
        ferpa_consent,
        _set("provision.class", [{"system": RESOURCE_TYPES_CS, "code": "Patient"}]),
        "slice-cardinality",
        "Consent.provision.class",
    ),
    Broken(
        "provision code not an attendance measure",
        ferpa_consent,
        _set("provision.code.0", _coded(ATTENDANCE_CS, "grades")),
        "binding",
        "Consent.provision.code[0]",
    ),
    Broken("IDSCL category missing", ferpa_consent, _drop("category.1"), "slice-cardinality", "Consent.category"),
    Broken("no parent or guardian", ferpa_consent, _drop("performer"), "cardinality", "Consent.performer"),
    Broken("consent status not in ValueSet", ferpa_consent, _set("status", "signed"), "binding", "Consent.status"),
    Broken(
        "provision without period",
        ferpa_consent,
        _drop("provision.period"),
        "cardinality",
        "Consent.provision.period",
    ),
    Broken(
        "days absent in 'days'",
        attendance_observation,
        lambda r: _observation_component(r, "days-absent")["valueQuantity"].update(code="days"),
        "ucum",
        _component_path("days-absent") + ".valueQuantity.code",
    ),
    Broken(
        "period ends on 30 February",
        attendance_observation,
        _set("effectivePeriod.end", "2026-02-30"),
        "format",
        "Observation.effectivePeriod.end",
    ),
    Broken(
        "consent ends on 31 June",
        ferpa_consent,
        _set("provision.period.end", "2026-06-31"),
        "format",
        "Consent.provision.period.end",
    ),
    Broken(
        "narrative with an iframe",
        attendance_observation,
        lambda r: r["text"].update(div=_div('<p>see</p><iframe src="https://example.org"/>')),
        "txt-1",
        "Observation.text.div",
    ),
    Broken(
        "a second sis2fhir profile that does not exist",
        ferpa_consent,
        # the mapper claims ours and SDOHCC Consent ([0], [1])
        lambda r: r["meta"]["profile"].append(CONSENT_PROFILE.replace("ferpa", "fepra")),
        "profile",
        "Consent.meta.profile[2]",
    ),
    Broken(
        "another foreign profile claimed beside ours and US Core's",
        attendance_observation,
        # The mapper already claims ours, US Core Simple Observation and SDOHCC Observation Assessment ([0..2]).
        lambda r: r["meta"]["profile"].append(FOREIGN_OBSERVATION_PROFILE),
        "profile",
        "Observation.meta.profile[3]",
        severity="warning",
    ),
    Broken(
        "unknown modifier extension on a component",
        attendance_observation,
        lambda r: _observation_component(r, "days-absent").update(
            modifierExtension=[{"url": UNKNOWN_EXTENSION, "valueBoolean": True}]
        ),
        "modifier-extension",
        _component_path("days-absent") + ".modifierExtension[0]",
    ),
]

VALID_PROFILE: dict[str, Callable[[], Resource]] = {
    **{
        f"attendance observation, tier {tier}": (lambda absent=absent: attendance_observation(absent=absent))  # type: ignore[misc]
        for tier, absent in DAYS_ABSENT_FOR_TIER.items()
    },
    "attendance observation, tier insufficient-data": lambda: attendance_observation(absent=1, membership=5),
    "attendance observation, half days": lambda: attendance_observation(absent=12.5, membership=140),
    "ferpa consent": ferpa_consent,
}
CORE_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.json"))


def test_every_measure_code_is_in_the_attendance_observation() -> None:
    codes = {c["code"]["coding"][0]["code"] for c in attendance_observation()["component"]}
    assert codes == set(MEASURES)


def test_the_valid_observations_cover_every_tier() -> None:
    tiers = {_tier_of(build()) for name, build in VALID_PROFILE.items() if name.startswith("attendance observation")}
    assert tiers == set(TIERS)


def _tier_of(observation: Resource) -> str:
    tier = _observation_component(observation, "chronic-absence-tier")["valueCodeableConcept"]
    return str(tier["coding"][0]["code"])
