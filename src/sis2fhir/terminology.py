"""Canonical URLs and codes: the one place where sis2fhir's own terminology and the external codes it uses are named.

The FSH sources in profiles/ define the same codes; tests/map/test_profiles.py checks that the two agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

CANONICAL: Final = "http://sis2fhir.org/fhir"

# Our profiles
OBSERVATION_PROFILE: Final = f"{CANONICAL}/StructureDefinition/school-attendance-observation"
CONSENT_PROFILE: Final = f"{CANONICAL}/StructureDefinition/ferpa-attendance-consent"

# Profiles of others that our resources also claim (src/sis2fhir/map/profiles.py says when; docs/conformance.md).
# Their packages do not load offline: the validator does not bundle them; tests/conformance/ checks our output
# against copies of their definitions (tests/fixtures/us-core/SOURCES.md: US Core 7.0.0, SDOHCC 3.0.0).
US_CORE_SIMPLE_OBSERVATION_PROFILE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-simple-observation"
SDOHCC_OBSERVATION_ASSESSMENT_PROFILE: Final = (
    "http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-ObservationAssessment"
)
SDOHCC_CONSENT_PROFILE: Final = "http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-Consent"

# Our code systems
ATTENDANCE_CS: Final = f"{CANONICAL}/CodeSystem/school-attendance"
TIER_CS: Final = f"{CANONICAL}/CodeSystem/chronic-absence-tier"
ABSENCE_REASON_CS: Final = f"{CANONICAL}/CodeSystem/absence-reason"
POLICY_CS: Final = f"{CANONICAL}/CodeSystem/chronic-absence-policy"  # Observation.method: the policy applied
VALIDATION_RULE_CS: Final = f"{CANONICAL}/CodeSystem/validation-rule"  # rule ids in OperationOutcome.issue.details

# Our value sets
ATTENDANCE_MEASURE_VS: Final = f"{CANONICAL}/ValueSet/attendance-measure"
TIER_VS: Final = f"{CANONICAL}/ValueSet/chronic-absence-tier"
ABSENCE_REASON_VS: Final = f"{CANONICAL}/ValueSet/absence-reason"
POLICY_VS: Final = f"{CANONICAL}/ValueSet/chronic-absence-policy"
ABSENCE_FLAG_VS: Final = f"{CANONICAL}/ValueSet/absence-flag"  # the v3 A/N flag beside the tier

# Codes of the attendance CodeSystem: Observation.code and component codes.
# The code stays `attendance-summary` (receivers key on it); its display and the code's text say what the value
# is, the ABSENCE rate, so that a results grid showing "3.13 %" is not read as 3 % attendance. HL7 v2 OBX-3 uses
# the same two: ABSENCE_RATE_DISPLAY as the text of the coded element, ABSENCE_RATE_TEXT where a longer text fits.
ATTENDANCE_SUMMARY: Final = "attendance-summary"
ABSENCE_RATE_DISPLAY: Final = "Absence rate, school year to date"
ABSENCE_RATE_TEXT: Final = "School absence rate (days absent as % of days in membership), school year to date"
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
    ATTENDANCE_SUMMARY: ABSENCE_RATE_DISPLAY,
    **MEASURES,
}


class Tier(StrEnum):
    """The chronic absence tiers (codes of TIER_CS). A StrEnum: each equals its code as a plain string."""

    SATISFACTORY = "satisfactory"
    AT_RISK = "at-risk"
    MODERATE_CHRONIC = "moderate-chronic"
    SEVERE_CHRONIC = "severe-chronic"
    INSUFFICIENT_DATA = "insufficient-data"


TIERS: Final[dict[str, str]] = {
    Tier.SATISFACTORY: "Satisfactory attendance",
    Tier.AT_RISK: "At risk of chronic absence",
    Tier.MODERATE_CHRONIC: "Moderate chronic absence",
    Tier.SEVERE_CHRONIC: "Severe chronic absence",
    Tier.INSUFFICIENT_DATA: "Insufficient data (too few days in membership)",
}
CHRONIC_TIERS: Final = frozenset({Tier.MODERATE_CHRONIC, Tier.SEVERE_CHRONIC})

# HL7 v3 ObservationInterpretation beside the tier, so that EHRs which flag abnormal results flag chronic absence:
# A for the chronic tiers, N for satisfactory and at risk; none for insufficient data (neither normal nor abnormal:
# the policy gives no tier, and a flag would claim more than the data says).
V3_OBSERVATION_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATION_FLAGS: Final[dict[str, str]] = {"A": "Abnormal", "N": "Normal"}
TIER_FLAG: Final[dict[str, str]] = {
    Tier.SATISFACTORY: "N",
    Tier.AT_RISK: "N",
    Tier.MODERATE_CHRONIC: "A",
    Tier.SEVERE_CHRONIC: "A",
}

# Codes of the chronic-absence-policy CodeSystem (Observation.method): which rule made the tier.
POLICY_ESSA: Final = "essa-10-percent"
POLICY_CRDC: Final = "crdc-15-days"
POLICY_CUSTOM: Final = "custom"
POLICIES: Final[dict[str, str]] = {
    POLICY_ESSA: "ESSA: chronically absent at 10 % or more of days in membership",
    POLICY_CRDC: "CRDC: chronically absent on 15 or more school days",
    POLICY_CUSTOM: "District policy (thresholds in the text)",
}

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
V3_CONFIDENTIALITY: Final = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
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

# The population measure (`sis2fhir population`, `sis2fhir evaluate`; profiles/input/fsh/ChronicAbsenceMeasure.fsh)
CHRONIC_ABSENCE_MEASURE: Final = f"{CANONICAL}/Measure/chronic-absence"
POPULATION_CS: Final = f"{CANONICAL}/CodeSystem/population-measure"
POPULATION_CODES: Final[dict[str, str]] = {
    "chronic-absence": "Chronic absence",
    "school": "School",
    "grade": "Grade",
    "month": "Month",
    "period": "Evaluation period",
    "before": "Before the program start",
    "after": "After the program start",
}
MEASURE_POPULATION_CS: Final = "http://terminology.hl7.org/CodeSystem/measure-population"
