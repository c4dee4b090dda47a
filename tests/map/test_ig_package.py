"""The FHIR NPM package of profiles/ (profiles/package/ and profiles/package.tgz): current, per the package
specification, loadable by `sis2fhir validate --ig`, by Medplum, and storable at a real FHIR server."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sis2fhir import terminology as t
from sis2fhir.validate import Validator
from sis2fhir.validate.definitions import Definitions, PackageError, read_package
from tests.support import paths

ROOT = paths.ROOT
PROFILES = ROOT / "profiles"
FOLDER = PROFILES / "package"
TGZ = PROFILES / "package.tgz"
BUILD = ROOT / "scripts" / "build-profiles.sh"
SUSHI = ROOT / ".tools" / "node_modules" / ".bin" / "sushi"
R4_CORE = Path.home() / ".fhir" / "packages" / "hl7.fhir.r4.core#4.0.1" / "package" / "package.json"
SIS2FHIR = Path(sys.executable).parent / "sis2fhir"
PACKAGE_ID = "org.sis2fhir.attendance"

Resource = dict[str, Any]


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tgz_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            assert member.isfile(), member.name
            assert member.name.startswith("package/"), member.name
            stream = tar.extractfile(member)
            assert stream is not None
            out[member.name.removeprefix("package/")] = stream.read()
        return out


def load(name: str) -> Any:
    return json.loads((FOLDER / name).read_bytes())


def test_committed_package_equals_a_fresh_build(tmp_path: Path) -> None:
    missing = [str(p) for p in (SUSHI, R4_CORE) if not p.exists()]
    if missing:
        pytest.fail(f"FHIR tools missing ({', '.join(missing)}): run scripts/install-fhir-tools.sh", pytrace=False)
    work = tmp_path / "profiles"
    shutil.copytree(PROFILES, work, ignore=shutil.ignore_patterns("fsh-generated", "package", "package.tgz"))

    build = subprocess.run(
        ["bash", str(BUILD), str(work), str(tmp_path / "data")], capture_output=True, text=True, check=False
    )

    assert build.returncode == 0, f"scripts/build-profiles.sh failed:\n{build.stdout}\n{build.stderr}"
    fresh = folder_files(work / "package")
    assert fresh == folder_files(FOLDER), "profiles/package is stale: run `make profiles` and commit the result"
    assert tgz_files(work / "package.tgz") == fresh
    # Not byte for byte: another zlib may compress the same tar differently. Same content, no build time:
    assert tgz_files(TGZ) == fresh, "profiles/package.tgz is stale: run `make profiles` and commit the result"
    with tarfile.open(TGZ, "r:gz") as tar:
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in tar.getmembers()} == {(0, 0, 0, 0o644)}


def test_manifest_follows_the_fhir_package_specification() -> None:
    manifest = load("package.json")
    sushi = yaml.safe_load((PROFILES / "sushi-config.yaml").read_text(encoding="utf-8"))

    assert manifest["name"] == PACKAGE_ID
    assert manifest["version"] == sushi["version"]
    assert manifest["canonical"] == t.CANONICAL == sushi["canonical"]
    assert manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    assert manifest["type"] == "fhir.ig"
    assert manifest["jurisdiction"] == "urn:iso:std:iso:3166#US"
    assert manifest["author"] and manifest["license"] and manifest["maintainers"]


def test_index_lists_every_resource_of_its_folder_with_its_key_facts() -> None:
    for folder in (FOLDER, FOLDER / "example"):
        index = json.loads((folder / ".index.json").read_bytes())
        resources = {
            p.name: json.loads(p.read_bytes())
            for p in folder.glob("*.json")
            if p.name not in ("package.json", ".index.json")
        }

        assert index["index-version"] == 1
        assert sorted(e["filename"] for e in index["files"]) == sorted(resources)
        for entry in index["files"]:
            resource = resources[entry["filename"]]
            assert entry["resourceType"] == resource["resourceType"] and entry["id"] == resource["id"]
            for key in ("url", "version", "kind", "type"):
                assert entry.get(key) == (resource[key] if isinstance(resource.get(key), str) else None), key


def test_implementation_guide_names_every_resource_and_its_publisher() -> None:
    guide = load(f"ImplementationGuide-{PACKAGE_ID}.json")
    conformance = {p.name for p in FOLDER.glob("*.json")} - {
        "package.json",
        ".index.json",
        f"ImplementationGuide-{PACKAGE_ID}.json",
    }
    examples = {p.name for p in (FOLDER / "example").glob("*.json")} - {".index.json"}
    listed = {e["reference"]["reference"].replace("/", "-") + ".json": e for e in guide["definition"]["resource"]}

    assert guide["url"] == f"{t.CANONICAL}/ImplementationGuide/{PACKAGE_ID}"
    assert guide["packageId"] == PACKAGE_ID and guide["fhirVersion"] == ["4.0.1"]
    assert guide["publisher"] and guide["contact"][0]["telecom"][0]["value"]
    assert guide["jurisdiction"] == [
        {"coding": [{"system": "urn:iso:std:iso:3166", "code": "US", "display": "United States of America"}]}
    ]
    assert "date" not in guide
    assert set(listed) == conformance | examples
    assert all(listed[name]["exampleBoolean"] is False for name in conformance)
    assert {listed[name]["exampleCanonical"] for name in examples} == {t.OBSERVATION_PROFILE, t.CONSENT_PROFILE}


def test_package_holds_our_profiles_code_systems_and_value_sets_with_publisher_and_jurisdiction() -> None:
    resources = [r for r in read_package(TGZ) if r["resourceType"] != "ImplementationGuide"]
    by_url = {r["url"]: r for r in resources}

    assert {t.OBSERVATION_PROFILE, t.CONSENT_PROFILE, t.ATTENDANCE_CS, t.TIER_CS, t.TIER_VS} <= by_url.keys()
    assert {r["resourceType"] for r in resources} == {"StructureDefinition", "CodeSystem", "ValueSet", "Measure"}
    assert all(r["publisher"] and r["contact"] and r["jurisdiction"] for r in resources)
    assert all("date" not in r for r in resources)


@pytest.mark.parametrize("ig", [TGZ, FOLDER, PROFILES], ids=["tgz", "package-folder", "folder-holding-package"])
def test_definitions_from_the_package_equal_the_bundled_profiles(ig: Path) -> None:
    bundled = Definitions()
    packaged = Definitions.from_package(ig)

    assert packaged.structures.keys() == bundled.structures.keys()
    assert packaged.value_sets == bundled.value_sets
    assert packaged.code_systems == bundled.code_systems


def test_validate_with_ig_uses_the_package_not_the_bundled_profiles(tmp_path: Path) -> None:
    # The example Observation against the committed package: valid. Against a copy of the package whose profile
    # also requires Observation.note: invalid. So the definitions came from the package given.
    example = FOLDER / "example" / "Observation-school-attendance-observation-example.json"
    strict = tmp_path / "strict"
    shutil.copytree(FOLDER, strict / "package")
    sd_path = strict / "package" / "StructureDefinition-school-attendance-observation.json"
    sd = json.loads(sd_path.read_bytes())
    next(e for e in sd["snapshot"]["element"] if e["id"] == "Observation.note")["min"] = 1
    sd_path.write_text(json.dumps(sd), encoding="utf-8")

    as_committed = run_validate("--ig", str(TGZ), str(example))
    with_strict = run_validate("--ig", str(strict), str(example))

    assert as_committed.returncode == 0, as_committed.stdout + as_committed.stderr
    assert with_strict.returncode == 1
    assert "Observation.note is required" in with_strict.stdout


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SIS2FHIR), "validate", *args], capture_output=True, text=True, check=False)


def test_validate_with_ig_checks_the_example_district_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sync = subprocess.run(
        [str(SIS2FHIR), "sync", str(paths.EXAMPLE), "--as-of", "2026-03-31", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr

    done = run_validate("--ig", str(TGZ), str(out))

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert " 0 invalid " in done.stdout


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_text("not a tarball"), "not a FHIR package"),
        (lambda p: p.mkdir(), "not a FHIR package (no package.json"),
        (lambda p: p.write_bytes(gzip_tar({"other/x.json": b"{}"})), "no package/package.json"),
        (lambda p: p.write_bytes(gzip_tar({"package/package.json": b"{}", "package/a.json": b"{"})), "is not JSON"),
    ],
    ids=["text-file", "empty-folder", "no-manifest", "bad-json"],
)
def test_validate_with_an_unusable_ig_exits_2_without_a_traceback(tmp_path: Path, make: Any, reason: str) -> None:
    target = tmp_path / "ig.tgz"
    make(target)
    resource = tmp_path / "r.json"
    resource.write_text('{"resourceType": "Basic", "code": {"text": "x"}}')

    done = run_validate("--ig", str(target), str(resource))

    assert done.returncode == 2
    assert reason in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(PackageError):
        read_package(target)


def gzip_tar(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_members_outside_package_are_never_read(tmp_path: Path) -> None:
    manifest = FOLDER.joinpath("package.json").read_bytes()
    sd = FOLDER.joinpath("StructureDefinition-school-attendance-observation.json").read_bytes()
    bad = json.dumps({"resourceType": "CodeSystem", "url": "http://evil.example/cs", "concept": []}).encode()
    target = tmp_path / "p.tgz"
    target.write_bytes(
        gzip_tar(
            {"package/package.json": manifest, "package/sd.json": sd, "../evil.json": bad, "package/x/y.json": bad}
        )
    )

    definitions = Definitions.from_package(target)

    assert t.OBSERVATION_PROFILE in definitions.structures
    assert "http://evil.example/cs" not in definitions.code_systems
    assert not (tmp_path.parent / "evil.json").exists()


def test_project_validator_accepts_the_package_examples() -> None:
    validator = Validator(Definitions.from_package(TGZ))
    for path in sorted((FOLDER / "example").glob("*-example.json")):
        issues = [i for i in validator.validate(json.loads(path.read_bytes())) if i.severity == "error"]
        assert not issues, (path.name, issues)


def test_a_real_fhir_server_stores_every_resource_of_the_package(fhir_server: str) -> None:
    # sekmet-fhir installs no packages (no $install, no -ig) and ignores a search by `url` (it answers every
    # CodeSystem), so this checks what it can: it takes the package's ImplementationGuide, profiles, code
    # systems and value sets in one transaction (validated with its R4B models, inbound: strict) and gives
    # each back unchanged by id.
    resources = read_package(TGZ)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{fhir_server}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
    with httpx.Client(base_url=fhir_server, headers={"Content-Type": "application/fhir+json"}, timeout=60) as client:
        stored = client.post("", content=json.dumps(bundle))
        assert stored.status_code == 200, stored.text[:2000]
        for r in resources:
            read = client.get(f"/{r['resourceType']}/{r['id']}")
            assert read.status_code == 200, read.text[:500]
            back = {k: v for k, v in read.json().items() if k != "meta"}
            assert back == {k: v for k, v in r.items() if k != "meta"}, r["url"]
