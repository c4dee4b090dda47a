#!/usr/bin/env python3
"""Builds the US Core / SDOHCC definitions the validator ships (src/sis2fhir/data/external/, package data, CC0)
from the verbatim source copies in tests/fixtures/us-core/source/ (see tests/fixtures/us-core/SOURCES.md).

Their packages (hl7.fhir.us.core 7.0.0, hl7.fhir.us.sdoh-clinicalcare 3.0.0) cannot be loaded offline, and the
sources are a differential-only JSON (US Core) and FSH (SDOHCC). So:

1. US Core Simple Observation and US Core PractitionerRole (the parents SUSHI must derive from) get a snapshot by
   applying their differential to the R4 core snapshot from hl7.fhir.r4.core#4.0.1 (`snapshot_of`, below: it
   handles what these two differentials use, and stops on anything else). Every copied US Core definition is
   stamped `version: 7.0.0` (the IG Publisher stamps the IG version; the source files carry none).
2. SUSHI (.tools, --snapshot) compiles the SDOHCC FSH, with the US Core definitions as predefined resources.
3. The us-core-simple-observation-category ValueSet gets an expansion (all of us-core-category, copied, and all
   of observation-category, from the R4 core package) so the validator can check its required binding.

4. The US Core profiles that are only Reference targets (us-core-patient, -organization, ...) are written as
   stubs (url, version, type, no snapshot): the validator knows them by their type, so
   `subject only Reference(USCorePatientProfile)` checks that the target is a Patient; nothing is validated
   against them (the validator does not resolve references).

Usage: scripts/build-us-core-fixtures.py [OUT_DIR]   (default src/sis2fhir/data/external)
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "fixtures" / "us-core" / "source"
SUSHI = ROOT / ".tools" / "node_modules" / ".bin" / "sushi"
CORE = Path(os.environ.get("HOME", "~")).expanduser() / ".fhir" / "packages" / "hl7.fhir.r4.core#4.0.1" / "package"
US_CORE_VERSION = "7.0.0"
# SDOHCC FSH compiled by SUSHI (the profiles we check against and what they need to compile)
SDOHCC_FSH = [
    "aliases.fsh",
    "rulesets/DEF_Rulesets.fsh",
    "invariants/us-core-2.fsh",
    "invariants/SDOH-Obs-4.fsh",
    "codesystems/SDOHCCCodeSystemTemporaryCodes.fsh",
    "valuesets/SDOHCCValueSetSDOHCategory.fsh",
    "valuesets/SDOHCCValueSetLOINCSNOMEDCT.fsh",
    "profiles/SDOHCCPractitionerRole.fsh",
    "profiles/SDOHCCObservationAssessment.fsh",
    "profiles/SDOHCCConsent.fsh",
]
NEEDS_SNAPSHOT = [
    "StructureDefinition-us-core-simple-observation.json",
    "StructureDefinition-us-core-practitionerrole.json",
]
OUTPUTS = [
    "StructureDefinition-us-core-simple-observation.json",
    "StructureDefinition-SDOHCC-ObservationAssessment.json",
    "StructureDefinition-SDOHCC-Consent.json",
    "StructureDefinition-SDOHCC-practitionerrole.json",  # a performer target: known for its type
    "ValueSet-us-core-simple-observation-category.json",
    "CodeSystem-us-core-category.json",
    "ValueSet-SDOHCC-ValueSetSDOHCategory.json",
    "CodeSystem-SDOHCC-CodeSystemTemporaryCodes.json",
]


class BuildError(Exception):
    pass


def _read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _core(name: str) -> dict[str, Any]:
    path = CORE / f"StructureDefinition-{name}.json"
    if not path.is_file():
        raise BuildError(f"{path} is missing; run scripts/install-fhir-tools.sh")
    return _read(path)


def _merge(target: dict[str, Any], diff: dict[str, Any]) -> None:
    """A differential element's properties over its snapshot element (constraints add up, the rest replaces)."""
    for key, value in diff.items():
        if key in ("id", "path"):
            continue
        if key == "constraint":
            target["constraint"] = [*target.get("constraint", []), *value]
        elif key == "condition":
            target["condition"] = sorted({*target.get("condition", []), *value})
        else:
            target[key] = copy.deepcopy(value)


def _end_of(elements: list[dict[str, Any]], element_id: str) -> int:
    """Index after the element, its children and its slices."""
    end = next(i for i, e in enumerate(elements) if e["id"] == element_id) + 1
    while end < len(elements) and re.match(re.escape(element_id) + r"[.:]", elements[end]["id"]):
        end += 1
    return end


