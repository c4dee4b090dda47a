"""The fast path of validation: a resource whose shape and pinned values are those of one validated before (its
template) is checked value by value, and gets the template's verdict only when every value check says exactly what
it said in the template; anything else takes the full way.

A template is a resource with its free values blanked: the primitive values that only their own checks read (an
id, an identifier's value, a reference, a date, a day count, a name). Everything else, keys and array lengths,
codes and systems, profiles, units, is pinned: part of the template's key, the resource's orjson bytes with the
free values blanked. The recorder (validate/recorder.py) says, in one full validation, which checks read what.

For a resource of a known template the fast path runs, on its own values, every check that reads a free value:
each primitive against its type (regex, range, calendar day), the element's binding and invariants; every
invariant that may read a value (per-1, ref-1, obs-7, sis-att-1, the narrative's txt-1 and txt-2); each
Reference's target type. When all of them say exactly what they said in the template, the resource's issues are the
template's: the full walk's other checks read only what the key pins. When one says anything else, the resource
is validated the full way. Nothing is checked less: only the work of re-deriving identical answers is saved.

Templates are learnt as resources come (a miss validates the full way and records the template), up to
TEMPLATE_LIMIT per validator, and only while they are reused (a run of unique shapes stops the learning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from sis2fhir.validate.engine import Validator, _Walk, default_validator
from sis2fhir.validate.invariants import NATIVE
from sis2fhir.validate.issues import Issue
from sis2fhir.validate.narrative import NarrativeShape, narrative_shape, same_narrative
from sis2fhir.validate.recorder import CheckSlot, InvariantSlot, Position, Recorder, Recording, ReferenceSlot
from sis2fhir.validate.values import reference_target_issue

TEMPLATE_LIMIT = 4_096  # templates kept per validator (each holds its key: a few KB)
LEARN_TRIAL = 256  # after this many templates learnt, learn more only while hits outnumber what was learnt
# str subclasses (an enum), datetimes and dataclasses are not JSON: orjson refuses them, so they take the full way
_DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

Probe = Callable[[dict[str, Any]], tuple[bytes, tuple[Any, ...]] | None]
Verify = Callable[[dict[str, Any], tuple[Any, ...]], bool]


@dataclass(slots=True)
class _Template:
    issues: tuple[Issue, ...]
    verify: Verify


@dataclass(slots=True)
class _Group:
    """Templates with the same free positions: one probe blanks them and makes the key."""

    free: tuple[Position, ...]
    probe: Probe
    templates: dict[bytes, _Template | None] = field(default_factory=dict)  # None: not a template (unfit)


def _kind(value: Any) -> str | None:
    """The JSON kind a free value must keep (a number may be integer or decimal: its check tells them apart)."""
    kind = type(value)
    if kind is str:
        return "str"
    if kind is int or kind is float:
        return "num"
    if kind is bool:
        return "bool"
    return None


_KIND_TEST = {
    "str": "type({v}) is str",
    "num": "(type({v}) is int or type({v}) is float)",
    "bool": "type({v}) is bool",
}


def _access(position: Position, base: str = "r") -> str:
    return base + "".join(f"[{step!r}]" for step in position)


def _compile(name: str, source: str, namespace: dict[str, Any]) -> Any:
    exec(compile(source, f"<sis2fhir.validate.templates {name}>", "exec"), namespace)  # our own generated code
    return namespace[name]


def _make_probe(free: tuple[Position, ...], kinds: tuple[str, ...]) -> Probe:
    """A function that reads the free values (None if one is missing or of another kind) and makes the key: the
    resource's bytes with those values null. The resource is not changed: the objects on the way to a free value
    are copied (a shallow copy each), and the copies blanked, so resources that share parts are safe."""
    lines = ["def probe(r):", "    try:", "        pass"]
    names: dict[Position, str] = {(): "r"}
    for i, position in enumerate(free):
        for depth in range(1, len(position)):  # each object on the way read once
            prefix = position[:depth]
            if prefix not in names:
                names[prefix] = f"a{len(names)}"
                lines.append(f"        {names[prefix]} = {names[prefix[:-1]]}[{prefix[-1]!r}]")
        lines.append(f"        v{i} = {names[position[:-1]]}[{position[-1]!r}]")
    lines += ["    except (KeyError, IndexError, TypeError):", "        return None"]
    tests = [_KIND_TEST[kind].format(v=f"v{i}") for i, kind in enumerate(kinds)]
    # each object on the way is a dict (read by key) or a list (by index): not a str or a tuple read by index
    kind_of = {prefix: "dict" for prefix in names}
    kind_of.update({p[:depth]: "dict" if type(p[depth]) is str else "list" for p in free for depth in range(len(p))})
    tests += [f"type({names[prefix]}) is {kind_of[prefix]}" for prefix in names if prefix]
    if tests:
        lines += [f"    if not ({' and '.join(tests)}):", "        return None"]
    lines.append("    c = r.copy()")
    copies: dict[Position, str] = {(): "c"}
    for prefix, name in names.items():  # parents before children: names was filled in that order
        if prefix:
            copies[prefix] = "b" + name[1:]
            lines.append(f"    {copies[prefix]} = {copies[prefix[:-1]]}[{prefix[-1]!r}] = {name}.copy()")
    lines += [f"    {copies[p[:-1]]}[{p[-1]!r}] = None" for p in free]
    lines += ["    try:", "        key = dumps(c, option=OPTIONS)", "    except TypeError:", "        return None"]
    values = "".join(f"v{i}, " for i in range(len(free)))
    lines.append(f"    return key, ({values})")
    return _compile("probe", "\n".join(lines), {"dumps": orjson.dumps, "OPTIONS": _DUMPS_OPTIONS})


# primitive types whose check costs more than looking its verdict up (regexes with alternatives, the calendar)
_WORTH_REMEMBERING = frozenset({"date", "dateTime", "instant", "time"})
# invariants that read nothing but the element they are on (not %resource, not contained resources)
_OWN_ELEMENT_ONLY = frozenset({"per-1", "qty-3", "sqty-1", "att-1", "cpt-2", "obs-3", "obs-6", "ext-1"})
MEMO_LIMIT = 4_096  # remembered verdicts per slot, then it starts over


def _simple(slot: CheckSlot) -> bool:
    """A check slot whose issues come from the type's check alone (no fixed value, pattern, binding, invariant)."""
    element = slot.element
    return element.fixed is None and element.pattern is None and element.binding is None and not element.invariants


