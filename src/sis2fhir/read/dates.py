"""Dates in export files: ISO 8601 calendar dates, and what to say about one that is not."""

from __future__ import annotations

from datetime import date


def parse_date(text: str) -> date | None:
    """An ISO 8601 calendar date `YYYY-MM-DD` (a time part after `T` is dropped); None otherwise."""
    t = text.strip()
    if len(t) > 10 and t[10] in "T ":
        t = t[:10]
    if len(t) != 10 or t[4] != "-" or t[7] != "-":
        return None
    try:
        return date.fromisoformat(t)
    except ValueError:
        return None


def bad_date(value: str, column: str, show_value: bool = True) -> str:
    """What is wrong with a date that is not ISO 8601, and what to do (the value left out for birth dates)."""
    shown = f"'{value.strip()}' " if show_value else ""
    hint = ""
    if show_value and "/" in value:
        hint = " Dates with slashes are ambiguous (1/05/2023 is 5 January in the US, 1 May elsewhere)."
    return f"{column} {shown}is not an ISO 8601 date (YYYY-MM-DD).{hint} Export dates as YYYY-MM-DD."
