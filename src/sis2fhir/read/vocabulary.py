"""The attendance vocabulary: Ed-Fi and CEDS attendance categories, and districts' absence-reason words."""

from __future__ import annotations

import re

from sis2fhir.records import AttendanceCategory
from sis2fhir.terminology import ABSENCE_REASONS


def _compact(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text).lower()


# Ed-Fi AttendanceEventCategoryDescriptor code values and the CEDS codes, compared without case or spaces.
_CATEGORIES: dict[str, AttendanceCategory] = {_compact(c.value): c for c in AttendanceCategory}
_CATEGORIES |= {
    "excused": AttendanceCategory.EXCUSED_ABSENCE,
    "unexcused": AttendanceCategory.UNEXCUSED_ABSENCE,
}
PRESENCE = frozenset({AttendanceCategory.IN_ATTENDANCE, AttendanceCategory.PRESENT})

# Free-text absence reasons as districts type them, to the codes of terminology.ABSENCE_REASONS.
_REASON_PHRASES: list[tuple[str, str]] = [
    ("out of school suspension", "suspension-out-of-school"),
    ("out-of-school suspension", "suspension-out-of-school"),
    ("in school suspension", "suspension-in-school"),
    ("in-school suspension", "suspension-in-school"),
    ("mental health", "mental-health"),
    ("behavioral health", "mental-health"),
    ("doctor", "medical"),
    ("dentist", "medical"),
    ("dental", "medical"),
    ("appointment", "medical"),
    ("hospital", "medical"),
    ("therapy", "medical"),
    ("medical", "medical"),
    ("sick", "illness"),
    ("illness", "illness"),
    ("flu", "illness"),
    ("fever", "illness"),
    ("covid", "illness"),
    ("bus", "transportation"),
    ("transport", "transportation"),
    ("religio", "religious"),
    ("funeral", "family"),
    ("bereavement", "family"),
    ("family", "family"),
]
_REASON_WORDS: dict[str, str] = {
    "oss": "suspension-out-of-school",
    "iss": "suspension-in-school",
    "ill": "illness",
    "unknown": "unknown",
    "not recorded": "unknown",
}


def reason_code(text: str) -> str | None:
    """The absence-reason code for a district's reason text; "" for none, None when not recognised."""
    t = " ".join(text.replace("_", " ").split()).lower()
    if not t:
        return ""
    if t in ABSENCE_REASONS:
        return t
    code = t.replace(" ", "-")
    if code in ABSENCE_REASONS:
        return code
    if t in _REASON_WORDS:
        return _REASON_WORDS[t]
    words = set(re.split(r"[^a-z]+", t))
    for word, code in _REASON_WORDS.items():
        if word in words:
            return code
    for phrase, code in _REASON_PHRASES:
        if phrase in t:
            return code
    return None


def category_of(text: str) -> AttendanceCategory | None:
    """An attendance category from a bare Ed-Fi value, a descriptor URI or a CEDS code, in any case."""
    t = text.strip()
    if "#" in t:
        t = t.rsplit("#", 1)[1]
    return _CATEGORIES.get(_compact(t))
