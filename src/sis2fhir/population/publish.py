"""What may be published of the population figures: the suppression rule (suppress.py) applied to them, and the
rates and the ranking of schools computed from the published counts only."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from sis2fhir.population.aggregate import (
    COUNTS,
    DAYS,
    DISTRICT,
    GRADE,
    MONTH,
    SCHOOL,
    Cell,
    Figures,
    Group,
    absence_rate,
    chronic_rate,
    relations,
)
from sis2fhir.population.suppress import suppress


@dataclass(frozen=True, slots=True)
class Published:
    """The figures with the withheld cells marked; `value` is None for a withheld cell."""

    figures: Mapping[Group, Figures]
    withheld: frozenset[Cell]
    min_cell: int

    def value(self, group: Group, variable: str) -> int | None:
        if (group, variable) in self.withheld:
            return None
        return self.figures[group][variable]

    def chronic_rate(self, group: Group) -> int | None:
        """Hundredths of a percent; None where the students or the chronic count is withheld (or no students)."""
        students, chronic = self.value(group, "students"), self.value(group, "chronic")
        if students is None or chronic is None:
            return None
        return chronic_rate(chronic, students)

    def absence_rate(self, group: Group) -> int | None:
        """Days absent per 100 days in membership, in hundredths; None where the group's days are withheld."""
        absent, days = self.value(group, "absent_days"), self.value(group, "membership_days")
        if absent is None or days is None:
            return None
        return absence_rate(absent, days)

    def withheld_in(self, group: Group) -> list[str]:
        return [v for v in (*COUNTS, *DAYS) if (group, v) in self.withheld]

    def school_ranks(self) -> dict[str, int]:
        """Schools by chronic-absence rate, highest first (1); equal rates share a rank; withheld rates unranked."""
        rates = {g.school: r for g in self.figures if g.level == SCHOOL and (r := self.chronic_rate(g)) is not None}
        return {s: 1 + sum(1 for other in rates.values() if other > r) for s, r in rates.items()}


# complements are taken where they cost readers least: tier counts and days before the headline counts, the rows of
# a school's grades and months before the district's, those before the schools' and the district's own, then the
# smallest value
HEADLINE = frozenset({"enrolled", "students", "chronic"})
LEVEL_COST = {GRADE: 0, MONTH: 0, SCHOOL: 2, DISTRICT: 2}


def primary(figures: Mapping[Group, Figures], min_cell: int) -> Iterable[Cell]:
    """Every count below the minimum, and the days of a group whose enrolled students are below it."""
    for group, fig in figures.items():
        for v in COUNTS:
            if fig[v] < min_cell:
                yield group, v
        if fig["enrolled"] < min_cell:
            yield group, DAYS[0]  # its bundle: all the group's days


def publish(figures: Mapping[Group, Figures], min_cell: int) -> Published:
    """Apply the rule (suppress.py) to every figure."""
    values: dict[Hashable, int] = {(g, v): n for g, fig in figures.items() for v, n in fig.items()}

    def bundle(cell: Hashable) -> list[Hashable]:
        group, variable = cast(Cell, cell)
        return [(group, d) for d in DAYS] if variable in DAYS else [cell]

    def residual_min(cell: Hashable) -> int:
        return 1 if cast(Cell, cell)[1] in DAYS else min_cell

    def cost(cell: Hashable) -> tuple[int, ...]:
        group, variable = cast(Cell, cell)
        return (variable in HEADLINE, LEVEL_COST[group.level] + (not group.school), values[cell])

    withheld = suppress(values, primary(figures, min_cell), relations(figures), bundle, residual_min, cost)
    return Published(figures, frozenset(cast(set[Cell], withheld)), min_cell)