def _narrative(slot: CheckSlot, template_value: Any) -> NarrativeShape | None:
    """The template narrative's shape when its div's issues depend on nothing else (xhtml, txt-1, txt-2)."""
    element = slot.element
    if next(iter(element.types.values())).code != "xhtml" or type(template_value) is not str:
        return None
    if element.fixed is not None or element.pattern is not None or element.binding is not None:
        return None
    natives = {key: NATIVE[key].check for key in ("txt-1", "txt-2")}
    if any(natives.get(i.key) is not i.native for i in element.invariants):
        return None
    return narrative_shape(template_value)


class _Verifier:
    """Writes the verify function of one template: one line per check, no loop, no lookup by name."""

    def __init__(self, validator: Validator, resource: dict[str, Any], free: tuple[tuple[Position, str], ...]) -> None:
        self.resource = resource
        self.free = {position: i for i, (position, _) in enumerate(free)}
        self.kinds = [kind for _, kind in free]
        self.lines = ["def verify(r, v):"]
        if free:
            self.lines.append("    " + "".join(f"v{i}, " for i in range(len(free))) + "= v")
        self.namespace: dict[str, Any] = {
            "Walk": _Walk,
            "ref_issue": reference_target_issue,
            "same_narrative": same_narrative,
            "check": validator._check_item,
            "invariants": validator._invariants,
            "types": validator.definitions.resource_types,
            "LIMIT": MEMO_LIMIT,
        }

    def remembered(self, n: int, key: str, test: str) -> None:
        """`test` (true when the check says what it said in the template), remembered by `key`."""
        self.namespace[f"memo{n}"] = {}
        self.lines += [
            f"    ok = memo{n}.get({key})",
            "    if ok is None:",
            f"        ok = {test}",
            f"        if len(memo{n}) >= LIMIT: memo{n}.clear()",
            f"        memo{n}[{key}] = ok",
            "    if not ok: return False",
        ]

    def check(self, n: int, slot: CheckSlot) -> None:
        index = self.free.get(slot.position)
        if index is None and not slot.element.invariants:
            return  # a pinned value: the same value, the same checks, the same issues
        value = f"v{index}" if index is not None else _access(slot.position)
        type_rule = slot.element.types.get(slot.key) or next(iter(slot.element.types.values()))
        shape = _narrative(slot, _at(self.resource, slot.position)) if index is not None else None
        self.namespace[f"s{n}"], self.namespace[f"i{n}"] = slot, slot.issues
        if shape is not None:
            self.namespace[f"n{n}"] = shape
            self.lines.append(f"    if not same_narrative(n{n}, {value}): return False")
        elif _simple(slot) and type_rule.primitive is not None:
            self.namespace[f"c{n}"] = type_rule.primitive
            self.namespace[f"m{n}"] = slot.issues[0].message if slot.issues else None
            test = f"c{n}({value}) == m{n}"
            if type_rule.code in _WORTH_REMEMBERING and index is not None and self.kinds[index] == "str":
                self.remembered(n, value, test)
            else:
                self.lines.append(f"    if not {test}: return False")
        else:
            run = f"check(s{n}.element, s{n}.key, {value}, s{n}.path, w)"
            self.lines.append(f"    w = Walk(r, r); {run}")
            test = "tuple(w.issues) == i{n}"
            if index is not None and self.kinds[index] == "str" and not self._reads_resource(slot):
                self.lines.pop()
                self.namespace[f"run{n}"] = self._runner(slot)
                self.remembered(n, value, f"run{n}(r, {value})")
            else:
                self.lines.append(f"    if not {test.format(n=n)}: return False")

    @staticmethod
    def _reads_resource(slot: CheckSlot) -> bool:
        return any(i.uses_context or i.key == "ref-1" for i in slot.element.invariants)

    def _runner(self, slot: CheckSlot) -> Callable[[dict[str, Any], Any], bool]:
        check = self.namespace["check"]

        def run(resource: dict[str, Any], value: Any) -> bool:
            walk = _Walk(resource, resource)
            check(slot.element, slot.key, value, slot.path, walk)
            return tuple(walk.issues) == slot.issues

        return run

    def invariant(self, n: int, slot: InvariantSlot) -> None:
        self.namespace[f"s{n}"], self.namespace[f"i{n}"] = slot, slot.issues
        context = _access(slot.position)
        if not slot.issues and slot.invariant.native is not None:
            self.namespace[f"c{n}"] = slot.invariant.native
            test = f"c{n}({context}, r, r)"
            if slot.invariant.key in _OWN_ELEMENT_ONLY and slot.position:
                self.lines.append(f"    x = {context}")
                self.remembered(n, "dumps(x)", f"c{n}(x, r, r)")
                self.namespace["dumps"] = orjson.dumps
            else:
                self.lines.append(f"    if not {test}: return False")
            return
        self.lines.append(f"    w = Walk(r, r); invariants([s{n}.invariant], {context}, s{n}.path, w)")
        self.lines.append(f"    if tuple(w.issues) != i{n}: return False")

    def reference(self, n: int, slot: ReferenceSlot) -> None:
        self.namespace[f"s{n}"] = slot
        call = f"ref_issue({_access(slot.position)}, s{n}.targets, s{n}.element, s{n}.path, types)"
        self.lines.append(f"    if {call} != s{n}.issue: return False")


