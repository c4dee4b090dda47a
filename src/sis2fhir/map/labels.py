"""The security labels every disclosed FHIR resource carries (meta.security), whatever its type.

FERPA lets a district disclose education records with written consent (34 CFR 99.30), and the recipient may not
pass them on without it (34 CFR 99.33). The labels say both where the resource goes: confidentiality R
(restricted) and NORDSCLCD (no redisclosure without a consent directive). Every mapper of a disclosed resource
(Observation, Consent, Patient, Organization) calls `security_labels()`, so the labels are the same everywhere.
"""

from __future__ import annotations

from typing import Any

from sis2fhir import terminology as t


def security_labels() -> list[dict[str, Any]]:
    """meta.security for a disclosed resource (new dicts on each call: callers may change theirs)."""
    return [
        {"system": t.V3_CONFIDENTIALITY, "code": "R", "display": "restricted"},
        {"system": t.V3_ACT_CODE, "code": "NORDSCLCD", "display": "no redisclosure without consent directive"},
    ]


def disclosed_meta(profile: str) -> dict[str, Any]:
    """meta of a disclosed resource that claims `profile`: the profile and the security labels."""
    return {"profile": [profile], "security": security_labels()}
