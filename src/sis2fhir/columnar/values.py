"""The vocabulary of attendance.csv as SQL tables, made by the Python reader's own functions, once per distinct value.

The columnar engine never decides what a date, a category, a duration, a reason or a school id means: it resolves
the spellings most exports use (`likely_spellings`), then the distinct values of the rows those leave unresolved
(a few hundred dates, a handful of the rest, at most), each with the functions the Python reader uses
(read/attendance_values.Resolver, read/vocabulary.py, measure.py). A value they do not resolve cleanly has no row
in these tables, so its rows go to the Python reader (rare.py), which reports them. What an event adds to the
tallies is likewise asked of measure.AbsenceTally and absence_days.add_day per distinct (category, hundredths,
reason), never restated in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sis2fhir.absence_days import EXCUSED, ILLNESS, SUSPENSION, UNEXCUSED, add_day, new_masks
from sis2fhir.engine import PRESENCE, Rules, day_offset
from sis2fhir.measure import OSS, AbsenceTally, day_hundredths
from sis2fhir.read.attendance_values import Resolver
from sis2fhir.read.dates import parse_date
from sis2fhir.read.vocabulary import category_of, reason_code
from sis2fhir.records import AttendanceCategory
from sis2fhir.terminology import ABSENCE_REASONS

COMBO_COLUMNS = (
    "cat",
    "h",
    "reason",
    "w",
    "absent",
    "excused",
    "unexcused",
    "illness",
    "oss",
    "absent_kind",
    "presence",
    "m_excused",
    "m_unexcused",
    "m_illness",
    "m_suspension",
)


def likely_spellings(rules: Rules) -> tuple[list[str], list[str], list[str], list[str]]:
    """The dates, categories, durations and reasons as most exports spell them: ISO dates of the school year and the
    years around it, the categories' Ed-Fi values (as written, lower and upper case), whole, half and quarter days,
    the reason codes and their display names. The tables are made from these first (each resolved by the reader's
    own functions like any other value), so that DuckDB need not scan the whole file for its distinct values
    (about 15 % of the engine's queries, measured at 20k students); a row spelled otherwise is looked up after."""
    first, last = date(rules.year.start.year - 3, 1, 1), date(rules.year.end.year + 1, 12, 31)
    dates = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    values = [c.value for c in AttendanceCategory]
    categories = sorted({*values, *(v.lower() for v in values), *(v.upper() for v in values), "Excused", "Unexcused"})
    durations = ["", "1", "1.0", "1.00", "0.5", "0.50", ".5", "0.25", ".25", "0.75", ".75"]
    reasons = ["", *ABSENCE_REASONS, *ABSENCE_REASONS.values()]
    return dates, categories, durations, reasons


def dates_of(raws: Iterable[str], rules: Rules) -> list[tuple[str, int, int]]:
    """(raw, offset from the year's first day, day_offset's verdict: the offset, OUTSIDE_YEAR or AFTER_AS_OF)."""
    found = []
    for raw in raws:
        d = parse_date(raw)
        if d is not None:
            found.append((raw, d.toordinal() - rules.base, day_offset(rules, d)))
    return found


def categories_of(raws: Iterable[str]) -> list[tuple[str, str]]:
    return [(raw, c.value) for raw in raws if (c := category_of(raw)) is not None]


def durations_of(raws: Iterable[str], resolver: Resolver) -> list[tuple[str, int]]:
    """(raw, hundredths of a day) for the durations the reader accepts ('' is a whole day)."""
    found = []
    for raw in raws:
        d = resolver.durations[raw] if raw in resolver.durations else resolver.duration(raw)
        if d is not None:
            found.append((raw, day_hundredths(d)))
    return found


def reasons_of(raws: Iterable[str], resolver: Resolver) -> list[tuple[str, str]]:
    """(raw, code) for the reasons the reader recognises; an unknown one is reported by the reader, at its line."""
    found = []
    for raw in raws:
        code = resolver.reasons[raw] if raw in resolver.reasons else reason_code(raw)
        if code is not None:
            found.append((raw, code))
    return found


def schools_of(raws: Iterable[str], resolver: Resolver) -> list[tuple[str, str]]:
    """(raw, school sourcedId) for exact sourcedIds and identifiers (padded ones: the reader strips and reports)."""
    return [(raw, s) for raw in raws if (s := resolver.schools.get(raw)) is not None]


@dataclass(frozen=True, slots=True)
class Combo:
    """What one counted event of this (category, hundredths, reason) adds, as tally.Tallies.consume counts it."""

    cat: str
    h: int
    reason: str
    w: int  # hundredths made absent (0: none)
    absent: int
    excused: int
    unexcused: int
    illness: int
    oss: int
    absent_kind: bool  # a tally is kept for the key (the category may be absent, or the reason is OSS)
    presence: bool  # counted as a row that says In Attendance / Present
    m_excused: bool  # the day's bit in absence_days' masks of the kind
    m_unexcused: bool
    m_illness: bool
    m_suspension: bool

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in COMBO_COLUMNS)


def combos(categories: Iterable[str], hundredths: Iterable[int], reasons: Iterable[str], rules: Rules) -> list[Combo]:
    """Every (category, hundredths, reason) the file's values can make, with what it adds."""
    policy = rules.policy
    found = []
    hs, rs = sorted(set(hundredths)), sorted(set(reasons))
    for value in sorted(set(categories)):
        category = AttendanceCategory(value)
        for h in hs:
            for reason in rs:
                t = AbsenceTally()
                absent_kind = category in policy.absence_categories or reason == OSS
                w = t.add(category, h, reason, policy) if absent_kind else 0
                masks = new_masks()
                if w:
                    add_day(masks, 0, w, category, reason)
                found.append(
                    Combo(
                        value,
                        h,
                        reason,
                        w,
                        t.absent,
                        t.excused,
                        t.unexcused,
                        t.illness,
                        t.oss,
                        absent_kind,
                        not absent_kind and category in PRESENCE,
                        bool(masks[EXCUSED]),
                        bool(masks[UNEXCUSED]),
                        bool(masks[ILLNESS]),
                        bool(masks[SUSPENSION]),
                    )
                )
    return found