def _make_verify(
    validator: Validator, resource: dict[str, Any], recording: Recording, free: tuple[tuple[Position, str], ...]
) -> Verify:
    """A function of (resource, its free values) that runs every slot's checks on the resource and says whether
    each said exactly what it said in the template."""
    writer = _Verifier(validator, resource, free)
    for n, slot in enumerate(recording.slots):
        if isinstance(slot, CheckSlot):
            writer.check(n, slot)
        elif isinstance(slot, InvariantSlot):
            writer.invariant(n, slot)
        else:
            writer.reference(n, slot)
    writer.lines.append("    return True")
    verify = _compile("verify", "\n".join(writer.lines), writer.namespace)

    def guarded(resource: dict[str, Any], values: tuple[Any, ...]) -> bool:
        try:
            return bool(verify(resource, values))
        except Exception:  # a check that raises on a value the template did not have: the full way says what
            return False

    return guarded


class TemplateValidator:
    """Validator.validate with the fast path for resources of a known template (same verdicts, same issues)."""

    def __init__(self, validator: Validator | None = None, limit: int = TEMPLATE_LIMIT) -> None:
        self.validator = validator or default_validator()
        self.recorder = Recorder(self.validator)
        self.limit = limit
        self._groups: dict[str | None, list[_Group]] = {}  # by the profile asked for
        self.hits = 0  # resources given a template's verdict
        self.full = 0  # resources validated the full way
        self.learnt = 0  # templates recorded (fit or not)

    def validate(self, resource: Any, profile: str | None = None) -> list[Issue]:
        if type(resource) is not dict:
            return self.validator.validate(resource, profile)
        groups = self._groups.get(profile)
        if groups:
            for group in groups:
                probed = group.probe(resource)
                if probed is None:
                    continue
                key, values = probed
                if key not in group.templates:
                    continue
                template = group.templates[key]
                if template is not None and template.verify(resource, values):
                    self.hits += 1
                    if groups[0] is not group:  # the shape most resources have is tried first
                        groups.remove(group)
                        groups.insert(0, group)
                    return list(template.issues)
                break  # its template is unfit, or a value says something the template's did not
            else:
                if self._learning():
                    return self._learn(resource, profile)
        elif self._learning():
            return self._learn(resource, profile)
        self.full += 1
        return self.validator.validate(resource, profile)

    def _learning(self) -> bool:
        if self.learnt >= self.limit:
            return False
        return self.learnt < LEARN_TRIAL or self.hits > self.learnt

    def _learn(self, resource: dict[str, Any], profile: str | None) -> list[Issue]:
        """Validate the full way, and keep the resource's template."""
        self.full += 1
        self.learnt += 1
        issues = self.validator.validate(resource, profile)
        recording = self.recorder.record(resource, profile)
        if recording.issues != issues:  # the memo's verdicts and the recorder's walk disagree: no template
            return issues
        self._keep(resource, profile, recording)
        return issues

    def _keep(self, resource: dict[str, Any], profile: str | None, recording: Recording) -> None:
        free = self._free(resource, recording)
        if free is None:
            return
        positions = tuple(position for position, _ in free)
        groups = self._groups.setdefault(profile, [])
        group = next((g for g in groups if g.free == positions), None)
        if group is None:
            group = _Group(positions, _make_probe(positions, tuple(kind for _, kind in free)))
            groups.append(group)
        probed = group.probe(resource)
        if probed is None:
            return
        key, _ = probed
        # Every null in the key must be a blanked value: a null (or a NaN, which orjson writes as null) at a pinned
        # position could give another resource this key.
        if key.count(b"null") != len(positions) or recording.unfit is not None:
            group.templates[key] = None
            return
        verify = _make_verify(self.validator, resource, recording, tuple(free))
        group.templates[key] = _Template(tuple(recording.issues), verify)

    @staticmethod
    def _free(resource: dict[str, Any], recording: Recording) -> list[tuple[Position, str]] | None:
        """The free positions (each primitive value read by its own checks alone) and the kind of their values."""
        pinned = recording.pinned
        free: list[tuple[Position, str]] = []
        seen: set[Position] = set()
        for slot in recording.slots:
            if not isinstance(slot, CheckSlot) or not slot.position or slot.position in seen:
                continue
            position = slot.position
            if any(position[: len(p)] == p for p in pinned):
                continue
            value = _at(resource, position)
            if value is _MISSING:
                return None  # a path the walk made up (an object where an array belongs): not a template
            kind = _kind(value)
            if kind is not None:
                seen.add(position)
                free.append((position, kind))
        return free


_MISSING = object()


def _at(resource: Any, position: Position) -> Any:
    node = resource
    for step in position:
        if type(step) is int:
            if type(node) is not list or step >= len(node):
                return _MISSING
        elif type(node) is not dict or step not in node:
            return _MISSING
        node = node[step]
    return node


@cache
def default_template_validator() -> TemplateValidator:
    return TemplateValidator()


def validate_fast(resource: dict[str, Any], profile: str | None = None) -> list[Issue]:
    """validate_resource's verdict, by the fast path when the resource's template is known."""
    return default_template_validator().validate(resource, profile)
