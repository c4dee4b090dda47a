"""Walks a resource (a plain dict, as orjson parses it) through the compiled rules and collects Issues."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import orjson

from sis2fhir.validate.compiler import (
    CORE_SD,
    Compiler,
    ComplexRule,
    ElementRule,
    Invariant,
    SliceRule,
    Slicing,
)
from sis2fhir.validate.definitions import Definitions, default_definitions

Severity = Literal["error", "warning"]
_MISSING = object()
MEMO_LIMIT = 50_000  # memoised verdicts kept before the memo starts over: a few tens of MB at most
MEMO_TRIAL = 1_000  # after this many lookups for one element, keep its memo only while hits outnumber misses


@dataclass(frozen=True, slots=True)
class Issue:
    severity: Severity
    code: str  # OperationOutcome issue type: structure, required, value, invariant, code-invalid...
    expression: str  # FHIRPath with indexes, e.g. Observation.component[2].valueQuantity.code
    message: str  # never echoes names or birth dates
    rule: str  # "obs-6", "cardinality", "unknown-element", "binding", "pattern", "slice"...


class _Walk:
    """State of one validation: the issues found and the resources in scope for %resource/%rootResource."""

    __slots__ = ("issues", "resource", "root")

    def __init__(self, resource: dict[str, Any], root: dict[str, Any]) -> None:
        self.issues: list[Issue] = []
        self.resource = resource
        self.root = root


class Validator:
    """Validates resources against compiled StructureDefinitions. native=False evaluates every invariant with
    fhirpathpy (slow; used to cross-check the native implementations)."""

    def __init__(self, definitions: Definitions | None = None, native: bool = True, memo: bool = True) -> None:
        self.definitions = definitions or default_definitions()
        self.compiler = Compiler(self.definitions, native=native)
        self.native = native
        self._memo: dict[tuple[int, str, bytes], tuple[SliceRule | None, tuple[Issue, ...]]] | None = (
            {} if memo else None
        )

    # -- entry points ---------------------------------------------------------------------------------

    def validate(self, resource: Any, profile: str | None = None) -> list[Issue]:
        if not isinstance(resource, dict):
            return [Issue("error", "structure", "", "a FHIR resource must be a JSON object", "structure")]
        walk = _Walk(resource, resource)
        self._resource(resource, str(resource.get("resourceType", "")), walk, profile)
        return walk.issues

    def profiles_for(self, resource: dict[str, Any], profile: str | None) -> list[str]:
        if profile is not None:
            return [profile]
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        known = [url for url in claimed or () if isinstance(url, str) and self.definitions.structure(url) is not None]
        return known or [CORE_SD + str(resource.get("resourceType"))]

    def _resource(self, resource: dict[str, Any], path: str, walk: _Walk, profile: str | None = None) -> None:
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or not resource_type:
            walk.issues.append(Issue("error", "structure", path, "resource has no resourceType", "resourceType"))
            return
        if not path:
            path = resource_type
        if resource_type not in self.definitions.resource_types:
            walk.issues.append(
                Issue("error", "structure", path, f"unknown resourceType {resource_type!r}", "resourceType")
            )
            return
        for url in self.profiles_for(resource, profile):
            rule = self.compiler.structure(url)
            if rule is None:
                if url.startswith(CORE_SD) and profile is None:
                    walk.issues.append(
                        Issue(
                            "warning",
                            "not-supported",
                            path,
                            f"{resource_type} is not checked: sis2fhir bundles no definition for it",
                            "no-definition",
                        )
                    )
                else:
                    walk.issues.append(Issue("error", "not-supported", path, f"unknown profile {url}", "profile"))
                continue
            if rule.type_name != resource_type:
                walk.issues.append(
                    Issue(
                        "error",
                        "structure",
                        path,
                        f"profile {url} is for {rule.type_name}, not {resource_type}",
                        "profile",
                    )
                )
                continue
            self._object(rule, resource, path, walk)

    # -- objects and elements -------------------------------------------------------------------------

    def _object(self, rule: ComplexRule, obj: dict[str, Any], path: str, walk: _Walk) -> None:
        by_key = rule.by_key
        issues = walk.issues
        for key, value in obj.items():
            element = by_key.get(key)
            if element is not None:
                self._element(element, key, value, obj, path, walk)
            elif key[:1] == "_" and key[1:] in by_key:
                self._primitive_extension(by_key[key[1:]], key, value, obj, path, walk)
            elif not (key == "resourceType" and rule.is_resource):
                issues.append(
                    Issue("error", "structure", f"{path}.{key}", f"unknown element {key!r}", "unknown-element")
                )
        for element in rule.required:
            if element.presence_keys.isdisjoint(obj):
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{path}.{element.name}",
                        f"{element.path} is required (min {element.min}) but missing",
                        "cardinality",
                    )
                )
        for element in rule.choices:
            if len(element.choice_keys.intersection(obj)) > 1:
                present = [k for k in element.types if k in obj]
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{path}.{present[1]}",
                        f"only one of {', '.join(present)} is allowed ({element.path})",
                        "choice",
                    )
                )
        if not rule.is_resource and len(obj) <= ("id" in obj):
            self._ele_1(obj, path, walk)
        if rule.invariants:
            self._invariants(rule.invariants, obj, path, walk)

    def _ele_1(self, obj: dict[str, Any], path: str, walk: _Walk) -> None:
        if self.native:
            walk.issues.append(
                Issue(
                    "error",
                    "invariant",
                    path,
                    "ele-1: All FHIR elements must have a @value or children",
                    "ele-1",
                )
            )

    def _element(
        self, element: ElementRule, key: str, value: Any, parent: dict[str, Any], path: str, walk: _Walk
    ) -> None:
        if element.array:
            if type(value) is not list:
                walk.issues.append(
                    Issue("error", "structure", f"{path}.{key}", f"{element.path} must be a JSON array", "array")
                )
                value = [value]
            elif not value:
                walk.issues.append(Issue("error", "structure", f"{path}.{key}", "an array must not be empty", "array"))
                return
            memo = self._memo
            if memo is not None and element.array_memo_ok and type(value[0]) is dict:
                self._memoised_array(memo, element, key, value, parent, path, walk)
            else:
                self._array(element, key, value, parent, path, walk)
        else:
            if type(value) is list:
                walk.issues.append(
                    Issue("error", "structure", f"{path}.{key}", f"{element.path} must not be an array", "array")
                )
                return
            if element.max == 0:
                walk.issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{path}.{key}",
                        f"{element.path} is not allowed here",
                        "cardinality",
                    )
                )
            self._item(element.by_type.get(key, element), key, value, f"{path}.{key}", walk)

    def _array(
        self, element: ElementRule, key: str, value: list[Any], parent: dict[str, Any], path: str, walk: _Walk
    ) -> None:
        count = len(value)
        if element.max is not None and count > element.max:
            walk.issues.append(
                Issue(
                    "error",
                    "structure",
                    f"{path}.{key}",
                    f"{element.path} allows at most {element.max}, found {count}",
                    "cardinality",
                )
            )
        if element.slicing is not None:
            self._sliced(element, element.slicing, key, value, parent, path, walk)
            return
        nulls_allowed = "_" + key in parent
        for index, item in enumerate(value):
            if item is None and nulls_allowed:
                continue
            self._item(element, key, item, f"{path}.{key}[{index}]", walk)

    def _memoised_array(
        self,
        memo: dict[Any, Any],
        element: ElementRule,
        key: str,
        value: list[Any],
        parent: dict[str, Any],
        path: str,
        walk: _Walk,
    ) -> None:
        """A whole array at once: the two categories, the performer, the interpretation recur verbatim."""
        free = element.memo_ok
        if free is None:
            free = element.memo_ok = self.compiler.context_free(element)
        blob = None
        if free:
            try:
                blob = orjson.dumps(value)
            except TypeError:
                blob = None
        if blob is None or b'"#' in blob or b"null" in blob:
            self._array(element, key, value, parent, path, walk)
            return
        memo_key = (id(element), "[]", blob)
        found = memo.get(memo_key)
        if found is not None:
            element.array_hits += 1
            for issue in found[1]:
                walk.issues.append(
                    Issue(issue.severity, issue.code, path + issue.expression, issue.message, issue.rule)
                )
            return
        mark = len(walk.issues)
        self._array(element, key, value, parent, path, walk)
        self._remember(memo_key, None, path, walk.issues[mark:])
        element.array_misses += 1
        if element.array_misses + element.array_hits >= MEMO_TRIAL:
            # the attendance components differ per student: memoise their items, not the whole array
            element.array_memo_ok = element.array_misses < element.array_hits

    def _item(self, element: ElementRule, key: str, item: Any, path: str, walk: _Walk) -> None:
        memo = self._memo
        if memo is None or type(item) is not dict:
            self._check_item(element, key, item, path, walk)
            return
        blob = self._blob(element, item)
        if blob is None:
            self._check_item(element, key, item, path, walk)
            return
        memo_key = (id(element), key, blob)
        found = memo.get(memo_key)
        if found is not None:
            element.memo_lookups += 1  # hits
            for issue in found[1]:
                walk.issues.append(
                    Issue(issue.severity, issue.code, path + issue.expression, issue.message, issue.rule)
                )
            return
        mark = len(walk.issues)
        self._check_item(element, key, item, path, walk)
        self._remember(memo_key, None, path, walk.issues[mark:])
        element.memo_misses += 1
        if element.memo_misses + element.memo_lookups >= MEMO_TRIAL:
            # mostly new content (identifiers, subjects): the memo costs more than it saves there
            element.memo_ok = element.memo_misses < element.memo_lookups

    # -- memo: the same coding, quantity or period recurs across thousands of resources -------------------

    def _blob(self, element: ElementRule, item: Any) -> bytes | None:
        """The item's content as a memo key, or None when its verdict may depend on more than its content:
        an element that reads %resource (Compiler.context_free) or a local "#id" reference (ref-1)."""
        if self._memo is None or type(item) is not dict:
            return None
        free = element.memo_ok
        if free is None:
            free = element.memo_ok = self.compiler.context_free(element)
        if not free:
            return None
        try:
            blob = orjson.dumps(item)
        except TypeError:
            return None
        return None if b'"#' in blob else blob

    def _replay(self, memo_key: tuple[int, str, bytes], path: str, walk: _Walk) -> Any:
        assert self._memo is not None
        found = self._memo.get(memo_key)
        if found is None:
            return _MISSING
        chosen, issues = found
        for issue in issues:
            walk.issues.append(Issue(issue.severity, issue.code, path + issue.expression, issue.message, issue.rule))
        return chosen

    def _remember(
        self, memo_key: tuple[int, str, bytes], chosen: SliceRule | None, path: str, issues: list[Issue]
    ) -> None:
        memo = self._memo
        assert memo is not None
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        cut = len(path)
        memo[memo_key] = (
            chosen,
            tuple(Issue(i.severity, i.code, i.expression[cut:], i.message, i.rule) for i in issues),
        )

    def _check_item(self, element: ElementRule, key: str, item: Any, path: str, walk: _Walk) -> None:
        type_rule = element.types[key] if key in element.types else next(iter(element.types.values()))
        if type_rule.primitive is not None:
            problem = type_rule.primitive(item)
            if problem is not None:
                walk.issues.append(Issue("error", "value", path, problem, "format"))
                return
        elif type(item) is not dict:
            walk.issues.append(Issue("error", "structure", path, f"{element.path} must be a JSON object", "structure"))
            return
        elif type_rule.code == "Resource" or type_rule.code in self.definitions.resource_types:
            self._contained(item, path, walk)
            return
        else:
            children = element.children
            if children is None:
                children = self.compiler.datatype(type_rule.code, type_rule.profiles)
            if children is not None:
                self._object(children, item, path, walk)
            if type_rule.targets is not None and type_rule.code == "Reference":
                self._reference_target(item, type_rule.targets, element, path, walk)
        if element.fixed is not None and item != element.fixed:
            walk.issues.append(
                Issue("error", "value", path, f"{element.path} must be exactly {_show(element.fixed)}", "fixed")
            )
        if element.pattern is not None and not matches_pattern(element.pattern, item):
            walk.issues.append(
                Issue("error", "value", path, f"{element.path} must match {_show(element.pattern)}", "pattern")
            )
        if element.binding is not None:
            self._binding(element, type_rule.code, item, path, walk)
        if element.invariants:
            self._invariants(element.invariants, item, path, walk)

    def _primitive_extension(
        self, element: ElementRule, key: str, value: Any, parent: dict[str, Any], path: str, walk: _Walk
    ) -> None:
        """_birthDate: {"extension": [...]} carries id and extensions of a primitive."""
        rule = self.compiler.structure(CORE_SD + "Element")
        assert rule is not None
        for index, item in enumerate(value if type(value) is list else [value]):
            where = f"{path}.{key}[{index}]" if type(value) is list else f"{path}.{key}"
            if item is None and type(value) is list:
                continue
            if type(item) is not dict:
                walk.issues.append(Issue("error", "structure", where, "must be a JSON object", "structure"))
            else:
                self._object(rule, item, where, walk)

    def _contained(self, resource: dict[str, Any], path: str, walk: _Walk) -> None:
        """A resource inside another (contained, Bundle.entry.resource, Parameters.parameter.resource)."""
        in_bundle = path.startswith("Bundle.") or ".entry[" in path
        inner = _Walk(resource, resource if in_bundle else walk.root)
        inner.issues = walk.issues
        self._resource(resource, path, inner)

    # -- slicing ------------------------------------------------------------------------------------------

    def _sliced(
        self,
        element: ElementRule,
        slicing: Slicing,
        key: str,
        items: list[Any],
        parent: dict[str, Any],
        path: str,
        walk: _Walk,
    ) -> None:
        counts: dict[int, int] = {}
        for index, item in enumerate(items):
            chosen = self._slice_item(element, slicing, key, item, f"{path}.{key}[{index}]", walk)
            if chosen is not None:
                counts[id(chosen)] = counts.get(id(chosen), 0) + 1
        for slice_rule in slicing.slices:
            rule = slice_rule.element
            found = counts.get(id(slice_rule), 0)
            if found < rule.min:
                walk.issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{path}.{key}",
                        f"{element.path}:{rule.slice_name} is required (min {rule.min}), found {found}",
                        "slice-cardinality",
                    )
                )
            elif rule.max is not None and found > rule.max:
                walk.issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{path}.{key}",
                        f"{element.path}:{rule.slice_name} allows at most {rule.max}, found {found}",
                        "slice-cardinality",
                    )
                )

    def _slice_item(
        self, element: ElementRule, slicing: Slicing, key: str, item: Any, where: str, walk: _Walk
    ) -> SliceRule | None:
        blob = self._blob(element, item)
        memo_key = (id(slicing), key, blob) if blob is not None else None
        if memo_key is not None:
            found = self._replay(memo_key, where, walk)
            if found is not _MISSING:
                return found  # type: ignore[no-any-return]
        mark = len(walk.issues)
        chosen = _slice_of(slicing, item)
        if chosen is None:
            if slicing.closed:
                walk.issues.append(
                    Issue(
                        "error",
                        "structure",
                        where,
                        f"{element.path} is closed: this item matches none of its slices",
                        "slice",
                    )
                )
            self._check_item(element, key, item, where, walk)
        else:
            self._check_item(chosen.element, key, item, where, walk)
        if memo_key is not None:
            self._remember(memo_key, chosen, where, walk.issues[mark:])
        return chosen

    # -- values -------------------------------------------------------------------------------------------

    def _binding(self, element: ElementRule, type_code: str, item: Any, path: str, walk: _Walk) -> None:
        codes = element.binding
        assert codes is not None
        if type_code == "CodeableConcept":
            codings = item.get("coding") or ()
            ok = any(isinstance(c, dict) and c.get("code") in codes.get(c.get("system", ""), ()) for c in codings)
            shown = ", ".join(f"{c.get('system')}#{c.get('code')}" for c in codings if isinstance(c, dict))
        elif type_code in ("Coding", "Quantity"):
            ok = item.get("code") in codes.get(item.get("system", ""), ())
            shown = f"{item.get('system')}#{item.get('code')}"
        elif isinstance(item, str):
            ok = any(item in system_codes for system_codes in codes.values())
            shown = repr(item)
        else:
            return
        if not ok:
            walk.issues.append(
                Issue(
                    "error",
                    "code-invalid",
                    path,
                    f"{shown or 'no coding'} is not in the required value set {element.binding_url}",
                    "binding",
                )
            )

    def _reference_target(
        self, item: dict[str, Any], targets: frozenset[str], element: ElementRule, path: str, walk: _Walk
    ) -> None:
        reference = item.get("reference")
        target = None
        if isinstance(reference, str) and not reference.startswith(("#", "urn:")):
            parts = reference.split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            if len(parts) >= 2:
                target = parts[-2]
                if target not in self.definitions.resource_types:
                    walk.issues.append(
                        Issue(
                            "error",
                            "value",
                            f"{path}.reference",
                            f"{target!r} is not a FHIR resource type",
                            "reference",
                        )
                    )
                    return
        declared = item.get("type")
        for found in (target, declared if isinstance(declared, str) else None):
            if found is not None and found not in targets:
                walk.issues.append(
                    Issue(
                        "error",
                        "value",
                        f"{path}.reference" if found is target else f"{path}.type",
                        f"{element.path} may refer to {', '.join(sorted(targets))}, not {found}",
                        "reference-target",
                    )
                )
                return

    def _invariants(self, invariants: list[Invariant], value: Any, path: str, walk: _Walk) -> None:
        for invariant in invariants:
            check = invariant.native or invariant.fhirpath
            if check is None or (invariant.key == "ele-1" and self.native):
                continue
            try:
                holds = check(value, walk.resource, walk.root)
            except Exception as error:  # fhirpathpy raises plain Exceptions for what it does not implement
                walk.issues.append(
                    Issue(
                        "warning",
                        "not-supported",
                        path,
                        f"{invariant.key} could not be evaluated ({type(error).__name__})",
                        invariant.key,
                    )
                )
                continue
            if not holds:
                walk.issues.append(
                    Issue(
                        invariant.severity,
                        "invariant",
                        path,
                        f"{invariant.key}: {invariant.human}",
                        invariant.key,
                    )
                )


def _slice_of(slicing: Slicing, item: Any) -> SliceRule | None:
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
            if _matches_slice(candidate, item):
                return candidate
        return None
    for slice_rule in slicing.slices:
        if _matches_slice(slice_rule, item):
            return slice_rule
    return None


def _matches_slice(slice_rule: SliceRule, item: Any) -> bool:
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
        else:
            ok = any(matches_pattern(expected, v) for v in values)
        if not ok:
            return False
    return True


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


def _show(value: Any) -> str:
    if isinstance(value, dict) and "coding" in value:
        return ", ".join(f"{c.get('system')}#{c.get('code')}" for c in value["coding"])
    if isinstance(value, dict) and "code" in value:
        return f"{value.get('system')}#{value.get('code')}"
    return repr(value)


@cache
def default_validator() -> Validator:
    return Validator()


def validate_resource(resource: dict[str, Any], profile: str | None = None) -> list[Issue]:
    """Validates one resource: against `profile` if given, else its meta.profile (ours), else the R4 core
    definition of its resourceType. A Bundle's entries are validated in turn."""
    return default_validator().validate(resource, profile)
