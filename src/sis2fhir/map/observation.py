"""One student's year-to-date attendance at one school as a school-attendance Observation (profiles/).

The value is the absence rate; the tier is the interpretation (with the v3 A/N flag beside it) and a component;
Observation.method names the policy that made the tier, with its thresholds. Status: `preliminary` while the
school year is in progress (the figure changes every school day), `final` once the school's last instructional
day of the year is in it (docs/observation.md).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.config import DistrictSettings
from sis2fhir.map.identity import identifier, resource_id, school_reference, student_reference
from sis2fhir.map.labels import disclosed_meta
from sis2fhir.map.profiles import claim_profiles
from sis2fhir.measure import HUNDREDTHS, AttendanceSummary, rate_percent_hundredths
from sis2fhir.policy import PRESETS, Policy
from sis2fhir.records import AttendanceCategory, School, Student


@dataclass(frozen=True, slots=True)
class Measured:
    """What every summary of one run was measured with."""

    policy: Policy
    # per school: its last instructional day of the school year (calendar.csv, else the year's end); a summary
    # that reaches it is final. A school not named: the year's end date of the summary's school year is not
    # known here, so the summary stays preliminary.
    last_school_day: Mapping[str, date]


def issued(summary: AttendanceSummary) -> str:
    """Observation.issued: the last second of the period's last day, in UTC. Derived from the figures, not read from
    the clock: the same export gives the same resources (and the outbox sends nothing when nothing changed), a later
    as-of date gives a later instant, and a re-run for an earlier date (a backfill) sorts where its figures belong.
    The district's time zone is not known, so the day ends in UTC (the afternoon or evening of that day in the US)."""
    return f"{summary.as_of.isoformat()}T23:59:59Z"


_CATEGORIES = [
    {"coding": [{"system": t.OBSERVATION_CATEGORY_CS, "code": "social-history", "display": "Social History"}]},
    {"coding": [{"system": t.US_CORE_CATEGORY_CS, "code": "sdoh", "display": "SDOH"}]},
]
_CODE = {
    "coding": [
        {
            "system": t.ATTENDANCE_CS,
            "code": t.ATTENDANCE_SUMMARY,
            "display": t.ATTENDANCE_DISPLAY[t.ATTENDANCE_SUMMARY],
        }
    ],
    "text": t.ABSENCE_RATE_TEXT,
}


def _measure_code(code: str) -> dict[str, Any]:
    coding = [{"system": t.ATTENDANCE_CS, "code": code, "display": t.MEASURES[code]}]
    if code == "days-absent-illness":
        # The closest LOINC term; domain.md: add it as a second coding only for illness.
        coding.append(
            {
                "system": t.LOINC,
                "code": t.LOINC_SCHOOL_DAYS_MISSED_ILLNESS,
                "display": "Work or school days missed due to illness [#]",
            }
        )
    return {"coding": coding}


# each measure's code, made once and shared by every Observation (like _CATEGORIES and _CODE: never changed)
_MEASURE_CODES = {code: _measure_code(code) for code in t.MEASURES}


def _days_value(hundredths: int) -> int | float:
    return hundredths // HUNDREDTHS if hundredths % HUNDREDTHS == 0 else hundredths / HUNDREDTHS


def _days(hundredths: int) -> dict[str, Any]:
    return {"value": _days_value(hundredths), "unit": "d", "system": t.UCUM, "code": "d"}


def _tier(tier: str) -> dict[str, Any]:
    # a plain str, not the Tier: the validator (like JSON) knows strings, not their subclasses
    return {"coding": [{"system": t.TIER_CS, "code": str(tier), "display": t.TIERS[tier]}]}


