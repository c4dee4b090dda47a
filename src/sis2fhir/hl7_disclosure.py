"""What an HL7 v2 recipient gets about one student: an ORU^R01 per school, keyed for the outbox by its numbers.

`disclosure.DisclosureBuilder` calls it for a route that takes HL7 v2, after the consent gate has permitted it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from sis2fhir.config import Settings
from sis2fhir.deliver.base import DeliveryItem
from sis2fhir.deliver.outbox import Envelope, Subject, idempotency_key
from sis2fhir.deliver.routing import Route
from sis2fhir.map.oru import CopyTo, OruError, build_oru_r01, v2_settings
from sis2fhir.measure import AttendanceSummary
from sis2fhir.records import ConsentRecord, Roster, Student
from sis2fhir.report import RowReport


def v2_envelopes(
    rt: Route,
    recipient: str,
    student: Student,
    summaries: Iterable[AttendanceSummary],
    roster: Roster,
    consent: ConsentRecord,
    report: RowReport,
    settings: Settings,
    recipient_system: str,
) -> list[Envelope]:
    """One ORU^R01 per school the student has a summary at, each keyed by its numbers for the outbox;
    `recipient_system`: the identifier system of the recipient (OBR-28), from its settings."""
    v2 = v2_settings(settings, rt.v2)
    copy_to = CopyTo(recipient, consent.recipient_name, recipient_system)
    out = []
    for s in summaries:
        subject = Subject(recipient, student.sourced_id, s.school_sourced_id)
        fingerprint = orjson.dumps(
            [
                s.school_year,
                s.as_of.isoformat(),
                s.days_in_membership,
                s.days_absent_h,
                s.excused_h,
                s.unexcused_h,
                s.illness_h,
                s.oss_h,
                s.tier,
                student.state_id,
            ]
        )
        key = idempotency_key(rt.destination, recipient, subject, fingerprint)
        control_id = hashlib.sha256(key.encode()).hexdigest()[:20].upper()
        try:
            message = build_oru_r01(
                s, student, roster.schools[s.school_sourced_id], v2, control_id, datetime.now(UTC), copy_to
            )
        except OruError as e:
            report.add("users.csv", student.line, "", "no-hl7v2-message", f"no ORU^R01 for this student: {e}")
            continue
        out.append(
            Envelope(
                rt.destination,
                subject,
                DeliveryItem(key, recipient, student.sourced_id, student.state_id, consent.consent_id, hl7v2=message),
            )
        )
    return out
