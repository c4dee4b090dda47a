"""The student as the FHIR R4 Patient a self-contained set (a Bulk NDJSON folder) carries: the minimum necessary for
a recipient to match the student to its own patient (identifiers, name, birth date, administrative gender), or the
identifiers only. FHIR REST recipients get no Patient: their own is linked (link.py)."""

from __future__ import annotations

import html
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.config import DistrictSettings, PatientDetail
from sis2fhir.map.identity import resource_id, student_identifiers
from sis2fhir.map.labels import security_labels
from sis2fhir.records import Student


def demographics(student: Student) -> dict[str, Any]:
    """Patient.name, gender and birthDate from the roster, each only when the roster has it (users.csv names,
    demographics.csv birthDate and sex; OneRoster `unspecified` is AdministrativeGender `unknown`)."""
    out: dict[str, Any] = {}
    name: dict[str, Any] = {}
    if student.family_name:
        name["family"] = student.family_name
    given = [n for n in (student.given_name, student.middle_name) if n]
    if given:
        name["given"] = given
    if name:
        out["name"] = [{"use": "official", **name}]
    if student.sex in t.ONEROSTER_SEX_TO_GENDER:
        out["gender"] = t.ONEROSTER_SEX_TO_GENDER[student.sex]
    if student.birth_date is not None:
        out["birthDate"] = student.birth_date.isoformat()
    return out


def student_patient(student: Student, district: DistrictSettings, detail: PatientDetail = "matching") -> dict[str, Any]:
    """The Patient whose id `identity.student_reference(..., literal=True)` points at. `identifier-only` leaves out
    name, birth date and gender."""
    identifiers = student_identifiers(student, district)
    first = identifiers[0]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": resource_id(first["system"], first["value"]),
        "meta": {"security": security_labels()},  # as on every disclosed resource (map/labels.py)
        "identifier": identifiers,
    }
    if detail == "matching":
        patient.update(demographics(student))
    patient["text"] = _narrative(patient)
    return patient


def _narrative(patient: dict[str, Any]) -> dict[str, str]:
    """What the resource says, for a human reader (dom-6): only what the resource itself holds."""
    ids = ", ".join(f"{html.escape(i['value'])} ({html.escape(i['system'])})" for i in patient["identifier"])
    parts = [f"Student; identifiers {ids}"]
    for name in patient.get("name", []):
        parts.append("name " + html.escape(" ".join([*name.get("given", []), name.get("family", "")]).strip()))
    if "birthDate" in patient:
        parts.append(f"born {patient['birthDate']}")
    if "gender" in patient:
        parts.append(f"gender {patient['gender']}")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{"; ".join(parts)}.</p></div>'}
