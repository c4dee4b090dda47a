"""population.csv: one row per group (district, school, grade, month), withheld cells empty (docs/population.md)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sis2fhir.population.aggregate import DAYS, LEVELS, Group
from sis2fhir.population.publish import Published

COLUMNS = (
    "level",
    "school",
    "grade",
    "month",
    "enrolled",
    "students",
    "chronic",
    "rate_percent",
    "satisfactory",
    "at_risk",
    "moderate",
    "severe",
    "membership_days",
    "absent_days",
    "absent_per_100",
    "excused_days",
    "unexcused_days",
    "illness_days",
    "oss_days",
    "rank",
    "suppressed",
    "withheld",
)
EARLY_GRADES = ("IT", "PR", "PK", "TK", "KG")  # the CEDS grade codes before 01


def grade_key(grade: str) -> tuple[int, str]:
    """KG before 01 before 10; unknown codes after, by text."""
    if grade in EARLY_GRADES:
        return EARLY_GRADES.index(grade), grade
    if grade.isdigit():
        return 10 + int(grade), grade
    return 100, grade


def group_key(g: Group) -> tuple[int, str, tuple[int, str], str]:
    return LEVELS.index(g.level), g.school, grade_key(g.grade), g.month


def hundredths(n: int | None) -> str:
    return "" if n is None else f"{n // 100}.{n % 100:02d}"


def whole(n: int | None) -> str:
    return "" if n is None else str(n)


def rows(published: Published) -> Iterator[dict[str, str]]:
    ranks = published.school_ranks()
    for g in sorted(published.figures, key=group_key):
        v = published.value
        row = {"level": g.level, "school": g.school, "grade": g.grade, "month": g.month}
        for name in (
            "enrolled",
            "students",
            "chronic",
            "satisfactory",
            "at_risk",
            "moderate",
            "severe",
            "membership_days",
        ):
            row[name] = whole(v(g, name))
        for name in DAYS[1:]:
            row[name] = hundredths(v(g, name))
        row["rate_percent"] = hundredths(published.chronic_rate(g))
        row["absent_per_100"] = hundredths(published.absence_rate(g))
        row["rank"] = str(ranks[g.school]) if g.level == "school" and g.school in ranks else ""
        withheld = published.withheld_in(g)
        if published.chronic_rate(g) is None:
            withheld.append("rate_percent")
        if published.absence_rate(g) is None:
            withheld.append("absent_per_100")
        row["suppressed"] = "true" if withheld else "false"
        row["withheld"] = " ".join(withheld)
        yield row


def population_csv(published: Published) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(published))
    return buffer.getvalue()
