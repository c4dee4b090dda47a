"""A parent's FERPA consent (consents.csv row) as a ferpa-attendance-consent Consent (profiles/)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sis2fhir import terminology as t
from sis2fhir.config import DistrictSettings
from sis2fhir.map.identity import (
    district_reference,
    identifier,
    organization_reference,
    resource_id,
    student_reference,
)
from sis2fhir.map.labels import disclosed_meta
from sis2fhir.map.profiles import claim_profiles
from sis2fhir.records import ConsentRecord, District, Student

# consents.csv status -> Consent.status (R4 consent-state-codes)
_STATUS = {"active": "active", "revoked": "inactive", "declined": "rejected"}

# documentUrl's file type -> Attachment.contentType. A fixed table, not the mimetypes module: that reads the
# machine's /etc/mime.types, and the same export must give the same bytes everywhere.
_CONTENT_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gif": "image/gif",
    ".htm": "text/html",
    ".html": "text/html",
    ".txt": "text/plain",
    ".xml": "application/xml",
    ".json": "application/json",
}
_FORM_TITLE = "Signed FERPA consent form"


# The parts of a Consent that are the same in every one (or in every one to one recipient, or for one purpose):
# made once and shared by the Consents, like the Observation's code (map/observation.py); nothing changes them.
# Measured (the same consent mapped again and again, best of 7): 6.1 us a Consent with these and url_path, 11.3
# to 11.9 us before.
_SCOPE = {"coding": [{"system": t.CONSENT_SCOPE_CS, "code": "patient-privacy", "display": "Privacy Consent"}]}
_CATEGORY = [
    {"coding": [{"system": t.LOINC, "code": t.LOINC_PATIENT_CONSENT, "display": "Patient Consent"}]},
    {"coding": [{"system": t.V3_ACT_CODE, "code": "IDSCL", "display": "information disclosure"}]},
]
_POLICY = [{"authority": t.FERPA_AUTHORITY, "uri": t.FERPA_POLICY_URI}]
_ROLE = {"coding": [{"system": t.V3_PARTICIPATION_TYPE, "code": "IRCP", "display": "information recipient"}]}
_ACTION = [{"coding": [{"system": t.CONSENT_ACTION_CS, "code": "disclose", "display": "Disclose"}]}]
_CLASS = [{"system": t.RESOURCE_TYPES_CS, "code": "Observation"}]
_CODE = [{"coding": [{"system": t.ATTENDANCE_CS, "code": t.ATTENDANCE_SUMMARY}]}]
_PURPOSES = {
    purpose: [{"system": t.V3_ACT_REASON, "code": code, "display": display}]
    for purpose, (code, display) in t.PURPOSE_TO_ACT_REASON.items()
}
_OTHER_PURPOSE = _PURPOSES["treatment"]  # a purpose not in the table is treatment
KEPT = 4_096  # custodian references and recipients' actors kept made (a run has a district and a few recipients)
_made: dict[object, Any] = {}


def _purpose(purpose: str) -> list[dict[str, Any]]:
    return _PURPOSES.get(purpose, _OTHER_PURPOSE)


def _actor(recipient: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": _ROLE, "reference": recipient}]


def _kept(key: object, make: Callable[[], Any]) -> Any:
    """What `make` makes for `key`, made once (a bounded table: cleared when full)."""
    made = _made.get(key)
    if made is None:
        if len(_made) >= KEPT:
            _made.clear()
        made = _made[key] = make()
    return made


# scheme://host/path with nothing urlsplit would strip, remove or split off (no whitespace or control character, no
# query, fragment or bracketed host): its path is what follows the host, as urlsplit says (tests/map/test_consent.py
# checks it against urlsplit on generated URLs). Measured: 0.9 to 1.3 us a new URL, by urlsplit 2.8 to 3.3 us.
_PLAIN_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.:@_~%!$&'()*+,;=-]*(/[^?#\s\x00-\x20\x7f]*)?")


def url_path(url: str) -> str:
    """urlsplit(url).path, without urlsplit for a plain URL."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        return plain.group(1) or ""
    return urlsplit(url).path


def content_type(url: str) -> str:
    """The form's media type from the URL's file name; application/octet-stream when it does not say."""
    path = url_path(url).lower()
    suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
    return _CONTENT_TYPES.get(suffix, "application/octet-stream")


def source_attachment(consent: ConsentRecord) -> dict[str, Any]:
    """Consent.sourceAttachment: the signed form (url, type, the signing date). Without documentUrl the district
    keeps the form where it cannot be linked (paper, a records system): the attachment says so by its title and
    date, with no url, rather than inventing one."""
    if consent.document_url:
        return {
            "contentType": content_type(consent.document_url),
            "url": consent.document_url,
            "title": _FORM_TITLE,
            "creation": consent.signed.isoformat(),
        }
    return {
        "title": f"{_FORM_TITLE} (kept by the school district; no online copy)",
        "creation": consent.signed.isoformat(),
    }


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
    org = (district_org.sourced_id, district_org.name) if district_org else None  # all of it the reference reads
    custodian = _kept(
        ("custodian", org, district.namespace, literal), lambda: district_reference(district_org, district, literal)
    )
    recipient = (recipient_system, consent.recipient_organization, consent.recipient_name, literal)
    actor = _kept(recipient, lambda: _actor(organization_reference(*recipient)))
    period: dict[str, str] = {"start": consent.period_start.isoformat()}
    end = consent.revoked if consent.status == "revoked" and consent.revoked else consent.period_end
    if end is not None:
        period["end"] = end.isoformat()
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": resource_id(ident["system"], ident["value"]),
        "meta": disclosed_meta(t.CONSENT_PROFILE),
        "identifier": [ident],
        "status": _STATUS.get(consent.status, "active"),
        "scope": _SCOPE,
        "category": _CATEGORY,
        "patient": student_reference(student, district, literal),
        "dateTime": consent.signed.isoformat(),
        "performer": [{"display": grantor}],
        "organization": [custodian],
        "sourceAttachment": source_attachment(consent),
        "policy": _POLICY,
        "provision": {
            "type": "permit",
            "period": period,
            "actor": actor,
            "action": _ACTION,
            "purpose": _purpose(consent.purpose),
            "class": _CLASS,
            "code": _CODE,
        },
    }
    to = html.escape(consent.recipient_name or consent.recipient_organization)
    until = f" to {period['end']}" if "end" in period else ""
    resource["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>FERPA consent (34 CFR 99.30) to disclose school '
        f"attendance to {to}, from {period['start']}{until}; status {resource['status']}.</p></div>",
    }
    return claim_profiles(resource)
