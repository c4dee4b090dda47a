"""The consent gate: may this student's attendance go to this recipient on this date? No consent, no disclosure.

FERPA 34 CFR 99.30: a signed, dated written consent naming the records, the purpose and the recipient.
A consent permits on the as-of date when it is active (or revoked only later), its period covers the
date, and its data scope covers attendance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sis2fhir.records import ConsentRecord

ATTENDANCE_SCOPES = frozenset({"attendance", "all", "education-records"})


class ConsentDecision(StrEnum):
    PERMITTED = "permitted"
    REVOKED = "revoked"
    DECLINED = "declined"
    EXPIRED = "expired"
    NOT_YET_STARTED = "not-yet-started"
    OUT_OF_SCOPE = "out-of-scope"  # a consent exists but does not cover attendance
    MISSING = "missing"  # no consent for this student and recipient


# When no consent permits, the decision reported is the most telling one among the student's consents.
_PRECEDENCE = [
    ConsentDecision.REVOKED,
    ConsentDecision.DECLINED,
    ConsentDecision.EXPIRED,
    ConsentDecision.NOT_YET_STARTED,
    ConsentDecision.OUT_OF_SCOPE,
]


def consent_permits(consent: ConsentRecord, as_of: date) -> ConsentDecision:
    """The decision one consent gives on `as_of` (for the recipient it names)."""
    if consent.status == "declined":
        return ConsentDecision.DECLINED
    if consent.status == "revoked" and (consent.revoked is None or consent.revoked <= as_of):
        return ConsentDecision.REVOKED
    if as_of < consent.period_start or as_of < consent.signed:
        return ConsentDecision.NOT_YET_STARTED
    if consent.period_end is not None and as_of > consent.period_end:
        return ConsentDecision.EXPIRED
    if not ATTENDANCE_SCOPES.intersection(consent.data_scope):
        return ConsentDecision.OUT_OF_SCOPE
    return ConsentDecision.PERMITTED


@dataclass(frozen=True, slots=True)
class GateResult:
    decision: ConsentDecision
    consent: ConsentRecord | None  # the consent relied on (PERMITTED) or the one that decided otherwise


_MISSING = GateResult(ConsentDecision.MISSING, None)  # most students x recipients (frozen: one for all of them)


def decide(consents: Iterable[ConsentRecord], recipient: str, as_of: date) -> GateResult:
    """The decision for one student and one recipient, given all that student's consents."""
    relevant = [c for c in consents if c.recipient_organization == recipient]
    if not relevant:
        return _MISSING
    decided = [(consent_permits(c, as_of), c) for c in relevant]
    permitting = [c for d, c in decided if d is ConsentDecision.PERMITTED]
    if permitting:
        # the most recently signed consent is the one relied on (and the one disclosed as a Consent)
        return GateResult(ConsentDecision.PERMITTED, max(permitting, key=lambda c: (c.signed, c.consent_id)))
    for reason in _PRECEDENCE:
        for d, c in sorted(decided, key=lambda dc: dc[1].signed, reverse=True):
            if d is reason:
                return GateResult(d, c)
    return GateResult(ConsentDecision.MISSING, None)  # pragma: no cover - every decision is in _PRECEDENCE
