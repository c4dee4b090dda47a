"""The school year as a picture, server-rendered SVG (no script, no external reference): per month a stacked bar of
the days missed by category (excused, unexcused, other counted) and beside it a narrow bar of those missed for
illness and for out-of-school suspension (reasons, which cut across the categories), the year-to-date measure as a
line against the policy's threshold line, and the projection's year-end figure when there is one.

The left axis is days per month; the right axis the policy's measure: the absence rate in percent (a percent
policy) or the days absent so far (a days policy, e.g. CRDC's 15 days)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from html import escape

from sis2fhir.measure import HUNDREDTHS
from sis2fhir.present.facts import AttendanceFacts, MonthRow, days_text, month_rows, percent_text

WIDTH, HEIGHT = 760, 340
LEFT, RIGHT, TOP, BOTTOM = 56, 64, 24, 64  # margins: axes and labels
COLOURS = {  # also the chart page's legend and the tests' pixel probes
    "excused": "#1f5fbf",
    "unexcused": "#d62728",
    "other": "#8c8c8c",
    "illness": "#2ca02c",
    "oss": "#8e44ad",
    "rate": "#ff7f0e",
    "threshold": "#e6007e",
}
LABELS = {
    "excused": "Excused",
    "unexcused": "Unexcused",
    "other": "Other counted absence",
    "illness": "Of these: illness",
    "oss": "Of these: out-of-school suspension",
    "rate": "Year to date",
    "threshold": "Chronic absence threshold",
}


@dataclass(frozen=True, slots=True)
class _Frame:
    months: int
    days_max: int  # left axis top, in days
    measure_max: float  # right axis top, percent or days

    @property
    def plot_w(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def plot_h(self) -> float:
        return HEIGHT - TOP - BOTTOM

    def slot(self, i: int) -> tuple[float, float]:
        """x of month i's slot and the slot's width."""
        w = self.plot_w / max(1, self.months)
        return LEFT + i * w, w

    def y_days(self, hundredths: int) -> float:
        return TOP + self.plot_h * (1 - hundredths / (self.days_max * HUNDREDTHS))

    def y_measure(self, value: float) -> float:
        return TOP + self.plot_h * (1 - min(value, self.measure_max) / self.measure_max)


def _measure_of(row: MonthRow, facts: AttendanceFacts) -> float | None:
    """The year-to-date figure at the month's end in the policy's unit: percent (as shown) or days."""
    if facts.policy.measure == "days":
        return row.ytd_absent_h / HUNDREDTHS
    rate = row.ytd_rate_hundredths
    return None if rate is None else rate / 100


def _nice(value: float) -> int:
    """An axis top: the next of 1, 2, 5 x 10^n at or above value."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _month_label(month: str) -> str:
    return date.fromisoformat(f"{month}-01").strftime("%b")


def chart_svg(facts: AttendanceFacts) -> str:
    """The SVG element (inline in the chart page). Without months: a note saying so, no bars, no line."""
    rows = month_rows(facts)
    threshold = facts.policy.chronic_bound
    unit = "%" if facts.policy.measure == "percent" else "days"
    title = "Days missed per month and the year-to-date measure against the chronic absence threshold"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-labelledby="chart-title" font-family="sans-serif" font-size="12">'
        f'<title id="chart-title">{escape(title)}</title>'
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>'
    )
    if not rows:
        note = "No monthly figures are recorded for this school year yet: the table of totals is below."
        return head + f'<text x="{LEFT}" y="{TOP + 40}">{escape(note)}</text></svg>'
    measures = [_measure_of(r, facts) for r in rows]
    projected = facts.projected_rate * 100 if facts.projected_rate is not None and unit == "%" else None
    top_measure = max([threshold * 1.5, *(m for m in measures if m is not None), projected or 0.0])
    frame = _Frame(len(rows), _nice(max(r.tally.absent_h for r in rows) / HUNDREDTHS * 1.15), float(_nice(top_measure)))
    parts = [head, _axes(frame, unit)]
    for i, row in enumerate(rows):
        parts.append(_month_bars(frame, i, row))
    parts.append(_threshold(frame, threshold, unit))
    parts.append(_rate_line(frame, measures))
    if projected is not None:
        parts.append(_projection(frame, measures[-1], projected))
    return "".join(parts) + "</svg>"


