"""The conformance resources the validator knows: the R4 core subset (data/core/), our profiles (data/profiles/)
and the US Core / SDOHCC profiles the mapper may claim (data/external/, built from their CC0 sources by
scripts/build-us-core-fixtures.py; their packages cannot be loaded offline)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
ValueSetCodes = dict[str, frozenset[str]]  # system -> codes


def _data_dir() -> Path:
    return Path(str(resources.files("sis2fhir") / "data"))


class Definitions:
    """StructureDefinitions by canonical URL; pre-expanded ValueSets (None: bound, not expandable offline)."""

    def __init__(self, profile_dirs: list[Path] | None = None) -> None:
        core = _data_dir() / "core"
        self.structures: dict[str, dict[str, Any]] = orjson.loads((core / "structure-definitions.json").read_bytes())[
            "definitions"
        ]
        raw_sets = orjson.loads((core / "value-sets.json").read_bytes())["expansions"]
        self.value_sets: dict[str, ValueSetCodes | None] = {
            url: None if codes is None else {s: frozenset(c) for s, c in codes.items()}
            for url, codes in raw_sets.items()
        }
        self.resource_types: frozenset[str] = frozenset().union(
            *(self.value_sets["http://hl7.org/fhir/ValueSet/resource-types"] or {}).values()
        )
        self.code_systems: dict[str, list[str]] = {}
        # Profiles known only as Reference targets (a StructureDefinition without a snapshot): their type.
        self.target_types: dict[str, str] = {}
        default_dirs = [_data_dir() / "profiles", _data_dir() / "external"]
        for folder in profile_dirs if profile_dirs is not None else default_dirs:
            self._load_folder(folder)

    def _load_folder(self, folder: Path) -> None:
        if not folder.is_dir():
            return
        value_sets: list[dict[str, Any]] = []
        for path in sorted(folder.glob("*.json")):
            try:
                doc = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                continue
            kind = doc.get("resourceType") if isinstance(doc, dict) else None
            if kind == "StructureDefinition" and "snapshot" in doc and "url" in doc:
                self.structures[doc["url"]] = doc
            elif kind == "StructureDefinition" and "url" in doc and "type" in doc:
                self.target_types[doc["url"]] = str(doc["type"])
            elif kind == "CodeSystem" and "url" in doc:
                self.code_systems[doc["url"]] = _concept_codes(doc.get("concept", []))
            elif kind == "ValueSet" and "url" in doc:
                value_sets.append(doc)
        for vs in value_sets:  # after the CodeSystems they include
            self.value_sets[vs["url"]] = self._expand(vs)

    def _expand(self, vs: dict[str, Any]) -> ValueSetCodes | None:
        if "expansion" in vs and "contains" in vs["expansion"]:
            found: dict[str, set[str]] = {}
            for item in vs["expansion"]["contains"]:
                found.setdefault(item.get("system", ""), set()).add(item.get("code", ""))
            return {s: frozenset(c) for s, c in found.items()}
        compose = vs.get("compose", {})
        if compose.get("exclude"):
            return None
        result: dict[str, set[str]] = {}
        for include in compose.get("include", []):
            system = include.get("system")
            if system is None or "filter" in include or "valueSet" in include:
                return None
            if "concept" in include:
                codes = {c["code"] for c in include["concept"]}
            elif system in self.code_systems:
                codes = set(self.code_systems[system])
            else:
                return None
            result.setdefault(system, set()).update(codes)
        return {s: frozenset(c) for s, c in result.items()}

    def structure(self, url: str) -> dict[str, Any] | None:
        return self.structures.get(url.split("|")[0])

    def value_set(self, url: str) -> ValueSetCodes | None:
        return self.value_sets.get(url.split("|")[0])

    def knows_value_set(self, url: str) -> bool:
        return url.split("|")[0] in self.value_sets

    def type_of(self, url: str) -> str | None:
        """The resource or datatype a StructureDefinition constrains ('Observation' for our profile)."""
        sd = self.structure(url)
        if sd is not None:
            return str(sd.get("type"))
        if url.split("|")[0] in self.target_types:
            return self.target_types[url.split("|")[0]]
        if url.startswith(CORE_SD):
            return url.removeprefix(CORE_SD)
        return None


def _concept_codes(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for concept in concepts:
        out.append(concept["code"])
        out.extend(_concept_codes(concept.get("concept", [])))
    return out


@cache
def default_definitions() -> Definitions:
    return Definitions()
