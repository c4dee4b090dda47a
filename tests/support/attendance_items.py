"""Delivery items as a sync builds them: the real mapper's attendance Observation and FERPA Consent for one student.

A measured summary (measure.AttendanceSummary) and a consents.csv row (records.ConsentRecord) go through
map/observation.py and map/consent.py, so delivery tests send exactly what production sends.
"""

from __future__ import annotations

import copy
import uuid
from datetime import date
from typing import Any

from sis2fhir.config import DistrictSettings
from sis2fhir.deliver.base import DeliveryItem
from sis2fhir.deliver.outbox.items import Subject, idempotency_key
from sis2fhir.disclosure import fingerprint
from sis2fhir.map import consent as consent_map
from sis2fhir.map import observation as observation_map
from sis2fhir.map.observation import Measured
from sis2fhir.measure import HUNDREDTHS, AttendanceSummary, chronic_absence_tier
from sis2fhir.policy import resolve_policy
from sis2fhir.records import ConsentRecord, School, Student

STATE_ID_SYSTEM = "urn:oid:2.16.840.1.113883.4.999.27"  # made up for tests
DISTRICT = DistrictSettings(namespace="urn:sis2fhir:district:test", state_id_system=STATE_ID_SYSTEM)
OBSERVATION_ID_SYSTEM = DISTRICT.system("attendance-summary")
CONSENT_ID_SYSTEM = DISTRICT.system("consent")
RECIPIENT = "1234567893"  # the clinic's NPI (consents.csv recipient_organization)
DESTINATION = "fhir"
SCHOOL = School(sourced_id="sch-1", name="Lincoln Elementary")
SCHOOL_YEAR = 2026
YEAR_START = date(2025, 8, 20)
AS_OF = date(2026, 1, 16)
YEAR_END = date(2026, 6, 12)
# as a sync measures: the default policy, the school year still in progress on AS_OF
MEASURED = Measured(resolve_policy(), {SCHOOL.sourced_id: YEAR_END})


def new_state_id() -> str:
    return f"S{uuid.uuid4().hex[:10].upper()}"


def student(state_id: str) -> Student:
    return Student(sourced_id=f"u-{state_id}", state_id=state_id)


def student_reference(state_id: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": STATE_ID_SYSTEM, "value": state_id}}


def summary(state_id: str, days_absent: float = 3, days_in_membership: int = 80) -> AttendanceSummary:
    """A measured summary as the tally gives it (all absences unexcused), its tier under the default policy."""
    absent_h = round(days_absent * HUNDREDTHS)
    return AttendanceSummary(
        student_sourced_id=student(state_id).sourced_id,
        school_sourced_id=SCHOOL.sourced_id,
        school_year=SCHOOL_YEAR,
        period_start=YEAR_START,
        as_of=AS_OF,
        days_in_membership=days_in_membership,
        days_absent_h=absent_h,
        excused_h=0,
        unexcused_h=absent_h,
        illness_h=0,
        oss_h=0,
        tier=chronic_absence_tier(absent_h, days_in_membership, resolve_policy()),
    )


def consent_record(state_id: str) -> ConsentRecord:
    """An active consents.csv row: the parent permits disclosure of attendance to RECIPIENT for treatment."""
    return ConsentRecord(
        consent_id=f"C-{state_id}",
        student_sourced_id=student(state_id).sourced_id,
        grantor_name="Parent",
        grantor_relationship="mother",
        recipient_organization=RECIPIENT,
        recipient_name="Pediatric Clinic",
        purpose="treatment",
        data_scope=("attendance",),
        signed=YEAR_START,
        period_start=YEAR_START,
        period_end=date(2026, 6, 30),
        status="active",
        revoked=None,
        document_url="",
        file="consents.csv",
        line=2,
    )


def attendance_observation(state_id: str, days_absent: float = 3, days_in_membership: int = 80) -> dict[str, Any]:
    made = observation_map.attendance_observation(
        summary(state_id, days_absent, days_in_membership), student(state_id), SCHOOL, DISTRICT, MEASURED
    )
    return copy.deepcopy(made)  # the mapper shares constant parts between resources; tests may change theirs


def ferpa_consent(state_id: str) -> dict[str, Any]:
    return copy.deepcopy(consent_map.ferpa_consent(consent_record(state_id), student(state_id), None, DISTRICT))


def observation_identifier(state_id: str) -> str:
    """The Observation's business identifier as a search token (system|value)."""
    ident = observation_map.summary_identifier(summary(state_id), DISTRICT)
    return f"{ident['system']}|{ident['value']}"


def days_absent(observation: dict[str, Any]) -> int | float:
    """The days-absent component of an attendance Observation (what a clinician reads as days missed)."""
    for component in observation["component"]:
        if any(c["code"] == "days-absent" for c in component["code"]["coding"]):
            return component["valueQuantity"]["value"]
    raise AssertionError("no days-absent component")


def delivery_item(state_id: str, **observation: Any) -> DeliveryItem:
    """One recipient's item about one student, keyed as the disclosure builder keys it."""
    resources = [attendance_observation(state_id, **observation), ferpa_consent(state_id)]
    subject = Subject(RECIPIENT, student(state_id).sourced_id)
    return DeliveryItem(
        key=idempotency_key(DESTINATION, RECIPIENT, subject, fingerprint(resources)),
        recipient=RECIPIENT,
        student_sourced_id=student(state_id).sourced_id,
        state_student_id=state_id,
        consent_id=f"C-{state_id}",
        resources=resources,
    )
