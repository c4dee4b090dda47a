"""The consent gate: no consent, no disclosure; revoked, declined, expired, not yet started or out of scope: nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from itertools import product

from sis2fhir.consent_book import ConsentBook
from sis2fhir.deliver.outbox import Subject
from sis2fhir.disclosure import revocation_subjects
from sis2fhir.gate import ConsentDecision, decide
from sis2fhir.records import ConsentRecord

CLINIC = "1234567893"
OTHER = "1245319599"
AS_OF = date(2026, 3, 31)

ACTIVE = ConsentRecord(
    consent_id="C1",
    student_sourced_id="s1",
    grantor_name="A Parent",
    grantor_relationship="parent",
    recipient_organization=CLINIC,
    recipient_name="Clinic",
    purpose="treatment-and-care-coordination",
    data_scope=("attendance",),
    signed=date(2025, 8, 20),
    period_start=date(2025, 8, 20),
    period_end=date(2026, 6, 30),
    status="active",
    revoked=None,
    document_url="",
    file="consents.csv",
    line=2,
)


def test_an_active_consent_for_the_recipient_permits() -> None:
    r = decide([ACTIVE], CLINIC, AS_OF)
    assert r.decision is ConsentDecision.PERMITTED and r.consent is ACTIVE


def test_a_consent_for_another_recipient_does_not_permit() -> None:
    assert decide([ACTIVE], OTHER, AS_OF).decision is ConsentDecision.MISSING


def test_no_consent_at_all_is_missing() -> None:
    assert decide([], CLINIC, AS_OF).decision is ConsentDecision.MISSING


def test_a_revoked_consent_stops_disclosure_from_its_revocation_date() -> None:
    revoked = replace(ACTIVE, status="revoked", revoked=date(2026, 3, 1))
    assert decide([revoked], CLINIC, AS_OF).decision is ConsentDecision.REVOKED
    assert decide([revoked], CLINIC, date(2026, 2, 27)).decision is ConsentDecision.PERMITTED
    assert decide([revoked], CLINIC, date(2026, 3, 1)).decision is ConsentDecision.REVOKED


def test_declined_expired_and_not_yet_started() -> None:
    assert decide([replace(ACTIVE, status="declined")], CLINIC, AS_OF).decision is ConsentDecision.DECLINED
    expired = replace(ACTIVE, period_end=date(2026, 1, 31))
    assert decide([expired], CLINIC, AS_OF).decision is ConsentDecision.EXPIRED
    later = replace(ACTIVE, period_start=date(2026, 4, 1), signed=date(2026, 3, 30))
    assert decide([later], CLINIC, AS_OF).decision is ConsentDecision.NOT_YET_STARTED


def test_a_consent_that_does_not_cover_attendance_does_not_permit() -> None:
    grades = replace(ACTIVE, data_scope=("grades",))
    assert decide([grades], CLINIC, AS_OF).decision is ConsentDecision.OUT_OF_SCOPE


def test_an_open_ended_consent_permits_until_revoked() -> None:
    assert decide([replace(ACTIVE, period_end=None)], CLINIC, date(2030, 1, 1)).decision is ConsentDecision.PERMITTED


def test_a_newer_consent_wins_over_an_older_revoked_one() -> None:
    old = replace(ACTIVE, consent_id="C0", status="revoked", revoked=date(2025, 12, 1))
    new = replace(ACTIVE, consent_id="C2", signed=date(2026, 1, 10), period_start=date(2026, 1, 10))
    r = decide([old, new], CLINIC, AS_OF)
    assert r.decision is ConsentDecision.PERMITTED and r.consent is not None and r.consent.consent_id == "C2"


def test_the_most_telling_refusal_is_reported() -> None:
    revoked = replace(ACTIVE, consent_id="C3", status="revoked", revoked=date(2026, 1, 1))
    expired = replace(ACTIVE, consent_id="C4", period_end=date(2025, 12, 31))
    assert decide([expired, revoked], CLINIC, AS_OF).decision is ConsentDecision.REVOKED


def test_every_revoked_decision_is_among_the_subjects_asked_about_holders() -> None:
    """A sync looks up who holds what only for disclosure.revocation_subjects: every student x recipient that
    decide() calls REVOKED, on any date, must be among them (else its revocation notice would not go out)."""
    kinds = [
        ACTIVE,
        replace(ACTIVE, status="revoked", revoked=date(2026, 3, 1)),
        replace(ACTIVE, status="revoked", revoked=None),
        replace(ACTIVE, status="declined"),
        replace(ACTIVE, recipient_organization=OTHER, status="revoked", revoked=date(2025, 9, 1)),
        replace(ACTIVE, period_end=date(2026, 1, 31)),
    ]
    consents = ConsentBook("consents.csv")
    for n, combo in enumerate(product(kinds, repeat=2)):
        for c in combo:
            consents.add(replace(c, student_sourced_id=f"s{n}"))
    asked = revocation_subjects(consents)
    revoked = {
        Subject(recipient, student)
        for student, records in consents.items()
        for recipient, day in product((CLINIC, OTHER), (date(2025, 10, 1), AS_OF))
        if decide(records, recipient, day).decision is ConsentDecision.REVOKED
    }
    assert revoked and revoked <= asked
    assert Subject(CLINIC, "s0") not in asked  # two active consents: never a notice
