"""Checks for FHIR R4 primitive values in JSON: the JSON type and the regex from the type's definition."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sis2fhir.validate.narrative import xhtml_problem

# Checker: returns None when the value is valid, else a message that names no patient data.
PrimitiveCheck = Callable[[Any], str | None]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
NUMERIC = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
# types whose value starts with a calendar date: the R4 regexes take 2025-02-30 (any day 01-31 in any month)
CALENDAR = frozenset({"date", "dateTime", "instant"})
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def impossible_day(value: str) -> bool:
    """True for a YYYY-MM-DD... whose day is not in its month (2025-02-30, 2023-02-29); 2024-02-29 is a day."""
    if len(value) < 10 or value[4] != "-" or value[7] != "-" or not (value[:4] + value[5:7] + value[8:10]).isdigit():
        return False
    year, month, day = int(value[:4]), int(value[5:7]), int(value[8:10])
    if day <= 28 or not 1 <= month <= 12:
        return False
    if month == 2 and day == 29:
        return not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))
    return day > _MONTH_DAYS[month]


def _json_kind(fhir_type: str) -> str:
    if fhir_type == "boolean":
        return "boolean"
    if fhir_type in NUMERIC:
        return "integer"
    if fhir_type == "decimal":
        return "decimal"
    return "string"


def make_check(fhir_type: str, regex: str | None) -> PrimitiveCheck:
    kind = _json_kind(fhir_type)
    # The spec's regexes are Java regexes: \s and \S are ASCII-only there, so a no-break space is allowed.
    pattern = re.compile(regex, re.ASCII) if regex else None
    fullmatch = pattern.fullmatch if pattern else None

    if kind == "boolean":

        def check_boolean(value: Any) -> str | None:
            return None if value is True or value is False else f"{fhir_type} must be a JSON true or false"

        return check_boolean

    if kind == "integer":
        low = 1 if fhir_type == "positiveInt" else 0 if fhir_type == "unsignedInt" else INT32_MIN

        def check_integer(value: Any) -> str | None:
            if type(value) is not int:
                return f"{fhir_type} must be a JSON integer, not {_describe(value)}"
            if value < low or value > INT32_MAX:
                return f"{fhir_type} value {value} is out of range"
            return None

        return check_integer

    if kind == "decimal":

        def check_decimal(value: Any) -> str | None:
            if type(value) is int or type(value) is float:
                return None
            return f"decimal must be a JSON number, not {_describe(value)}"

        return check_decimal

    if fhir_type == "xhtml":

        def check_xhtml(value: Any) -> str | None:
            if type(value) is not str:
                return f"xhtml must be a JSON string, not {_describe(value)}"
            if not value.lstrip().startswith("<div"):
                return "xhtml narrative must be a <div> element"
            return xhtml_problem(value)

        return check_xhtml

    calendar = fhir_type in CALENDAR

    def check_string(value: Any) -> str | None:
        if type(value) is not str:
            return f"{fhir_type} must be a JSON string, not {_describe(value)}"
        if fullmatch is not None and fullmatch(value) is None:
            if not value:
                return f"{fhir_type} must not be empty"
            return f"not a valid {fhir_type}{FORMAT_HINTS.get(fhir_type, '')}"
        if not value:
            return f"{fhir_type} must not be empty"
        if calendar and impossible_day(value):
            return f"not a valid {fhir_type}: no such day in the calendar"
        return None

    return check_string


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "an object"
    )


# Messages never echo the rejected value: it may be a birth date or a name.
FORMAT_HINTS = {
    "date": " (expected YYYY, YYYY-MM or YYYY-MM-DD)",
    "dateTime": " (expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)",
    "instant": " (expected YYYY-MM-DDThh:mm:ss[.sss] with a time zone, e.g. 2025-03-01T12:00:00Z)",
    "time": " (expected hh:mm:ss)",
    "id": " (1 to 64 of A-Z a-z 0-9 - .)",
    "code": " (no leading, trailing or double whitespace)",
    "uri": " (no whitespace)",
    "url": " (no whitespace)",
    "canonical": " (no whitespace)",
    "oid": " (expected urn:oid:...)",
    "uuid": " (expected urn:uuid: and a lower-case UUID)",
    "base64Binary": " (expected base64)",
}
