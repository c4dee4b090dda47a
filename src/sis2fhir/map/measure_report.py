"""FHIR R4 MeasureReports (type summary) against the chronic-absence Measure (profiles/, terminology.CHRONIC_ABSENCE_
MEASURE): the district, each school and each month of `sis2fhir population`, and each group of `sis2fhir evaluate`.

A withheld count has no `count`: its `_count` carries the data-absent-reason extension `masked` (FHIR's code for
"withheld for privacy"); a rate of a withheld count has no measureScore. Nothing here names a student.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Any

from sis2fhir import terminology as t
from sis2fhir.population.aggregate import DISTRICT, GRADE, MONTH, SCHOOL, Group
from sis2fhir.population.evaluate import AFTER, BEFORE, COHORT, COMPARISON
from sis2fhir.population.evaluation import Evaluation
from sis2fhir.population.publish import Published
from sis2fhir.population.table import grade_key

Resource = dict[str, Any]
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
MEASURE_VERSION = "0.1.0"  # profiles/sushi-config.yaml


@dataclass(frozen=True, slots=True)
class Proportion:
    """One stratum (or group) of the measure: initial population, numerator, score in hundredths of a percent;
    None where withheld."""

    initial: int | None
    numerator: int | None
    score: int | None


def _code(system: str, code: str, display: str = "") -> Resource:
    coding: Resource = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _population(code: str, count: int | None) -> Resource:
    out: Resource = {"code": _code(t.MEASURE_POPULATION_CS, code)}
    if count is None:
        out["_count"] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}
    else:
        out["count"] = count
    return out


def _figures(p: Proportion) -> Resource:
    out: Resource = {
        "population": [
            _population("initial-population", p.initial),
            _population("denominator", p.initial),
            _population("numerator", p.numerator),
        ]
    }
    if p.score is not None:
        out["measureScore"] = {"value": p.score / 100, "unit": "%", "system": t.UCUM, "code": "%"}
    return out


def stratifier(code: str, strata: Iterable[tuple[Resource, Proportion]]) -> Resource:
    return {
        "code": [_code(t.POPULATION_CS, code, t.POPULATION_CODES[code])],
        "stratum": [{"value": value, **_figures(p)} for value, p in strata],
    }


def measure_report(
    key: str,
    identifier_system: str,
    period: tuple[date, date],
    made: date,
    overall: Proportion | None,
    stratifiers: Sequence[Resource],
    title: str,
) -> Resource:
    """One summary MeasureReport; `key` names it among the run's reports (its id is a digest of the key)."""
    group: Resource = {"code": _code(t.POPULATION_CS, "chronic-absence", t.POPULATION_CODES["chronic-absence"])}
    if overall is not None:
        group.update(_figures(overall))
    if stratifiers:
        group["stratifier"] = list(stratifiers)
    return {
        "resourceType": "MeasureReport",
        "id": "pop-" + hashlib.sha256(key.encode()).hexdigest()[:24],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{escape(title)}</p></div>',
        },
        "identifier": [{"system": identifier_system, "value": key}],
        "status": "complete",
        "type": "summary",
        "measure": f"{t.CHRONIC_ABSENCE_MEASURE}|{MEASURE_VERSION}",
        "date": made.isoformat(),
        "period": {"start": period[0].isoformat(), "end": period[1].isoformat()},
        "improvementNotation": _code(
            "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "decrease", "Decreased score"
        ),
        "group": [group],
    }


def proportion(published: Published, g: Group) -> Proportion:
    return Proportion(published.value(g, "students"), published.value(g, "chronic"), published.chronic_rate(g))


def _text(value: str) -> Resource:
    return {"text": value or "(none)"}


def population_reports(
    published: Published, identifier_system: str, year_start: date, as_of: date, school_year: int
) -> list[Resource]:
    """The district's report (strata: schools, grades), one per school (strata: its grades), one per month
    (strata: schools)."""
    groups = sorted(published.figures)
    out: list[Resource] = []

    def strata(pick: Iterable[Group], label: str) -> list[tuple[Resource, Proportion]]:
        return [(_text(getattr(g, label)), proportion(published, g)) for g in pick]

    def by_grade(gs: Iterable[Group]) -> list[Group]:
        return sorted(gs, key=lambda g: grade_key(g.grade))

    period = (year_start, as_of)
    schools = [g for g in groups if g.level == SCHOOL]
    district_grades = by_grade(g for g in groups if g.level == GRADE and not g.school)
    if Group(DISTRICT) in published.figures:
        out.append(
            measure_report(
                f"{school_year}/district",
                identifier_system,
                period,
                as_of,
                proportion(published, Group(DISTRICT)),
                [
                    stratifier("school", strata(schools, "school")),
                    stratifier("grade", strata(district_grades, "grade")),
                ],
                f"Chronic absence, the district, school year {school_year} to {as_of}",
            )
        )
    for s in schools:
        grades = by_grade(g for g in groups if g.level == GRADE and g.school == s.school)
        out.append(
            measure_report(
                f"{school_year}/school/{s.school}",
                identifier_system,
                period,
                as_of,
                proportion(published, s),
                [stratifier("grade", strata(grades, "grade"))],
                f"Chronic absence, school {s.school}, school year {school_year} to {as_of}",
            )
        )
    for m in (g for g in groups if g.level == MONTH and not g.school):
        year, month = (int(x) for x in m.month.split("-"))
        first = max(date(year, month, 1), year_start)
        last = min(date(year, month, calendar.monthrange(year, month)[1]), as_of)
        in_month = [g for g in groups if g.level == MONTH and g.school and g.month == m.month]
        out.append(
            measure_report(
                f"{school_year}/month/{m.month}",
                identifier_system,
                (first, last),
                as_of,
                proportion(published, m),
                [stratifier("school", strata(in_month, "school"))],
                f"Chronic absence in {m.month} (that month's days), the district and its schools",
            )
        )
    return out


def evaluation_reports(
    e: Evaluation, identifier_system: str, period: tuple[date, date], start: date, made: date
) -> list[Resource]:
    """One report per group (the cohort, the others of its schools and grades): strata before and after."""
    out = []
    for group in (COHORT, COMPARISON):
        strata = [
            (
                _code(t.POPULATION_CS, p, t.POPULATION_CODES[p]),
                Proportion(
                    e.count(group, p, "initial"), e.count(group, p, "chronic"), e.rate(group, p, "chronic_rate")
                ),
            )
            for p in (BEFORE, AFTER)
        ]
        who = "the cohort" if group == COHORT else "the other students of the cohort's schools and grades"
        out.append(
            measure_report(
                f"evaluate/{e.label}/{start.isoformat()}/{period[1].isoformat()}/{group}",
                identifier_system,
                period,
                made,
                None,
                [stratifier("period", strata)],
                f"Chronic absence of {who} ({e.label}), before and after {start.isoformat()}",
            )
        )
    return out
