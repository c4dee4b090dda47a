"""One full validation of a resource that also notes which of its checks read which of its values: what makes the
resource a template for the fast path (validate/templates.py).

The recorder is the validator itself (the same compiled rules, the same walk, memo off so every item is walked);
it overrides the walk's steps only to take notes, and each step still runs as the full validator runs it. What it
notes:

- a check slot per primitive value: the issues `_check_item` gave that value (its type's regex or range, and the
  element's fixed value, pattern, required binding and invariants);
- an invariant slot per invariant that may read a value (per-1, ref-1, obs-7, sis-att-1, txt-1...): the issues
  it gave at its element; invariants that read only which keys are present are not slots (SHAPE_ONLY);
- a reference slot per Reference whose target types are constrained: what reference_target_issue said;
- the values read by anything else, which are pinned (part of the template, never free): meta.profile (which
  profiles apply), modifier extensions' urls, whole items with a fixed value, a pattern or a required binding,
  slicing discriminators (which slice an item is), a UCUM quantity's system and code.

A resource with a contained resource, or whose checks include an invariant only fhirpathpy evaluates (slow), is
not a template (`unfit`): such resources always take the full way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sis2fhir.validate.compiler import ElementRule, Invariant, SliceRule, Slicing
from sis2fhir.validate.engine import Validator, _Walk
from sis2fhir.validate.invariants import NATIVE
from sis2fhir.validate.issues import Issue
from sis2fhir.validate.values import QUANTITY_TYPES, reference_target_issue

Position = tuple[str | int, ...]  # keys and indexes from the resource's root to a value

# Invariants whose verdict depends only on which keys are present and how long arrays are, never on a primitive
# value (each read in invariants.py: they test `in`, or the truthiness of complex elements). dom-2..5 read
# contained resources, which no template has.
_SHAPE_ONLY = "ext-1 dom-2 dom-3 dom-4 dom-5 dom-6 obs-3 obs-6 qty-3 sqty-1 att-1 cpt-2 org-1 pat-1 inv-1 bdl-5 ppc-1"
SHAPE_ONLY = frozenset(_SHAPE_ONLY.split())


@dataclass(frozen=True, slots=True)
class CheckSlot:
    """A primitive value and what `_check_item` said of it in the template."""

    position: Position
    element: ElementRule
    key: str
    path: str
    issues: tuple[Issue, ...]


@dataclass(frozen=True, slots=True)
class InvariantSlot:
    """An invariant that may read values, at the element at `position`, and what it said in the template."""

    position: Position
    invariant: Invariant
    path: str
    issues: tuple[Issue, ...]


@dataclass(frozen=True, slots=True)
class ReferenceSlot:
    """A Reference with constrained targets, and what reference_target_issue said of it in the template."""

    position: Position
    element: ElementRule
    targets: frozenset[str]
    path: str
    issue: Issue | None


Slot = CheckSlot | InvariantSlot | ReferenceSlot


@dataclass(slots=True)
class Recording:
    issues: list[Issue]  # exactly what Validator.validate returns for the resource
    slots: list[Slot] = field(default_factory=list)
    pinned: list[Position] = field(default_factory=list)  # subtrees read by more than a slot
    unfit: str | None = None  # why the resource cannot be a template


def position_of(path: str) -> Position:
    """The JSON position of an issue path: Observation.component[2].valueQuantity.value -> ('component', 2, ...)."""
    out: list[str | int] = []
    for part in path.split(".")[1:]:
        name, _, rest = part.partition("[")
        out.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            out.append(int(index))
            rest = rest.removeprefix("[")
    return tuple(out)


def _read_by_element(element: ElementRule, type_code: str, position: Position) -> list[Position]:
    """What of a complex item its element's fixed value, pattern and required binding read (engine._check_item)."""
    if element.fixed is not None:
        return [position]  # compared whole
    read: list[Position] = []
    if element.pattern is not None:
        pattern = element.pattern
        # slicing.matches_pattern reads only the pattern's keys (a unit pattern leaves the quantity's value free)
        read += [(*position, key) for key in pattern] if isinstance(pattern, dict) else [position]
    if element.binding is not None:
        if type_code == "CodeableConcept":
            read.append((*position, "coding"))
        elif type_code in ("Coding", "Quantity"):
            read += [(*position, "system"), (*position, "code")]
        else:
            read.append(position)
    return read


