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


def determined(sums: Sequence[Sum], unknown: set[C]) -> set[C]:
    """The unknown cells whose value the sums fix, given every other cell. A cell is fixed exactly when its unit
    vector lies in the row space of the sums restricted to the unknown cells: in the reduced row echelon form, a row
    holding that cell alone."""
    return set(certificates(sums, unknown))


def certificates(sums: Sequence[Sum], unknown: set[C]) -> dict[C, dict[int, int]]:
    """Each fixed cell with the combination of sums (index -> coefficient, mod PRIME) that gives its value."""
    order = {c: i for i, c in enumerate(sorted(unknown, key=repr))}
    rows: dict[int, dict[int, int]] = {}  # pivot column -> fully reduced row (pivot coefficient 1)
    combos: dict[int, dict[int, int]] = {}  # pivot column -> the sums the row is made of
    holding: dict[int, set[int]] = defaultdict(set)  # column -> pivots of the rows that hold it
    for index, s in enumerate(sums):
        row: dict[int, int] = {}
        for cell, coeff in ((s.total, 1), *((p, PRIME - 1) for p in s.parts)):
            if cell in order:
                col = order[cell]
                row[col] = (row.get(col, 0) + coeff) % PRIME
        row = {c: v for c, v in row.items() if v}
        combo = {index: 1}
        for pivot in [c for c in row if c in rows]:  # reduce by the rows already found
            factor = row.get(pivot, 0)
            _subtract(row, rows[pivot], factor)
            _subtract(combo, combos[pivot], factor)
        if not row:
            continue
        pivot = min(row)
        inverse = pow(row[pivot], PRIME - 2, PRIME)
        row = {c: v * inverse % PRIME for c, v in row.items()}
        combo = {c: v * inverse % PRIME for c, v in combo.items()}
        for other in list(holding.get(pivot, ())):  # keep every row free of the new pivot
            target = rows[other]
            factor = target.get(pivot, 0)
            for c in target:
                holding[c].discard(other)
            _subtract(target, row, factor)
            _subtract(combos[other], combo, factor)
            for c in target:
                holding[c].add(other)
        rows[pivot], combos[pivot] = row, combo
        for c in row:
            holding[c].add(pivot)
    cells = {i: c for c, i in order.items()}
    return {cells[p]: combos[p] for p, row in rows.items() if len(row) == 1}


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
    cost: Callable[[C], tuple[int, ...]] | None = None,
) -> set[C]:
    """The cells to withhold: the primary ones, and the complementary ones the rule above adds. `bundle(cell)`: the
    cells withheld with it (itself included); `residual_min(cell)`: the least the withheld parts of a sum over that
    kind of cell must add up to; `cost(cell)`: which complement to prefer (the least; default: the smallest value)."""
    withheld: set[C] = set()
    price = cost or (lambda c: (values[c],))

    def withhold(cell: C) -> None:
        withheld.update(bundle(cell))

    for cell in primary:
        withhold(cell)
    sums = [s for s in sums if s.total in values and all(p in values for p in s.parts)]
    while True:
        if _short_residuals(values, sums, withheld, withhold, residual_min, price):
            continue
        fixed = certificates(sums, withheld)
        if not fixed:
            return withheld
        cell = min(fixed, key=repr)
        withhold(_unfixing(cell, fixed[cell], sums, withheld, bundle, price))


TRIALS = 16  # complements tried, cheapest first, for one that leaves the cell unfixed on its own


def _unfixing(
    cell: C,
    certificate: Mapping[int, int],
    sums: Sequence[Sum],
    withheld: set[C],
    bundle: Callable[[C], Iterable[C]],
    price: Callable[[C], tuple[int, ...]],
) -> C:
    """The cheapest published cell that the combination fixing `cell` uses (so that withholding it breaks that
    combination) and that leaves the cell unfixed; the cheapest of them when none does alone."""
    weight: dict[C, int] = defaultdict(int)
    for index, coeff in certificate.items():
        s = sums[index]
        for c, sign in ((s.total, 1), *((p, -1) for p in s.parts)):
            if c not in withheld:
                weight[c] = (weight[c] + sign * coeff) % PRIME
    pool = sorted((c for c, w in weight.items() if w), key=lambda c: (price(c), repr(c)))
    if not pool:  # cannot happen: what fixes a cell is published; fail closed
        raise RuntimeError("suppression: a withheld cell is fixed by nothing published")
    for candidate in pool[:TRIALS]:
        if cell not in determined(sums, withheld | set(bundle(candidate))):
            return candidate
    return pool[0]


def _short_residuals(
    values: Mapping[C, int],
    sums: Sequence[Sum],
    withheld: set[C],
    withhold: Callable[[C], None],
    residual_min: Callable[[C], int],
    price: Callable[[C], tuple[int, ...]],
) -> bool:
    """Withhold more parts of every sum whose withheld parts are too small together; True if any was."""
    added = False
    for s in sums:
        if s.total in withheld:
            continue
        hidden = [p for p in s.parts if p in withheld]
        if not hidden:
            continue
        # while the withheld parts are too small together, withhold the next smallest (or the total)
        while sum(values[p] for p in hidden) < residual_min(s.total):
            choice = _cheapest([s], withheld, None, price, parts_only=True)
            if choice is None:
                break
            withhold(choice)
            added = True
            if choice == s.total or s.total in withheld:
                break
            hidden = [p for p in s.parts if p in withheld]
    return added


def _cheapest(
    sums: Iterable[Sum], withheld: set[C], but: C | None, price: Callable[[C], tuple[int, ...]], parts_only: bool
) -> C | None:
    """The published cell of these sums that costs least to withhold. `parts_only`: a part if any is published,
    else the total (a short residual); otherwise any cell of the sums (a fixed cell: any of them unfixes it)."""
    parts: list[C] = []
    totals: list[C] = []
    for s in sums:
        parts += [p for p in s.parts if p not in withheld and p != but]
        if s.total not in withheld and s.total != but:
            totals.append(s.total)
    pool = (parts or totals) if parts_only else parts + totals
    if not pool:
        return None
    return min(pool, key=lambda c: (price(c), repr(c)))
