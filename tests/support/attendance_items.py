"""Hand-made delivery items shaped like the project's profiles: an attendance Observation, a FERPA Consent."""

from __future__ import annotations

import uuid
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.deliver.base import DeliveryItem

STATE_ID_SYSTEM = "urn:oid:2.16.840.1.113883.4.999.27"  # made up for tests
OBSERVATION_ID_SYSTEM = f"{t.CANONICAL}/sid/attendance-observation"
CONSENT_ID_SYSTEM = f"{t.CANONICAL}/sid/consent"
RECIPIENT = "peds-clinic-1"


def new_state_id() -> str:
    return f"S{uuid.uuid4().hex[:10].upper()}"


def student_reference(state_id: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": STATE_ID_SYSTEM, "value": state_id}}


def attendance_observation(state_id: str, days_absent: float = 3, days_in_membership: float = 80) -> dict[str, Any]:
    def measure(code: str, days: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": t.ATTENDANCE_CS, "code": code, "display": t.MEASURES[code]}]},
            "valueQuantity": {"value": days, "unit": "d", "system": t.UCUM, "code": "d"},
        }

    return {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [t.OBSERVATION_PROFILE]},
        "identifier": [{"system": OBSERVATION_ID_SYSTEM, "value": f"{state_id}-2026-summary"}],
        "status": "final",
        "category": [
            {"coding": [{"system": t.OBSERVATION_CATEGORY_CS, "code": "social-history"}]},
            {"coding": [{"system": t.US_CORE_CATEGORY_CS, "code": "sdoh"}]},
        ],
        "code": {"coding": [{"system": t.ATTENDANCE_CS, "code": t.ATTENDANCE_SUMMARY}]},
        "subject": student_reference(state_id),
        "effectivePeriod": {"start": "2025-08-20", "end": "2026-01-16"},
        "valueQuantity": {"value": days_absent, "unit": "d", "system": t.UCUM, "code": "d"},
        "component": [measure("days-absent", days_absent), measure("days-in-membership", days_in_membership)],
    }


def ferpa_consent(state_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "meta": {"profile": [t.CONSENT_PROFILE]},
        "identifier": [{"system": CONSENT_ID_SYSTEM, "value": f"C-{state_id}"}],
        "status": "active",
        "scope": {"coding": [{"system": t.CONSENT_SCOPE_CS, "code": "patient-privacy"}]},
        "category": [
            {"coding": [{"system": t.LOINC, "code": t.LOINC_PATIENT_CONSENT}]},
            {"coding": [{"system": t.V3_ACT_CODE, "code": "IDSCL"}]},
        ],
        "patient": student_reference(state_id),
        "dateTime": "2025-08-20T14:03:00Z",
        "policy": [{"authority": t.FERPA_AUTHORITY, "uri": t.FERPA_POLICY_URI}],
        "provision": {
            "type": "permit",
            "period": {"start": "2025-08-20", "end": "2026-06-30"},
            "action": [{"coding": [{"system": t.CONSENT_ACTION_CS, "code": "disclose"}]}],
            "purpose": [{"system": t.V3_ACT_REASON, "code": "TREAT"}],
            "class": [{"system": t.RESOURCE_TYPES_CS, "code": "Observation"}],
        },
    }


def delivery_item(state_id: str, **observation: Any) -> DeliveryItem:
    return DeliveryItem(
        key=f"{RECIPIENT}:{state_id}:2026",
        recipient=RECIPIENT,
        student_sourced_id=f"u-{state_id}",
        state_student_id=state_id,
        consent_id=f"C-{state_id}",
        resources=[attendance_observation(state_id, **observation), ferpa_consent(state_id)],
    )
