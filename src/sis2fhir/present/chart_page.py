"""The chart page (pure HTML): the SVG of the year, what it shows in words (tier, projection, school, last update),
and a table with the same numbers beneath it for screen readers and print. No script, no style sheet or font from
elsewhere: the route sends a Content-Security-Policy that forbids every external load."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from sis2fhir import terminology as t
from sis2fhir.present.card import early_warning
from sis2fhir.present.chart_svg import COLOURS, LABELS, chart_svg
from sis2fhir.present.facts import AttendanceFacts, days_text, month_rows, percent_text

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'none'; "
    "frame-ancestors 'self'; base-uri 'none'"
)
_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#111}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
.facts{margin:.5em 0 1em}.facts dt{font-weight:bold;float:left;clear:left;width:15em}.facts dd{margin-left:15em}
.legend span{display:inline-block;margin-right:1.2em}.legend i{display:inline-block;width:1em;height:1em;
vertical-align:middle;margin-right:.3em}
table{border-collapse:collapse;margin-top:.5em}th,td{border:1px solid #999;padding:.25em .6em;text-align:right}
th[scope=row],thead th{text-align:left}
@media print{.legend{display:none}}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def message_page(title: str, text: str) -> str:
    """A page that shows no attendance, only why (no consent, not found, the launch failed)."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


def _legend() -> str:
    spans = "".join(f'<span><i style="background:{COLOURS[k]}"></i>{escape(LABELS[k])}</span>' for k in COLOURS)
    return f'<p class="legend" aria-hidden="true">{spans}</p>'


def _facts_list(facts: AttendanceFacts) -> str:
    rate = facts.rate_hundredths
    unit = "%" if facts.policy.measure == "percent" else " days"
    items = [
        ("School", facts.school or facts.school_sourced_id),
        ("Tier", t.TIERS[facts.tier]),
        (
            "Year to date",
            f"{days_text(facts.absent_h)} of {facts.days_in_membership} days missed"
            + ("" if rate is None else f" ({percent_text(rate)} %)"),
        ),
        ("Chronic absence threshold", f"{facts.policy.chronic_bound:g}{unit}"),
        ("Last update", f"{facts.as_of.isoformat()} ({'final' if facts.status == 'final' else 'year in progress'})"),
    ]
    if facts.projected_rate is not None and facts.policy.measure == "percent":
        warning = " (early warning: at or above the threshold)" if early_warning(facts) else ""
        items.append(("Projected year-end rate", f"{percent_text(round(facts.projected_rate * 10_000))} %{warning}"))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<dl class="facts">{rows}</dl>'


def _table(facts: AttendanceFacts) -> str:
    head = (
        "<thead><tr><th scope='col'>Month</th><th scope='col'>Days in membership</th><th scope='col'>Days missed</th>"
        "<th scope='col'>Excused</th><th scope='col'>Unexcused</th><th scope='col'>Illness</th>"
        "<th scope='col'>Out-of-school suspension</th><th scope='col'>Absence rate to date</th></tr></thead>"
    )
    body = []
    for row in month_rows(facts):
        m = row.tally
        cells = (
            m.days_in_membership,
            days_text(m.absent_h),
            days_text(m.excused_h),
            days_text(m.unexcused_h),
            days_text(m.illness_h),
            days_text(m.oss_h),
            f"{percent_text(row.ytd_rate_hundredths)} %",
        )
        body.append(f"<tr><th scope='row'>{m.month}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    rate = facts.rate_hundredths
    total = (
        facts.days_in_membership,
        days_text(facts.absent_h),
        days_text(facts.excused_h),
        days_text(facts.unexcused_h),
        days_text(facts.illness_h),
        days_text(facts.oss_h),
        "" if rate is None else f"{percent_text(rate)} %",
    )
    foot = "<tfoot><tr><th scope='row'>Year to date</th>" + "".join(f"<td>{c}</td>" for c in total) + "</tr></tfoot>"
    caption = (
        f"<caption>School days missed by month, {facts.period_start.isoformat()} to {facts.as_of.isoformat()}</caption>"
    )
    return f'<table id="numbers">{caption}{head}<tbody>{"".join(body)}</tbody>{foot}</table>'


def chart_page(charts: Sequence[AttendanceFacts]) -> str:
    """The page for one student: a section per school of the year, the latest first."""
    sections = []
    for facts in charts:
        name = escape(facts.school or facts.school_sourced_id)
        sections.append(
            f'<section class="school" data-observation="{escape(facts.observation_id)}"><h2>{name}</h2>'
            f"{_facts_list(facts)}{chart_svg(facts)}{_legend()}{_table(facts)}</section>"
        )
    return _page("School attendance this year", "<h1>School attendance this year</h1>" + "".join(sections))
