"""Walks a resource (a plain dict, as orjson parses it) through the compiled rules and collects Issues."""

from __future__ import annotations

from functools import cache
from typing import Any

from sis2fhir.terminology import UCUM
from sis2fhir.validate.claims import claimed_profiles, unknown_modifier_issues, unknown_profile_issues
from sis2fhir.validate.compiler import CORE_SD, Compiler, ComplexRule, ElementRule, Invariant, SliceRule, Slicing
from sis2fhir.validate.definitions import Definitions, default_definitions
from sis2fhir.validate.issues import Issue, Severity
from sis2fhir.validate.memo import ARRAY, VerdictMemo, replay
from sis2fhir.validate.slicing import matches_pattern, slice_count_issues, slice_of
from sis2fhir.validate.values import QUANTITY_TYPES, binding_issue, reference_target_issue, show, ucum_issue

__all__ = ["Issue", "Severity", "Validator", "default_validator", "matches_pattern", "validate_resource"]


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
        self.memo = VerdictMemo(self.compiler.context_free) if memo else None

    # -- entry points ---------------------------------------------------------------------------------

    def validate(self, resource: Any, profile: str | None = None) -> list[Issue]:
        if not isinstance(resource, dict):
            return [Issue("error", "structure", "", "a FHIR resource must be a JSON object", "structure")]
        walk = _Walk(resource, resource)
        self._resource(resource, str(resource.get("resourceType", "")), walk, profile)
        return list(dict.fromkeys(walk.issues))  # a base rule broken once, found by each claimed profile, once

    def profiles_for(self, resource: dict[str, Any], profile: str | None) -> list[str]:
        """What the resource is checked against: `profile` if given, else those of its meta.profile that the
        validator has, else the R4 core definition of its type."""
        if profile is not None:
            return [profile]
        known = [url for _, url in claimed_profiles(resource) if self.definitions.structure(url) is not None]
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
        checked = self.profiles_for(resource, profile)
        if profile is None:
            walk.issues += unknown_profile_issues(self.definitions, resource, path, checked)
        for url in checked:
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
            message = "ele-1: All FHIR elements must have a @value or children"
            walk.issues.append(Issue("error", "invariant", path, message, "ele-1"))

    def _element(
        self, element: ElementRule, key: str, value: Any, parent: dict[str, Any], path: str, walk: _Walk
    ) -> None:
        if element.modifier_extension:
            walk.issues += unknown_modifier_issues(self.definitions, key, value, path)
        if element.array:
            if type(value) is not list:
                walk.issues.append(
                    Issue("error", "structure", f"{path}.{key}", f"{element.path} must be a JSON array", "array")
                )
                value = [value]
            elif not value:
                walk.issues.append(Issue("error", "structure", f"{path}.{key}", "an array must not be empty", "array"))
                return
            memo = self.memo
            if memo is not None and type(value[0]) is dict and memo.arrays_on(element):
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
        memo: VerdictMemo,
        element: ElementRule,
        key: str,
        value: list[Any],
        parent: dict[str, Any],
        path: str,
        walk: _Walk,
    ) -> None:
        """A whole array at once: the two categories, the performer, the interpretation recur verbatim."""
        content = memo.array_content(element, value)
        if content is None:
            self._array(element, key, value, parent, path, walk)
            return
        found = memo.lookup(element, ARRAY, content)
        if found is not None:
            memo.note_array(element, hit=True)
            replay(found, path, walk.issues)
            return
        mark = len(walk.issues)
        self._array(element, key, value, parent, path, walk)
        memo.remember(element, ARRAY, content, None, path, walk.issues[mark:])
        memo.note_array(element, hit=False)

    def _item(self, element: ElementRule, key: str, item: Any, path: str, walk: _Walk) -> None:
        memo = self.memo
        content = memo.item_content(element, item) if memo is not None else None
        if memo is None or content is None:
            self._check_item(element, key, item, path, walk)
            return
        found = memo.lookup(element, key, content)
        if found is not None:
            memo.note_item(element, hit=True)
            replay(found, path, walk.issues)
            return
        mark = len(walk.issues)
        self._check_item(element, key, item, path, walk)
        memo.remember(element, key, content, None, path, walk.issues[mark:])
        memo.note_item(element, hit=False)

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
            if type_rule.code in QUANTITY_TYPES and item.get("system") == UCUM:
                issue = ucum_issue(item, path)
                if issue is not None:
                    walk.issues.append(issue)
            if type_rule.targets is not None and type_rule.code == "Reference":
                issue = reference_target_issue(item, type_rule.targets, element, path, self.definitions.resource_types)
                if issue is not None:
                    walk.issues.append(issue)
        if element.fixed is not None and item != element.fixed:
            walk.issues.append(
                Issue("error", "value", path, f"{element.path} must be exactly {show(element.fixed)}", "fixed")
            )
        if element.pattern is not None and not matches_pattern(element.pattern, item):
            walk.issues.append(
                Issue("error", "value", path, f"{element.path} must match {show(element.pattern)}", "pattern")
            )
        if element.binding is not None:
            issue = binding_issue(element, type_rule.code, item, path)
            if issue is not None:
                walk.issues.append(issue)
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
        walk.issues += slice_count_issues(element, slicing, counts, f"{path}.{key}")

    def _slice_item(
        self, element: ElementRule, slicing: Slicing, key: str, item: Any, where: str, walk: _Walk
    ) -> SliceRule | None:
        memo = self.memo
        content = memo.item_content(element, item) if memo is not None else None
        if memo is not None and content is not None:
            found = memo.lookup(slicing, key, content)
            if found is not None:
                return replay(found, where, walk.issues)
        mark = len(walk.issues)
        chosen = slice_of(slicing, item)
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
        if memo is not None and content is not None:
            memo.remember(slicing, key, content, chosen, where, walk.issues[mark:])
        return chosen

    # -- invariants ------------------------------------------------------------------------------------

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
                message = f"{invariant.key}: {invariant.human}"
                detail = invariant.detail(value) if invariant.detail is not None else ""
                if detail:
                    message = f"{message} ({detail})"
                walk.issues.append(Issue(invariant.severity, "invariant", path, message, invariant.key))


@cache
def default_validator() -> Validator:
    return Validator()


def validate_resource(resource: dict[str, Any], profile: str | None = None) -> list[Issue]:
    """Validates one resource: against `profile` if given, else the profiles of its meta.profile that the
    validator has (an unknown one of ours is an error, another's a warning), else the R4 core definition of its
    resourceType. A Bundle's entries are validated in turn."""
    return default_validator().validate(resource, profile)
