"""The compiled FHIR profiles: fresh from profiles/, in step with terminology.py, with the expected slices."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from sis2fhir import terminology as t
from tests.support import paths

ROOT = paths.ROOT
PROFILES = ROOT / "profiles"
GENERATED = PROFILES / "fsh-generated" / "resources"
PACKAGE_DATA = ROOT / "src" / "sis2fhir" / "data" / "profiles"
INSTALL = ROOT / "scripts" / "install-fhir-tools.sh"
BUILD = ROOT / "scripts" / "build-profiles.sh"
SUSHI = ROOT / ".tools" / "node_modules" / ".bin" / "sushi"
R4_CORE = Path.home() / ".fhir" / "packages" / "hl7.fhir.r4.core#4.0.1" / "package" / "package.json"

Resource = dict[str, Any]


def require_fhir_tools() -> None:
    missing = [str(p) for p in (SUSHI, R4_CORE) if not p.exists()]
    if missing:
        pytest.fail(f"FHIR tools missing ({', '.join(missing)}): run scripts/install-fhir-tools.sh", pytrace=False)


def package_resources() -> dict[str, Resource]:
    """The profiles package data as the validator reads it, by canonical URL."""
    folder = files("sis2fhir") / "data" / "profiles"
    found = [json.loads(f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".json")]
    return {r["url"]: r for r in found}


def resource(url: str) -> Resource:
    resources = package_resources()
    assert url in resources, f"{url} is not in sis2fhir/data/profiles"
    return resources[url]


def concepts(code_system_url: str) -> dict[str, str]:
    return {c["code"]: c["display"] for c in resource(code_system_url)["concept"]}


def snapshot(profile_url: str) -> dict[str, Resource]:
    return {e["id"]: e for e in resource(profile_url)["snapshot"]["element"]}


def differing_files(committed: Path, fresh: Path) -> list[str]:
    """Names of JSON files that differ between two folders, or are in only one of them."""
    old = {p.name: p.read_bytes() for p in committed.glob("*.json")}
    new = {p.name: p.read_bytes() for p in fresh.glob("*.json")}
    where = committed.relative_to(ROOT)
    problems = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            problems.append(f"{where}/{name} (no longer generated)")
        elif name not in old:
            problems.append(f"{where}/{name} (missing)")
        elif old[name] != new[name]:
            problems.append(f"{where}/{name} (differs)")
    return problems


def test_committed_profiles_equal_a_fresh_sushi_build(tmp_path: Path) -> None:
    require_fhir_tools()
    work = tmp_path / "profiles"
    shutil.copytree(PROFILES, work, ignore=shutil.ignore_patterns("fsh-generated"))
    data = tmp_path / "package-data"

    build = subprocess.run(["bash", str(BUILD), str(work), str(data)], capture_output=True, text=True, check=False)

    assert build.returncode == 0, f"scripts/build-profiles.sh failed:\n{build.stdout}\n{build.stderr}"
    stale = differing_files(GENERATED, work / "fsh-generated" / "resources") + differing_files(PACKAGE_DATA, data)
    assert not stale, (
        "committed profiles are stale; run scripts/build-profiles.sh and commit the result:\n  " + "\n  ".join(stale)
    )


def test_install_script_is_quiet_when_the_tools_are_installed() -> None:
    require_fhir_tools()

    again = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=False)

    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_package_data_holds_definitions_not_examples() -> None:
    kinds = sorted(r["resourceType"] for r in package_resources().values())

    assert kinds == ["CodeSystem"] * 5 + ["Measure"] + ["StructureDefinition"] * 2 + ["ValueSet"] * 5


@pytest.mark.parametrize(
    ("code_system_url", "expected"),
    [
        (t.ATTENDANCE_CS, t.ATTENDANCE_DISPLAY),
        (t.TIER_CS, t.TIERS),
        (t.ABSENCE_REASON_CS, t.ABSENCE_REASONS),
        (t.POLICY_CS, t.POLICIES),
    ],
)
def test_code_systems_have_the_codes_and_displays_of_terminology_py(
    code_system_url: str, expected: dict[str, str]
) -> None:
    code_system = resource(code_system_url)

    assert concepts(code_system_url) == expected
    assert code_system["content"] == "complete"
    assert code_system["count"] == len(expected)


def test_attendance_code_system_is_the_summary_code_and_the_measures() -> None:
    assert set(concepts(t.ATTENDANCE_CS)) == {t.ATTENDANCE_SUMMARY, *t.MEASURES}


@pytest.mark.parametrize(
    ("value_set_url", "code_system_url"),
    [
        (t.ATTENDANCE_MEASURE_VS, t.ATTENDANCE_CS),
        (t.TIER_VS, t.TIER_CS),
        (t.ABSENCE_REASON_VS, t.ABSENCE_REASON_CS),
        (t.POLICY_VS, t.POLICY_CS),
    ],
)
def test_value_sets_include_all_codes_of_their_code_system(value_set_url: str, code_system_url: str) -> None:
    compose = resource(value_set_url)["compose"]

    assert compose["include"] == [{"system": code_system_url}]
    assert "exclude" not in compose


@pytest.mark.parametrize(
    ("profile_url", "base_type"), [(t.OBSERVATION_PROFILE, "Observation"), (t.CONSENT_PROFILE, "Consent")]
)
def test_profiles_are_r4_constraints_with_snapshots(profile_url: str, base_type: str) -> None:
    profile = resource(profile_url)

    assert profile["fhirVersion"] == "4.0.1"
    assert profile["type"] == base_type
    assert profile["derivation"] == "constraint"
    assert profile["baseDefinition"] == f"http://hl7.org/fhir/StructureDefinition/{base_type}"
    elements = profile["snapshot"]["element"]
    assert elements[0]["id"] == base_type
    # a snapshot holds every element of the base resource, not only the constrained ones
    assert {f"{base_type}.id", f"{base_type}.meta", f"{base_type}.status"} <= {e["id"] for e in elements}


def pattern_coding(element: Resource) -> tuple[str, str]:
    if "patternCoding" in element:
        coding = element["patternCoding"]
    else:
        (coding,) = element["patternCodeableConcept"]["coding"]
    return coding["system"], coding["code"]


def slice_patterns(profile_url: str, path: str, pattern_on: str = "") -> dict[str, tuple[str, str]]:
    """Slice name -> (system, code) of the pattern that identifies the slice."""
    elements = snapshot(profile_url)
    names = [e["sliceName"] for e in elements.values() if e["path"] == path and "sliceName" in e]
    return {name: pattern_coding(elements[f"{path}:{name}{pattern_on}"]) for name in names}


def test_observation_category_slices_are_social_history_and_us_core_sdoh() -> None:
    elements = snapshot(t.OBSERVATION_PROFILE)

    assert slice_patterns(t.OBSERVATION_PROFILE, "Observation.category") == {
        "social-history": (t.OBSERVATION_CATEGORY_CS, "social-history"),
        "sdoh": (t.US_CORE_CATEGORY_CS, "sdoh"),
    }
    for name in ("social-history", "sdoh"):
        assert (
            elements[f"Observation.category:{name}"]["min"],
            elements[f"Observation.category:{name}"]["max"],
        ) == (1, "1")
    assert elements["Observation.category"]["slicing"]["discriminator"] == [{"type": "pattern", "path": "$this"}]


def test_observation_has_one_component_slice_per_measure_each_required() -> None:
    elements = snapshot(t.OBSERVATION_PROFILE)

    slices = slice_patterns(t.OBSERVATION_PROFILE, "Observation.component", ".code")

    assert slices == {code: (t.ATTENDANCE_CS, code) for code in t.MEASURES}
    for code in t.MEASURES:
        assert (
            elements[f"Observation.component:{code}"]["min"],
            elements[f"Observation.component:{code}"]["max"],
        ) == (1, "1")
    assert elements["Observation.component"]["slicing"]["discriminator"] == [{"type": "pattern", "path": "code"}]


def test_day_count_components_are_ucum_days_with_a_value() -> None:
    elements = snapshot(t.OBSERVATION_PROFILE)

    for code in set(t.MEASURES) - {"chronic-absence-tier"}:
        value = elements[f"Observation.component:{code}.value[x]"]
        assert [ty["code"] for ty in value["type"]] == ["Quantity"], code
        assert value["patternQuantity"] == {"system": t.UCUM, "code": "d", "unit": "d"}, code
        assert elements[f"Observation.component:{code}.value[x].value"]["min"] == 1, code


def test_tier_is_bound_required_to_the_tier_value_set_twice() -> None:
    elements = snapshot(t.OBSERVATION_PROFILE)

    for element_id in ("Observation.interpretation:tier", "Observation.component:chronic-absence-tier.value[x]"):
        assert elements[element_id]["binding"]["strength"] == "required", element_id
        assert elements[element_id]["binding"]["valueSet"] == t.TIER_VS, element_id
    assert elements["Observation.interpretation:tier"]["min"] == 1
    assert [ty["code"] for ty in elements["Observation.component:chronic-absence-tier.value[x]"]["type"]] == [
        "CodeableConcept"
    ]


def test_observation_core_elements() -> None:
    elements = snapshot(t.OBSERVATION_PROFILE)

    assert pattern_coding(elements["Observation.code"]) == (t.ATTENDANCE_CS, t.ATTENDANCE_SUMMARY)
    assert elements["Observation.identifier"]["min"] == 1
    assert [ty["code"] for ty in elements["Observation.effective[x]"]["type"]] == ["Period"]
    assert elements["Observation.effective[x].start"]["min"] == elements["Observation.effective[x].end"]["min"] == 1
    assert elements["Observation.subject"]["type"][0]["targetProfile"] == [
        "http://hl7.org/fhir/StructureDefinition/Patient"
    ]
    # a logical reference (identifier only) is allowed: subject.reference stays optional
    assert elements.get("Observation.subject.reference", {"min": 0})["min"] == 0
    assert elements["Observation.performer"]["type"][0]["targetProfile"] == [
        "http://hl7.org/fhir/StructureDefinition/Organization"
    ]
    assert (elements["Observation.performer"]["min"], elements["Observation.performer"]["max"]) == (1, "1")
    rate = elements["Observation.value[x]"]
    assert ([ty["code"] for ty in rate["type"]], rate["min"]) == (["Quantity"], 0)
    assert elements["Observation.value[x].system"]["patternUri"] == t.UCUM
    assert elements["Observation.value[x].code"]["patternCode"] == "%"


def test_consent_category_and_scope() -> None:
    elements = snapshot(t.CONSENT_PROFILE)

    assert slice_patterns(t.CONSENT_PROFILE, "Consent.category") == {
        "patient-consent": (t.LOINC, t.LOINC_PATIENT_CONSENT),
        "idscl": (t.V3_ACT_CODE, "IDSCL"),
    }
    assert pattern_coding(elements["Consent.scope"]) == (t.CONSENT_SCOPE_CS, "patient-privacy")
    for element_id in ("Consent.patient", "Consent.dateTime", "Consent.performer", "Consent.organization"):
        assert elements[element_id]["min"] == 1, element_id
    assert elements["Consent.policy.uri"]["fixedUri"] == t.FERPA_POLICY_URI


def test_consent_provision_names_a_recipient_the_disclosure_and_observations() -> None:
    elements = snapshot(t.CONSENT_PROFILE)

    assert slice_patterns(t.CONSENT_PROFILE, "Consent.provision.actor", ".role") == {
        "recipient": (t.V3_PARTICIPATION_TYPE, "IRCP")
    }
    assert elements["Consent.provision.actor:recipient"]["min"] == 1
    assert elements["Consent.provision.actor:recipient.reference"]["type"][0]["targetProfile"] == [
        "http://hl7.org/fhir/StructureDefinition/Organization"
    ]
    assert slice_patterns(t.CONSENT_PROFILE, "Consent.provision.action") == {
        "disclose": (t.CONSENT_ACTION_CS, "disclose")
    }
    assert slice_patterns(t.CONSENT_PROFILE, "Consent.provision.class") == {
        "observation": (t.RESOURCE_TYPES_CS, "Observation")
    }
    assert elements["Consent.provision.code"]["binding"]["valueSet"] == t.ATTENDANCE_MEASURE_VS
    for element_id in ("Consent.provision", "Consent.provision.type", "Consent.provision.period.start"):
        assert elements[element_id]["min"] == 1, element_id
    assert elements["Consent.provision.purpose"]["min"] == 1


def days_absent_invariant() -> str:
    (constraint,) = [c for c in snapshot(t.OBSERVATION_PROFILE)["Observation"]["constraint"] if c["key"] == "sis-att-1"]
    assert constraint["severity"] == "error"
    return constraint["expression"]


def with_days(observation: Resource, days_absent: float, days_in_membership: float) -> Resource:
    changed = copy.deepcopy(observation)
    for component in changed["component"]:
        code = component["code"]["coding"][0]["code"]
        if code == "days-absent":
            component["valueQuantity"]["value"] = days_absent
        elif code == "days-in-membership":
            component["valueQuantity"]["value"] = days_in_membership
    return changed


@pytest.mark.parametrize(
    ("days_absent", "days_in_membership", "holds"),
    [(6.5, 100, True), (100, 100, True), (0, 0, True), (100.5, 100, False), (3, 0, False)],
)
def test_days_absent_cannot_exceed_days_in_membership(
    days_absent: float, days_in_membership: float, holds: bool
) -> None:
    example = json.loads((GENERATED / "Observation-school-attendance-observation-example.json").read_text())

    result = evaluate(with_days(example, days_absent, days_in_membership), days_absent_invariant(), {}, models["r4"])

    assert result == [holds]


def test_absence_flag_value_set_is_v3_abnormal_and_normal_as_terminology_py_names_them() -> None:
    (include,) = resource(t.ABSENCE_FLAG_VS)["compose"]["include"]

    assert include["system"] == t.V3_OBSERVATION_INTERPRETATION
    assert {c["code"]: c["display"] for c in include["concept"]} == t.INTERPRETATION_FLAGS
    assert set(t.TIER_FLAG.values()) == set(t.INTERPRETATION_FLAGS)


def test_observation_interpretation_is_the_required_tier_and_an_optional_v3_flag() -> None:
    elements = snapshot(t.OBSERVATION_PROFILE)

    root = elements["Observation.interpretation"]
    assert (root["min"], root["max"]) == (1, "2")
    assert root["slicing"]["discriminator"] == [{"type": "value", "path": "coding.system"}]
    tier, flag = elements["Observation.interpretation:tier"], elements["Observation.interpretation:flag"]
    assert ((tier["min"], tier["max"]), (flag["min"], flag["max"])) == ((1, "1"), (0, "1"))
    assert tier["binding"] == {"strength": "required", "valueSet": t.TIER_VS}
    assert flag["binding"] == {"strength": "required", "valueSet": t.ABSENCE_FLAG_VS}
    assert elements["Observation.interpretation:tier.coding.system"]["fixedUri"] == t.TIER_CS
    assert elements["Observation.interpretation:flag.coding.system"]["fixedUri"] == t.V3_OBSERVATION_INTERPRETATION


def test_observation_requires_issued_and_the_policy_as_method() -> None:
    elements = snapshot(t.OBSERVATION_PROFILE)

    assert elements["Observation.issued"]["min"] == 1
    assert (elements["Observation.method"]["min"], elements["Observation.method.text"]["min"]) == (1, 1)
    assert elements["Observation.method"]["binding"] == {"strength": "required", "valueSet": t.POLICY_VS}


@pytest.mark.parametrize(
    ("profile_url", "base_type"), [(t.OBSERVATION_PROFILE, "Observation"), (t.CONSENT_PROFILE, "Consent")]
)
def test_profiles_require_the_disclosure_security_labels(profile_url: str, base_type: str) -> None:
    assert slice_patterns(profile_url, f"{base_type}.meta.security") == {
        "restricted": (t.V3_CONFIDENTIALITY, "R"),
        "no-redisclosure": (t.V3_ACT_CODE, "NORDSCLCD"),
    }


def test_consent_requires_its_source_as_an_attachment_with_title_and_date() -> None:
    elements = snapshot(t.CONSENT_PROFILE)

    source = elements["Consent.source[x]"]
    assert (source["min"], [ty["code"] for ty in source["type"]]) == (1, ["Attachment"])
    assert elements["Consent.source[x].title"]["min"] == 1
    assert elements["Consent.source[x].creation"]["min"] == 1
