"""One student's year-to-date attendance at one school as a school-attendance Observation (profiles/)."""

from __future__ import annotations

import html
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.config import DistrictSettings
from sis2fhir.map.identity import identifier, resource_id, school_reference, student_reference
from sis2fhir.measure import HUNDREDTHS, AttendanceSummary, rate_percent_hundredths
from sis2fhir.records import School, Student

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
    "text": "School attendance, school year to date",
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


def _days(hundredths: int) -> dict[str, Any]:
    value: int | float = hundredths // HUNDREDTHS if hundredths % HUNDREDTHS == 0 else hundredths / HUNDREDTHS
    return {"value": value, "unit": "d", "system": t.UCUM, "code": "d"}


def _tier(code: str) -> dict[str, Any]:
    return {"coding": [{"system": t.TIER_CS, "code": code, "display": t.TIERS[code]}]}


def _narrative(summary: AttendanceSummary, school: School) -> dict[str, str]:
    """What a clinician reads in the chart (dom-6); no name or birth date, only the numbers."""
    days = _days(summary.days_absent_h)["value"]
    rate = "" if summary.rate is None else f" ({summary.rate * 100:.1f} %)"
    where = f" at {html.escape(school.name)}" if school.name else ""
    text = (
        f"School attendance{where}, {summary.period_start.isoformat()} to {summary.as_of.isoformat()}: "
        f"{days} of {summary.days_in_membership} days absent{rate}. {t.TIERS[summary.tier]}."
    )
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>'}


def summary_identifier(summary: AttendanceSummary, district: DistrictSettings) -> dict[str, Any]:
    """The business identifier: one Observation per student, school and school year, updated as the year goes on."""
    value = f"{summary.school_year}-{summary.school_sourced_id}-{summary.student_sourced_id}"
    return identifier(district.system("attendance-summary"), value)


def attendance_observation(
    summary: AttendanceSummary, student: Student, school: School, district: DistrictSettings, literal: bool = False
) -> dict[str, Any]:
    """`literal`: subject and performer also say `Patient/<id>` and `Organization/<id>` (map/patient.py and
    map/organization.py give those resources those ids), for a set that carries them (a Bulk NDJSON folder)."""
    ident = summary_identifier(summary, district)
    components = [
        {
            "code": _measure_code("days-in-membership"),
            "valueQuantity": _days(summary.days_in_membership * HUNDREDTHS),
        },
        {"code": _measure_code("days-absent"), "valueQuantity": _days(summary.days_absent_h)},
        {"code": _measure_code("days-absent-excused"), "valueQuantity": _days(summary.excused_h)},
        {"code": _measure_code("days-absent-unexcused"), "valueQuantity": _days(summary.unexcused_h)},
        {"code": _measure_code("days-absent-illness"), "valueQuantity": _days(summary.illness_h)},
        {"code": _measure_code("days-absent-oss"), "valueQuantity": _days(summary.oss_h)},
        {"code": _measure_code("chronic-absence-tier"), "valueCodeableConcept": _tier(summary.tier)},
    ]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id(ident["system"], ident["value"]),
        "meta": {"profile": [t.OBSERVATION_PROFILE]},
        "identifier": [ident],
        "status": "final",
        "category": _CATEGORIES,
        "code": _CODE,
        "subject": student_reference(student, district, literal),
        "effectivePeriod": {"start": summary.period_start.isoformat(), "end": summary.as_of.isoformat()},
        "performer": [school_reference(school, district, literal)],
    }
    rate = summary.rate
    obs["text"] = _narrative(summary, school)
    if rate is None:
        obs["dataAbsentReason"] = {
            "coding": [{"system": t.DATA_ABSENT_REASON_CS, "code": "not-applicable", "display": "Not Applicable"}]
        }
    else:
        hundredths = rate_percent_hundredths(summary.days_absent_h, summary.days_in_membership) or 0
        value: int | float = hundredths // 100 if hundredths % 100 == 0 else hundredths / 100
        obs["valueQuantity"] = {"value": value, "unit": "%", "system": t.UCUM, "code": "%"}
    obs["interpretation"] = [_tier(summary.tier)]
    obs["component"] = components
    return obs
