"""A program evaluation: a cohort against the other students of the same schools and grades, before and after the
program start; the difference in differences and a seeded bootstrap interval over students. Pure functions.

Each student's periods come from two measurements of the same export (aggregate.Totals added over the student's
stays): up to the day before the start, and up to the as-of date; the after period is the difference. Rates are
ratios of sums over a group's students (days absent per 100 days in membership), and the chronic-absence rate is
the share of the students with enough days in the period whose tier for that period is chronic (measure.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sis2fhir.measure import AttendanceSummary, chronic_absence_tier, is_chronic, rate_percent_hundredths
from sis2fhir.policy import Policy
from sis2fhir.population.aggregate import NONE, Totals, totals_of

COHORT, COMPARISON = "cohort", "comparison"
BEFORE, AFTER = "before", "after"
METRICS = ("absent_per_100", "non_illness_per_100", "illness_per_100", "chronic_rate")


@dataclass(frozen=True, slots=True)
class Periods:
    """One student's totals before and after the start."""

    before: Totals
    after: Totals


def student_totals(summaries: Iterable[AttendanceSummary]) -> dict[str, Totals]:
    out: dict[str, Totals] = {}
    for s in summaries:
        out[s.student_sourced_id] = out.get(s.student_sourced_id, NONE) + totals_of(s)
    return out


def periods(before: Iterable[AttendanceSummary], whole: Iterable[AttendanceSummary]) -> dict[str, Periods]:
    """Per student, before = up to the day before the start; after = the as-of measurement less that."""
    b, w = student_totals(before), student_totals(whole)
    out = {}
    for student, total in w.items():
        first = b.get(student, NONE)
        after = Totals(*(x - y for x, y in zip(_fields(total), _fields(first), strict=True)))
        out[student] = Periods(first, after)
    return out


def _fields(t: Totals) -> tuple[int, int, int, int, int, int]:
    return (t.days_in_membership, t.absent_h, t.excused_h, t.unexcused_h, t.illness_h, t.oss_h)


def comparison_students(whole: Iterable[AttendanceSummary], cohort: set[str], grades: Mapping[str, str]) -> set[str]:
    """The students not in the cohort with a stay at a school, in a grade, where a cohort student has one."""
    stays = [(s.student_sourced_id, s.school_sourced_id, grades.get(s.student_sourced_id, "")) for s in whole]
    places = {(school, grade) for student, school, grade in stays if student in cohort}
    return {student for student, school, grade in stays if student not in cohort and (school, grade) in places}


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """A group's figures in one period: counts of students, and sums in hundredths of a day."""

    students: int  # with any day in membership in the period
    initial: int  # with at least the policy's minimum days: the chronic-absence rate's denominator
    chronic: int
    membership_days: int
    absent_h: int
    illness_h: int

    def rate(self, metric: str) -> int | None:
        """Hundredths: days per 100 days in membership, or percent of the initial population."""
        if metric == "chronic_rate":
            return rate_percent_hundredths(self.chronic * 100, self.initial)
        absent = {
            "absent_per_100": self.absent_h,
            "non_illness_per_100": self.absent_h - self.illness_h,
            "illness_per_100": self.illness_h,
        }[metric]
        return rate_percent_hundredths(absent, self.membership_days)


def figures(students: Iterable[Totals], policy: Policy) -> PeriodFigures:
    n = initial = chronic = dim = absent = illness = 0
    for t in students:
        if t.days_in_membership <= 0:
            continue
        n += 1
        dim += t.days_in_membership
        absent += t.absent_h
        illness += t.illness_h
        flag = is_chronic(chronic_absence_tier(t.absent_h, t.days_in_membership, policy))
        if flag is not None:
            initial += 1
            chronic += flag
    return PeriodFigures(n, initial, chronic, dim, absent, illness)


def group_figures(group: Sequence[Periods], policy: Policy) -> dict[str, PeriodFigures]:
    return {BEFORE: figures((p.before for p in group), policy), AFTER: figures((p.after for p in group), policy)}


def did(cohort: Mapping[str, PeriodFigures], comparison: Mapping[str, PeriodFigures], metric: str) -> int | None:
    """(cohort after - before) - (comparison after - before), in hundredths; None where a rate has no denominator."""
    rates = [g[p].rate(metric) for g in (cohort, comparison) for p in (BEFORE, AFTER)]
    if any(r is None for r in rates):
        return None
    cb, ca, kb, ka = (r or 0 for r in rates)
    return (ca - cb) - (ka - kb)


# -- the bootstrap: resample students within each group, with replacement ------------------------------------

Vector = tuple[int, ...]  # per student: for before then after: days, absent, illness, in initial, chronic


def _vector(p: Periods, policy: Policy) -> Vector:
    out: list[int] = []
    for t in (p.before, p.after):
        flag = is_chronic(chronic_absence_tier(t.absent_h, t.days_in_membership, policy))
        out += [t.days_in_membership, t.absent_h, t.illness_h, int(flag is not None), int(bool(flag))]
    return tuple(out)


def _rates(sums: Sequence[int]) -> list[list[float | None]]:
    """Per period, the four metrics as floats (per 100), from the summed vector."""
    out = []
    for k in (0, 5):
        dim, absent, illness, initial, chronic = sums[k : k + 5]
        per = lambda x, d=dim: x / d if d else None  # noqa: E731  (hundredths of a day per day: per 100 days)
        out.append([per(absent), per(absent - illness), per(illness), 100.0 * chronic / initial if initial else None])
    return out


def bootstrap(
    cohort: Sequence[Periods], comparison: Sequence[Periods], policy: Policy, replicates: int, seed: int
) -> dict[str, tuple[float, float] | None]:
    """The 95 % percentile interval of each metric's difference in differences (hundredths are not kept: floats
    per 100), from `replicates` resamples; None for a metric a resample could not compute."""
    rng = random.Random(seed)
    cv = [_vector(p, policy) for p in cohort]
    kv = [_vector(p, policy) for p in comparison]
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    failed: set[str] = set()
    if not cv or not kv:
        return dict.fromkeys(METRICS)
    for _ in range(replicates):
        c = _rates([sum(col) for col in zip(*rng.choices(cv, k=len(cv)), strict=True)])
        k = _rates([sum(col) for col in zip(*rng.choices(kv, k=len(kv)), strict=True)])
        for i, metric in enumerate(METRICS):
            values = (c[0][i], c[1][i], k[0][i], k[1][i])
            if any(v is None for v in values):
                failed.add(metric)
                continue
            cb, ca, kb, ka = (v or 0.0 for v in values)
            draws[metric].append((ca - cb) - (ka - kb))
    out: dict[str, tuple[float, float] | None] = {}
    for metric in METRICS:
        d = sorted(draws[metric])
        if metric in failed or not d:
            out[metric] = None
            continue
        out[metric] = (_quantile(d, 0.025), _quantile(d, 0.975))
    return out


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, type 7)."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def split(all_periods: Mapping[str, Periods], cohort: set[str], comparison: set[str]) -> tuple[list[Periods], ...]:
    """The cohort's and the comparison's periods, in a fixed order (the bootstrap's draws depend on it)."""
    return (
        [all_periods[s] for s in sorted(cohort) if s in all_periods],
        [all_periods[s] for s in sorted(comparison) if s in all_periods],
    )
