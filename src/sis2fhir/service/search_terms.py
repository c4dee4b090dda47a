"""Reading FHIR R4 search values (pure functions): commas and pipes with their escapes, tokens, references, and
dates with their prefixes as half-open ranges of the value's precision."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

PREFIXES = ("eq", "ne", "ge", "gt", "le", "lt")  # sa, eb, ap: not supported (an error, not a silent eq)
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


class SearchValueError(ValueError):
    """A search value that cannot be read; the message names the parameter, never the value."""


@dataclass(frozen=True, slots=True)
class DateRange:
    prefix: str
    low: str | datetime  # inclusive
    high: str | datetime  # exclusive


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not escaped by a backslash; the escapes stay (undone by `_unescape`)."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    """R4 search escaping: `\\,` `\\|` `\\$` `\\\\` stand for the character itself."""
    return re.sub(r"\\([,|$\\])", r"\1", text)


def split_values(occurrence: str) -> list[str]:
    """One occurrence of a parameter: its comma-separated values (OR), escapes kept for the token split."""
    return [v for v in _split(occurrence, ",") if v != ""]


def token(value: str) -> tuple[str | None, str | None]:
    """(system, code) of a token: `system|code`, `|code` (no system: ""), `code` (any system: None),
    `system|` (any code: None)."""
    parts = _split(value, "|")
    if len(parts) == 1:
        return None, _unescape(parts[0])
    if len(parts) > 2:
        raise SearchValueError("a token has at most one unescaped '|' (system|code)")
    system, code = _unescape(parts[0]), _unescape(parts[1])
    return system, (code if code != "" else None)


def reference_ids(values: list[str], rtype: str) -> list[str]:
    """The ids of references to `rtype`: `<id>`, `<Type>/<id>` or an absolute URL ending so; another type's
    reference matches nothing."""
    out = []
    for raw in values:
        value = _unescape(raw)
        parts = value.rstrip("/").split("/")
        if len(parts) == 1:
            out.append(parts[0])
        elif len(parts) >= 2 and parts[-2] == rtype:
            out.append(parts[-1])
        elif len(parts) >= 4 and parts[-4] == rtype and parts[-2] == "_history":
            out.append(parts[-3])
    return out


def _prefixed(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES:
        return value[:2], value[2:]
    if value[:2].isalpha():
        raise SearchValueError("the prefix is not one of eq, ne, ge, gt, le, lt")
    return "eq", value


def date_range(value: str, name: str) -> DateRange:
    """A date search value (YYYY, YYYY-MM, YYYY-MM-DD, or a dateTime taken at its day) as ISO date strings."""
    prefix, text = _prefixed(_unescape(value))
    m = _DATE.match(text[:10] if "T" in text else text)
    if m is None:
        raise SearchValueError(f"{name}: a date is YYYY, YYYY-MM or YYYY-MM-DD, with an optional prefix")
    year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
    try:
        low = date(year, month, day)
    except ValueError:
        raise SearchValueError(f"{name}: not a calendar date") from None
    if m[3]:
        high = low + timedelta(days=1)
    elif m[2]:
        high = date(year + month // 12, month % 12 + 1, 1)
    else:
        high = date(year + 1, 1, 1)
    return DateRange(prefix, low.isoformat(), high.isoformat())


def instant_range(value: str, name: str) -> DateRange:
    """A date or dateTime search value as UTC instants (a dateTime without a zone is taken as UTC)."""
    prefix, text = _prefixed(_unescape(value))
    if "T" not in text:
        days = date_range(text, name)
        low = datetime.fromisoformat(str(days.low)).replace(tzinfo=UTC)
        high = datetime.fromisoformat(str(days.high)).replace(tzinfo=UTC)
        return DateRange(prefix, low, high)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise SearchValueError(f"{name}: not a FHIR dateTime") from None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    step = (
        timedelta(microseconds=1)
        if "." in text
        else timedelta(seconds=1)
        if text.count(":") >= 2
        else timedelta(minutes=1)
    )
    return DateRange(prefix, at, at + step)