class Recorder(Validator):
    """The full validator's walk, taking notes (one per template: not on the hot path)."""

    def __init__(self, base: Validator) -> None:  # shares base's compiled rules; no memo, every item walked
        self.definitions = base.definitions
        self.compiler = base.compiler
        self.native = base.native
        self.memo = None
        self._recording = Recording([])
        self._inside = 0  # > 0 while inside a check slot: its value's checks are that slot's

    def record(self, resource: dict[str, Any], profile: str | None) -> Recording:
        self._recording = recording = Recording([])
        meta = resource.get("meta")
        if type(meta) is dict and "profile" in meta:
            recording.pinned.append(("meta", "profile"))  # which profiles apply
        recording.issues = self.validate(resource, profile)
        return recording

    # -- the walk's steps, noted ------------------------------------------------------------------------

    def _contained(self, resource: dict[str, Any], path: str, walk: _Walk) -> None:
        self._recording.unfit = f"a resource inside it ({path})"
        super()._contained(resource, path, walk)

    def _element(
        self, element: ElementRule, key: str, value: Any, parent: dict[str, Any], path: str, walk: _Walk
    ) -> None:
        if element.modifier_extension:
            self._recording.pinned.append((*position_of(path), key))  # its urls: known or refused
        super()._element(element, key, value, parent, path, walk)

    def _check_item(self, element: ElementRule, key: str, item: Any, path: str, walk: _Walk) -> None:
        if self._inside:
            super()._check_item(element, key, item, path, walk)
            return
        type_rule = element.types[key] if key in element.types else next(iter(element.types.values()))
        position = position_of(path)
        if type_rule.primitive is not None:
            mark = len(walk.issues)
            self._inside += 1
            try:
                super()._check_item(element, key, item, path, walk)
            finally:
                self._inside -= 1
            self._recording.slots.append(CheckSlot(position, element, key, path, tuple(walk.issues[mark:])))
            return
        if type(item) is dict:
            self._recording.pinned += _read_by_element(element, type_rule.code, position)
            if type_rule.code in QUANTITY_TYPES:
                self._recording.pinned += [(*position, "system"), (*position, "code")]  # UCUM
            if type_rule.targets is not None and type_rule.code == "Reference":
                types = self.definitions.resource_types
                issue = reference_target_issue(item, type_rule.targets, element, path, types)
                self._recording.slots.append(ReferenceSlot(position, element, type_rule.targets, path, issue))
        super()._check_item(element, key, item, path, walk)

    def _slice_item(
        self, element: ElementRule, slicing: Slicing, key: str, item: Any, where: str, walk: _Walk
    ) -> SliceRule | None:
        position = position_of(where)
        for discriminator in slicing.discriminators:
            # which slice the item is depends on what is at the discriminator's path: the subtree under its first step
            self._recording.pinned.append((*position, *discriminator.path[:1]))
        for slice_rule in slicing.slices:
            for test_path, _, _ in slice_rule.tests:
                self._recording.pinned.append((*position, *test_path[:1]))
        return super()._slice_item(element, slicing, key, item, where, walk)

    def _invariants(self, invariants: list[Invariant], value: Any, path: str, walk: _Walk) -> None:
        if self._inside:
            super()._invariants(invariants, value, path, walk)
            return
        for invariant in invariants:
            native = NATIVE.get(invariant.key)
            skipped = invariant.key == "ele-1" and self.native
            if skipped or (invariant.key in SHAPE_ONLY and native is not None and invariant.native is native.check):
                super()._invariants([invariant], value, path, walk)
                continue
            if invariant.native is None:
                self._recording.unfit = f"{invariant.key} is evaluated by fhirpathpy"
            mark = len(walk.issues)
            super()._invariants([invariant], value, path, walk)
            slot = InvariantSlot(position_of(path), invariant, path, tuple(walk.issues[mark:]))
            self._recording.slots.append(slot)
