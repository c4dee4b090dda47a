"""Deterministic resource ids and business identifiers, so the same export always gives the same resources."""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache
from typing import Any

from sis2fhir.config import DistrictSettings
from sis2fhir.records import District, School, Student

# A fixed namespace for uuid5: changing it would change every id ever issued.
_ID_NAMESPACE = uuid.UUID("6f0d6d52-3a4e-5b8e-9a52-5f1c2b7d0a11")
_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
# RFC 4122 variant: the 17th hex digit keeps its low two bits and gets 10 above them
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
# Ids a run asks for again and again: every student's Patient (3 references and the resource), the district, the
# schools, the recipients. A few thousand cover them; a student's own ids are asked for while it is being mapped.
ID_CACHE = 8_192


def resource_id(system: str, value: str) -> str:
    """A stable FHIR id (uuid5) for a business identifier."""
    return _uuid5(f"{system}|{value}")


@lru_cache(maxsize=ID_CACHE)
def _uuid5(name: str) -> str:
    """`str(uuid.uuid5(_ID_NAMESPACE, name))`, spelt out (the SHA-1 of namespace and name, with the version and
    variant set in it) at a quarter of uuid5's cost."""
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def identifier(system: str, value: str) -> dict[str, Any]:
    return {"system": system, "value": value}


def student_identifiers(student: Student, district: DistrictSettings) -> list[dict[str, Any]]:
    """The student's business identifiers: the state student id (when the roster has one), then the district's own
    id (the OneRoster sourcedId). The first is the one references carry and the Patient's id derives from."""
    own = identifier(district.system("student-sourced-id"), student.sourced_id)
    if student.state_id:
        return [identifier(district.student_id_system, student.state_id), own]
    return [own]


def school_identifier(school: School, district: DistrictSettings) -> dict[str, Any]:
    return identifier(district.system("school"), school.sourced_id)


def district_identifier(district_org: District | None, district: DistrictSettings) -> dict[str, Any]:
    """The district (LEA) org by its sourcedId; "district" when the roster has no district org."""
    return identifier(district.system("organization"), district_org.sourced_id if district_org else "district")


def _reference(rtype: str, ident: dict[str, Any], display: str, literal: bool) -> dict[str, Any]:
    """A logical reference (by business identifier); `literal` adds `Type/<id>` of the resource the same
    identifier gives (for a self-contained set, which carries that resource)."""
    ref: dict[str, Any] = {}
    if literal:
        ref["reference"] = f"{rtype}/{resource_id(ident['system'], ident['value'])}"
    ref["type"] = rtype
    ref["identifier"] = ident
    if display:
        ref["display"] = display
    return ref


def student_reference(student: Student, district: DistrictSettings, literal: bool = False) -> dict[str, Any]:
    """A reference to the student's Patient by the state student id (or the district's own id).

    Without `literal` it is logical: linking at a FHIR recipient replaces it with the recipient's `Patient/<id>`.
    """
    if student.state_id:  # student_identifiers(student, district)[0], without making the second
        first = identifier(district.student_id_system, student.state_id)
    else:
        first = identifier(district.system("student-sourced-id"), student.sourced_id)
    return _reference("Patient", first, "", literal)


def school_reference(school: School, district: DistrictSettings, literal: bool = False) -> dict[str, Any]:
    return _reference("Organization", school_identifier(school, district), school.name, literal)


def district_reference(
    district_org: District | None, district: DistrictSettings, literal: bool = False
) -> dict[str, Any]:
    return _reference(
        "Organization", district_identifier(district_org, district), district_org.name if district_org else "", literal
    )


def organization_reference(system: str, value: str, name: str, literal: bool = False) -> dict[str, Any]:
    """Any other organization (a consent's recipient) by its identifier, e.g. an NPI."""
    return _reference("Organization", identifier(system, value), name, literal)
