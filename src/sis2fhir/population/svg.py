"""Inline SVG pictures for the static reports: horizontal bars (schools, sorted), columns (months, reasons, before
and after), each with optional reference lines. No script, no font or style from elsewhere: the file opens offline.
Values are in hundredths (of a percent, or of a day); None draws a withheld bar (an outline, labelled)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

Bar = tuple[str, int | None]  # label, value in hundredths (None: withheld)
Line = tuple[str, int]  # label, value in hundredths
FILL, WITHHELD, LINE = "#3b6ea8", "#9aa5b1", "#b3261e"


def _fmt(v: int, unit: str) -> str:
    return f"{v / 100:.2f}".rstrip("0").rstrip(".") + unit


def _scale(values: Sequence[int | None], lines: Sequence[Line]) -> int:
    top = max([v for v in values if v is not None] + [v for _, v in lines] + [1])
    return int(top * 1.1) + 1


def horizontal_bars(title: str, bars: Sequence[Bar], lines: Sequence[Line] = (), unit: str = "%") -> str:
    """One bar per label, in the order given; reference lines across all bars."""
    row, left, width = 22, 190, 420
    height = 40 + row * len(bars) + 30
    top = _scale([v for _, v in bars], lines)
    x = lambda v: left + width * v / top  # noqa: E731
    parts = [_open(title, left + width + 90, height), _title(title)]
    for i, (label, value) in enumerate(bars):
        y = 34 + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(label[:28])}</text>')
        if value is None:
            parts.append(
                f'<rect class="withheld" x="{left}" y="{y + 3}" width="{width / 6:.1f}" height="{row - 6}" '
                f'fill="none" stroke="{WITHHELD}" stroke-dasharray="3 2"/>'
                f'<text x="{left + width / 6 + 4:.1f}" y="{y + 14}" fill="#555">withheld</text>'
            )
        else:
            parts.append(
                f'<rect class="bar" x="{left}" y="{y + 3}" width="{x(value) - left:.1f}" height="{row - 6}" '
                f'fill="{FILL}"><title>{escape(label)}: {_fmt(value, unit)}</title></rect>'
                f'<text x="{x(value) + 4:.1f}" y="{y + 14}">{_fmt(value, unit)}</text>'
            )
    parts += _vertical_lines(lines, x, 30, 34 + row * len(bars), unit)
    parts.append("</svg>")
    return "".join(parts)


def columns(title: str, bars: Sequence[Bar], lines: Sequence[Line] = (), unit: str = "%") -> str:
    """One column per label, left to right; reference lines across."""
    bottom, plot = 230, 180
    col = max(46, 7 * max((len(label[:16]) for label, _ in bars), default=0) + 10)  # labels side by side
    width = 60 + col * len(bars) + 120
    top = _scale([v for _, v in bars], lines)
    y = lambda v: bottom - plot * v / top  # noqa: E731
    parts = [_open(title, width, bottom + 40), _title(title)]
    for i, (label, value) in enumerate(bars):
        x0 = 50 + i * col
        parts.append(f'<text x="{x0 + col / 2:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(label[:16])}</text>')
        if value is None:
            parts.append(
                f'<rect class="withheld" x="{x0 + 6}" y="{bottom - 30}" width="{col - 12}" height="30" fill="none" '
                f'stroke="{WITHHELD}" stroke-dasharray="3 2"/>'
                f'<text x="{x0 + col / 2:.1f}" y="{bottom - 34}" text-anchor="middle" fill="#555">withheld</text>'
            )
        else:
            parts.append(
                f'<rect class="bar" x="{x0 + 6}" y="{y(value):.1f}" width="{col - 12}" '
                f'height="{bottom - y(value):.1f}" '
                f'fill="{FILL}"><title>{escape(label)}: {_fmt(value, unit)}</title></rect>'
                f'<text x="{x0 + col / 2:.1f}" y="{y(value) - 4:.1f}" text-anchor="middle">{_fmt(value, unit)}</text>'
            )
    for label, value in lines:
        parts.append(
            f'<line class="reference" x1="44" x2="{50 + col * len(bars)}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="{LINE}" stroke-dasharray="6 3"/>'
            f'<text x="{54 + col * len(bars)}" y="{y(value) + 4:.1f}" fill="{LINE}">'
            f"{escape(label)} {_fmt(value, unit)}</text>"
        )
    parts.append(f'<line x1="44" x2="{50 + col * len(bars)}" y1="{bottom}" y2="{bottom}" stroke="#333"/></svg>')
    return "".join(parts)


def _vertical_lines(lines: Sequence[Line], x: Callable[[float], float], y1: int, y2: int, unit: str) -> list[str]:
    out = []
    for label, value in lines:
        xv = x(value)
        out.append(
            f'<line class="reference" x1="{xv:.1f}" x2="{xv:.1f}" y1="{y1}" y2="{y2}" stroke="{LINE}" '
            f'stroke-dasharray="6 3"/><text x="{xv + 3:.1f}" y="{y2 + 16}" fill="{LINE}">'
            f"{escape(label)} {_fmt(value, unit)}</text>"
        )
    return out


def _open(title: str, width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">'
    )


def _title(title: str) -> str:
    return f'<text x="8" y="18" font-weight="bold" font-size="14">{escape(title)}</text>'
