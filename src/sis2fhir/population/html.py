"""The static HTML reports: one self-contained file each (inline CSS and SVG, no script, nothing fetched), from the
published figures only (withheld cells show as withheld)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from html import escape

from sis2fhir.policy import Policy
from sis2fhir.population.aggregate import DISTRICT, GRADE, MONTH, SCHOOL, Group
from sis2fhir.population.evaluate import AFTER, BEFORE, COHORT, COMPARISON
from sis2fhir.population.evaluation import GROUP_COLUMNS, Evaluation, did_rows, group_rows
from sis2fhir.population.publish import Published
from sis2fhir.population.svg import Bar, Line, columns, horizontal_bars
from sis2fhir.population.table import COLUMNS, grade_key, rows

STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "th{background:#eef}td.t{text-align:left}figure{margin:1.5em 0}.note{color:#555;font-size:13px}"
)


def page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        + "".join(body)
        + "</body></html>\n"
    )


def threshold_line(policy: Policy) -> list[Line]:
    """The policy's chronic-absence threshold as a line on absence rates (a percent policy only)."""
    if policy.measure != "percent":
        return []
    return [(f"{policy.name} threshold", round(policy.chronic_bound * 100))]


def suppression_note(min_cell: int) -> str:
    return (
        f'<p class="note">Counts of fewer than {min_cell} students, and every rate computed from one, are withheld; '
        "further cells are withheld so that none can be worked out from the totals (docs/population.md). "
        "Rates: students chronically absent per 100 students with enough days in membership; absence rates: "
        "days absent per 100 days in membership.</p>"
    )


def population_html(
    published: Published, school_names: Mapping[str, str], policy: Policy, school_year: int, as_of: date
) -> str:
    figs = published.figures
    schools = [g for g in figs if g.level == SCHOOL]
    rated = sorted(schools, key=lambda g: (published.chronic_rate(g) is None, -(published.chronic_rate(g) or 0)))
    name = lambda g: school_names.get(g.school, g.school)  # noqa: E731
    bars: list[Bar] = [(name(g), published.chronic_rate(g)) for g in rated]
    district = Group(DISTRICT)
    lines: list[Line] = []
    if district in figs and (rate := published.chronic_rate(district)) is not None:
        lines.append(("district", rate))
    months = sorted(g for g in figs if g.level == MONTH and not g.school)
    monthly: list[Bar] = [(g.month, published.absence_rate(g)) for g in months]
    reasons: list[Bar] = []
    if district in figs:
        for label, variable in (
            ("all", "absent_days"),
            ("excused", "excused_days"),
            ("unexcused", "unexcused_days"),
            ("illness", "illness_days"),
            ("suspension", "oss_days"),
        ):
            reasons.append((label, published.value(district, variable)))
    grades = sorted((g for g in figs if g.level == GRADE and not g.school), key=lambda g: grade_key(g.grade))
    by_grade: list[Bar] = [(g.grade or "(none)", published.chronic_rate(g)) for g in grades]
    body = [
        f"<p>School year {school_year}, up to {as_of.isoformat()}; chronic absence under the {escape(policy.name)} "
        f"policy.</p>",
        suppression_note(published.min_cell),
        "<figure>" + horizontal_bars("Chronic-absence rate by school, highest first", bars, lines) + "</figure>",
        "<figure>" + columns("Chronic-absence rate by grade (district)", by_grade, lines) + "</figure>",
        "<figure>"
        + columns("Absence rate by month (district, each month's days)", monthly, threshold_line(policy))
        + "</figure>",
        "<figure>" + columns("Days absent by reason (district)", reasons, unit=" d") + "</figure>",
        "<h2>All figures</h2>",
        table(list(rows(published)), school_names),
    ]
    return page("Chronic absence: district, schools, grades and months", body)


def table(data: Sequence[Mapping[str, str]], school_names: Mapping[str, str], names: Sequence[str] = COLUMNS) -> str:
    text = ("level", "school", "grade", "month", "withheld", "cohort", "group", "period")
    shown = ["school name", *names] if school_names else list(names)
    head = "".join(f"<th>{escape(c)}</th>" for c in shown)
    out = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for r in data:
        cells = [f'<td class="t">{escape(school_names.get(r["school"], ""))}</td>'] if school_names else []
        cells += [f'<td class="t">{escape(r[c])}</td>' if c in text else f"<td>{escape(r[c])}</td>" for c in names]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def evaluation_html(e: Evaluation, policy: Policy, start: date, as_of: date, agreement: str) -> str:
    """The before/after picture of both groups, and the differences in differences with their intervals."""

    def bars(metric: str) -> list[Bar]:
        return [
            (f"{'cohort' if group == COHORT else 'others'} {period}", e.rate(group, period, metric))
            for group in (COHORT, COMPARISON)
            for period in (BEFORE, AFTER)
        ]

    did = did_rows(e)
    head = "".join(f"<th>{escape(c)}</th>" for c in ("metric", "estimate", "95 % interval"))
    cells = "".join(
        f'<tr><td class="t">{escape(r["metric"])}</td><td>{escape(r["estimate"] or "withheld")}</td>'
        f"<td>{escape(r['ci_low'] + ' to ' + r['ci_high'] if r['ci_low'] else '')}</td></tr>"
        for r in did
    )
    body = [
        f"<p>Cohort <b>{escape(e.label)}</b> against the other students of the same schools and grades; program "
        f"start {start.isoformat()}, as of {as_of.isoformat()}; {escape(policy.name)} policy. Run under: "
        f"{escape(agreement)}.</p>",
        suppression_note(e.min_cell),
        "<figure>" + columns("Days absent per 100 school days, before and after", bars("absent_per_100")) + "</figure>",
        "<figure>"
        + columns("Days absent per 100 school days, illness apart", bars("non_illness_per_100"))
        + "</figure>",
        "<figure>" + columns("Chronic-absence rate, before and after", bars("chronic_rate")) + "</figure>",
        "<h2>Difference in differences</h2>",
        f'<p class="note">(cohort after - before) - (others after - before), per 100; 95 % interval: bootstrap over '
        f"students, {e.replicates} resamples, seed {e.seed}.</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>",
        "<h2>The groups</h2>",
        table(group_rows(e), {}, GROUP_COLUMNS),
    ]
    return page(f"Program evaluation: {e.label}", body)
