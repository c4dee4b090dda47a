"""Small-cell and complementary suppression: which published figures are withheld (docs/population.md, "The rule").

Primary: every count of students below `population.min_cell` (zero included), and every group's days where the
group's student count is withheld for that reason. Complementary, repeated until neither applies:

1. no withheld cell may be determined by the published figures: a cell is recoverable when the sums the figures
   obey (aggregate.relations), with every published figure put in, fix its value; solved exactly (Gaussian
   elimination over the integers modulo a large prime, cell by cell), then the smallest published part of a sum
   that holds it is withheld too;
2. where a sum's total is published, its withheld parts must add up to at least `min_cell` students (for days: more
   than zero): else they could be bounded to a few students, or to zero, from the total. The smallest published
   part is withheld next (the total itself when no part is left).

A group's days are withheld together (one bundle): what is known about one reason never pins another. Rates are
withheld wherever a count they are computed from is (the caller: a rate of published counts only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import NamedTuple

C = Hashable  # a cell: any hashable name
PRIME = (1 << 61) - 1  # a Mersenne prime: a rank over it is the rank over the rationals for these 0/1 sums


class Sum(NamedTuple):
    total: Hashable
    parts: tuple[Hashable, ...]


def determined(sums: Iterable[Sum], unknown: set[C]) -> set[C]:
    """The unknown cells whose value the sums fix, given every other cell. A cell is fixed exactly when its unit
    vector lies in the row space of the sums restricted to the unknown cells: in the reduced row echelon form, a row
    holding that cell alone."""
    order = {c: i for i, c in enumerate(sorted(unknown, key=repr))}
    rows: dict[int, dict[int, int]] = {}  # pivot column -> fully reduced row (pivot coefficient 1)
    holding: dict[int, set[int]] = defaultdict(set)  # column -> pivots of the rows that hold it
    for s in sums:
        row: dict[int, int] = {}
        for cell, coeff in ((s.total, 1), *((p, PRIME - 1) for p in s.parts)):
            if cell in order:
                col = order[cell]
                row[col] = (row.get(col, 0) + coeff) % PRIME
        row = {c: v for c, v in row.items() if v}
        for pivot in [c for c in row if c in rows]:  # reduce by the rows already found
            _subtract(row, rows[pivot], row.get(pivot, 0))
        if not row:
            continue
        pivot = min(row)
        inverse = pow(row[pivot], PRIME - 2, PRIME)
        row = {c: v * inverse % PRIME for c, v in row.items()}
        for other in list(holding.get(pivot, ())):  # keep every row free of the new pivot
            target = rows[other]
            for c in target:
                holding[c].discard(other)
            _subtract(target, row, target.get(pivot, 0))
            for c in target:
                holding[c].add(other)
        rows[pivot] = row
        for c in row:
            holding[c].add(pivot)
    cells = {i: c for c, i in order.items()}
    return {cells[p] for p, row in rows.items() if len(row) == 1}


def _subtract(row: dict[int, int], pivot_row: Mapping[int, int], factor: int) -> None:
    """row -= factor * pivot_row (mod PRIME), dropping zeros; reduces again where the subtraction adds a column that
    is itself a pivot (never: pivot rows are fully reduced)."""
    if not factor:
        return
    for c, v in pivot_row.items():
        nv = (row.get(c, 0) - factor * v) % PRIME
        if nv:
            row[c] = nv
        else:
            row.pop(c, None)


def suppress(
    values: Mapping[C, int],
    primary: Iterable[C],
    sums: Sequence[Sum],
    bundle: Callable[[C], Iterable[C]],
    residual_min: Callable[[C], int],
) -> set[C]:
    """The cells to withhold: the primary ones, and the complementary ones the rule above adds. `bundle(cell)`: the
    cells withheld with it (itself included); `residual_min(cell)`: the least the withheld parts of a sum over that
    kind of cell must add up to."""
    withheld: set[C] = set()

    def withhold(cell: C) -> None:
        withheld.update(bundle(cell))

    for cell in primary:
        withhold(cell)
    sums = [s for s in sums if s.total in values and all(p in values for p in s.parts)]
    holding: dict[Hashable, list[Sum]] = defaultdict(list)
    for s in sums:
        for cell in (s.total, *s.parts):
            holding[cell].append(s)
    while True:
        added = _short_residuals(values, sums, withheld, withhold, residual_min)
        touched: set[Sum] = set()
        for cell in sorted(determined(sums, withheld), key=repr):
            if touched.intersection(holding[cell]):
                continue  # one complement per sum and round; the next round checks again
            choice = _smallest_published(values, _reaching(holding, cell, withheld), withheld, cell)
            if choice is None:
                continue  # cannot happen: a fixed cell is fixed by some published cell
            withhold(choice)
            touched.update(holding[cell])
            added = True
        if not added:
            return withheld


def _short_residuals(
    values: Mapping[C, int],
    sums: Sequence[Sum],
    withheld: set[C],
    withhold: Callable[[C], None],
    residual_min: Callable[[C], int],
) -> bool:
    added = False
    for s in sums:
        if s.total in withheld:
            continue
        hidden = [p for p in s.parts if p in withheld]
        if not hidden:
            continue
        # while the withheld parts are too small together, withhold the next smallest (or the total)
        while sum(values[p] for p in hidden) < residual_min(s.total):
            choice = _smallest_published(values, [s], withheld, None)
            if choice is None:
                break
            withhold(choice)
            added = True
            if choice == s.total or s.total in withheld:
                break
            hidden = [p for p in s.parts if p in withheld]
    return added


def _reaching(holding: Mapping[Hashable, list[Sum]], cell: C, withheld: set[C]) -> list[Sum]:
    """The sums holding `cell`; when none of them has a published cell, the sums reached through their withheld
    cells, nearest first, until one has (what fixes the cell is published somewhere in that web)."""
    seen: set[Sum] = set()
    frontier = list(holding[cell])
    while frontier:
        seen.update(frontier)
        if any(c not in withheld for s in frontier for c in (s.total, *s.parts)):
            return frontier
        cells = {c for s in frontier for c in (s.total, *s.parts)}
        frontier = [s for c in cells for s in holding[c] if s not in seen]
        frontier = list(dict.fromkeys(frontier))
    return []


def _smallest_published(values: Mapping[C, int], sums: Iterable[Sum], withheld: set[C], but: C | None) -> C | None:
    """The published part with the smallest value in these sums (a total only when no part is published)."""
    parts: list[C] = []
    totals: list[C] = []
    for s in sums:
        parts += [p for p in s.parts if p not in withheld and p != but]
        if s.total not in withheld and s.total != but:
            totals.append(s.total)
    pool = parts or totals
    if not pool:
        return None
    return min(pool, key=lambda c: (values[c], repr(c)))
