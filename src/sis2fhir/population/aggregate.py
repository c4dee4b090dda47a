"""The population figures: per district, school, grade and month, counts of students and days, from the measured
summaries. Pure functions; every tier and rate comes from measure.py, so the figures agree with what each student's
chart says.

Units: a school's cells (the school, its grades, its months) count student x school stays, as each school's own
report does; the district's cells (the district, its grades, its months) count each student once, their stays
added up and the tier taken from the sum (measure.chronic_absence_tier), as a district report does. A student who
moved between schools is therefore one student of the district and one of each school.

`students` is the measure's initial population: students with at least the policy's minimum days in membership
(a student with fewer has no tier). Days are kept in hundredths of a day, except the days in membership (whole).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from sis2fhir.measure import AttendanceSummary, chronic_absence_tier, rate_percent_hundredths
from sis2fhir.policy import Policy
from sis2fhir.population.suppress import Sum
from sis2fhir.records import MonthTally
from sis2fhir.terminology import CHRONIC_TIERS, Tier

DISTRICT, SCHOOL, GRADE, MONTH = "district", "school", "grade", "month"
LEVELS = (DISTRICT, SCHOOL, GRADE, MONTH)

# counts of students (suppressed below population.min_cell): `enrolled` with any day in membership, `students` of
# them with enough days for a tier (the initial population, the rate's denominator)
COUNTS = ("enrolled", "students", "chronic", "satisfactory", "at_risk", "moderate", "severe")
TIER_COUNT = {
    Tier.SATISFACTORY: "satisfactory",
    Tier.AT_RISK: "at_risk",
    Tier.MODERATE_CHRONIC: "moderate",
    Tier.SEVERE_CHRONIC: "severe",
}
# days (hundredths, except membership_days): withheld together, wherever the group's enrolled students are too few
DAYS = ("membership_days", "absent_days", "excused_days", "unexcused_days", "illness_days", "oss_days")
VARIABLES = COUNTS + DAYS


class Group(NamedTuple):
    """One row of the report: `school` is "" for the district's rows, `grade` and `month` "" where not broken down."""

    level: str
    school: str = ""
    grade: str = ""
    month: str = ""  # "YYYY-MM"


Cell = tuple[Group, str]  # (group, variable)


# A total that is the sum of its parts (exactly for days and tiers; for the district's student counts, up to the
# students counted at two schools): what an attacker could use to recover a withheld cell.
Relation = Sum


@dataclass(frozen=True, slots=True)
class Totals:
    """One unit's figures: a stay, a student, or a month of either."""

    days_in_membership: int
    absent_h: int
    excused_h: int
    unexcused_h: int
    illness_h: int
    oss_h: int

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.days_in_membership + other.days_in_membership,
            self.absent_h + other.absent_h,
            self.excused_h + other.excused_h,
            self.unexcused_h + other.unexcused_h,
            self.illness_h + other.illness_h,
            self.oss_h + other.oss_h,
        )


NONE = Totals(0, 0, 0, 0, 0, 0)
Figures = dict[str, int]


def totals_of(s: AttendanceSummary | MonthTally) -> Totals:
    if isinstance(s, MonthTally):
        return Totals(s.days_in_membership, s.absent_h, s.excused_h, s.unexcused_h, s.illness_h, s.oss_h)
    return Totals(s.days_in_membership, s.days_absent_h, s.excused_h, s.unexcused_h, s.illness_h, s.oss_h)


def months_of(s: AttendanceSummary) -> tuple[MonthTally, ...]:
    """The summary's monthly tallies (measure.py / tally.py make them; none from an engine that does not)."""
    return s.months


def grade_of(grades: str) -> str:
    """A student's grade from users.csv `grades`: the first one listed ("" when none)."""
    return grades.split(",")[0].strip()


def _add(fig: Figures, t: Totals, tier: str) -> None:
    fig["membership_days"] += t.days_in_membership
    fig["absent_days"] += t.absent_h
    fig["excused_days"] += t.excused_h
    fig["unexcused_days"] += t.unexcused_h
    fig["illness_days"] += t.illness_h
    fig["oss_days"] += t.oss_h
    fig["enrolled"] += 1
    if tier == Tier.INSUFFICIENT_DATA:
        return
    fig["students"] += 1
    fig[TIER_COUNT[Tier(tier)]] += 1
    if tier in CHRONIC_TIERS:
        fig["chronic"] += 1