def _axes(frame: _Frame, unit: str) -> str:
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, TOP + frame.plot_h
    out = ['<g class="axes" stroke="#444444" stroke-width="1">']
    out.append(f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>')
    out.append(f'<line x1="{x1}" y1="{y0}" x2="{x1}" y2="{y1}"/></g><g class="ticks" fill="#222222">')
    for k in range(5):
        days = frame.days_max * k / 4
        measure = frame.measure_max * k / 4
        y = frame.y_days(round(days * HUNDREDTHS))
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{days:g}</text>')
        out.append(f'<text x="{x1 + 6}" y="{y + 4:.1f}">{measure:g}{" %" if unit == "%" else ""}</text>')
    out.append(f'<text x="{x0}" y="{TOP - 8}">days missed</text>')
    right = "absence rate, year to date" if unit == "%" else "days missed, year to date"
    out.append(f'<text x="{x1}" y="{TOP - 8}" text-anchor="end">{right}</text></g>')
    return "".join(out)


def _rect(kind: str, month: str, x: float, y: float, w: float, h: float, days: int) -> str:
    if h <= 0:
        return ""
    return (
        f'<rect class="bar {kind}" data-month="{month}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'fill="{COLOURS[kind]}"><title>{escape(LABELS[kind])}: {days_text(days)} days</title></rect>'
    )


def _month_bars(frame: _Frame, i: int, row: MonthRow) -> str:
    x, w = frame.slot(i)
    t = row.tally
    out = [f'<g class="month" data-month="{t.month}">']
    bottom = base = TOP + frame.plot_h
    bar_x, bar_w = x + w * 0.18, w * 0.42
    for kind, h in (("excused", t.excused_h), ("unexcused", t.unexcused_h), ("other", row.other_h)):
        top = base - (bottom - frame.y_days(h))
        out.append(_rect(kind, t.month, bar_x, top, bar_w, base - top, h))
        base = top
    base, thin_x, thin_w = bottom, x + w * 0.62, w * 0.16
    for kind, h in (("illness", t.illness_h), ("oss", t.oss_h)):
        top = base - (bottom - frame.y_days(h))
        out.append(_rect(kind, t.month, thin_x, top, thin_w, base - top, h))
        base = top
    label_y = TOP + frame.plot_h + 16
    out.append(f'<text x="{x + w / 2:.1f}" y="{label_y}" text-anchor="middle">{_month_label(t.month)}</text></g>')
    return "".join(out)


def _threshold(frame: _Frame, threshold: float, unit: str) -> str:
    """The threshold line across the plot; its label below the month names, where no bar or line can cover it."""
    y = frame.y_measure(threshold)
    shown = f"{threshold:g} %" if unit == "%" else f"{threshold:g} days"
    key_y = TOP + frame.plot_h + 42
    return (
        f'<g id="threshold" class="threshold"><line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
        f'stroke="{COLOURS["threshold"]}" stroke-width="3"/></g>'
        f'<g class="threshold-key"><line x1="{LEFT}" y1="{key_y - 4}" x2="{LEFT + 24}" y2="{key_y - 4}" '
        f'stroke="{COLOURS["threshold"]}" stroke-width="3"/>'
        f'<text x="{LEFT + 30}" y="{key_y}" fill="#222222">chronic absence at {shown}</text></g>'
    )


def _rate_line(frame: _Frame, measures: list[float | None]) -> str:
    points = []
    for i, m in enumerate(measures):
        if m is None:
            continue
        x, w = frame.slot(i)
        points.append((x + w / 2, frame.y_measure(m)))
    if not points:
        return ""
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLOURS["rate"]}"/>' for x, y in points)
    return (
        f'<g id="rate" class="rate"><polyline points="{path}" fill="none" stroke="{COLOURS["rate"]}" '
        f'stroke-width="3"/>{dots}</g>'
    )


def _projection(frame: _Frame, last: float | None, projected: float) -> str:
    """A dashed segment from the last month to the year-end figure at the right edge; its label below the plot."""
    x_end = WIDTH - RIGHT
    x_last, w = frame.slot(frame.months - 1)
    y_end = frame.y_measure(projected)
    start = "" if last is None else f"{x_last + w / 2:.1f},{frame.y_measure(last):.1f} "
    shown = percent_text(round(projected * 100))
    key_y = TOP + frame.plot_h + 42
    return (
        f'<g id="projection" class="projection"><polyline points="{start}{x_end:.1f},{y_end:.1f}" fill="none" '
        f'stroke="{COLOURS["rate"]}" stroke-width="2" stroke-dasharray="6 4"/>'
        f'<line x1="{x_end - 190}" y1="{key_y - 4}" x2="{x_end - 166}" y2="{key_y - 4}" stroke="{COLOURS["rate"]}" '
        f'stroke-width="2" stroke-dasharray="6 4"/>'
        f'<text x="{x_end}" y="{key_y}" text-anchor="end" fill="#222222">projected year end {shown} %</text></g>'
    )
