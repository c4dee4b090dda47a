"""The facts one chart or card shows, read from the served attendance Observation (so that every number on the
card is the Observation's, to the hundredth) and, for the months and the projection, from the store's recorded
summary of the same student x school x school year.

Days are kept in hundredths of a day as the measure does (measure.HUNDREDTHS); the rate is
measure.rate_percent_hundredths, the figure the Observation's valueQuantity carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.measure import HUNDREDTHS, rate_percent_hundredths
from sis2fhir.policy import Policy
from sis2fhir.records import MonthTally

COMPONENTS = {
    "days-in-membership": "membership_h",
    "days-absent": "absent_h",
    "days-absent-excused": "excused_h",
    "days-absent-unexcused": "unexcused_h",
    "days-absent-illness": "illness_h",
    "days-absent-oss": "oss_h",
}


class UnreadableObservation(ValueError):
    """A served Observation without the figures a card needs (the message names what is missing, no value)."""


@dataclass(frozen=True, slots=True)
class AttendanceFacts:
    """One student's year to date at one school, as the Observation says, with the monthly tallies if known."""

    observation_id: str
    school: str  # the school's name (the Observation's performer display), or "" when not known
    school_sourced_id: str
    period_start: date
    as_of: date  # the last day counted (effectivePeriod.end)
    status: str  # preliminary | final
    days_in_membership: int
    absent_h: int
    excused_h: int
    unexcused_h: int
    illness_h: int
    oss_h: int
    tier: str
    policy: Policy
    months: tuple[MonthTally, ...] = ()  # () when the store holds none matching these totals
    projected_rate: float | None = None  # 0..1: the early-warning projection of the year-end rate

    @property
    def rate_hundredths(self) -> int | None:
        """The absence rate in hundredths of a percent (the Observation's valueQuantity times 100)."""
        return rate_percent_hundredths(self.absent_h, self.days_in_membership)


def days_text(hundredths: int) -> str:
    """Days as the Observation writes them: 4, 4.5, 0.33."""
    if hundredths % HUNDREDTHS == 0:
        return str(hundredths // HUNDREDTHS)
    return f"{hundredths / HUNDREDTHS:g}"


def percent_text(hundredths_of_percent: int | None) -> str:
    """A rate in hundredths of a percent as the Observation's value shows it: 3.13, 10, 15.5."""
    if hundredths_of_percent is None:
        return "no rate"
    if hundredths_of_percent % 100 == 0:
        return str(hundredths_of_percent // 100)
    return f"{hundredths_of_percent / 100:g}"


def _hundredths(quantity: Any, what: str) -> int:
    if not isinstance(quantity, Mapping) or quantity.get("code") != "d":
        raise UnreadableObservation(f"the component {what} has no value in days")
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise UnreadableObservation(f"the component {what} has no usable value")
    return round(value * HUNDREDTHS)


def _coding(concept: Any, system: str) -> str | None:
    for coding in (concept or {}).get("coding", []) if isinstance(concept, Mapping) else []:
        if isinstance(coding, Mapping) and coding.get("system") == system and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def facts_of(
    observation: Mapping[str, Any],
    policy: Policy,
    months: Sequence[MonthTally] = (),
    projected_rate: float | None = None,
) -> AttendanceFacts:
    """The facts of a served school-attendance Observation. The months are kept only when they add up to the
    Observation's totals (absences and days in membership): a chart from other numbers than the card's is worse
    than a chart without months. UnreadableObservation when a figure is missing."""
    found: dict[str, int] = {}
    tier: str | None = None
    for component in observation.get("component") or []:
        code = _coding(component.get("code"), t.ATTENDANCE_CS)
        if code in COMPONENTS:
            found[COMPONENTS[code]] = _hundredths(component.get("valueQuantity"), code)
        elif code == "chronic-absence-tier":
            tier = _coding(component.get("valueCodeableConcept"), t.TIER_CS)
    missing = [code for code, name in COMPONENTS.items() if name not in found]
    if missing:
        raise UnreadableObservation(f"the Observation has no component {missing[0]}")
    if tier not in t.TIERS:
        raise UnreadableObservation("the Observation has no chronic-absence tier")
    period = observation.get("effectivePeriod") or {}
    try:
        start, end = date.fromisoformat(period["start"][:10]), date.fromisoformat(period["end"][:10])
    except (KeyError, TypeError, ValueError):
        raise UnreadableObservation("the Observation has no effectivePeriod with a start and an end") from None
    membership = found["membership_h"]
    if membership % HUNDREDTHS:
        raise UnreadableObservation("the Observation's days in membership is not a whole number")
    value = (observation.get("valueQuantity") or {}).get("value")
    rate = rate_percent_hundredths(found["absent_h"], membership // HUNDREDTHS)
    if (rate is None) != (value is None) or (value is not None and round(value * 100) != rate):
        raise UnreadableObservation("the Observation's rate does not follow from its days")
    performer = (observation.get("performer") or [{}])[0]
    kept = tuple(months) if _adds_up(months, found["absent_h"], membership // HUNDREDTHS) else ()
    return AttendanceFacts(
        observation_id=str(observation.get("id", "")),
        school=str(performer.get("display") or ""),
        school_sourced_id=str((performer.get("identifier") or {}).get("value") or ""),
        period_start=start,
        as_of=end,
        status=str(observation.get("status", "")),
        days_in_membership=membership // HUNDREDTHS,
        absent_h=found["absent_h"],
        excused_h=found["excused_h"],
        unexcused_h=found["unexcused_h"],
        illness_h=found["illness_h"],
        oss_h=found["oss_h"],
        tier=tier,
        policy=policy,
        months=kept,
        projected_rate=projected_rate,
    )


def _adds_up(months: Sequence[MonthTally], absent_h: int, days_in_membership: int) -> bool:
    return bool(months) and (
        sum(m.absent_h for m in months) == absent_h and sum(m.days_in_membership for m in months) == days_in_membership
    )


@dataclass(frozen=True, slots=True)
class MonthRow:
    """One month of the chart and its table: the month's tally and the year-to-date figures at its end."""

    tally: MonthTally
    ytd_absent_h: int
    ytd_days_in_membership: int

    @property
    def other_h(self) -> int:
        """Absences counted under neither excused nor unexcused (another counted category)."""
        return max(0, self.tally.absent_h - self.tally.excused_h - self.tally.unexcused_h)

    @property
    def ytd_rate_hundredths(self) -> int | None:
        return rate_percent_hundredths(self.ytd_absent_h, self.ytd_days_in_membership)


def month_rows(facts: AttendanceFacts) -> list[MonthRow]:
    """The months in order, each with the year to date at its end."""
    rows, absent, membership = [], 0, 0
    for tally in sorted(facts.months, key=lambda m: m.month):
        absent += tally.absent_h
        membership += tally.days_in_membership
        rows.append(MonthRow(tally, absent, membership))
    return rows
