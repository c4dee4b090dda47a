"""Compiles a StructureDefinition snapshot, once, into a tree of checks (ElementRule, ComplexRule)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sis2fhir.validate.definitions import CORE_SD, Definitions, ValueSetCodes
from sis2fhir.validate.fhirpath import FhirpathInvariant
from sis2fhir.validate.invariants import ALWAYS_NATIVE, NativeCheck, native_for
from sis2fhir.validate.issues import Severity
from sis2fhir.validate.primitives import PrimitiveCheck, make_check

FHIRPATH_SYSTEM = "http://hl7.org/fhirpath/System."
RESOURCE_BASES = frozenset({"Resource", "DomainResource"})


@dataclass(slots=True)
class Invariant:
    key: str
    severity: Severity
    human: str
    expression: str
    native: NativeCheck | None
    fhirpath: FhirpathInvariant | None
    uses_context: bool = False  # reads %resource or %rootResource: its verdict depends on more than the element
    detail: Callable[[Any], str] | None = None  # what in the value breaks it (native checks that can say)


@dataclass(slots=True)
class TypeRule:
    code: str  # FHIR type name: "string", "Quantity", "Reference", "Resource"...
    primitive: PrimitiveCheck | None  # set for primitive types
    profiles: tuple[str, ...] = ()
    targets: frozenset[str] | None = None  # Reference target resource types; None: any


@dataclass(slots=True)
class Discriminator:
    kind: str  # value | pattern | exists | type
    path: tuple[str, ...]  # () for $this


@dataclass(slots=True)
class SliceRule:
    element: ElementRule
    # (path inside the item, "pattern" | "fixed" | "exists" | "absent", expected value)
    tests: list[tuple[tuple[str, ...], str, Any]] = field(default_factory=list)
    index_keys: list[tuple[str, str]] = field(default_factory=list)  # (system, code) for the fast index


@dataclass(slots=True)
class Slicing:
    discriminators: list[Discriminator]
    closed: bool
    slices: list[SliceRule] = field(default_factory=list)
    index: dict[tuple[str, str], list[SliceRule]] | None = None  # when every slice is told apart by a code


@dataclass(slots=True, eq=False)
class ElementRule:
    """One element of a snapshot (or one slice of it)."""

    name: str  # JSON name; for a choice, the stem ("value" for value[x])
    path: str  # definition path, e.g. Observation.component.code
    min: int
    max: int | None  # None: unbounded
    array: bool  # JSON array (follows base cardinality)
    choice: bool
    types: dict[str, TypeRule]  # JSON key -> type ("valueQuantity" -> Quantity; "code" -> CodeableConcept)
    fixed: Any = None
    pattern: Any = None
    binding_url: str | None = None
    binding: ValueSetCodes | None = None
    invariants: list[Invariant] = field(default_factory=list)
    children: ComplexRule | None = None  # from the snapshot when the profile unfolds this element
    by_type: dict[str, ElementRule] = field(default_factory=dict)  # choice type slices: "valueQuantity" -> rule
    slicing: Slicing | None = None
    slice_name: str | None = None
    content_reference: str | None = None
    modifier_extension: bool = False  # a modifierExtension element: its urls must be known
    presence_keys: frozenset[str] = frozenset()  # JSON keys that make it present: valueQuantity, _birthDate...
    choice_keys: frozenset[str] = frozenset()


@dataclass(slots=True, eq=False)
class ComplexRule:
    """The children of an object: a resource, a datatype, or a backbone element."""

    type_name: str  # "Observation", "Period", or the backbone path "Observation.component"
    by_key: dict[str, ElementRule] = field(default_factory=dict)  # every JSON key, choice keys included
    elements: list[ElementRule] = field(default_factory=list)
    required: list[ElementRule] = field(default_factory=list)
    choices: list[ElementRule] = field(default_factory=list)
    invariants: list[Invariant] = field(default_factory=list)  # the type's own (datatype or resource root)
    is_resource: bool = False


class Compiler:
    """Turns StructureDefinitions into ComplexRules; each definition is compiled once and cached."""

    def __init__(self, definitions: Definitions, native: bool = True) -> None:
        self.definitions = definitions
        self.native = native
        self._structures: dict[str, ComplexRule] = {}
        self._primitive_checks: dict[str, PrimitiveCheck] = {}
        self.primitive_types: frozenset[str] = frozenset(
            sd["type"] for sd in definitions.structures.values() if sd.get("kind") == "primitive-type"
        )

    def structure(self, url: str) -> ComplexRule | None:
        url = url.split("|")[0]
        rule = self._structures.get(url)
        if rule is None:
            sd = self.definitions.structure(url)
            if sd is None:
                return None
            rule = ComplexRule(type_name=sd["type"], is_resource=sd.get("kind") == "resource")
            self._structures[url] = rule  # before filling: datatypes refer to themselves (Extension, Identifier)
            self._fill(rule, sd)
        return rule

    def datatype(self, code: str, profiles: tuple[str, ...] = ()) -> ComplexRule | None:
        for profile in profiles:
            rule = self.structure(profile)
            if rule is not None:
                return rule
        return self.structure(CORE_SD + code)

    def primitive_check(self, code: str) -> PrimitiveCheck:
        check = self._primitive_checks.get(code)
        if check is None:
            regex = None
            sd = self.definitions.structure(CORE_SD + code)
            for element in sd["snapshot"]["element"] if sd else []:
                if element["path"] == code + ".value":
                    regex = element["type"][0].get("regex")
            check = self._primitive_checks[code] = make_check(code, regex)
        return check

    # -- compiling one snapshot -------------------------------------------------------------------------

    def _fill(self, rule: ComplexRule, sd: dict[str, Any]) -> None:
        elements: list[dict[str, Any]] = sd["snapshot"]["element"]
        root = elements[0]
        by_id: dict[str, ElementRule] = {}
        owners: dict[str, ComplexRule] = {root["id"]: rule}
        # ele-1 is checked per element; the datatype root's copy would report it twice
        rule.invariants = [i for i in self._invariants(root, sd["type"]) if i.key != "ele-1"]
        for element in elements[1:]:
            element_id = element["id"]
            parent_id, _, last = element_id.rpartition(".")
            name, _, slice_name = last.partition(":")
            if "/" in slice_name:
                continue  # re-slicing: not used by our profiles
            compiled = self._element(element, sd["type"])
            if compiled.path == f"{sd['type']}.id" and sd.get("kind") == "resource":
                # R4 snapshots type Resource.id as System.String marked "string"; the spec defines it as id.
                compiled.types = {"id": TypeRule("id", self.primitive_check("id"))}
            by_id[element_id] = compiled
            if slice_name:
                base = by_id.get(f"{parent_id}.{name}")
                if base is None:
                    continue
                if base.choice and slice_name in base.types:
                    base.by_type[slice_name] = compiled  # value[x]:valueQuantity
                    compiled.types = {slice_name: base.types[slice_name]}
                elif base.slicing is not None:
                    base.slicing.slices.append(SliceRule(compiled))
                continue
            owner = owners.get(parent_id)
            if owner is None:
                parent = by_id.get(parent_id)
                if parent is None:
                    continue
                owner = parent.children = ComplexRule(type_name=self._owner_type(parent))
                owner.invariants = self._datatype_invariants(parent)
                owners[parent_id] = owner
            self._attach(owner, compiled)
        for compiled in by_id.values():
            if compiled.slicing is not None:
                self._prepare_slicing(compiled.slicing)
            if compiled.content_reference is not None and compiled.children is None:
                target = by_id.get(compiled.content_reference.lstrip("#").split("#")[-1])
                if target is not None:
                    compiled.children = target.children
                    if target.invariants and not compiled.invariants:
                        compiled.invariants = target.invariants

    def _owner_type(self, parent: ElementRule) -> str:
        codes = {t.code for t in parent.types.values()}
        if len(codes) == 1 and not codes & {"BackboneElement", "Element"}:
            return next(iter(codes))
        return parent.path

    def _datatype_invariants(self, parent: ElementRule) -> list[Invariant]:
        """A profile that unfolds a datatype element keeps the datatype's own invariants (per-1, qty-3...)."""
        codes = {t.code for t in parent.types.values()}
        if len(codes) != 1:
            return []
        (code,) = codes
        if code in ("BackboneElement", "Element") or code in self.primitive_types:
            return []
        datatype = self.datatype(code, next(iter(parent.types.values())).profiles)
        return [i for i in datatype.invariants if i.key != "ele-1"] if datatype else []

    @staticmethod
    def _attach(owner: ComplexRule, compiled: ElementRule) -> None:
        compiled.choice_keys = frozenset(compiled.types)
        compiled.presence_keys = compiled.choice_keys | {"_" + k for k in compiled.types}
        owner.elements.append(compiled)
        for key in compiled.types:
            owner.by_key[key] = compiled
        if compiled.min > 0:
            owner.required.append(compiled)
        if compiled.choice:
            owner.choices.append(compiled)

    def _element(self, element: dict[str, Any], sd_type: str) -> ElementRule:
        path: str = element["path"]
        stem = path.rsplit(".", 1)[-1]
        choice = stem.endswith("[x]")
        stem = stem.removesuffix("[x]")
        max_text = element.get("max", "*")
        base_max = element.get("base", {}).get("max", max_text)
        types: dict[str, TypeRule] = {}
        for type_ref in element.get("type", []):
            code = type_ref["code"]
            if code.startswith(FHIRPATH_SYSTEM):
                code = type_ref.get("fhirType") or "string"
            key = stem + code[0].upper() + code[1:] if choice else stem
            types[key] = self._type_rule(code, type_ref)
        if not types and "contentReference" in element:
            types[stem] = TypeRule("BackboneElement", None)
        rule = ElementRule(
            name=stem,
            path=path,
            min=int(element.get("min", 0)),
            max=None if max_text == "*" else int(max_text),
            array=base_max != "1" and base_max != "0",
            choice=choice,
            types=types,
            slice_name=element.get("sliceName"),
            content_reference=element.get("contentReference"),
            modifier_extension=stem == "modifierExtension",
        )
        for key, value in element.items():
            if key.startswith("fixed"):
                rule.fixed = value
            elif key.startswith("pattern"):
                rule.pattern = value
        binding = element.get("binding")
        if binding and binding.get("strength") == "required" and "valueSet" in binding:
            url = binding["valueSet"]
            if self.definitions.knows_value_set(url):
                rule.binding_url = url.split("|")[0]
                rule.binding = self.definitions.value_set(url)
        type_codes = {t.code for t in types.values()}
        context_type = next(iter(type_codes)) if len(type_codes) == 1 else path
        if context_type in ("BackboneElement", "Element"):
            context_type = path
        rule.invariants = self._invariants(element, context_type)
        if "slicing" in element and not choice:
            slicing = element["slicing"]
            rule.slicing = Slicing(
                discriminators=[
                    Discriminator(d["type"], () if d["path"] == "$this" else tuple(d["path"].split(".")))
                    for d in slicing.get("discriminator", [])
                ],
                closed=slicing.get("rules") == "closed",
            )
        return rule

    def _type_rule(self, code: str, type_ref: dict[str, Any]) -> TypeRule:
        primitive = self.primitive_check(code) if code[0].islower() else None
        targets: frozenset[str] | None = None
        if code in ("Reference", "canonical") and type_ref.get("targetProfile"):
            names = {self.definitions.type_of(url) for url in type_ref["targetProfile"]}
            targets = None if "Resource" in names or None in names else frozenset(n for n in names if n)
        return TypeRule(code, primitive, tuple(type_ref.get("profile", ())), targets)

    def _invariants(self, element: dict[str, Any], context_type: str) -> list[Invariant]:
        out = []
        for constraint in element.get("constraint", []):
            key = constraint["key"]
            expression = constraint.get("expression")
            if not expression:
                continue
            native = native_for(key, expression) if self.native or key in ALWAYS_NATIVE else None
            if key == "ele-1" and self.native:
                continue  # checked inline by the engine
            out.append(
                Invariant(
                    key=key,
                    severity="warning" if constraint.get("severity") == "warning" else "error",
                    human=constraint.get("human", ""),
                    expression=expression,
                    native=native.check if native else None,
                    fhirpath=None if native else FhirpathInvariant(expression, context_type),
                    # ref-1 depends on the container only for "#id" references; the engine checks for those
                    uses_context=key != "ref-1" and "%r" in expression.replace("%resource", "%r"),
                    detail=native.detail if native else None,
                )
            )
        return out

    # -- which elements can be memoised --------------------------------------------------------------------

    def context_free(self, element: ElementRule, seen: set[int] | None = None) -> bool:
        """True when an item's verdict depends on nothing but the item (no %resource, no nested resources)."""
        seen = set() if seen is None else seen
        if id(element) in seen:
            return True
        seen.add(id(element))
        if any(i.uses_context for i in element.invariants):
            return False
        variants = [element, *element.by_type.values()]
        if element.slicing is not None:
            variants.extend(s.element for s in element.slicing.slices)
        for variant in variants:
            if variant is not element and not self.context_free(variant, seen):
                return False
            for type_rule in variant.types.values():
                if type_rule.primitive is not None:
                    continue
                if type_rule.code == "Resource" or type_rule.code in self.definitions.resource_types:
                    return False
                complex_rule = variant.children or self.datatype(type_rule.code, type_rule.profiles)
                if complex_rule is None:
                    continue
                if any(i.uses_context for i in complex_rule.invariants):
                    return False
                if not all(self.context_free(child, seen) for child in complex_rule.elements):
                    return False
        return True

    # -- slicing ------------------------------------------------------------------------------------------

    def _prepare_slicing(self, slicing: Slicing) -> None:
        for slice_rule in slicing.slices:
            for discriminator in slicing.discriminators:
                expected_kind, expected = self._expected(slice_rule.element, discriminator)
                if expected_kind:
                    slice_rule.tests.append((discriminator.path, expected_kind, expected))
        self._index(slicing)

    def _expected(self, element: ElementRule, discriminator: Discriminator) -> tuple[str, Any]:
        rule: ElementRule | None = element
        parts = discriminator.path
        for i, part in enumerate(parts):
            assert rule is not None
            child = rule.children.by_key.get(part) if rule.children else None
            if child is None:
                whole = rule.pattern if rule.pattern is not None else rule.fixed
                for rest in parts[i:]:
                    whole = whole.get(rest) if isinstance(whole, dict) else None
                if whole is None:
                    return "", None
                return ("pattern" if rule.pattern is not None else "fixed"), whole
            rule = child
        assert rule is not None
        if discriminator.kind == "exists":
            return ("exists" if rule.min > 0 else "absent"), None
        if rule.pattern is not None:
            return "pattern", rule.pattern
        if rule.fixed is not None:
            return "fixed", rule.fixed
        if rule.binding is not None and discriminator.kind in ("value", "pattern"):
            # A slice told apart by its required value set (R4 profiling: a value/pattern discriminator may
            # point at a required binding); US Core's category:us-core slices are defined this way.
            return "binding", rule.binding
        return "", None

    @staticmethod
    def _index(slicing: Slicing) -> None:
        """A (system, code) -> slices map, when each slice is told apart by one coded pattern."""
        index: dict[tuple[str, str], list[SliceRule]] = {}
        for slice_rule in slicing.slices:
            if len(slice_rule.tests) != 1 or len(slicing.discriminators) != 1:
                return
            _, kind, expected = slice_rule.tests[0]
            codings = expected.get("coding") if isinstance(expected, dict) else None
            if kind not in ("pattern", "fixed") or not codings:
                if isinstance(expected, dict) and "system" in expected and "code" in expected:
                    codings = [expected]
                else:
                    return
            for coding in codings:
                key = (coding.get("system", ""), coding.get("code", ""))
                slice_rule.index_keys.append(key)
                index.setdefault(key, []).append(slice_rule)
        slicing.index = index
