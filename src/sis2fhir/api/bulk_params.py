"""The kick-off parameters of a Bulk Data 2.0 $export (pure): which types, since when, in which format.

Bulk Data 2.0 (export.html, "Query Parameters"): `_outputFormat` defaults to application/fhir+ndjson, and servers
SHALL accept its abbreviations `application/ndjson` and `ndjson`; `_type` is a comma-separated list (the parameter
may repeat; the lists add up); `_since` is a FHIR instant (time zone required). A parameter the server does not
support is an error unless the client sent `Prefer: handling=lenient`, in which case it is ignored."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

# What the store serves for a recipient (service/served.py), in the order the files are listed.
EXPORT_TYPES = ("Patient", "Organization", "Observation", "Consent")
NDJSON_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
_KNOWN = frozenset({"_outputFormat", "_type", "_since"})
# FHIR instant: a full date and time to the second, fractions optional, a time zone required.
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


class BadKickOff(Exception):
    """A kick-off the server refuses (400); the message says which parameter and why (no personal data)."""


@dataclass(frozen=True, slots=True)
class KickOff:
    types: tuple[str, ...]
    since: datetime | None
    ignored: tuple[str, ...]  # unsupported parameters dropped under Prefer: handling=lenient


def parse_kick_off(params: Sequence[tuple[str, str]], lenient: bool) -> KickOff:
    """The export asked for by the query string's (name, value) pairs, in their order."""
    unknown = sorted({name for name, _ in params if name not in _KNOWN})
    if unknown and not lenient:
        raise BadKickOff(
            f"unsupported $export parameter {', '.join(unknown)}: this server supports _outputFormat, _type "
            "and _since (send Prefer: handling=lenient to have unsupported parameters ignored)"
        )
    formats = [v for name, v in params if name == "_outputFormat"]
    for fmt in formats:
        if fmt.strip() not in NDJSON_FORMATS:
            raise BadKickOff(f"_outputFormat {fmt!r} is not supported: only application/fhir+ndjson")
    types = _types([v for name, v in params if name == "_type"])
    sinces = [v for name, v in params if name == "_since"]
    if len(sinces) > 1:
        raise BadKickOff("_since given more than once")
    since = _instant(sinces[0]) if sinces else None
    return KickOff(types=types, since=since, ignored=tuple(unknown))


def _types(values: list[str]) -> tuple[str, ...]:
    if not values:
        return EXPORT_TYPES
    asked: set[str] = set()
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                raise BadKickOff("_type has an empty entry")
            if name not in EXPORT_TYPES:
                raise BadKickOff(f"_type {name!r} is not exported by this server: only {', '.join(EXPORT_TYPES)}")
            asked.add(name)
    return tuple(t for t in EXPORT_TYPES if t in asked)


def _instant(value: str) -> datetime:
    if not _INSTANT.fullmatch(value):
        raise BadKickOff("_since must be a FHIR instant with a time zone, such as 2026-03-31T00:00:00Z")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadKickOff("_since is not a real instant") from None
