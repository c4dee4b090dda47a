"""Assembles the FHIR NPM package of profiles/ from SUSHI's output: profiles/package/ and profiles/package.tgz.

The package follows the FHIR NPM package specification (hl7.org/fhir/packages.html): a tarball holding a
`package/` folder with package.json, an ImplementationGuide, the StructureDefinitions, CodeSystems and ValueSets,
an .index.json, and the examples with their own .index.json in `package/example/`. The HL7 validator takes it
with `-ig profiles/package.tgz`; `sis2fhir validate --ig` takes the tgz or the folder.

SUSHI's FSHOnly mode writes no ImplementationGuide (and with FSHOnly off it writes one for the IG Publisher, with
pages and empty arrays, and drops `version` from the resources), so the guide is written here from
sushi-config.yaml (canonical, version, status, FHIR version) and ig-package.yaml (package id, publisher,
contact, jurisdiction). Nothing carries a date and the tarball has fixed times and owners: two builds give the
same bytes. Usage: python scripts/build-ig-package.py [PROFILES_DIR]
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]
CONFORMANCE = ("StructureDefinition", "CodeSystem", "ValueSet", "Measure")
EXAMPLE_FOLDER = "example"


def fail(message: str) -> None:
    print(f"build-ig-package: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        fail(f"{path} is missing")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        fail(f"{path} is not a mapping")
    return data


def settings(profiles: Path) -> dict[str, Any]:
    sushi = read_yaml(profiles / "sushi-config.yaml")
    meta = read_yaml(profiles / "ig-package.yaml")
    merged = {**meta, **{k: sushi.get(k) for k in ("canonical", "version", "status", "fhirVersion")}}
    missing = [
        k for k in ("packageId", "name", "title", "publisher", "contact", "jurisdiction", "license") if not meta.get(k)
    ]
    missing += [k for k in ("canonical", "version", "status", "fhirVersion") if not merged.get(k)]
    if missing:
        fail(f"package metadata missing: {', '.join(missing)}")
    return merged


def with_publisher(resource: Resource, cfg: dict[str, Any]) -> Resource:
    """A canonical resource with the guide's publisher, contact and jurisdiction where it has none, in FHIR's
    element order: publisher and contact before description, jurisdiction after useContext (or description)."""
    missing = {
        "publisher": cfg["publisher"],
        "contact": [contact(cfg)],
        "jurisdiction": [jurisdiction(cfg)],
    }
    missing = {k: v for k, v in missing.items() if k not in resource}
    anchor = "useContext" if "useContext" in resource else "description"
    out: Resource = {}
    for key, value in resource.items():
        if key == "description":
            out.update((k, missing.pop(k)) for k in ("publisher", "contact") if k in missing)
        out[key] = value
        if key == anchor and "jurisdiction" in missing:
            out["jurisdiction"] = missing.pop("jurisdiction")
    out.update(missing)
    return out


def contact(cfg: dict[str, Any]) -> Resource:
    return {"name": cfg["contact"]["name"], "telecom": [{"system": "url", "value": cfg["contact"]["url"]}]}


def jurisdiction(cfg: dict[str, Any]) -> Resource:
    j = cfg["jurisdiction"]
    return {"coding": [{"system": j["system"], "code": j["code"], "display": j["display"]}]}


def generated(profiles: Path) -> tuple[list[tuple[str, Resource]], list[tuple[str, Resource]]]:
    """(conformance resources, examples) from fsh-generated/resources, as (file name, resource), by name."""
    folder = profiles / "fsh-generated" / "resources"
    if not folder.is_dir():
        fail(f"{folder} is missing; run SUSHI first (scripts/build-profiles.sh)")
    conformance: list[tuple[str, Resource]] = []
    examples: list[tuple[str, Resource]] = []
    for path in sorted(folder.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        kind = resource.get("resourceType")
        if kind == "ImplementationGuide":
            continue
        (conformance if kind in CONFORMANCE else examples).append((path.name, resource))
    if not conformance:
        fail(f"no StructureDefinition, CodeSystem or ValueSet in {folder}")
    return conformance, examples


def guide(
    cfg: dict[str, Any], conformance: list[tuple[str, Resource]], examples: list[tuple[str, Resource]]
) -> Resource:
    entries: list[Resource] = []
    for _, r in conformance:
        entry: Resource = {"reference": {"reference": f"{r['resourceType']}/{r['id']}"}}
        entry["name"] = r.get("title") or r.get("name") or r["id"]
        if r.get("description"):
            entry["description"] = r["description"]
        entry["exampleBoolean"] = False
        entries.append(entry)
    for _, r in examples:
        entry = {"reference": {"reference": f"{r['resourceType']}/{r['id']}"}, "name": r["id"]}
        profiles = r.get("meta", {}).get("profile", [])
        if profiles:
            entry["exampleCanonical"] = profiles[0]
        else:
            entry["exampleBoolean"] = True
        entries.append(entry)
    package_id = cfg["packageId"]
    return {
        "resourceType": "ImplementationGuide",
        "id": package_id,
        "url": f"{cfg['canonical']}/ImplementationGuide/{package_id}",
        "version": cfg["version"],
        "name": cfg["name"],
        "title": cfg["title"],
        "status": cfg["status"],
        "publisher": cfg["publisher"],
        "contact": [contact(cfg)],
        "description": cfg["description"],
        "jurisdiction": [jurisdiction(cfg)],
        "packageId": package_id,
        "license": cfg["license"],
        "fhirVersion": [cfg["fhirVersion"]],
        "definition": {"resource": entries},
    }


def index_entry(filename: str, r: Resource) -> Resource:
    entry: Resource = {"filename": filename, "resourceType": r["resourceType"], "id": r["id"]}
    for key in ("url", "version", "kind", "type"):
        if isinstance(r.get(key), str):
            entry[key] = r[key]
    return entry


def manifest(cfg: dict[str, Any]) -> Resource:
    j = cfg["jurisdiction"]
    return {
        "name": cfg["packageId"],
        "version": cfg["version"],
        "canonical": cfg["canonical"],
        "url": cfg["canonical"],
        "title": cfg["title"],
        "description": cfg["description"],
        "fhirVersions": [cfg["fhirVersion"]],
        "dependencies": {"hl7.fhir.r4.core": "4.0.1"},
        "author": cfg["publisher"],
        "maintainers": [{"name": cfg["contact"]["name"], "url": cfg["contact"]["url"]}],
        "jurisdiction": f"{j['system']}#{j['code']}",
        "license": cfg["license"],
        "type": "fhir.ig",
    }


def dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def package_files(profiles: Path) -> dict[str, bytes]:
    """Every file of the package by its path below package/."""
    cfg = settings(profiles)
    conformance, examples = generated(profiles)
    conformance = [(name, with_publisher(r, cfg)) for name, r in conformance]
    ig = guide(cfg, conformance, examples)
    root = [(f"ImplementationGuide-{ig['id']}.json", ig), *conformance]
    files: dict[str, bytes] = {"package.json": dumps(manifest(cfg))}
    files[".index.json"] = dumps({"index-version": 1, "files": [index_entry(n, r) for n, r in root]})
    files.update((name, dumps(r)) for name, r in root)
    if examples:
        files[f"{EXAMPLE_FOLDER}/.index.json"] = dumps(
            {"index-version": 1, "files": [index_entry(n, r) for n, r in examples]}
        )
        files.update((f"{EXAMPLE_FOLDER}/{name}", dumps(r)) for name, r in examples)
    return files


def tarball(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of package/<file>, in name order, with fixed times, modes and owners."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def main(argv: list[str]) -> int:
    profiles = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "profiles"
    files = package_files(profiles)
    folder = profiles / "package"
    if folder.exists():
        shutil.rmtree(folder)
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (profiles / "package.tgz").write_bytes(tarball(files))
    print(f"build-ig-package: {len(files)} files in {folder} and {profiles / 'package.tgz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