def snapshot_of(sd: dict[str, Any]) -> list[dict[str, Any]]:
    """The differential of `sd` applied to the R4 core snapshot of its type: changed elements, slices of a
    top-level element (no slice children), and children of a datatype element (unfolded from the datatype)."""
    if sd["baseDefinition"] != f"http://hl7.org/fhir/StructureDefinition/{sd['type']}":
        raise BuildError(f"{sd['url']}: only profiles on a core resource are supported")
    elements = copy.deepcopy(_core(sd["type"])["snapshot"]["element"])
    for diff in sd["differential"]["element"]:
        element_id = diff["id"]
        by_id = {e["id"]: e for e in elements}
        if element_id in by_id:
            _merge(by_id[element_id], diff)
            continue
        parent_id, _, last = element_id.rpartition(".")
        name, _, slice_name = last.partition(":")
        base_id = f"{parent_id}.{name}"
        if slice_name and base_id in by_id and ":" not in parent_id and "slicing" in by_id[base_id]:
            new = copy.deepcopy(by_id[base_id])
            new.pop("slicing")
            new["id"] = element_id
            new["sliceName"] = slice_name
            _merge(new, diff)
            elements.insert(_end_of(elements, base_id), new)
            continue
        parent = by_id.get(parent_id)
        types = {t["code"] for t in parent.get("type", [])} if parent else set()
        if not slice_name and parent is not None and len(types) == 1 and ":" not in parent_id:
            (code,) = types
            unfolded = []
            for child in _core(code)["snapshot"]["element"][1:]:
                child = copy.deepcopy(child)
                child["id"] = parent_id + child["id"][len(code) :]
                child["path"] = parent["path"] + child["path"][len(code) :]
                unfolded.append(child)
            at = _end_of(elements, parent_id)
            elements[at:at] = unfolded
            target = next((e for e in unfolded if e["id"] == element_id), None)
            if target is None:
                raise BuildError(f"{sd['url']}: {element_id} is not an element of {code}")
            _merge(target, diff)
            continue
        raise BuildError(f"{sd['url']}: differential element {element_id} is not supported by this build")
    return elements


def _run_sushi(project: Path) -> None:
    if not SUSHI.is_file():
        raise BuildError(f"SUSHI is not installed at {SUSHI}; run scripts/install-fhir-tools.sh")
    done = subprocess.run(
        [str(SUSHI), "build", str(project), "--snapshot"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not re.search(r"[^0-9]0 Errors", done.stdout):
        raise BuildError(f"SUSHI reported errors:\n{done.stdout}\n{done.stderr}")


def _category_expansion(vs: dict[str, Any], us_core_category: dict[str, Any]) -> dict[str, Any]:
    core_cs = _read(CORE / "CodeSystem-observation-category.json")
    contains = []
    for cs in (us_core_category, core_cs):
        for concept in cs["concept"]:
            contains.append({"system": cs["url"], "code": concept["code"], "display": concept.get("display", "")})
    vs = copy.deepcopy(vs)
    vs["expansion"] = {
        "identifier": "urn:sis2fhir:build-us-core-fixtures",
        "timestamp": "2026-01-01T00:00:00Z",
        "total": len(contains),
        "contains": contains,
    }
    return vs


def build(out: Path) -> list[str]:
    us_core = SOURCE / "us-core"
    with tempfile.TemporaryDirectory(prefix="sis2fhir-us-core-") as work:
        project = Path(work)
        resources = project / "input" / "resources"
        fsh = project / "input" / "fsh"
        resources.mkdir(parents=True)
        fsh.mkdir(parents=True)
        for path in sorted(us_core.glob("*.json")):
            doc = _read(path)
            if doc["resourceType"] == "StructureDefinition":
                doc["version"] = US_CORE_VERSION
                if path.name in NEEDS_SNAPSHOT:
                    doc["snapshot"] = {"element": snapshot_of(doc)}
                (resources / path.name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        for i, name in enumerate(SDOHCC_FSH):
            shutil.copy(SOURCE / "sdohcc" / name, fsh / f"{i:02d}-{Path(name).name}")
        shutil.copy(SOURCE / "build-aliases.fsh", fsh / "99-build-aliases.fsh")
        (project / "sushi-config.yaml").write_text(
            "canonical: http://hl7.org/fhir/us/sdoh-clinicalcare\nfhirVersion: 4.0.1\nFSHOnly: true\n"
            "status: active\nversion: 3.0.0\n",
            encoding="utf-8",
        )
        _run_sushi(project)
        generated = project / "fsh-generated" / "resources"
        made: dict[str, dict[str, Any]] = {p.name: _read(p) for p in generated.glob("*.json")}
        made["StructureDefinition-us-core-simple-observation.json"] = _read(
            resources / "StructureDefinition-us-core-simple-observation.json"
        )
    category_cs = _read(us_core / "CodeSystem-us-core-category.json")
    made["CodeSystem-us-core-category.json"] = category_cs
    targets: list[str] = []
    for path in sorted(us_core.glob("StructureDefinition-*.json")) + sorted(us_core.glob("structuredefinition-*.json")):
        doc = _read(path)
        name = f"StructureDefinition-{doc['id']}.json"
        if name not in made:
            made[name] = {k: doc[k] for k in ("resourceType", "id", "url", "name", "type", "kind", "baseDefinition")}
            made[name]["version"] = US_CORE_VERSION
            targets.append(name)
    made["ValueSet-us-core-simple-observation-category.json"] = _category_expansion(
        _read(us_core / "ValueSet-us-core-simple-observation-category.json"), category_cs
    )
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for name in OUTPUTS + targets:
        if name not in made:
            raise BuildError(f"the build made no {name}")
        (out / name).write_text(json.dumps(made[name], indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return OUTPUTS + targets


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "src" / "sis2fhir" / "data" / "external"
    try:
        written = build(out)
    except BuildError as exc:
        print(f"build-us-core-fixtures: error: {exc}", file=sys.stderr)
        return 1
    print(f"build-us-core-fixtures: {len(written)} resources in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
