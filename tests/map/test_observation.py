"""The attendance Observation as a receiver reads it: what the value is, the flags, the policy, issued, status."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sis2fhir import terminology as t
from sis2fhir.cli import app
from sis2fhir.disclosure import fingerprint
from sis2fhir.map.consent import ferpa_consent
from sis2fhir.map.labels import security_labels
from sis2fhir.map.observation import attendance_observation, policy_code, policy_text
from sis2fhir.measure import chronic_absence_tier, last_instructional_day
from sis2fhir.policy import resolve_policy
from sis2fhir.terminology import Tier
from sis2fhir.validate import validate_resource
from tests.support import attendance_items as items
from tests.support import paths

V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def observation(days_absent: float = 3, days_in_membership: int = 80, **measured: Any) -> dict[str, Any]:
    state_id = "S0000000042"
    summary = items.summary(state_id, days_absent, days_in_membership)
    context = replace(items.MEASURED, **measured)
    return attendance_observation(summary, items.student(state_id), items.SCHOOL, items.DISTRICT, context)


def codings(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept["coding"]]


def test_the_value_is_named_an_absence_rate_in_code_display_text_and_narrative() -> None:
    obs = observation(days_absent=2.5, days_in_membership=80)

    (coding,) = obs["code"]["coding"]
    assert (coding["code"], coding["display"]) == ("attendance-summary", "Absence rate, school year to date")
    assert obs["code"]["text"] == "School absence rate (days absent as % of days in membership), school year to date"
    assert obs["valueQuantity"]["value"] == 3.13  # 2.5 of 80 days: an absence rate, not 3 % attendance
    assert "absence rate 3.13 %" in obs["text"]["div"]  # as the value says
    assert "2.5 of 80 days in membership absent" in obs["text"]["div"]


@pytest.mark.parametrize(
    ("days_absent", "days_in_membership", "tier", "flag"),
    [
        (1, 80, "satisfactory", "N"),
        (5, 80, "at-risk", "N"),
        (8, 80, "moderate-chronic", "A"),
        (16, 80, "severe-chronic", "A"),
        (0, 5, "insufficient-data", None),
    ],
)
def test_interpretation_is_the_tier_with_the_v3_flag_beside_it(
    days_absent: float, days_in_membership: int, tier: str, flag: str | None
) -> None:
    obs = observation(days_absent, days_in_membership)

    expected = [[(t.TIER_CS, tier)]] + ([[(V3, flag)]] if flag else [])
    assert [codings(c) for c in obs["interpretation"]] == expected
    if flag:
        assert obs["interpretation"][1]["coding"][0]["display"] == {"A": "Abnormal", "N": "Normal"}[flag]
    assert not [i for i in validate_resource(obs, profile=t.OBSERVATION_PROFILE) if i.severity == "error"]


def test_tier_codes_are_plain_strings_equal_to_the_enum() -> None:
    obs = observation(8, 80)

    code = obs["interpretation"][0]["coding"][0]["code"]
    assert type(code) is str and code == Tier.MODERATE_CHRONIC


def test_the_essa_preset_is_named_with_its_thresholds() -> None:
    method = observation()["method"]

    assert codings(method) == [(t.POLICY_CS, "essa-10-percent")]
    assert method["text"].startswith(
        "Chronic at >= 10 % of days in membership; at risk >= 5 %; severe >= 20 %; no tier below 10 days in membership."
    )
    assert "in-school suspension does not count" in method["text"]


def test_the_crdc_preset_is_named_with_its_day_thresholds() -> None:
    method = observation(policy=resolve_policy("crdc"))["method"]

    assert codings(method) == [(t.POLICY_CS, "crdc-15-days")]
    assert method["text"].startswith("Chronic at >= 15 days absent; at risk >= 7.5 days; severe >= 30 days;")
    assert "partial days count as a whole day when at least half was missed" in method["text"]


def test_a_preset_with_a_setting_changed_is_custom_and_states_what_was_used() -> None:
    policy = resolve_policy("essa", threshold_percent=15, minimum_days_in_membership=20)

    method = observation(policy=policy)["method"]

    assert policy.name == "essa"  # the preset's name stays: the code must not follow it
    assert codings(method) == [(t.POLICY_CS, "custom")]
    assert method["text"].startswith("Chronic at >= 15 % of days in membership; at risk >= 7.5 %; severe >= 30 %;")
    assert "no tier below 20 days in membership" in method["text"]


def test_overrides_that_restate_the_preset_keep_its_code() -> None:
    assert policy_code(resolve_policy("essa", threshold_percent=10.0)) == "essa-10-percent"
    assert policy_text(resolve_policy("essa")) == policy_text(resolve_policy("essa", threshold_percent=10.0))


def test_issued_is_the_end_of_the_period_s_last_day_so_the_same_export_gives_the_same_bytes() -> None:
    assert observation()["issued"] == f"{items.AS_OF.isoformat()}T23:59:59Z"
    assert fingerprint([observation()]) == fingerprint([observation()])


@pytest.mark.parametrize(
    ("last_school_day", "status"),
    [
        ({items.SCHOOL.sourced_id: date(2026, 6, 12)}, "preliminary"),  # as of 2026-01-16: the year goes on
        ({items.SCHOOL.sourced_id: items.AS_OF}, "final"),  # the summary reaches the last instructional day
        ({items.SCHOOL.sourced_id: date(2026, 1, 9)}, "final"),
        ({}, "preliminary"),  # the school's last day not known: never claimed final
    ],
)
def test_status_is_preliminary_until_the_school_year_is_complete(last_school_day: dict[str, date], status: str) -> None:
    assert observation(last_school_day=last_school_day)["status"] == status


def test_the_last_instructional_day_is_the_calendar_s_last_day_in_the_year_else_the_year_end() -> None:
    start, end = date(2025, 8, 25), date(2026, 6, 30)
    days = [date(2025, 8, 25), date(2026, 6, 11), date(2026, 6, 12), date(2026, 7, 6)]  # a summer-school day after

    assert last_instructional_day(days, start, end) == date(2026, 6, 12)
    assert last_instructional_day(None, start, end) == end
    assert last_instructional_day([date(2024, 6, 1)], start, end) == end


def test_security_labels_are_restricted_and_no_redisclosure() -> None:
    obs = observation()

    assert [(s["system"], s["code"]) for s in obs["meta"]["security"]] == [
        ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R"),
        ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "NORDSCLCD"),
    ]
    labels = security_labels()
    labels[0]["code"] = "N"
    assert security_labels()[0]["code"] == "R"  # each caller gets its own


def _run(tmp_path: Path, as_of: str) -> list[dict[str, Any]]:
    out = tmp_path / as_of
    result = CliRunner().invoke(app, ["sync", str(paths.ROOT / "examples" / "district"), "--as-of", as_of,
                                      "--out", str(out), "--workers", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return [json.loads(line) for f in sorted(out.glob("*/Observation.ndjson")) for line in f.read_text().splitlines()]


def test_a_sync_is_preliminary_the_day_before_the_last_school_day_and_final_on_it(tmp_path: Path) -> None:
    # examples/district/calendar.csv: the last instructional day of 2025-26 is 2026-06-12
    before, on = _run(tmp_path, "2026-06-11"), _run(tmp_path, "2026-06-12")

    assert before and {o["status"] for o in before} == {"preliminary"}
    assert on and {o["status"] for o in on} == {"final"}
    assert {o["effectivePeriod"]["end"] for o in on} == {"2026-06-12"}
    assert all(o["issued"].endswith("Z") for o in on)


def test_tiers_are_one_enum_whose_members_are_their_codes() -> None:
    tier = chronic_absence_tier(800, 80, resolve_policy())

    assert tier is Tier.MODERATE_CHRONIC and tier == "moderate-chronic"
    assert list(t.TIERS) == list(Tier)  # the code system's order, as the run summary lists them
    assert set(t.TIER_FLAG) == set(Tier) - {Tier.INSUFFICIENT_DATA}
    assert {tier for tier, flag in t.TIER_FLAG.items() if flag == "A"} == t.CHRONIC_TIERS


def _objects(node: object) -> list[int]:
    if isinstance(node, dict):
        return [id(node), *(i for value in node.values() for i in _objects(value))]
    if isinstance(node, list):
        return [id(node), *(i for item in node for i in _objects(item))]
    return []


def test_a_mapped_resource_holds_no_object_twice() -> None:
    """The mappers share constant parts between resources, never within one: a deep copy changed at one position
    (as tests and a linking recipient change theirs) changes that position only."""
    for made in (
        attendance_observation(items.summary("S1", 0, 80), items.student("S1"), items.SCHOOL,
                                               items.DISTRICT, items.MEASURED, literal=True),
        ferpa_consent(items.consent_record("S1"), items.student("S1"), None, items.DISTRICT, literal=True),
    ):  # fmt: skip
        objects = _objects(made)
        assert len(objects) == len(set(objects))
