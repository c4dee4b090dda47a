"""What a resource claims, or makes the reader understand: the profiles in meta.profile and modifier extensions.

A claimed profile in the project's own canonical space that the validator does not have is a typo or a resource
made for another version of the profiles: an error. One from elsewhere (US Core, SDOHCC: their packages do not
load offline here) is named in a warning and the resource is checked against what the validator has. A modifier
extension changes the meaning of what holds it (R4 extensibility.html: a system that does not understand it
must not process the resource as if it were absent), so one the validator has no definition of is an error.
"""

from __future__ import annotations

from typing import Any

from sis2fhir.terminology import CANONICAL
from sis2fhir.validate.definitions import CORE_SD, Definitions
from sis2fhir.validate.issues import Issue

OWN_PROFILES = f"{CANONICAL}/StructureDefinition/"


def claimed_profiles(resource: dict[str, Any]) -> list[tuple[int, str]]:
    """(index, canonical) of each profile the resource claims in meta.profile."""
    meta = resource.get("meta")
    claimed = meta.get("profile") if type(meta) is dict else None
    if type(claimed) is not list:
        return []
    return [(index, url) for index, url in enumerate(claimed) if type(url) is str]


def unknown_profile_issues(
    definitions: Definitions, resource: dict[str, Any], path: str, checked: list[str]
) -> list[Issue]:
    """One issue per claimed profile the validator does not have; `checked`: what the resource is checked against."""
    issues: list[Issue] = []
    for index, url in claimed_profiles(resource):
        if definitions.structure(url) is not None:
            continue
        where = f"{path}.meta.profile[{index}]"
        if url.startswith(OWN_PROFILES):
            message = f"unknown profile {url}: sis2fhir defines no such profile"
            issues.append(Issue("error", "not-supported", where, message, "profile"))
        else:
            against = "R4 core" if checked[0].startswith(CORE_SD) else ", ".join(checked)
            message = f"profile {url} is not known to this validator; validated against {against} only"
            issues.append(Issue("warning", "not-supported", where, message, "profile"))
    return issues


def unknown_modifier_issues(definitions: Definitions, key: str, value: Any, path: str) -> list[Issue]:
    """An error per modifierExtension whose url names no Extension definition the validator has."""
    issues: list[Issue] = []
    for index, item in enumerate(value if type(value) is list else [value]):
        url = item.get("url") if type(item) is dict else None
        if type(url) is not str:
            continue  # no url: Extension.url is required, and reported as missing
        definition = definitions.structure(url)
        if definition is None or definition.get("type") != "Extension":
            where = f"{path}.{key}[{index}]" if type(value) is list else f"{path}.{key}"
            message = f"unknown modifier extension {url[:200]}: what it changes cannot be known, so it is refused"
            issues.append(Issue("error", "not-supported", where, message, "modifier-extension"))
    return issues
