"""The organizations a self-contained set (a Bulk NDJSON folder) carries, so that its references resolve: the
district (the Consent's custodian), its schools (the Observations' performers) and the consent's recipient.

Their ids are those `identity` gives the same business identifiers, so `Organization/<id>` in a literal reference
is the resource here. FHIR REST recipients get none of these: there, organizations are referred to by identifier.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.config import DistrictSettings
from sis2fhir.map.identity import district_identifier, district_reference, identifier, resource_id, school_identifier
from sis2fhir.map.labels import security_labels
from sis2fhir.records import District, School

_EDU = [{"coding": [{"system": t.ORGANIZATION_TYPE_CS, "code": t.ORGANIZATION_TYPE_EDU[0],
                     "display": t.ORGANIZATION_TYPE_EDU[1]}]}]  # fmt: skip


def _organization(ident: dict[str, Any], name: str, what: str, kind: list[dict[str, Any]] | None) -> dict[str, Any]:
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "id": resource_id(ident["system"], ident["value"]),
        "meta": {"security": security_labels()},  # as on every disclosed resource (map/labels.py)
        "identifier": [ident],
        "active": True,
    }
    if kind:
        org["type"] = kind
    if name:
        org["name"] = name
    shown = html.escape(name) if name else f"identifier {html.escape(ident['value'])}"
    org["text"] = {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{what}: {shown}.</p></div>',
    }
    return org


def district_organization(district_org: District | None, district: DistrictSettings) -> dict[str, Any]:
    """The school district (LEA): the custodian of the education records."""
    return _organization(
        district_identifier(district_org, district), district_org.name if district_org else "", "School district", _EDU
    )


def school_organization(school: School, district_org: District | None, district: DistrictSettings) -> dict[str, Any]:
    """A school, part of the district (a literal reference: the district's Organization is in the same set)."""
    org = _organization(school_identifier(school, district), school.name, "School", _EDU)
    org["partOf"] = district_reference(district_org, district, literal=True)
    return org


def recipient_organization(system: str, value: str, name: str) -> dict[str, Any]:
    """The consent's recipient (a provider organization or an HIE) by its identifier, e.g. an NPI."""
    return _organization(identifier(system, value), name, "Recipient", None)


def set_organizations(
    schools: Iterable[School],
    district_org: District | None,
    district: DistrictSettings,
    recipient: tuple[str, str, str],
) -> list[dict[str, Any]]:
    """What a self-contained set refers to: the district, these schools (each once, in order) and the recipient
    (system, identifier, name)."""
    return SetOrganizations(district_org, district)(schools, recipient)


ORGANIZATIONS_KEPT = 4_096  # Organizations one run's SetOrganizations keeps made (a district's schools and recipients)


class SetOrganizations:
    """What a self-contained set refers to (`set_organizations`), for one run's district: each Organization made
    once and shared by every set that carries it (every student's carries the district, the recipient and the
    student's schools)."""

    def __init__(self, district_org: District | None, district: DistrictSettings) -> None:
        self.district_org, self.district = district_org, district
        self._made: dict[object, dict[str, Any]] = {}

    def __call__(self, schools: Iterable[School], recipient: tuple[str, str, str]) -> list[dict[str, Any]]:
        unique = {s.sourced_id: s for s in schools}
        d_org, d = self.district_org, self.district
        return [
            self._made.get("district") or self._kept("district", partial(district_organization, d_org, d)),
            *(self._made.get(s) or self._kept(s, partial(school_organization, s, d_org, d)) for s in unique.values()),
            self._made.get(recipient) or self._kept(recipient, partial(recipient_organization, *recipient)),
        ]

    def _kept(self, key: object, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The Organization made for `key`, by `make` the first time (the callers look it up first, so that no
        partial is made for the sets that find it)."""
        org = self._made.get(key)
        if org is None:
            if len(self._made) >= ORGANIZATIONS_KEPT:
                self._made.clear()
            org = self._made[key] = make()
        return org