# Made once per tier and shared by the Observations, never changed, like _CODE; not objects that appear twice in one
# Observation (the days' quantities, the tier's coding in a component), which tests change in their deep copies at
# one position. Measured (the same summary mapped again and again, best of 7): 11 to 14 us an Observation with this
# and _policy_parts, 18 to 24 us before.
@lru_cache(maxsize=64, typed=True)
def interpretation(tier: str) -> list[dict[str, Any]]:
    """Observation.interpretation: the tier, and beside it the v3 flag (A chronic, N not; none for insufficient
    data, which is neither)."""
    out = [_tier(tier)]
    flag = t.TIER_FLAG.get(tier)
    if flag is not None:
        out.append(
            {
                "coding": [
                    {"system": t.V3_OBSERVATION_INTERPRETATION, "code": flag, "display": t.INTERPRETATION_FLAGS[flag]}
                ]
            }
        )
    return out


def policy_code(policy: Policy) -> str:
    """The chronic-absence-policy code: a preset as shipped, or custom (a preset with any setting overridden)."""
    if policy == PRESETS["essa"]:
        return t.POLICY_ESSA
    if policy == PRESETS["crdc"]:
        return t.POLICY_CRDC
    return t.POLICY_CUSTOM


_ABSENCES = (AttendanceCategory.EXCUSED_ABSENCE, AttendanceCategory.UNEXCUSED_ABSENCE)


def _number(x: float) -> str:
    return f"{x:g}"


def policy_text(policy: Policy) -> str:
    """The policy's rules as a reader needs them to read a tier: thresholds, minimum days, what counts."""
    short, long = (" %", " % of days in membership") if policy.measure == "percent" else (" days", " days absent")
    counted = []
    if AttendanceCategory.EXCUSED_ABSENCE in policy.absence_categories:
        counted.append("excused")
    if AttendanceCategory.UNEXCUSED_ABSENCE in policy.absence_categories:
        counted.append("unexcused")
    counts = " and ".join(counted) + " absences" if counted else "no absence category"
    others = sorted(c.value for c in policy.absence_categories if c not in _ABSENCES)
    if others:
        counts += ", " + ", ".join(others)
    oss = "counts" if policy.out_of_school_suspension_counts else "does not count"
    iss = "counts" if policy.in_school_suspension_counts else "does not count"
    partial = (
        "add their fraction of the day"
        if policy.partial_days == "fraction"
        else "count as a whole day when at least half was missed"
    )
    return (
        f"Chronic at >= {_number(policy.chronic_bound)}{long}; at risk >= {_number(policy.at_risk_bound)}{short}; "
        f"severe >= {_number(policy.severe_bound)}{short}; no tier below {policy.minimum_days_in_membership} days "
        f"in membership. Counted: {counts}; out-of-school suspension {oss}, in-school suspension {iss}; partial "
        f"days {partial}."
    )


def method(policy: Policy) -> dict[str, Any]:
    """Observation.method: the chronic absence policy applied, named and spelled out."""
    code = policy_code(policy)
    return {"coding": [{"system": t.POLICY_CS, "code": code, "display": t.POLICIES[code]}], "text": policy_text(policy)}


@lru_cache(maxsize=16)
def _policy_parts(policy: Policy) -> tuple[dict[str, Any], str]:
    """Observation.method and the policy's name as the narrative shows it, made once per policy (a run has one):
    the method dict is shared by every Observation, like _CODE (never changed)."""
    return method(policy), html.escape(t.POLICIES[policy_code(policy)])


def status(summary: AttendanceSummary, measured: Measured) -> str:
    """final once the school's last instructional day of the year is counted; preliminary before (the figure
    changes every school day, and R4 `final` says it will not)."""
    last = measured.last_school_day.get(summary.school_sourced_id)
    return "final" if last is not None and summary.as_of >= last else "preliminary"


def _rate_value(summary: AttendanceSummary) -> int | float | None:
    """The absence rate in percent to two decimals, as valueQuantity and the narrative show it."""
    hundredths = rate_percent_hundredths(summary.days_absent_h, summary.days_in_membership)
    if hundredths is None:
        return None
    return hundredths // 100 if hundredths % 100 == 0 else hundredths / 100


