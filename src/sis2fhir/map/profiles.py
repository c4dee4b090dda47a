"""Which profiles a resource claims in meta.profile: ours always; US Core Simple Observation and SDOHCC
Observation Assessment on an Observation, SDOHCC Consent on a Consent, only when the resource has what those
profiles require beyond ours (docs/conformance.md; tests/conformance/ validates the output against them).

Our profiles cannot declare US Core as their Parent (its package does not load offline), so a resource names
both. The checks here are the external profiles' requirements that our own profiles do not already enforce on
every resource; a resource that misses one claims ours only (a wrong claim is worse than none).
"""

from __future__ import annotations

from typing import Any

from sis2fhir import terminology as t

# Observation.status values R4 allows (SDOHCC and US Core 7.0.0 bind it, required, to the whole R4 value set:
# `preliminary` for a figure that still changes is allowed).
_OBSERVATION_STATUS = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
_EFFECTIVE = ("effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant")


def _has_coding(concepts: Any, system: str, code: str) -> bool:
    # loops, not nested any() over generators: claimed for every resource mapped (measured: an Observation's claim
    # 2.5 us, 3.7 to 4.9 us before)
    if not isinstance(concepts, list):
        return False
    for c in concepts:
        if isinstance(c, dict):
            for x in c.get("coding", ()):
                if x.get("system") == system and x.get("code") == code:
                    return True
    return False


def _reference_to(value: Any, resource_type: str) -> bool:
    if not isinstance(value, dict):
        return False
    reference = value.get("reference")
    if isinstance(reference, str) and "/" in reference and not reference.startswith(("urn:", "#")):
        parts = reference.split("/")
        parts = parts[: parts.index("_history")] if "_history" in parts else parts
        return parts[-2] == resource_type and value.get("type", resource_type) == resource_type
    return value.get("type") == resource_type and ("identifier" in value or isinstance(reference, str))


def observation_passes_us_core(observation: dict[str, Any]) -> bool:
    """US Core Simple Observation 7.0.0 and SDOHCC Observation Assessment 3.0.0: status, category us-core#sdoh
    (category:us-core 1..*, SDOH-Obs-4), a Patient subject, effective[x] one of its four types, performers
    Organizations (ours: the school), and us-core-2 (a value, a dataAbsentReason or components)."""
    if not (
        observation.get("status") in _OBSERVATION_STATUS
        and _has_coding(observation.get("category"), t.US_CORE_CATEGORY_CS, "sdoh")
        and _reference_to(observation.get("subject"), "Patient")
    ):
        return False
    for k in observation:
        if k.startswith("effective") and k not in _EFFECTIVE:
            return False
    for p in observation.get("performer", ()):
        if not _reference_to(p, "Organization"):
            return False
    return _us_core_2(observation)


def _us_core_2(observation: dict[str, Any]) -> bool:
    """us-core-2: without component or hasMember, a value[x] or a dataAbsentReason."""
    if observation.get("component") or observation.get("hasMember") or "dataAbsentReason" in observation:
        return True
    return any(k.startswith("value") for k in observation)


def consent_passes_sdohcc(consent: dict[str, Any]) -> bool:
    """SDOHCC Consent 3.0.0 beyond ours: source[x] (the signed form), one organization, a Patient."""
    organizations = consent.get("organization")
    return (
        ("sourceAttachment" in consent or "sourceReference" in consent)
        and isinstance(organizations, list)
        and len(organizations) == 1
        and _reference_to(organizations[0], "Organization")
        and _reference_to(consent.get("patient"), "Patient")
        and isinstance(consent.get("dateTime"), str)
        and _has_coding(consent.get("category"), t.V3_ACT_CODE, "IDSCL")
    )


def claimed_profiles(resource: dict[str, Any]) -> list[str]:
    """meta.profile for one of our resources, ours first."""
    kind = resource.get("resourceType")
    if kind == "Observation":
        profiles = [t.OBSERVATION_PROFILE]
        if observation_passes_us_core(resource):
            profiles += [t.US_CORE_SIMPLE_OBSERVATION_PROFILE, t.SDOHCC_OBSERVATION_ASSESSMENT_PROFILE]
        return profiles
    if kind == "Consent":
        profiles = [t.CONSENT_PROFILE]
        if consent_passes_sdohcc(resource):
            profiles.append(t.SDOHCC_CONSENT_PROFILE)
        return profiles
    raise ValueError(f"sis2fhir maps no {kind} resource")


def claim_profiles(resource: dict[str, Any]) -> dict[str, Any]:
    """Sets meta.profile (keeping the rest of meta) once the resource is complete; returns the resource."""
    resource.setdefault("meta", {})["profile"] = claimed_profiles(resource)
    return resource
