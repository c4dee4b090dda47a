"""The suppression rule on tables small enough to check by hand, and the population CodeSystem against
terminology.py."""

from __future__ import annotations

import json
from importlib.resources import files

from sis2fhir import terminology as t
from sis2fhir.population.suppress import Sum, determined, suppress

# a 2 x 2 table with margins: rows r1, r2; columns c1, c2; the grand total g
CELLS = {"a": 3, "b": 40, "c": 25, "d": 30, "r1": 43, "r2": 55, "c1": 28, "c2": 70, "g": 98}
SUMS = [
    Sum("r1", ("a", "b")),
    Sum("r2", ("c", "d")),
    Sum("c1", ("a", "c")),
    Sum("c2", ("b", "d")),
    Sum("g", ("r1", "r2")),
    Sum("g", ("c1", "c2")),
]


def test_a_cell_withheld_alone_is_fixed_by_its_row() -> None:
    assert determined(SUMS, {"a"}) == {"a"}
    assert determined(SUMS, {"a", "b"}) == {"a", "b"}  # b is fixed by its column, then a by its row
    assert determined(SUMS, {"a", "b", "c", "d"}) == set()  # one degree of freedom left


def test_the_complements_make_every_withheld_cell_free() -> None:
    withheld = suppress(CELLS, ["a"], SUMS, lambda c: [c], lambda c: 10)
    assert "a" in withheld
    assert determined(SUMS, withheld) == set()
    # the cheapest partners: the smallest values of the sums that fix it (c in its column, b in its row, then d)
    assert withheld == {"a", "b", "c", "d"}


def test_withheld_parts_must_add_up_to_the_minimum() -> None:
    # r1 = a + b with a = 3 withheld and b published: the attacker knows a exactly, and the residual is 3 < 10
    sums = [Sum("r1", ("a", "b", "e"))]
    values = {"r1": 50, "a": 3, "b": 40, "e": 7}
    withheld = suppress(values, ["a"], sums, lambda c: [c], lambda c: 10)
    assert withheld == {"a", "e"}  # 3 + 7 = 10: neither can be pinned below the minimum from r1
    assert determined(sums, withheld) == set()


def test_the_population_code_system_is_terminology_py() -> None:
    cs = json.loads((files("sis2fhir") / "data" / "profiles" / "CodeSystem-population-measure.json").read_text())
    assert cs["url"] == t.POPULATION_CS
    assert {c["code"]: c["display"] for c in cs["concept"]} == t.POPULATION_CODES
    measure = json.loads((files("sis2fhir") / "data" / "profiles" / "Measure-chronic-absence.json").read_text())
    assert measure["url"] == t.CHRONIC_ABSENCE_MEASURE
    assert [s["code"]["coding"][0]["code"] for s in measure["group"][0]["stratifier"]] == [
        "school",
        "grade",
        "month",
        "period",
    ]
