"""What the CDS Hooks card and the chart show a recipient's clinician (issue 11), gathered from the served set and
the recorded summaries: the student an EHR's Patient is (by the state student id, only while a Consent of theirs
for that recipient is one the gate relied on), the facts of each of their served attendance Observations with
the monthly tallies of the same student x school x year, and the FERPA record of each card or chart shown.

The gate is the served set's: `ServedStore.search` answers a Patient only while the student is consented to the
recipient, so a student without consent is not found, exactly as the FHIR API would not find them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from sis2fhir.config import Settings
from sis2fhir.map.observation import policy_text
from sis2fhir.present.facts import AttendanceFacts, UnreadableObservation, facts_of
from sis2fhir.service.served import ServedStore
from sis2fhir.store.summaries import RecordedSummary, history

CARD, CHART = "cds-hooks", "smart-app"  # disclosures.channel of a card and of a chart view
MAX_OBSERVATIONS = 50  # a student's attendance Observations served to one recipient (schools x years)


@dataclass(frozen=True, slots=True)
class Student:
    sourced_id: str
    patient_id: str  # the served Patient's id (not the EHR's)


@dataclass(frozen=True, slots=True)
class Attendance:
    """What may be shown of one student: the facts per school of the latest school year, the latest first, and
    how many served Observations could not be read (their figures are shown nowhere)."""

    student: Student
    charts: tuple[AttendanceFacts, ...]
    unreadable: int = 0


def state_ids(patient: Mapping[str, Any], system: str) -> list[str]:
    """The values of a Patient's identifiers in the state student id system."""
    out = []
    for ident in patient.get("identifier") or []:
        value = ident.get("value") if isinstance(ident, Mapping) and ident.get("system") == system else None
        if isinstance(value, str) and value.strip():
            out.append(value.strip())
    return list(dict.fromkeys(out))


def find_student(served: ServedStore, recipient: str, patient: Mapping[str, Any], system: str) -> Student | None:
    """The student the EHR's Patient is, when the recipient holds them consented; None otherwise (no state id in
    the configured system, no such student, no consent, or the ids name two students: fail closed)."""
    found: dict[str, Student] = {}
    for value in state_ids(patient, system):
        page = served.search(recipient, "Patient", {"identifier": [f"{_escaped(system)}|{_escaped(value)}"]}, 2, 0)
        for resource in page.resources:
            if resource.student:
                found[resource.student] = Student(resource.student, resource.resource_id)
    return next(iter(found.values())) if len(found) == 1 else None


def _escaped(value: str) -> str:
    """A token search value with FHIR's escapes (\\, |, $ and , are escaped by a backslash)."""
    for ch in ("\\", "|", "$", ","):
        value = value.replace(ch, "\\" + ch)
    return value


def attendance(served: ServedStore, settings: Settings, recipient: str, student: Student) -> Attendance:
    """The student's served attendance Observations for the recipient, as facts with their months; only the latest
    school year's, the latest day counted first."""
    policy = settings.policy.resolve()
    page = served.search(recipient, "Observation", {"patient": [student.patient_id]}, MAX_OBSERVATIONS, 0)
    recorded = history(served.engine, settings.district.namespace, student.sourced_id)
    charts: list[tuple[str, AttendanceFacts]] = []
    unreadable = 0
    for resource in page.resources:
        observation = orjson.loads(resource.content)
        try:
            if (observation.get("method") or {}).get("text") != policy_text(policy):
                raise UnreadableObservation("the Observation was measured with another policy than the configured")
            year = _school_year(observation)
            plain = facts_of(observation, policy)
            summary = _latest(recorded, plain.school_sourced_id, year, plain.as_of.isoformat())
            facts = (
                facts_of(observation, policy, summary.months, summary.projected_rate) if summary is not None else plain
            )
        except UnreadableObservation:
            unreadable += 1
            continue
        charts.append((year, facts))
    if charts:
        latest_year = max(year for year, _ in charts)
        charts = [c for c in charts if c[0] == latest_year]
    ordered = sorted((f for _, f in charts), key=lambda f: (f.as_of, f.school_sourced_id), reverse=True)
    return Attendance(student, tuple(ordered), unreadable)


def _school_year(observation: Mapping[str, Any]) -> str:
    """The school year of the business identifier `<year>-<school>-<student>` (map/observation.py)."""
    for ident in observation.get("identifier") or []:
        value = ident.get("value") if isinstance(ident, Mapping) else None
        if isinstance(value, str) and value[:4].isdigit() and value[4:5] == "-":
            return value[:4]
    raise UnreadableObservation("the Observation has no attendance-summary identifier")


def _latest(recorded: Iterable[RecordedSummary], school: str, year: str, as_of: str) -> RecordedSummary | None:
    """The last recorded summary of that school and year on or before the Observation's day."""
    rows = [
        r
        for r in recorded
        if r.school_sourced_id == school and str(r.school_year) == year and r.as_of.isoformat() <= as_of
    ]
    return max(rows, key=lambda r: r.as_of) if rows else None


def record_shown(served: ServedStore, recipient: str, client: str, found: Attendance, what: str, channel: str) -> None:
    """The FERPA record of a card or a chart: one disclosures row for the student (destination `api:<client>`)."""
    if found.charts:
        served.record_reads(recipient, client, [found.student.sourced_id], what, datetime.now(UTC), channel=channel)
