"""A parent's FERPA consent (consents.csv row) as a ferpa-attendance-consent Consent (profiles/)."""

from __future__ import annotations

import html
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.config import DistrictSettings
from sis2fhir.map.identity import (
    district_reference,
    identifier,
    organization_reference,
    resource_id,
    student_reference,
)
from sis2fhir.records import ConsentRecord, District, Student

# consents.csv status -> Consent.status (R4 consent-state-codes)
_STATUS = {"active": "active", "revoked": "inactive", "declined": "rejected"}


def consent_identifier(consent: ConsentRecord, district: DistrictSettings) -> dict[str, Any]:
    return identifier(district.system("consent"), consent.consent_id)


def ferpa_consent(
    consent: ConsentRecord,
    student: Student,
    district_org: District | None,
    district: DistrictSettings,
    recipient_system: str = t.NPI_SYSTEM,
    literal: bool = False,
) -> dict[str, Any]:
    """`literal`: the patient, the custodian and the recipient also say `Patient/<id>` and `Organization/<id>`
    (the ids map/patient.py and map/organization.py give), for a set that carries them (a Bulk NDJSON folder)."""
    ident = consent_identifier(consent, district)
    grantor = consent.grantor_name
    if consent.grantor_relationship:
        grantor = f"{grantor} ({consent.grantor_relationship})"
    custodian = district_reference(district_org, district, literal)
    recipient = organization_reference(
        recipient_system, consent.recipient_organization, consent.recipient_name, literal
    )
    purpose_code, purpose_display = t.PURPOSE_TO_ACT_REASON.get(consent.purpose, ("TREAT", "treatment"))
    period: dict[str, str] = {"start": consent.period_start.isoformat()}
    end = consent.revoked if consent.status == "revoked" and consent.revoked else consent.period_end
    if end is not None:
        period["end"] = end.isoformat()
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": resource_id(ident["system"], ident["value"]),
        "meta": {"profile": [t.CONSENT_PROFILE]},
        "identifier": [ident],
        "status": _STATUS.get(consent.status, "active"),
        "scope": {"coding": [{"system": t.CONSENT_SCOPE_CS, "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [
            {"coding": [{"system": t.LOINC, "code": t.LOINC_PATIENT_CONSENT, "display": "Patient Consent"}]},
            {"coding": [{"system": t.V3_ACT_CODE, "code": "IDSCL", "display": "information disclosure"}]},
        ],
        "patient": student_reference(student, district, literal),
        "dateTime": consent.signed.isoformat(),
        "performer": [{"display": grantor}],
        "organization": [custodian],
        "policy": [{"authority": t.FERPA_AUTHORITY, "uri": t.FERPA_POLICY_URI}],
        "provision": {
            "type": "permit",
            "period": period,
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": t.V3_PARTICIPATION_TYPE,
                                "code": "IRCP",
                                "display": "information recipient",
                            }
                        ]
                    },
                    "reference": recipient,
                }
            ],
            "action": [{"coding": [{"system": t.CONSENT_ACTION_CS, "code": "disclose", "display": "Disclose"}]}],
            "purpose": [{"system": t.V3_ACT_REASON, "code": purpose_code, "display": purpose_display}],
            "class": [{"system": t.RESOURCE_TYPES_CS, "code": "Observation"}],
            "code": [{"coding": [{"system": t.ATTENDANCE_CS, "code": t.ATTENDANCE_SUMMARY}]}],
        },
    }
    to = html.escape(consent.recipient_name or consent.recipient_organization)
    until = f" to {period['end']}" if "end" in period else ""
    resource["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>FERPA consent (34 CFR 99.30) to disclose school '
        f"attendance to {to}, from {period['start']}{until}; status {resource['status']}.</p></div>",
    }
    if consent.document_url:
        resource["sourceAttachment"] = {"url": consent.document_url, "title": "Signed FERPA consent form"}
    return resource
