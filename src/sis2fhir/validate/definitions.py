"""The conformance resources the validator knows: the R4 core subset (data/core/), our profiles (the bundled
copies in data/profiles/, or a FHIR NPM package: a .tgz or its unpacked folder) and the US Core / SDOHCC profiles
the mapper may claim (data/external/, built from their CC0 sources by scripts/build-us-core-fixtures.py; their
packages cannot be loaded offline)."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
ValueSetCodes = dict[str, frozenset[str]]  # system -> codes


PACKAGE_MAX_BYTES = 64 * 1024 * 1024  # a profile package is kilobytes; refuse to read a huge file whole


class PackageError(ValueError):
    """A --ig path that is not a readable FHIR NPM package."""


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

    @classmethod
    def from_package(cls, path: Path) -> Definitions:
        """The R4 core subset and the shipped US Core / SDOHCC copies, plus the conformance resources of a FHIR
        NPM package instead of the bundled profiles: `path` is the package .tgz, its `package/` folder, or a folder
        holding `package/`. Only the resources directly in `package/` are loaded (examples in package/example/ are
        not definitions)."""
        definitions = cls(profile_dirs=[_data_dir() / "external"])
        definitions._load_documents(read_package(path))
        return definitions

    def _load_folder(self, folder: Path) -> None:
        if not folder.is_dir():
            return
        documents: list[Any] = []
        for path in sorted(folder.glob("*.json")):
            try:
                documents.append(orjson.loads(path.read_bytes()))
            except orjson.JSONDecodeError:
                continue
        self._load_documents(documents)

    def _load_documents(self, documents: Iterable[Any]) -> None:
        value_sets: list[dict[str, Any]] = []
        for doc in documents:
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


def read_package(path: Path) -> list[Any]:
    """The parsed JSON resources directly in a FHIR NPM package's `package/` folder (not package.json or
    .index.json), by file name. Raises PackageError when `path` is no such package."""
    if path.is_file():
        return _read_tarball(path)
    if not path.is_dir():
        raise PackageError(f"{path}: no such file or folder")
    folder = path / "package" if (path / "package" / "package.json").is_file() else path
    if not (folder / "package.json").is_file():
        raise PackageError(f"{path}: not a FHIR package (no package.json in it or in its package/ folder)")
    documents = []
    for file in sorted(folder.glob("*.json")):
        if file.name in ("package.json", ".index.json"):
            continue
        try:
            documents.append(orjson.loads(file.read_bytes()))
        except (OSError, orjson.JSONDecodeError) as error:
            raise PackageError(f"{file}: not readable JSON ({error})") from None
    return documents


def _read_tarball(path: Path) -> list[Any]:
    """Reads package/*.json from a .tgz in memory (nothing is extracted, so member names cannot escape)."""
    try:
        if path.stat().st_size > PACKAGE_MAX_BYTES:
            raise PackageError(f"{path}: larger than {PACKAGE_MAX_BYTES // (1024 * 1024)} MB, not a profile package")
        with tarfile.open(path, mode="r:*") as tar:
            found: dict[str, Any] = {}
            has_manifest = False
            for member in tar.getmembers():
                parts = member.name.removeprefix("./").split("/")
                if not member.isfile() or len(parts) != 2 or parts[0] != "package" or not parts[1].endswith(".json"):
                    continue
                if parts[1] == "package.json":
                    has_manifest = True
                    continue
                if parts[1] == ".index.json":
                    continue
                stream = tar.extractfile(member)
                if stream is None:
                    continue
                try:
                    found[parts[1]] = orjson.loads(stream.read())
                except orjson.JSONDecodeError as error:
                    raise PackageError(f"{path}: {member.name} is not JSON ({error})") from None
    except OSError as error:
        raise PackageError(f"{path}: cannot read: {error.strerror}") from None
    except (tarfile.TarError, EOFError, zlib.error):
        raise PackageError(f"{path}: not a FHIR package (.tgz) nor a folder holding one") from None
    if not has_manifest:
        raise PackageError(f"{path}: not a FHIR package (no package/package.json)")
    return [found[name] for name in sorted(found)]


@cache
def default_definitions() -> Definitions:
    return Definitions()
