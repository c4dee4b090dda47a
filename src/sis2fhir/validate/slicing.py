"""Slicing: which slice of a sliced element an item is (by its discriminators), and how many each slice got."""

from __future__ import annotations

from typing import Any

from sis2fhir.validate.compiler import ElementRule, SliceRule, Slicing
from sis2fhir.validate.issues import Issue


def slice_of(slicing: Slicing, item: Any) -> SliceRule | None:
    """The slice the item matches (through the code index when every slice is told apart by a code), or None."""
    if slicing.index is not None:
        target = item
        path = slicing.slices[0].tests[0][0] if slicing.slices else ()
        for part in path:
            target = target.get(part) if isinstance(target, dict) else None
        candidates: list[SliceRule] = []
        if isinstance(target, dict):
            for coding in target.get("coding") or (target,):
                if isinstance(coding, dict):
                    candidates.extend(slicing.index.get((coding.get("system", ""), coding.get("code", "")), ()))
        for candidate in candidates:
            if matches_slice(candidate, item):
                return candidate
        return None
    for slice_rule in slicing.slices:
        if matches_slice(slice_rule, item):
            return slice_rule
    return None


def matches_slice(slice_rule: SliceRule, item: Any) -> bool:
    if not slice_rule.tests:
        return False
    for path, kind, expected in slice_rule.tests:
        values = [item]
        for part in path:
            step: list[Any] = []
            for value in values:
                if isinstance(value, dict) and part in value:
                    found = value[part]
                    step.extend(found if isinstance(found, list) else [found])
            values = step
        if kind == "exists":
            ok = bool(values)
        elif kind == "absent":
            ok = not values
        elif kind == "fixed":
            ok = any(v == expected for v in values)
        elif kind == "binding":
            ok = any(_in_value_set(expected, v) for v in values)
        else:
            ok = any(matches_pattern(expected, v) for v in values)
        if not ok:
            return False
    return True


def _in_value_set(codes: dict[str, frozenset[str]], value: Any) -> bool:
    """A CodeableConcept (one of its codings), Coding or code in an expanded value set."""
    if isinstance(value, str):
        return any(value in system_codes for system_codes in codes.values())
    if not isinstance(value, dict):
        return False
    codings = value.get("coding") if "coding" in value else [value]
    return any(isinstance(c, dict) and c.get("code") in codes.get(c.get("system", ""), ()) for c in codings or ())


def matches_pattern(pattern: Any, value: Any) -> bool:
    """FHIR pattern[x]: each property of the pattern is in the value; each pattern array item matches one."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and matches_pattern(v, value[k]) for k, v in pattern.items())
    if isinstance(pattern, list):
        values = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(p, v) for v in values) for p in pattern)
    if isinstance(pattern, bool) or isinstance(value, bool):
        return pattern is value
    return bool(pattern == value)


def slice_count_issues(element: ElementRule, slicing: Slicing, counts: dict[int, int], where: str) -> list[Issue]:
    """Each slice's cardinality against `counts` (id of a slice -> items found to be it) in the array at `where`."""
    issues: list[Issue] = []
    for slice_rule in slicing.slices:
        rule = slice_rule.element
        found = counts.get(id(slice_rule), 0)
        if found < rule.min:
            issues.append(
                Issue(
                    "error",
                    "required",
                    where,
                    f"{element.path}:{rule.slice_name} is required (min {rule.min}), found {found}",
                    "slice-cardinality",
                )
            )
        elif rule.max is not None and found > rule.max:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    where,
                    f"{element.path}:{rule.slice_name} allows at most {rule.max}, found {found}",
                    "slice-cardinality",
                )
            )
    return issues
