"""What an expert review found the validator let through: claimed profiles it does not have, unknown modifier
extensions, units that are not UCUM, days not in the calendar, narratives that break txt-1 or txt-2."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from sis2fhir.terminology import CONSENT_PROFILE, OBSERVATION_PROFILE
from sis2fhir.validate import Issue, Validator, operation_outcome, run_validate_command, validate_resource
from sis2fhir.validate.definitions import Definitions
from sis2fhir.validate.ucum import ucum_problem
from tests.validate.test_validate_cases import (
    FOREIGN_OBSERVATION_PROFILE,
    UNKNOWN_EXTENSION,
    _div,
    attendance_observation,
    example,
    ferpa_consent,
)

FOREIGN_CONSENT_PROFILE = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-consent"  # not shipped


def found(issues: list[Issue], severity: str = "error") -> list[tuple[str, str]]:
    return [(i.rule, i.expression) for i in issues if i.severity == severity]


# -- meta.profile ---------------------------------------------------------------------------------------------


def test_a_misspelt_sis2fhir_profile_is_an_error_and_the_command_exits_1(tmp_path: Path) -> None:
    observation = attendance_observation()
    observation["meta"]["profile"] = [OBSERVATION_PROFILE.replace("attendance", "attendence")]
    (issue,) = [i for i in validate_resource(observation) if i.rule == "profile"]
    assert (issue.severity, issue.expression) == ("error", "Observation.meta.profile[0]")
    assert "school-attendence-observation" in issue.message
    (tmp_path / "Observation.ndjson").write_bytes(orjson.dumps(observation) + b"\n")
    assert run_validate_command([tmp_path], io.StringIO()) == 1


def test_profiles_from_elsewhere_are_named_in_a_warning_and_the_command_exits_0(tmp_path: Path) -> None:
    """A profile from elsewhere that the validator does not ship: a warning, not a fail."""
    observation = attendance_observation()
    observation["meta"]["profile"] = [OBSERVATION_PROFILE, FOREIGN_OBSERVATION_PROFILE]
    consent = ferpa_consent()
    consent["meta"]["profile"] = [FOREIGN_CONSENT_PROFILE, CONSENT_PROFILE]
    assert found(validate_resource(observation)) == []
    assert found(validate_resource(observation), "warning") == [("profile", "Observation.meta.profile[1]")]
    assert found(validate_resource(consent), "warning") == [("profile", "Consent.meta.profile[0]")]
    (tmp_path / "Observation.ndjson").write_bytes(orjson.dumps(observation) + b"\n")
    (tmp_path / "Consent.ndjson").write_bytes(orjson.dumps(consent) + b"\n")
    out = io.StringIO()
    assert run_validate_command([tmp_path], out) == 0
    text = out.getvalue()
    assert f"profile {FOREIGN_OBSERVATION_PROFILE} is not known to this validator; validated against" in text
    assert f"{OBSERVATION_PROFILE} only" in text  # still checked against ours
    assert "2 resource(s) checked: 2 valid, 0 invalid" in text


def test_a_resource_claiming_only_a_foreign_profile_is_checked_against_r4_core() -> None:
    observation = example("observation-example-f001-glucose.json")
    observation["meta"] = {"profile": [FOREIGN_OBSERVATION_PROFILE]}
    (warning,) = [i for i in validate_resource(observation) if i.severity == "warning"]
    assert warning.message.endswith("validated against R4 core only")
    observation["status"] = "done"  # the R4 core rules still apply
    assert found(validate_resource(observation)) == [("binding", "Observation.status")]


def test_a_foreign_claim_does_not_hide_an_error_against_our_profile() -> None:
    observation = attendance_observation()
    observation["meta"]["profile"].insert(0, FOREIGN_OBSERVATION_PROFILE)
    observation["category"].pop()  # our profile wants the sdoh category
    assert ("slice-cardinality", "Observation.category") in found(validate_resource(observation))


def test_an_explicit_profile_is_what_counts_and_meta_profile_is_not_reported() -> None:
    """The pipeline validates against the profile it built for; what meta.profile claims beside it is not judged."""
    observation = attendance_observation()
    observation["meta"]["profile"].append(FOREIGN_OBSERVATION_PROFILE)
    assert validate_resource(observation, profile=OBSERVATION_PROFILE) == []


# -- modifier extensions --------------------------------------------------------------------------------------


def _modifier(url: str) -> list[dict[str, Any]]:
    return [{"url": url, "valueBoolean": True}]


def test_an_unknown_modifier_extension_is_an_error_an_unknown_extension_is_not() -> None:
    consent = ferpa_consent()
    consent["extension"] = _modifier(UNKNOWN_EXTENSION)  # may be ignored by who does not know it
    assert found(validate_resource(consent)) == []
    consent["provision"]["modifierExtension"] = _modifier(UNKNOWN_EXTENSION)
    (issue,) = [i for i in validate_resource(consent) if i.severity == "error"]
    assert (issue.rule, issue.expression) == ("modifier-extension", "Consent.provision.modifierExtension[0]")
    assert UNKNOWN_EXTENSION in issue.message
    assert operation_outcome([issue])["issue"][0]["code"] == "not-supported"


def test_a_modifier_extension_the_validator_has_a_definition_of_passes(tmp_path: Path) -> None:
    source = Path(str(resources.files("sis2fhir") / "data" / "profiles"))
    for path in source.glob("*.json"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    core = orjson.loads(
        (Path(str(resources.files("sis2fhir") / "data" / "core")) / "structure-definitions.json").read_bytes()
    )
    extension = dict(core["definitions"]["http://hl7.org/fhir/StructureDefinition/Extension"])
    extension.update(url=UNKNOWN_EXTENSION, name="DoNotDisclose", derivation="constraint")
    (tmp_path / "StructureDefinition-do-not-disclose.json").write_bytes(orjson.dumps(extension))
    knowing = Validator(Definitions([tmp_path]))
    observation = attendance_observation()
    observation["modifierExtension"] = _modifier(UNKNOWN_EXTENSION)
    assert found(knowing.validate(observation)) == []
    assert found(validate_resource(observation)) == [("modifier-extension", "Observation.modifierExtension[0]")]


# -- UCUM ---------------------------------------------------------------------------------------------------------

VALID_UCUM = [
    "d", "%", "1", "h", "min", "wk", "a", "mg/dL", "kg/m2", "10*3/uL", "10^6", "/min", "{score}", "mm[Hg]",
    "[in_i]", "[lb_av]", "Cel", "[degF]", "mmol/L", "meq/L", "g/(8.h)", "ug/(kg.h)", "s-1", "m/s2", "[IU]/L",
    "{cells}/uL", "mL/min/{1.73_m2}", "kPa", "cm[H2O]", "B[10.nV]", "%[slope]", "ng/mL{FEU}", "KiBy", "dam", "''",
]  # fmt: skip
INVALID_UCUM = [
    "days", "percent", "D", "hrs", "Days", "mg/", "(mg", "mg)", "m g", "{x", "kd", "k[in_i]", "m+", "/",
    "mg//dL", "10*x", "2mg", "%%", "degrees", "mmHg", "",
]  # fmt: skip


@pytest.mark.parametrize("code", VALID_UCUM)
def test_ucum_codes_parse(code: str) -> None:
    assert ucum_problem(code) is None


@pytest.mark.parametrize("code", INVALID_UCUM)
def test_what_is_not_ucum_is_told(code: str) -> None:
    assert ucum_problem(code) is not None


def test_a_ucum_quantity_with_a_made_up_unit_fails_and_one_in_another_system_is_not_judged() -> None:
    observation = example("observation-example-f001-glucose.json")
    observation["valueQuantity"].update(code="mmol/liter", unit="mmol/liter")
    (issue,) = [i for i in validate_resource(observation) if i.severity == "error"]
    assert (issue.rule, issue.code, issue.expression) == ("ucum", "code-invalid", "Observation.valueQuantity.code")
    assert "'liter' is not a UCUM unit" in issue.message
    observation["valueQuantity"]["system"] = "http://example.org/units"
    assert found(validate_resource(observation)) == []


def test_unit_text_may_differ_from_the_ucum_code() -> None:
    observation = example("observation-example-f001-glucose.json")
    observation["valueQuantity"]["unit"] = "millimoles per litre"
    assert found(validate_resource(observation)) == []


# -- calendar dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2024-02-29", True),
        ("2000-02-29", True),
        ("2023-02-29", False),
        ("1900-02-29", False),
        ("2025-02-30", False),
        ("2025-04-31", False),
        ("2025-12-31", True),
        ("2025-13-01", False),
        ("2025-02", True),
        ("2025", True),
    ],
)
def test_a_birth_date_must_be_a_day_of_the_calendar(value: str, valid: bool) -> None:
    patient = example("patient-example.json")
    patient["birthDate"] = value
    errors = [i for i in validate_resource(patient) if i.severity == "error"]
    assert errors == [] if valid else [(i.rule, i.expression) for i in errors] == [("format", "Patient.birthDate")]
    assert all(value not in i.message for i in errors)  # a birth date is never echoed


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("effectiveDateTime", "2025-02-30T08:00:00-05:00"),
        ("issued", "2023-02-29T08:00:00Z"),
        ("effectivePeriod.start", "2025-06-31"),
        ("effectivePeriod.end", "2025-11-31T23:59:59Z"),
    ],
)
def test_date_times_instants_and_periods_must_be_days_of_the_calendar(where: str, value: str) -> None:
    observation = example("observation-example-f001-glucose.json")
    observation.pop("effectivePeriod", None)
    if where.startswith("effectivePeriod"):
        observation["effectivePeriod"] = {"start": "2025-01-01", "end": "2025-12-31"}
        observation["effectivePeriod"][where.split(".")[1]] = value
    else:
        observation[where] = value
    assert found(validate_resource(observation)) == [("format", f"Observation.{where}")]
    valid = value.replace("-02-30", "-02-28").replace("-02-29", "-02-28").replace("-31", "-30")
    if where.startswith("effectivePeriod"):
        observation["effectivePeriod"][where.split(".")[1]] = valid
    else:
        observation[where] = valid
    assert found(validate_resource(observation)) == []


# -- narrative ------------------------------------------------------------------------------------------------------

RICH = (
    '<h3 class="title">Attendance</h3><p style="color: #333">3 of 128 days <b>absent</b><br/>'
    '<a href="https://example.org/policy" title="policy">policy</a> <a name="top"/></p>'
    '<table border="1"><thead><tr><th scope="col">days</th></tr></thead><tbody><tr><td colspan="1">3</td>'
    '</tr></tbody></table><ul><li><span lang="en">one</span></li></ul><img src="#pic" alt="chart"/>'
)


def _narrated(div: str) -> dict[str, Any]:
    observation = attendance_observation()
    observation["text"]["div"] = div
    return observation


def test_basic_formatting_tables_links_and_images_pass() -> None:
    assert found(validate_resource(_narrated(_div(RICH)))) == []
    assert found(validate_resource(_narrated(_div('<img src="#chart" alt=""/>')))) == []  # an image is content


@pytest.mark.parametrize(
    ("inner", "named"),
    [
        ("<script>alert(1)</script>", "<script>"),
        ("<form><p>x</p></form>", "<form>"),
        ('<iframe src="https://example.org"/>', "<iframe>"),
        ('<object data="x.swf"/>', "<object>"),
        ("<body><p>x</p></body>", "<body>"),
        ('<link rel="stylesheet" href="https://example.org/a.css"/>', "<link>"),
        ("<style>p {color: red}</style><p>x</p>", "<style>"),
        ('<p onmouseover="x()">x</p>', "'onmouseover'"),
        ('<a href="javascript:alert(1)">x</a>', "runs a script"),
        ('<img src="vbscript:x" alt="x"/>', "runs a script"),
        ('<svg xmlns="http://www.w3.org/2000/svg"><text>x</text></svg>', "<svg>"),
        ('<a xmlns:xl="http://www.w3.org/1999/xlink" xl:href="https://example.org">x</a>', "another namespace"),
    ],
)
def test_txt_1_refuses_active_and_foreign_content_and_says_what(inner: str, named: str) -> None:
    issues = validate_resource(_narrated(_div(f"<p>ok</p>{inner}")))
    (issue,) = [i for i in issues if i.severity == "error"]
    assert (issue.rule, issue.expression) == ("txt-1", "Observation.text.div")
    assert named in issue.message


@pytest.mark.parametrize("inner", ["", "   ", "<p> </p>", "<p>\n\t<br/></p>"])
def test_txt_2_refuses_a_narrative_with_nothing_to_read(inner: str) -> None:
    assert found(validate_resource(_narrated(_div(inner)))) == [("txt-2", "Observation.text.div")]


@pytest.mark.parametrize(
    "div",
    [
        "<div><p>no namespace</p></div>",
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>&nbsp;</p></div>',  # HTML entities are not XML
        '<p xmlns="http://www.w3.org/1999/xhtml">not a div</p>',
    ],
)
def test_a_narrative_must_be_a_well_formed_xhtml_div(div: str) -> None:
    assert found(validate_resource(_narrated(div))) == [("format", "Observation.text.div")]


def test_the_narrative_message_names_no_text_of_it() -> None:
    issues = validate_resource(_narrated(_div("<p>Jane Roe 2014-03-05</p><script>x</script>")))
    assert all("Jane" not in i.message and "2014" not in i.message for i in issues)
