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
    FERPA_AUTHORITY,
    FERPA_POLICY_URI,
    LOINC,
    LOINC_PATIENT_CONSENT,
    MEASURES,
    OBSERVATION_CATEGORY_CS,
    OBSERVATION_PROFILE,
    POLICY_CS,
    RESOURCE_TYPES_CS,
    TIER_CS,
    TIERS,
    UCUM,
    US_CORE_CATEGORY_CS,
    V3_ACT_CODE,
    V3_ACT_REASON,
    V3_CONFIDENTIALITY,
    V3_OBSERVATION_INTERPRETATION,
    V3_PARTICIPATION_TYPE,
)
from tests.support import paths

EXAMPLES = paths.FIXTURES / "r4-examples"
Resource = dict[str, Any]


def example(name: str) -> Resource:
    return orjson.loads((EXAMPLES / name).read_bytes())


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _days(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "d", "system": UCUM, "code": "d"}


# what every disclosed resource carries (FERPA 34 CFR 99.33)
SECURITY = [{"system": V3_CONFIDENTIALITY, "code": "R"}, {"system": V3_ACT_CODE, "code": "NORDSCLCD"}]
FLAG = {"moderate-chronic": "A", "severe-chronic": "A", "satisfactory": "N", "at-risk": "N"}


def attendance_observation(absent: float = 12.5, membership: float = 100, tier: str = "moderate-chronic") -> Resource:
    """A school attendance summary as our profile wants it (written here, not copied from the FSH example)."""
    counts = {
        "days-in-membership": membership,
        "days-absent": absent,
        "days-absent-excused": 8,
        "days-absent-unexcused": absent - 8,
        "days-absent-illness": 5,
        "days-absent-oss": 0,
    }
    components: list[dict[str, Any]] = [
        {"code": _coded(ATTENDANCE_CS, code), "valueQuantity": _days(value)} for code, value in counts.items()
    ]
    components.append(
        {"code": _coded(ATTENDANCE_CS, "chronic-absence-tier"), "valueCodeableConcept": _coded(TIER_CS, tier)}
    )
    return {
        "resourceType": "Observation",
        "id": "att-stu-7",
        "meta": {"profile": [OBSERVATION_PROFILE], "security": copy.deepcopy(SECURITY)},
        "identifier": [{"system": "http://sis2fhir.org/fhir/sid/attendance-summary", "value": "lea|sch-1|stu-7|2025"}],
        "status": "preliminary",
        "category": [_coded(OBSERVATION_CATEGORY_CS, "social-history"), _coded(US_CORE_CATEGORY_CS, "sdoh")],
        "code": _coded(ATTENDANCE_CS, "attendance-summary"),
        "subject": {"reference": "Patient/stu-7"},
        "effectivePeriod": {"start": "2025-08-25", "end": "2026-02-27"},
        "issued": "2026-02-28T06:00:00Z",
        "performer": [{"reference": "Organization/sch-1", "display": "Lincoln Elementary"}],
        "valueQuantity": {
            "value": round(100 * absent / membership, 1),
            "unit": "%",
            "system": UCUM,
            "code": "%",
        },
        "interpretation": [_coded(TIER_CS, tier)]
        + ([_coded(V3_OBSERVATION_INTERPRETATION, FLAG[tier])] if tier in FLAG else []),
        "method": {**_coded(POLICY_CS, "essa-10-percent"), "text": "Chronic at >= 10 % of days in membership"},
        "component": components,
    }


def ferpa_consent() -> Resource:
    return {
        "resourceType": "Consent",
        "id": "consent-stu-7",
        "meta": {"profile": [CONSENT_PROFILE], "security": copy.deepcopy(SECURITY)},
        "status": "active",
        "scope": _coded(CONSENT_SCOPE_CS, "patient-privacy"),
        "category": [_coded(LOINC, LOINC_PATIENT_CONSENT), _coded(V3_ACT_CODE, "IDSCL")],
        "patient": {"reference": "Patient/stu-7"},
        "dateTime": "2025-08-20T14:03:00Z",
        "performer": [{"reference": "RelatedPerson/parent-7"}],
        "organization": [{"reference": "Organization/lea-1"}],
        "sourceAttachment": {
            "contentType": "application/pdf",
            "url": "https://sis.example.org/consents/7.pdf",
            "title": "Signed FERPA consent form",
            "creation": "2025-08-20",
        },
        "policy": [{"authority": FERPA_AUTHORITY, "uri": FERPA_POLICY_URI}],
        "provision": {
            "type": "permit",
            "period": {"start": "2025-08-20", "end": "2026-06-30"},
            "actor": [
                {
                    "role": _coded(V3_PARTICIPATION_TYPE, "IRCP"),
                    "reference": {"reference": "Organization/peds-clinic"},
                }
            ],
            "action": [_coded(CONSENT_ACTION_CS, "disclose")],
            "purpose": [{"system": V3_ACT_REASON, "code": "TREAT"}],
            "class": [{"system": RESOURCE_TYPES_CS, "code": "Observation"}],
            "code": [_coded(ATTENDANCE_CS, "days-absent")],
        },
    }


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
        "Observation.component[1].valueQuantity",
    ),
    Broken(
        "component days without a value",
        attendance_observation,
        lambda r: _observation_component(r, "days-absent-oss")["valueQuantity"].pop("value"),
        "cardinality",
        "Observation.component[5].valueQuantity.value",
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
        "Observation.component[6].valueCodeableConcept",
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
]

VALID_PROFILE: dict[str, Callable[[], Resource]] = {
    "attendance observation, moderate chronic": attendance_observation,
    "attendance observation, satisfactory": lambda: attendance_observation(
        absent=9, membership=100, tier="satisfactory"
    ),
    **{
        f"attendance observation, tier {tier}": (lambda tier=tier: attendance_observation(tier=tier))  # type: ignore[misc]
        for tier in map(str, TIERS)
    },
    "ferpa consent": ferpa_consent,
}
CORE_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.json"))


def test_every_measure_code_is_in_the_attendance_observation() -> None:
    codes = {c["code"]["coding"][0]["code"] for c in attendance_observation()["component"]}
    assert codes == set(MEASURES)
