"""The code of one template's fast path, generated when the template is learnt (validate/templates.py): the probe,
which reads a resource's free values and makes its key, and the verify function, which runs every check that reads
a free value on the resource's own values and says whether each said exactly what it said in the template.

Both are Python written for the template (one line per value: no loop over slots, no lookup by name), compiled
once. The checks they call are the full validator's own (primitives, _check_item, the native invariants,
reference_target_issue), never copies; what recurs (dates, long texts, a period) is looked up in a small memo of
the check's verdict by the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from sis2fhir.validate.engine import Validator, _Walk
from sis2fhir.validate.invariants import NATIVE
from sis2fhir.validate.narrative import NarrativeShape, narrative_matcher, narrative_shape
from sis2fhir.validate.recorder import CheckSlot, InvariantSlot, Position, Recording, ReferenceSlot
from sis2fhir.validate.values import reference_target_issue

Probe = Callable[[dict[str, Any]], tuple[bytes, tuple[Any, ...]] | None]
Verify = Callable[[dict[str, Any], tuple[Any, ...]], bool]
Encode = Callable[[tuple[Any, ...]], bytes]

# str subclasses (an enum), datetimes and dataclasses are not JSON: orjson refuses them, so they take the full way
_DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def kind_of(value: Any) -> str | None:
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


def make_probe(free: tuple[Position, ...], kinds: tuple[str, ...]) -> Probe:
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
    container = {prefix: "dict" for prefix in names}
    container.update({p[:depth]: "dict" if type(p[depth]) is str else "list" for p in free for depth in range(len(p))})
    tests += [f"type({names[prefix]}) is {container[prefix]}" for prefix in names if prefix]
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


def make_encode(resource: dict[str, Any], key: bytes, free: tuple[Position, ...], values: tuple[Any, ...]
                ) -> Encode | None:  # fmt: skip
    """A function of a resource's free values that gives its orjson bytes, for a resource whose key is `key`: the
    key with each null (a blanked value) replaced by that value's bytes. orjson writes an object as its entries'
    bytes in order, so the same key is the same bytes around the free values, and the resource is serialised once
    (its key) instead of twice. None when the key holds a null that is not a blanked value, or when the template's
    own bytes do not come out the same (then the caller serialises the resource itself)."""
    segments = key.split(b"null")
    order = _written_order(resource, free)
    if len(segments) != len(free) + 1 or len(order) != len(free):
        return None
    namespace: dict[str, Any] = {f"s{n}": segment for n, segment in enumerate(segments)}
    namespace.update(join=b"".join, dumps=orjson.dumps)
    parts = [part for n, i in enumerate(order) for part in (f"s{n}", f"dumps(v[{i}])")]
    source = f"def encode(v):\n    return join(({', '.join([*parts, f's{len(order)}'])},))"
    encode: Encode = _compile("encode", source, namespace)
    try:
        if encode(values) != orjson.dumps(resource):
            return None
    except TypeError:  # a value orjson refuses (an integer beyond 64 bits): the caller's dumps says so
        return None
    return encode


def _written_order(resource: dict[str, Any], free: tuple[Position, ...]) -> list[int]:
    """The free positions' indexes in the order orjson writes their values (objects' keys in order, arrays'
    items in order)."""
    index = {position: i for i, position in enumerate(free)}
    order: list[int] = []

    def walk(node: Any, position: Position) -> None:
        if position in index:
            order.append(index[position])
        elif type(node) is dict:
            for k, value in node.items():
                walk(value, (*position, k))
        elif type(node) is list:
            for n, value in enumerate(node):
                walk(value, (*position, n))

    walk(resource, ())
    return order


# primitive types whose check costs more than looking its verdict up (regexes with alternatives, the calendar)
_WORTH_REMEMBERING = frozenset({"date", "dateTime", "instant", "time"})
# invariants that read nothing but the element they are on (not %resource, not contained resources)
_OWN_ELEMENT_ONLY = frozenset({"per-1", "qty-3", "sqty-1", "att-1", "cpt-2", "obs-3", "obs-6", "ext-1"})
# ...and those that read beyond it only what every template pins: ref-1 a "#id" among contained resources (a
# template has none), txt-1 and txt-2 the div they are on
_OWN_AND_PINNED = _OWN_ELEMENT_ONLY | {"ref-1", "txt-1", "txt-2"}
# what an invariant on a resource's root reads beyond which keys are present (None: any array index)
_ROOT_READS: dict[str, tuple[tuple[str | None, ...], ...]] = {
    "obs-7": (("code",), ("component", None, "code")),  # the codings of the code and of each component's code
    # whether there is a patient (a key: pinned), else the scope's codings (invariants._ppc)
    **{f"ppc-{n}": (("scope",),) for n in (2, 3, 4, 5)},
}
MEMO_LIMIT = 4_096  # remembered verdicts per slot, then it starts over
LONG_TEXT = 32  # characters: a template's text longer than this is probably the same in every resource


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
        if index is None and all(i.key in _OWN_AND_PINNED for i in slot.element.invariants):
            return  # a pinned value: the same value, the same checks, the same issues
        value = f"v{index}" if index is not None else _access(slot.position)
        type_rule = slot.element.types.get(slot.key) or next(iter(slot.element.types.values()))
        shape = _narrative(slot, value_at(self.resource, slot.position)) if index is not None else None
        self.namespace[f"s{n}"], self.namespace[f"i{n}"] = slot, slot.issues
        if shape is not None:
            self.namespace[f"n{n}"] = narrative_matcher(shape)  # same_narrative(shape, value)
            self.lines.append(f"    if not n{n}({value}): return False")
        elif _simple(slot) and type_rule.primitive is not None:
            self.namespace[f"c{n}"] = type_rule.primitive
            self.namespace[f"m{n}"] = slot.issues[0].message if slot.issues else None
            test = f"c{n}({value}) == m{n}"
            if index is not None and self.kinds[index] == "str" and self._worth_remembering(slot, type_rule.code):
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

    def _worth_remembering(self, slot: CheckSlot, code: str) -> bool:
        """Dates (regexes with alternatives, the calendar) and long texts (a regex over every character), which
        recur: looking their verdict up costs less than checking them again."""
        value = value_at(self.resource, slot.position)
        return code in _WORTH_REMEMBERING or (type(value) is str and len(value) > LONG_TEXT)

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

    def _pinned(self, position: Position) -> bool:
        """No free value under this position: what is there is the template's."""
        return not any(free[: len(position)] == position for free in self.free)

    def _read_pinned(self, reads: tuple[tuple[str | None, ...], ...]) -> bool:
        """No free value under any of these parts of the resource."""
        return not any(
            len(free) >= len(read) and all(step is None or step == at for step, at in zip(read, free, strict=False))
            for free in self.free
            for read in reads
        )

    def invariant(self, n: int, slot: InvariantSlot) -> None:
        if slot.invariant.key in _OWN_AND_PINNED and self._pinned(slot.position):
            return  # it reads only pinned values: it says what it said in the template
        native = NATIVE.get(slot.invariant.key)
        reads = _ROOT_READS.get(slot.invariant.key)
        if (
            reads
            and not slot.position
            and native
            and slot.invariant.native is native.check
            and self._read_pinned(reads)
        ):
            return
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
        if self._pinned(slot.position):
            return  # reference_target_issue reads the Reference's reference and type only
        self.namespace[f"s{n}"] = slot
        call = f"ref_issue({_access(slot.position)}, s{n}.targets, s{n}.element, s{n}.path, types)"
        self.lines.append(f"    if {call} != s{n}.issue: return False")


def make_verify(
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


MISSING = object()


def value_at(resource: Any, position: Position) -> Any:
    node = resource
    for step in position:
        if type(step) is int:
            if type(node) is not list or step >= len(node):
                return MISSING
        elif type(node) is not dict or step not in node:
            return MISSING
        node = node[step]
    return node