def _narrative(summary: AttendanceSummary, where: str, value: int | float | None, policy: Policy) -> dict[str, str]:
    """What a clinician reads in the chart (dom-6); no name or birth date, only the numbers (the rate as the
    value shows it, `value`). `where`: " at <the school's name>", escaped (or "")."""
    days = _days_value(summary.days_absent_h)
    rate = "" if value is None else f"; absence rate {value} %"
    text = (
        f"School absence{where}, {summary.period_start.isoformat()} to {summary.as_of.isoformat()}: "
        f"{days} of {summary.days_in_membership} days in membership absent{rate}. {t.TIERS[summary.tier]} "
        f"({_policy_parts(policy)[1]})."
    )
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>'}


SCHOOLS_KEPT = 4_096  # schools' parts kept made (a district has a few hundred schools at most)
_school_parts_made: dict[tuple[str, str, str, bool], tuple[dict[str, Any], str]] = {}


def _school_parts(school: School, district: DistrictSettings, literal: bool) -> tuple[dict[str, Any], str]:
    """The performer (the school's reference) and " at <its name>" as the narrative says it, escaped: made once per
    school and shared by its Observations, like _CODE (nothing changes them)."""
    key = (school.sourced_id, school.name, district.namespace, literal)  # all that the two read
    made = _school_parts_made.get(key)
    if made is None:
        if len(_school_parts_made) >= SCHOOLS_KEPT:
            _school_parts_made.clear()
        where = f" at {html.escape(school.name)}" if school.name else ""
        made = _school_parts_made[key] = (school_reference(school, district, literal), where)
    return made


def summary_identifier(summary: AttendanceSummary, district: DistrictSettings) -> dict[str, Any]:
    """The business identifier: one Observation per student, school and school year, updated as the year goes on."""
    value = f"{summary.school_year}-{summary.school_sourced_id}-{summary.student_sourced_id}"
    return identifier(district.system("attendance-summary"), value)


def attendance_observation(
    summary: AttendanceSummary,
    student: Student,
    school: School,
    district: DistrictSettings,
    measured: Measured,
    literal: bool = False,
) -> dict[str, Any]:
    """`literal`: subject and performer also say `Patient/<id>` and `Organization/<id>` (map/patient.py and
    map/organization.py give those resources those ids), for a set that carries them (a Bulk NDJSON folder)."""
    ident = summary_identifier(summary, district)
    performer, where = _school_parts(school, district, literal)
    components = [
        {
            "code": _MEASURE_CODES["days-in-membership"],
            "valueQuantity": _days(summary.days_in_membership * HUNDREDTHS),
        },
        {"code": _MEASURE_CODES["days-absent"], "valueQuantity": _days(summary.days_absent_h)},
        {"code": _MEASURE_CODES["days-absent-excused"], "valueQuantity": _days(summary.excused_h)},
        {"code": _MEASURE_CODES["days-absent-unexcused"], "valueQuantity": _days(summary.unexcused_h)},
        {"code": _MEASURE_CODES["days-absent-illness"], "valueQuantity": _days(summary.illness_h)},
        {"code": _MEASURE_CODES["days-absent-oss"], "valueQuantity": _days(summary.oss_h)},
        {"code": _MEASURE_CODES["chronic-absence-tier"], "valueCodeableConcept": _tier(summary.tier)},
    ]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id(ident["system"], ident["value"]),
        "meta": disclosed_meta(t.OBSERVATION_PROFILE),
        "identifier": [ident],
        "status": status(summary, measured),
        "category": _CATEGORIES,
        "code": _CODE,
        "subject": student_reference(student, district, literal),
        "effectivePeriod": {"start": summary.period_start.isoformat(), "end": summary.as_of.isoformat()},
        "issued": issued(summary),
        "performer": [performer],
    }
    value = _rate_value(summary)
    obs["text"] = _narrative(summary, where, value, measured.policy)
    if value is None:
        obs["dataAbsentReason"] = {
            "coding": [{"system": t.DATA_ABSENT_REASON_CS, "code": "not-applicable", "display": "Not Applicable"}]
        }
    else:
        obs["valueQuantity"] = {"value": value, "unit": "%", "system": t.UCUM, "code": "%"}
    obs["interpretation"] = interpretation(summary.tier)
    obs["method"] = _policy_parts(measured.policy)[0]
    obs["component"] = components
    return claim_profiles(obs)
