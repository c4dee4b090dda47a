"""An attacker's view of population.csv: every sum the published figures obey, written from the file's structure
alone (not from sis2fhir's own list), and two attacks on the withheld cells: exact linear algebra over the
rationals (is a cell's value fixed by the published ones?) and interval propagation with non-negativity (can a cell
be pinned, or bounded to a single value?)."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

Key = tuple[str, str, str, str]  # level, school, grade, month
Cell = tuple[Key, str]
COUNTS = ("enrolled", "students", "chronic", "satisfactory", "at_risk", "moderate", "severe")
DAYS = ("membership_days", "absent_days", "excused_days", "unexcused_days", "illness_days", "oss_days")
TIERS = ("satisfactory", "at_risk", "moderate", "severe")


def value(column: str, text: str) -> int:
    return int(text) if column in COUNTS or column == "membership_days" else round(float(text) * 100)


def table(csv_rows: list[dict[str, str]]) -> tuple[dict[Cell, int], set[Cell]]:
    """(published values, withheld cells)."""
    published: dict[Cell, int] = {}
    withheld: set[Cell] = set()
    for r in csv_rows:
        key = (r["level"], r["school"], r["grade"], r["month"])
        for column in (*COUNTS, *DAYS):
            if r[column] == "":
                withheld.add((key, column))
            else:
                published[(key, column)] = value(column, r[column])
    return published, withheld


def sums(keys: set[Key], exact_only: bool = False) -> list[tuple[Cell, list[Cell]]]:
    """total = sum(parts), for every margin of the table and the tiers within each row. `exact_only`: leave out
    the sums that hold only approximately (district-wide student counts against the schools', where a student
    counted at two schools)."""
    schools = sorted({k[1] for k in keys if k[0] == "school"})
    district: Key = ("district", "", "", "")
    out: list[tuple[Cell, list[Cell]]] = []

    def margin(total: Key, parts: list[Key], columns: tuple[str, ...]) -> None:
        parts = [p for p in parts if p in keys]
        if total in keys and parts:
            out.extend(((total, c), [(p, c) for p in parts]) for c in columns)

    every = COUNTS + DAYS
    margin(district, [("school", s, "", "") for s in schools], DAYS if exact_only else every)
    grades = sorted({k[2] for k in keys if k[0] == "grade"})
    months = sorted({k[3] for k in keys if k[0] == "month"})
    margin(district, [("grade", "", g, "") for g in grades], every)
    margin(district, [("month", "", "", m) for m in months], DAYS)
    for s in schools:
        margin(("school", s, "", ""), [("grade", s, g, "") for g in grades], every)
        margin(("school", s, "", ""), [("month", s, "", m) for m in months], DAYS)
    for g in grades:
        margin(("grade", "", g, ""), [("grade", s, g, "") for s in schools], DAYS if exact_only else every)
    for m in months:
        margin(("month", "", "", m), [("month", s, "", m) for s in schools], DAYS if exact_only else every)
    for k in keys:
        out.append(((k, "students"), [(k, t) for t in TIERS]))
        out.append(((k, "chronic"), [(k, "moderate"), (k, "severe")]))
    return out


def recoverable(published: dict[Cell, int], withheld: set[Cell], equations: list[tuple[Cell, list[Cell]]]) -> set[Cell]:
    """The withheld cells whose value the equations fix: Gauss-Jordan over Fractions on the unknowns; a cell is
    fixed when some combination of the equations leaves it alone."""
    unknown = sorted(withheld)
    col = {c: i for i, c in enumerate(unknown)}
    pivots: dict[int, dict[int, Fraction]] = {}
    for total, parts in equations:
        row: dict[int, Fraction] = defaultdict(Fraction)
        for cell, coeff in ((total, 1), *((p, -1) for p in parts)):
            if cell in col:
                row[col[cell]] += coeff
        row = {c: v for c, v in row.items() if v}
        for p in [c for c in row if c in pivots]:
            factor = row.get(p, Fraction(0))
            for c, v in pivots[p].items():
                row[c] = row.get(c, Fraction(0)) - factor * v
            row = {c: v for c, v in row.items() if v}
        if not row:
            continue
        p = min(row)
        lead = row[p]
        row = {c: v / lead for c, v in row.items()}
        for q, other in pivots.items():
            if p in other:
                factor = other[p]
                for c, v in row.items():
                    other[c] = other.get(c, Fraction(0)) - factor * v
                pivots[q] = {c: v for c, v in other.items() if v}
        pivots[p] = row
    return {unknown[p] for p, row in pivots.items() if len(row) == 1}


def pinned(
    published: dict[Cell, int], withheld: set[Cell], equations: list[tuple[Cell, list[Cell]]]
) -> dict[Cell, tuple[float, float]]:
    """Interval propagation from non-negativity and the exact sums: the withheld cells whose lower and upper bounds
    meet (a value recovered), with those bounds."""
    inf = float("inf")
    lo: dict[Cell, float] = {c: 0.0 for c in withheld}
    hi: dict[Cell, float] = {c: inf for c in withheld}
    for c, v in published.items():
        lo[c] = hi[c] = float(v)
    for _ in range(20):
        changed = False
        for total, parts in equations:
            if total not in lo or any(p not in lo for p in parts):
                continue
            # total = sum(parts): bounds on the total, and on each part from the others
            new_lo_t, new_hi_t = sum(lo[p] for p in parts), sum(hi[p] for p in parts)
            if new_lo_t > lo[total] or new_hi_t < hi[total]:
                lo[total], hi[total] = max(lo[total], new_lo_t), min(hi[total], new_hi_t)
                changed = True
            for p in parts:
                others_lo = sum(lo[q] for q in parts if q != p)
                others_hi = sum(hi[q] for q in parts if q != p)
                p_hi, p_lo = hi[total] - others_lo, lo[total] - others_hi
                if p_hi < hi[p] or p_lo > lo[p]:
                    hi[p], lo[p] = min(hi[p], p_hi), max(lo[p], p_lo)
                    changed = True
        if not changed:
            break
    return {c: (lo[c], hi[c]) for c in withheld if hi[c] - lo[c] < 1}
