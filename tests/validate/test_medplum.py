"""A second, independent validator: Medplum's validateResource (@medplum/core, scripts/install-medplum.sh) on
the example district's output and on broken variants of it, beside the project's own validator.

Both validators load the profiles from the IG package (profiles/package.tgz). Medplum runs in a node subprocess
(tests/validate/medplum_validate.mjs) once per test over NDJSON files. The broken variants are real mapper output
with one defect each; VARIANTS records, per validator, whether it rejects the variant, and where the two
disagree, why. A change in either validator that flips a verdict fails here and must be recorded.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from sis2fhir import terminology as t
from sis2fhir.validate import Validator
from sis2fhir.validate.definitions import Definitions
from tests.support import paths

ROOT = paths.ROOT
PACKAGE = ROOT / "profiles" / "package.tgz"
MEDPLUM = ROOT / ".tools" / "medplum"
SCRIPT = Path(__file__).with_name("medplum_validate.mjs")
INSTALL = ROOT / "scripts" / "install-medplum.sh"
SIS2FHIR = Path(sys.executable).parent / "sis2fhir"
EXAMPLE = paths.EXAMPLE
AS_OF = "2026-03-31"

Resource = dict[str, Any]


def require_medplum() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: Medplum's validator (npm @medplum/core) cannot run")
    if not (MEDPLUM / "node_modules" / "@medplum" / "core" / "package.json").is_file():
        pytest.fail(f"Medplum is not installed in {MEDPLUM}: run scripts/install-medplum.sh", pytrace=False)
    return node


def medplum(files: list[Path]) -> list[Resource]:
    """One record per check (base R4, then each claimed profile the package defines) of every resource."""
    node = require_medplum()
    run = subprocess.run(
        [node, str(SCRIPT), str(MEDPLUM), str(PACKAGE), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, f"medplum_validate.mjs failed ({run.returncode}):\n{run.stderr[-3000:]}"
    return [json.loads(line) for line in run.stdout.splitlines()]


def errors(issues: list[Resource]) -> list[Resource]:
    return [i for i in issues if i.get("severity") in ("error", "fatal")]


@cache
def package_validator() -> Validator:
    return Validator(Definitions.from_package(PACKAGE))


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example district's NDJSON output, written by the CLI as a user runs it."""
    out = tmp_path_factory.mktemp("medplum") / "out"
    sync = subprocess.run(
        [str(SIS2FHIR), "sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert sync.returncode == 0, f"sync failed ({sync.returncode}):\n{sync.stdout}\n{sync.stderr}"
    return out


def ndjson_files(out: Path) -> list[Path]:
    files = sorted(out.rglob("*.ndjson"))
    assert files, f"sync wrote no NDJSON under {out}"
    return files


def read_ndjson(files: list[Path]) -> list[Resource]:
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_medplum_accepts_every_resource_written_for_the_example_district(output: Path) -> None:
    files = ndjson_files(output)
    resources = read_ndjson(files)

    checks = medplum(files)

    base = [c for c in checks if c.get("profile") is None]
    ours = [c for c in checks if str(c.get("profile", "")).startswith(t.CANONICAL) and "skipped" not in c]
    assert len(base) == len(resources)
    claimed = sum(
        1 for r in resources for url in r.get("meta", {}).get("profile", []) if str(url).startswith(t.CANONICAL)
    )
    assert len(ours) == claimed, "a profile of ours claimed in meta.profile is missing from the IG package"
    assert {c["profile"] for c in ours} >= {t.OBSERVATION_PROFILE, t.CONSENT_PROFILE}
    rejected = [
        (c["file"], c["line"], c["profile"], errors(c["issues"])) for c in checks if errors(c.get("issues", []))
    ]
    assert not rejected, f"Medplum rejects {len(rejected)} check(s), first: {rejected[:3]}"


def test_the_project_validator_accepts_the_same_output_with_the_ig_package(output: Path) -> None:
    validator = package_validator()
    resources = read_ndjson(ndjson_files(output))

    rejected = [(r["resourceType"], r.get("id")) for r in resources if errors_of(validator.validate(r))]

    assert resources and not rejected


def errors_of(issues: list[Any]) -> list[Any]:
    return [i for i in issues if i.severity == "error"]


# -- broken variants of real output -----------------------------------------------------------------------


def coded(items: list[Resource], code: str) -> Resource:
    """The CodeableConcept-bearing item (component, category) whose code or own coding has this code."""
    for item in items:
        concept = item.get("code", item)
        if any(c.get("code") == code for c in concept.get("coding", [])):
            return item
    raise AssertionError(f"no item coded {code} in {items}")


def drop(key: str) -> Callable[[Resource], None]:
    return lambda r: r.pop(key)


def set_to(key: str, value: Any) -> Callable[[Resource], None]:
    return lambda r: r.__setitem__(key, value)


def without_component(code: str) -> Callable[[Resource], None]:
    return lambda r: r["component"].remove(coded(r["component"], code))


def sdoh_category_recoded(r: Resource) -> None:
    coded(r["category"], "sdoh")["coding"][0]["code"] = "sdoh-status"


def value_as_string(r: Resource) -> None:
    r["valueQuantity"]["value"] = str(r["valueQuantity"]["value"])


def effective_start(value: str | None) -> Callable[[Resource], None]:
    def mutate(r: Resource) -> None:
        if value is None:
            r["effectivePeriod"].pop("start")
        else:
            r["effectivePeriod"]["start"] = value

    return mutate


def interpretation_twice(r: Resource) -> None:
    r["interpretation"] = r["interpretation"] * 2


def percent_as_pct(r: Resource) -> None:
    r["valueQuantity"]["code"] = "pct"


def absent_more_than_membership(r: Resource) -> None:
    membership = coded(r["component"], "days-in-membership")["valueQuantity"]["value"]
    coded(r["component"], "days-absent")["valueQuantity"]["value"] = membership + 1


def tier_not_in_value_set(r: Resource) -> None:
    tier = coded(r["component"], "chronic-absence-tier")["valueCodeableConcept"]["coding"][0]
    tier["code"] = "excellent"


def consent_without_recipient(r: Resource) -> None:
    r["provision"].pop("actor")


def consent_scope_recoded(r: Resource) -> None:
    r["scope"]["coding"][0]["code"] = "research"


def consent_policy_elsewhere(r: Resource) -> None:
    r["policy"][0]["uri"] = "https://example.org/some-other-policy"


def empty_identifier_value(r: Resource) -> None:
    r["identifier"][0]["value"] = ""


@dataclass(frozen=True)
class Variant:
    name: str
    resource_type: str
    mutate: Callable[[Resource], None]
    medplum_rejects: bool
    ours_rejects: bool
    why: str = ""  # where the two validators disagree: the reason


VARIANTS = [
    Variant("missing status (1..1 in R4)", "Observation", drop("status"), True, True),
    Variant(
        "status not in its required value set",
        "Observation",
        set_to("status", "bogus"),
        False,
        True,
        "Medplum's validateResource checks no terminology bindings; ours expands required R4 value sets offline",
    ),
    Variant("missing subject (1..1 in the profile)", "Observation", drop("subject"), True, True),
    Variant("effectivePeriod.start missing (1..1 in the profile)", "Observation", effective_start(None), True, True),
    Variant("days-absent component slice missing", "Observation", without_component("days-absent"), True, True),
    Variant("sdoh category with a wrong code (slice's fixed code)", "Observation", sdoh_category_recoded, True, True),
    Variant("valueQuantity.value a string (bad type)", "Observation", value_as_string, True, True),
    Variant("effectivePeriod.start month 13 (invalid date)", "Observation", effective_start("2025-13-01"), True, True),
    Variant(
        "effectivePeriod.start 2025-02-30 (impossible date)",
        "Observation",
        effective_start("2025-02-30"),
        True,
        True,
    ),
    Variant("an element R4 does not define", "Observation", set_to("attendanceRate", 96.9), True, True),
    Variant("interpretation twice (max 1 in the profile)", "Observation", interpretation_twice, True, True),
    Variant("value unit code pct instead of UCUM % (pattern)", "Observation", percent_as_pct, True, True),
    Variant("days absent above days in membership (sis-att-1)", "Observation", absent_more_than_membership, True, True),
    Variant(
        "tier code outside its required value set",
        "Observation",
        tier_not_in_value_set,
        False,
        True,
        "no terminology in Medplum's validateResource, not even the package's own complete CodeSystem",
    ),
    Variant("status as an array (cardinality)", "Observation", set_to("status", ["final"]), True, True),
    Variant(
        "identifier value empty string",
        "Observation",
        empty_identifier_value,
        False,
        True,
        "R4 forbids empty strings (a value must have non-whitespace content); Medplum's validator lets '' pass",
    ),
    Variant("no recipient actor (slice 1..*)", "Consent", consent_without_recipient, True, True),
    Variant("scope with a wrong code (pattern)", "Consent", consent_scope_recoded, True, True),
    Variant("policy uri other than 34 CFR 99 (fixed)", "Consent", consent_policy_elsewhere, True, True),
    Variant("missing status (1..1 in R4)", "Consent", drop("status"), True, True),
]


def test_the_verdict_table_gives_a_reason_exactly_where_the_validators_disagree() -> None:
    unexplained = [v.name for v in VARIANTS if (v.medplum_rejects != v.ours_rejects) != bool(v.why)]

    assert not unexplained
    assert sum(v.medplum_rejects for v in VARIANTS) >= 15, "Medplum should reject the variants it has rules for"


def originals(out: Path) -> dict[str, Resource]:
    """The first resource of each type that claims our profile for it, as the mapper wrote it."""
    wanted = {"Observation": t.OBSERVATION_PROFILE, "Consent": t.CONSENT_PROFILE}
    found: dict[str, Resource] = {}
    for resource in read_ndjson(ndjson_files(out)):
        kind = resource.get("resourceType")
        if kind in wanted and kind not in found and wanted[kind] in resource.get("meta", {}).get("profile", []):
            found[kind] = resource
    assert found.keys() == wanted.keys(), f"no profiled {sorted(wanted.keys() - found.keys())} in the output"
    return found


def test_each_validator_gives_its_recorded_verdict_on_every_broken_variant(output: Path, tmp_path: Path) -> None:
    base = originals(output)
    variants = []
    for variant in VARIANTS:
        resource = copy.deepcopy(base[variant.resource_type])
        variant.mutate(resource)
        assert resource != base[variant.resource_type], variant.name
        variants.append(resource)
    file = tmp_path / "variants.ndjson"
    file.write_text("".join(json.dumps(r) + "\n" for r in variants), encoding="utf-8")

    checks = medplum([file])
    validator = package_validator()

    medplum_errors: dict[int, list[str]] = {}
    for check in checks:
        found = errors(check.get("issues", []))
        if found:
            medplum_errors.setdefault(check["line"], []).extend(str(i.get("details", i)) for i in found)
    got = []
    want = []
    for line, (variant, resource) in enumerate(zip(VARIANTS, variants, strict=True), start=1):
        ours = errors_of(validator.validate(resource))
        got.append((variant.resource_type, variant.name, line in medplum_errors, bool(ours)))
        want.append((variant.resource_type, variant.name, variant.medplum_rejects, variant.ours_rejects))
    flipped = [
        f"{g[0]} {g[1]}: medplum rejects={g[2]}, ours rejects={g[3]}" for g, w in zip(got, want, strict=True) if g != w
    ]
    assert not flipped, "verdicts differ from VARIANTS (update the table and say why):\n  " + "\n  ".join(flipped)


def test_both_validators_accept_the_unbroken_originals(output: Path, tmp_path: Path) -> None:
    base = originals(output)
    file = tmp_path / "originals.ndjson"
    file.write_text("".join(json.dumps(r) + "\n" for r in base.values()), encoding="utf-8")

    checks = medplum([file])

    ran = [c for c in checks if "skipped" not in c]  # a claimed profile not in our package (US Core) is skipped
    assert len(ran) == 2 * len(base)  # base R4 and our profile, per resource
    assert not [c for c in ran if errors(c["issues"])]
    assert not [r for r in base.values() if errors_of(package_validator().validate(r))]


def test_install_script_is_quiet_when_medplum_is_installed() -> None:
    require_medplum()

    again = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=False)

    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_medplum_accepts_the_ig_package_resources_as_r4() -> None:
    folder = PACKAGE.with_suffix("")  # profiles/package/, the unpacked copy of the tgz
    files = sorted(p for p in folder.rglob("*.json") if p.name not in ("package.json", ".index.json"))

    checks = medplum(files)

    kinds = {c["resourceType"] for c in checks}
    assert {"ImplementationGuide", "StructureDefinition", "CodeSystem", "ValueSet", "Observation", "Consent"} <= kinds
    assert not [(c["file"], errors(c["issues"])) for c in checks if errors(c.get("issues", []))]
