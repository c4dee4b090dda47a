"""`sis2fhir validate PATH...`: files, NDJSON lines, Bundles and folders; the OperationOutcome; exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from sis2fhir.validate import operation_outcome, run_validate_command, validate_files, validate_resource
from tests.validate.test_validate_cases import attendance_observation, example, ferpa_consent


def _write_json(path: Path, resource: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(resource))
    return path


def _write_ndjson(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_valid_folder_exits_zero(tmp_path: Path) -> None:
    _write_json(tmp_path / "Observation-att.json", attendance_observation())
    _write_json(tmp_path / "nested" / "deeper" / "Consent-1.json", ferpa_consent())
    (tmp_path / "notes.txt").write_text("not FHIR")
    report = validate_files([tmp_path])
    assert sorted((r.resource_type, r.resource_id) for r in report.resources) == [
        ("Consent", ferpa_consent()["id"]),
        ("Observation", attendance_observation()["id"]),
    ]
    assert report.exit_code() == 0


def test_ndjson_reports_the_line_of_each_bad_resource(tmp_path: Path) -> None:
    bad = attendance_observation()
    bad["status"] = "done"
    path = _write_ndjson(
        tmp_path / "Observation.ndjson",
        [orjson.dumps(attendance_observation()), b"", orjson.dumps(bad)],
    )
    report = validate_files([path])
    assert [(r.line, r.errors) for r in report.resources] == [(1, 0), (3, 1)]
    (invalid,) = report.invalid
    assert [(i.rule, i.expression) for i in invalid.issues if i.severity == "error"] == [
        ("binding", "Observation.status")
    ]
    assert report.exit_code() == 1


def test_unreadable_line_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    path = _write_ndjson(tmp_path / "mixed.ndjson", [b'{"resourceType": "Observation"', orjson.dumps(ferpa_consent())])
    report = validate_files([path])
    assert [(u.line, u.message.startswith("not JSON")) for u in report.unreadable] == [(1, True)]
    assert [r.line for r in report.resources] == [2]
    assert report.exit_code() == 2


def test_missing_path_exits_two(tmp_path: Path) -> None:
    assert validate_files([tmp_path / "nope"]).exit_code() == 2


def test_bundle_file_names_the_broken_entry(tmp_path: Path) -> None:
    bundle = example("bundle-transaction.json")
    bundle["entry"][2]["resource"]["resourceType"] = "Patinet"
    report = validate_files([_write_json(tmp_path / "bundle.json", bundle)])
    (resource,) = report.resources
    assert resource.resource_type == "Bundle"
    assert [(i.rule, i.expression) for i in resource.issues if i.severity == "error"] == [
        ("resourceType", "Bundle.entry[2].resource")
    ]


def test_operation_outcome_is_itself_a_valid_r4_resource() -> None:
    broken = attendance_observation()
    broken["component"][1]["valueQuantity"]["code"] = "h"
    issues = validate_resource(broken)
    outcome = operation_outcome(issues, diagnostics_prefix="users.csv line 7: ")
    assert [i for i in validate_resource(outcome) if i.severity == "error"] == []
    (error,) = [entry for entry in outcome["issue"] if entry["severity"] == "error"]
    assert error["code"] == "value"
    assert error["expression"] == ["Observation.component[1].valueQuantity"]
    assert error["diagnostics"].startswith("users.csv line 7: ")
    assert error["details"]["coding"][0]["code"] == "pattern"


def test_operation_outcome_for_no_issues_says_all_ok() -> None:
    outcome = operation_outcome([])
    assert outcome["issue"] == [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    assert [i for i in validate_resource(outcome) if i.severity == "error"] == []


def test_command_summary_names_rule_and_location_but_no_patient_data(tmp_path: Path) -> None:
    patient = example("patient-example.json")
    patient["birthDate"] = "1974-02-30T00:00"
    _write_json(tmp_path / "patient.json", patient)
    out = io.StringIO()
    code = run_validate_command([tmp_path], out)
    text = out.getvalue()
    assert code == 1
    assert "Patient.birthDate" in text and "[format]" in text
    assert "1 resource(s) checked: 0 valid, 1 invalid" in text
    assert "1974" not in text and "Chalmers" not in text
