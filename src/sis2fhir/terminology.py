"""Canonical URLs and codes: the one place where sis2fhir's own terminology and the external codes it uses are named.

The FSH sources in profiles/ define the same codes; tests/map/test_profiles.py checks that the two agree.
"""

from __future__ import annotations

from typing import Final

CANONICAL: Final = "http://sis2fhir.org/fhir"

# Our profiles
OBSERVATION_PROFILE: Final = f"{CANONICAL}/StructureDefinition/school-attendance-observation"
CONSENT_PROFILE: Final = f"{CANONICAL}/StructureDefinition/ferpa-attendance-consent"

# Our code systems
ATTENDANCE_CS: Final = f"{CANONICAL}/CodeSystem/school-attendance"
TIER_CS: Final = f"{CANONICAL}/CodeSystem/chronic-absence-tier"
ABSENCE_REASON_CS: Final = f"{CANONICAL}/CodeSystem/absence-reason"
VALIDATION_RULE_CS: Final = f"{CANONICAL}/CodeSystem/validation-rule"  # rule ids in OperationOutcome.issue.details

# Our value sets
ATTENDANCE_MEASURE_VS: Final = f"{CANONICAL}/ValueSet/attendance-measure"
TIER_VS: Final = f"{CANONICAL}/ValueSet/chronic-absence-tier"
ABSENCE_REASON_VS: Final = f"{CANONICAL}/ValueSet/absence-reason"

# Codes of the attendance CodeSystem: Observation.code and component codes.
ATTENDANCE_SUMMARY: Final = "attendance-summary"
MEASURES: Final[dict[str, str]] = {
    "days-in-membership": "Days in membership, school year to date",
    "days-absent": "Days absent, school year to date",
    "days-absent-excused": "Days absent, excused",
    "days-absent-unexcused": "Days absent, unexcused",
    "days-absent-illness": "Days absent for illness or medical reasons",
    "days-absent-oss": "Days absent for out-of-school suspension",
    "chronic-absence-tier": "Chronic absence tier",
}
ATTENDANCE_DISPLAY: Final[dict[str, str]] = {
    ATTENDANCE_SUMMARY: "School attendance summary, school year to date",
    **MEASURES,
}

TIERS: Final[dict[str, str]] = {
    "satisfactory": "Satisfactory attendance",
    "at-risk": "At risk of chronic absence",
    "moderate-chronic": "Moderate chronic absence",
    "severe-chronic": "Severe chronic absence",
    "insufficient-data": "Insufficient data (too few days in membership)",
}
CHRONIC_TIERS: Final = frozenset({"moderate-chronic", "severe-chronic"})

ABSENCE_REASONS: Final[dict[str, str]] = {
    "illness": "Illness",
    "medical": "Medical appointment or treatment",
    "mental-health": "Mental health",
    "suspension-out-of-school": "Out-of-school suspension",
    "suspension-in-school": "In-school suspension",
    "transportation": "Transportation",
    "family": "Family reasons",
    "religious": "Religious observance",
    "unknown": "Unknown or not recorded",
}

# External code systems
OBSERVATION_CATEGORY_CS: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
US_CORE_CATEGORY_CS: Final = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
UCUM: Final = "http://unitsofmeasure.org"
DATA_ABSENT_REASON_CS: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
LOINC: Final = "http://loinc.org"
CONSENT_SCOPE_CS: Final = "http://terminology.hl7.org/CodeSystem/consentscope"
V3_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CONSENT_ACTION_CS: Final = "http://terminology.hl7.org/CodeSystem/consentaction"
RESOURCE_TYPES_CS: Final = "http://hl7.org/fhir/resource-types"
IDENTIFIER_TYPE_CS: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
NPI_SYSTEM: Final = "http://hl7.org/fhir/sid/us-npi"
ORGANIZATION_TYPE_CS: Final = "http://terminology.hl7.org/CodeSystem/organization-type"
ORGANIZATION_TYPE_EDU: Final = ("edu", "Educational Institute")  # schools and the district (LEA)

# OneRoster demographics.csv `sex` (1.1: male | female; 1.2 adds other | unspecified) -> R4 AdministrativeGender
ONEROSTER_SEX_TO_GENDER: Final[dict[str, str]] = {
    "male": "male",
    "female": "female",
    "other": "other",
    "unspecified": "unknown",
}

FERPA_POLICY_URI: Final = "https://www.ecfr.gov/current/title-34/subtitle-A/part-99"
FERPA_AUTHORITY: Final = "https://studentprivacy.ed.gov"
LOINC_PATIENT_CONSENT: Final = "59284-0"
LOINC_SCHOOL_DAYS_MISSED_ILLNESS: Final = "96314-0"

# Consent purposes (consents.csv `purpose`) -> v3-ActReason
PURPOSE_TO_ACT_REASON: Final[dict[str, tuple[str, str]]] = {
    "treatment-and-care-coordination": ("TREAT", "treatment"),
    "treatment": ("TREAT", "treatment"),
    "care-management": ("CAREMGT", "care management"),
    "care-coordination": ("CAREMGT", "care management"),
    "public-health": ("PUBHLTH", "public health"),
}
