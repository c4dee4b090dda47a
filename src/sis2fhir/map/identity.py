"""Deterministic resource ids and business identifiers, so the same export always gives the same resources."""

from __future__ import annotations

import uuid
from typing import Any

from sis2fhir.config import DistrictSettings
from sis2fhir.records import School, Student

# A fixed namespace for uuid5: changing it would change every id ever issued.
_ID_NAMESPACE = uuid.UUID("6f0d6d52-3a4e-5b8e-9a52-5f1c2b7d0a11")


def resource_id(system: str, value: str) -> str:
    """A stable FHIR id (uuid5) for a business identifier."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{system}|{value}"))


def identifier(system: str, value: str) -> dict[str, Any]:
    return {"system": system, "value": value}


def student_reference(student: Student, district: DistrictSettings) -> dict[str, Any]:
    """A logical reference to the student's Patient by the state student id (or the district's own id).

    Linking at a FHIR recipient replaces it with a literal `Patient/<id>`.
    """
    if student.state_id:
        ident = identifier(district.student_id_system, student.state_id)
    else:
        ident = identifier(district.system("student-sourced-id"), student.sourced_id)
    return {"type": "Patient", "identifier": ident}


def school_reference(school: School, district: DistrictSettings) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "type": "Organization",
        "identifier": identifier(district.system("school"), school.sourced_id),
    }
    if school.name:
        ref["display"] = school.name
    return ref
