"""What may be published of an evaluation (evaluate.py): the groups' figures with small counts withheld, the
differences in differences of published rates only, and the two CSV files (docs/population.md)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass

from sis2fhir.population.evaluate import AFTER, BEFORE, COHORT, COMPARISON, METRICS, PeriodFigures, did
from sis2fhir.population.table import hundredths

COUNTS = ("students", "initial", "chronic")
GROUP_COLUMNS = ("cohort", "group", "period", *COUNTS, "rate_percent", *METRICS[:3], "suppressed", "withheld")
DID_COLUMNS = ("cohort", "metric", "estimate", "ci_low", "ci_high", "replicates", "seed", "suppressed")
RATE_COLUMN = {"chronic_rate": "rate_percent"}


@dataclass(frozen=True, slots=True)
class Evaluation:
    label: str
    groups: Mapping[str, Mapping[str, PeriodFigures]]  # cohort | comparison -> before | after -> figures
    intervals: Mapping[str, tuple[float, float] | None]  # metric -> bootstrap interval
    min_cell: int
    replicates: int
    seed: int

    def small_cohort(self) -> bool:
        """Fewer cohort students than the minimum in a period: nothing of either group is published (the
        comparison's counts, taken from the schools' totals, would give the cohort's)."""
        return any(self.groups[COHORT][p].students < self.min_cell for p in (BEFORE, AFTER))

    def count(self, group: str, period: str, name: str) -> int | None:
        n: int = getattr(self.groups[group][period], name)
        if self.small_cohort() or n < self.min_cell:
            return None
        return n

    def rate(self, group: str, period: str, metric: str) -> int | None:
        needs = ("initial", "chronic") if metric == "chronic_rate" else ("students",)
        if any(self.count(group, period, n) is None for n in needs):
            return None
        return self.groups[group][period].rate(metric)

    def difference(self, metric: str) -> int | None:
        """The difference in differences of published rates only."""
        if any(self.rate(g, p, metric) is None for g in (COHORT, COMPARISON) for p in (BEFORE, AFTER)):
            return None
        return did(self.groups[COHORT], self.groups[COMPARISON], metric)


def group_rows(e: Evaluation) -> list[dict[str, str]]:
    out = []
    for group in (COHORT, COMPARISON):
        for period in (BEFORE, AFTER):
            row = {"cohort": e.label, "group": group, "period": period}
            withheld = []
            for name in COUNTS:
                v = e.count(group, period, name)
                row[name] = "" if v is None else str(v)
                if v is None:
                    withheld.append(name)
            for metric in METRICS:
                column = RATE_COLUMN.get(metric, metric)
                r = e.rate(group, period, metric)
                row[column] = hundredths(r)
                if r is None:
                    withheld.append(column)
            row["suppressed"] = "true" if withheld else "false"
            row["withheld"] = " ".join(withheld)
            out.append(row)
    return out


def did_rows(e: Evaluation) -> list[dict[str, str]]:
    out = []
    for metric in METRICS:
        estimate = e.difference(metric)
        interval = e.intervals.get(metric) if estimate is not None else None
        out.append(
            {
                "cohort": e.label,
                "metric": metric,
                "estimate": _signed(estimate),
                "ci_low": "" if interval is None else f"{interval[0]:.2f}",
                "ci_high": "" if interval is None else f"{interval[1]:.2f}",
                "replicates": str(e.replicates),
                "seed": str(e.seed),
                "suppressed": "true" if estimate is None else "false",
            }
        )
    return out


def _signed(n: int | None) -> str:
    if n is None:
        return ""
    return ("-" if n < 0 else "") + hundredths(abs(n))


def as_csv(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
