"""The texts of the CDS Hooks patient-view card (pure): a summary a clinician reads at a glance (under 140
characters: CDS Hooks 2.0), the indicator by tier, and a markdown detail with the kinds of absence, the trend, the
school and the last day counted. Every number is the Observation's, written as the Observation writes it."""

from __future__ import annotations

import re
from datetime import date

from sis2fhir import terminology as t
from sis2fhir.present.facts import AttendanceFacts, MonthRow, days_text, month_rows, percent_text

SUMMARY_LIMIT = 140  # CDS Hooks 2.0: summary "<140 characters"
TREND_MONTHS = 3  # months the detail shows, the latest last
PHRASES = {  # the summary's last words, per tier
    t.Tier.SATISFACTORY: "attendance satisfactory",
    t.Tier.AT_RISK: "at risk of chronic absence",
    t.Tier.MODERATE_CHRONIC: "chronically absent",
    t.Tier.SEVERE_CHRONIC: "severely chronically absent",
    t.Tier.INSUFFICIENT_DATA: "too few days enrolled for a tier",
}
INDICATORS = {  # CDS Hooks indicator: info | warning | critical
    t.Tier.SATISFACTORY: "info",
    t.Tier.AT_RISK: "warning",
    t.Tier.MODERATE_CHRONIC: "critical",
    t.Tier.SEVERE_CHRONIC: "critical",
    t.Tier.INSUFFICIENT_DATA: "info",
}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def early_warning(facts: AttendanceFacts) -> bool:
    """Not chronic yet, but the projected year-end rate reaches the policy's threshold (a percent policy only:
    the projection is a rate)."""
    if facts.projected_rate is None or facts.policy.measure != "percent" or facts.tier in t.CHRONIC_TIERS:
        return False
    return facts.projected_rate * 100 >= facts.policy.chronic_bound


def indicator(facts: AttendanceFacts) -> str:
    """critical for the chronic tiers, warning at risk or on the early warning, info otherwise."""
    found = INDICATORS[t.Tier(facts.tier)]
    return "warning" if found == "info" and early_warning(facts) else found


def summary(facts: AttendanceFacts) -> str:
    """ "Missed 14 of 90 school days this year (15.56 %): chronically absent"."""
    rate = facts.rate_hundredths
    shown = "" if rate is None else f" ({percent_text(rate)} %)"
    phrase = PHRASES[t.Tier(facts.tier)]
    if early_warning(facts):
        phrase += ", heading for chronic"
    text = f"Missed {days_text(facts.absent_h)} of {facts.days_in_membership} school days this year{shown}: {phrase}"
    return text if len(text) < SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 2] + "…"


def markdown_text(text: str) -> str:
    """Text (a school's name) safe inside markdown: every markup character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _month_name(month: str) -> str:
    return date.fromisoformat(f"{month}-01").strftime("%B %Y")


def _trend(rows: list[MonthRow]) -> str:
    shown = rows[-TREND_MONTHS:]
    parts = [
        f"{_month_name(r.tally.month)}: {days_text(r.tally.absent_h)} of {r.tally.days_in_membership} days"
        for r in shown
    ]
    return "; ".join(parts)


def detail(facts: AttendanceFacts) -> str:
    """The card's markdown detail."""
    school = markdown_text(facts.school) if facts.school else "the school"
    progress = "final for the school year" if facts.status == "final" else "the school year is in progress"
    lines = [
        f"At **{school}**, {facts.period_start.isoformat()} to {facts.as_of.isoformat()} ({progress}):",
        "",
        f"- Excused: {days_text(facts.excused_h)} days; unexcused: {days_text(facts.unexcused_h)} days",
        f"- Illness: {days_text(facts.illness_h)} days; out-of-school suspension: {days_text(facts.oss_h)} days",
    ]
    rows = month_rows(facts)
    if rows:
        lines.append(f"- Trend, days missed by month: {_trend(rows)}")
    if facts.projected_rate is not None and facts.policy.measure == "percent":
        projected = percent_text(round(facts.projected_rate * 10_000))
        verdict = "at or above" if facts.projected_rate * 100 >= facts.policy.chronic_bound else "below"
        lines.append(
            f"- Projected year-end absence rate: {projected} % ({verdict} the {facts.policy.chronic_bound:g} % "
            "threshold), from the recent weeks"
        )
    lines.append(f"- {t.TIERS[facts.tier]}; last school day counted: {facts.as_of.isoformat()}")
    return "\n".join(lines)