def aggregate(
    summaries: Iterable[AttendanceSummary], grades: Mapping[str, str], policy: Policy
) -> dict[Group, Figures]:
    """Every group's figures. `grades`: student sourcedId -> grade. Stays with no day in membership count nowhere."""
    figures: dict[Group, Figures] = defaultdict(lambda: dict.fromkeys(VARIABLES, 0))
    by_student: dict[str, Totals] = defaultdict(lambda: NONE)
    months_by_student: dict[tuple[str, str], Totals] = defaultdict(lambda: NONE)
    for s in summaries:
        if s.days_in_membership <= 0:
            continue
        grade = grades.get(s.student_sourced_id, "")
        t = totals_of(s)
        _add(figures[Group(SCHOOL, s.school_sourced_id)], t, s.tier)
        _add(figures[Group(GRADE, s.school_sourced_id, grade)], t, s.tier)
        by_student[s.student_sourced_id] += t
        for m in months_of(s):
            if m.days_in_membership <= 0:
                continue
            mt = totals_of(m)
            _add(figures[Group(MONTH, s.school_sourced_id, month=m.month)], mt, _tier(mt, policy))
            months_by_student[(s.student_sourced_id, m.month)] += mt
    for student, t in by_student.items():
        tier = _tier(t, policy)
        _add(figures[Group(DISTRICT)], t, tier)
        _add(figures[Group(GRADE, grade=grades.get(student, ""))], t, tier)
    for (_, month), t in months_by_student.items():
        _add(figures[Group(MONTH, month=month)], t, _tier(t, policy))
    return dict(figures)


def _tier(t: Totals, policy: Policy) -> str:
    return chronic_absence_tier(t.absent_h, t.days_in_membership, policy)


def relations(groups: Iterable[Group]) -> list[Relation]:
    """Every sum the published figures obey: the district over its schools, its grades and its months; each school
    over its grades and its months; each district grade over the schools' grades, each district month over the
    schools' months; and within every group, students over the tiers and chronic over the chronic tiers."""
    present = set(groups)
    schools = sorted({g.school for g in present if g.level == SCHOOL})
    school_grades: dict[str, list[Group]] = defaultdict(list)
    school_months: dict[str, list[Group]] = defaultdict(list)
    by_grade: dict[str, list[Group]] = defaultdict(list)
    by_month: dict[str, list[Group]] = defaultdict(list)
    for g in sorted(present):
        if g.level == GRADE and g.school:
            school_grades[g.school].append(g)
            by_grade[g.grade].append(g)
        elif g.level == MONTH and g.school:
            school_months[g.school].append(g)
            by_month[g.month].append(g)
    district = Group(DISTRICT)
    sums: list[tuple[Group, list[Group], tuple[str, ...]]] = [
        (district, [Group(SCHOOL, s) for s in schools], VARIABLES),
        (district, [Group(GRADE, grade=gr) for gr in sorted(by_grade)], VARIABLES),
        (district, [Group(MONTH, month=m) for m in sorted(by_month)], DAYS),  # days add up over months
    ]
    sums += [(Group(SCHOOL, s), parts, VARIABLES) for s, parts in school_grades.items()]
    sums += [(Group(SCHOOL, s), parts, DAYS) for s, parts in school_months.items()]
    sums += [(Group(GRADE, grade=gr), parts, VARIABLES) for gr, parts in by_grade.items()]
    sums += [(Group(MONTH, month=m), parts, VARIABLES) for m, parts in by_month.items()]
    out: list[Relation] = []
    for total, parts, variables in sums:
        parts = [p for p in parts if p in present]
        if total not in present or not parts:
            continue
        out += [Relation((total, v), tuple((p, v) for p in parts)) for v in variables]
    for g in sorted(present):
        tiers = tuple((g, TIER_COUNT[t]) for t in TIER_COUNT)
        out.append(Relation((g, "students"), tiers))
        out.append(Relation((g, "chronic"), ((g, "moderate"), (g, "severe"))))
    return out


def chronic_rate(chronic: int, students: int) -> int | None:
    """Students chronically absent as a share of the initial population, in hundredths of a percent."""
    return rate_percent_hundredths(chronic * 100, students)


def absence_rate(absent_h: int, membership_days: int) -> int | None:
    """Days absent per 100 days in membership, in hundredths (= the absence rate in hundredths of a percent)."""
    return rate_percent_hundredths(absent_h, membership_days)
