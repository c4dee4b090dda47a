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

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sis2fhir.validate.engine import Validator, default_validator
from sis2fhir.validate.issues import Issue
from sis2fhir.validate.recorder import CheckSlot, Position, Recorder, Recording
from sis2fhir.validate.template_checks import (
    MISSING,
    Encode,
    Probe,
    Verify,
    kind_of,
    make_encode,
    make_probe,
    make_verify,
    value_at,
)

TEMPLATE_LIMIT = 4_096  # templates kept per validator (each holds its key: a few KB)
LEARN_TRIAL = 256  # after this many templates learnt, learn more only while hits outnumber what was learnt
WATCH = 256  # hits of a group watched for free values that never change (pinned in the group refined from it)
REFINED_LIMIT = 64  # templates a refined group learns (a full validation each); then the group it came from serves


@dataclass(slots=True)
class _Template:
    issues: tuple[Issue, ...]
    verify: Verify
    encode: Encode | None = None  # the resource's bytes from its free values (None: serialised by the caller)


@dataclass(slots=True, eq=False)
class _Group:
    """Templates with the same free positions: one probe blanks them and makes the key.

    A free value that is the same in every resource (an identifier's system, a unit, the school year's period)
    need not be checked for each: after WATCH hits, the values that never changed are pinned in a refined group,
    tried first, whose probe and checks skip them. Pinning more is always sound (the key holds more); a resource
    whose pinned value differs misses the refined group and is served by this one."""

    free: tuple[Position, ...]
    kinds: tuple[str, ...]
    probe: Probe
    templates: dict[bytes, _Template | None] = field(default_factory=dict)  # None: not a template (unfit)
    watched: int = 0  # hits seen (refined groups are not watched)
    first: tuple[Any, ...] = ()  # the free values of the first hit
    varies: list[bool] = field(default_factory=list)  # per free position: another value was seen
    refined: _Group | None = None


class TemplateValidator:
    """Validator.validate with the fast path for resources of a known template (same verdicts, same issues). It
    learns as it validates: one per process or thread (the sync's mapping workers are processes)."""

    def __init__(self, validator: Validator | None = None, limit: int = TEMPLATE_LIMIT) -> None:
        self.validator = validator or default_validator()
        self.recorder = Recorder(self.validator)
        self.limit = limit
        self._groups: dict[str | None, list[_Group]] = {}  # by the profile asked for
        self.hits = 0  # resources given a template's verdict
        self.full = 0  # resources validated the full way
        self.learnt = 0  # templates recorded (fit or not)

    def validate(self, resource: Any, profile: str | None = None) -> list[Issue]:
        return self.validate_encoded(resource, profile)[0]

    def validate_encoded(self, resource: Any, profile: str | None = None) -> tuple[list[Issue], bytes | None]:
        """The issues, and the resource's orjson bytes when the fast path had them at hand (its key with the free
        values written in: the resource need not be serialised again); None: serialise it yourself."""
        if type(resource) is not dict:
            return self.validator.validate(resource, profile), None
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
                    if group.watched < WATCH:
                        self._watch(groups, group, values)
                    elif group.refined is not None and len(group.refined.templates) < REFINED_LIMIT:
                        self._refine(resource, profile, template, group.refined)
                    if groups[0] is not (group.refined or group):  # the shape most resources have first
                        _promote(groups, group)
                    return list(template.issues), _encoded(template, values)
                break  # its template is unfit, or a value says something the template's did not
            else:
                if self._learning():
                    return self._learn(resource, profile), None
        elif self._learning():
            return self._learn(resource, profile), None
        self.full += 1
        return self.validator.validate(resource, profile), None

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

    def _refine(self, resource: dict[str, Any], profile: str | None, template: _Template, into: _Group) -> None:
        """Keep the template of a resource that missed the refined group in it (a pinned value is new)."""
        recording = self.recorder.record(resource, profile)
        if recording.issues == list(template.issues):
            self._keep(resource, profile, recording, into)

    def _watch(self, groups: list[_Group], group: _Group, values: tuple[Any, ...]) -> None:
        if not group.first:
            group.first, group.varies = values, [False] * len(values)
        for i, (value, first) in enumerate(zip(values, group.first, strict=True)):
            if not group.varies[i] and (type(value) is not type(first) or value != first):
                group.varies[i] = True
        group.watched += 1
        if group.watched == WATCH and not all(group.varies):
            free = tuple((p, k) for p, k, v in zip(group.free, group.kinds, group.varies, strict=True) if v)
            group.refined = _group(free)
            group.refined.watched = WATCH
            groups.insert(groups.index(group), group.refined)

    def _keep(
        self, resource: dict[str, Any], profile: str | None, recording: Recording, into: _Group | None = None
    ) -> None:
        """Keep the resource's template: in its group (made if new), or `into` (a refined group: its free
        positions are some of the resource's)."""
        free = self._free(resource, recording)
        if free is None:
            return
        if into is not None:
            if recording.unfit is not None or not set(into.free) <= {position for position, _ in free}:
                return
            free = [(p, k) for p, k in zip(into.free, into.kinds, strict=True)]
        positions = tuple(position for position, _ in free)
        groups = self._groups.setdefault(profile, [])
        group = into or next((g for g in groups if g.free == positions), None)
        if group is None:
            group = _group(tuple(free))
            groups.append(group)
        probed = group.probe(resource)
        if probed is None:
            return
        key, values = probed
        # Every null in the key must be a blanked value: a null (or a NaN, which orjson writes as null) at a pinned
        # position could give another resource this key.
        if key.count(b"null") != len(positions) or recording.unfit is not None:
            group.templates[key] = None
            return
        verify = make_verify(self.validator, resource, recording, tuple(free))
        encode = make_encode(resource, key, positions, values)
        group.templates[key] = _Template(tuple(recording.issues), verify, encode)

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
            value = value_at(resource, position)
            if value is MISSING:
                return None  # a path the walk made up (an object where an array belongs): not a template
            kind = kind_of(value)
            if kind is not None:
                seen.add(position)
                free.append((position, kind))
        return free


def _encoded(template: _Template, values: tuple[Any, ...]) -> bytes | None:
    if template.encode is None:
        return None
    try:
        return template.encode(values)
    except TypeError:  # a value orjson refuses: the caller's own dumps raises as it would have
        return None


def _group(free: tuple[tuple[Position, str], ...]) -> _Group:
    positions, kinds = tuple(p for p, _ in free), tuple(k for _, k in free)
    return _Group(positions, kinds, make_probe(positions, kinds))


def _promote(groups: list[_Group], group: _Group) -> None:
    """Try this group first, its refined group before it."""
    order = [group] if group.refined is None else [group.refined, group]
    for member in order:
        groups.remove(member)
    groups[0:0] = order


@cache
def default_template_validator() -> TemplateValidator:
    return TemplateValidator()


def validate_fast(resource: dict[str, Any], profile: str | None = None) -> list[Issue]:
    """validate_resource's verdict, by the fast path when the resource's template is known."""
    return default_template_validator().validate(resource, profile)


def validate_encoded(resource: dict[str, Any], profile: str | None = None) -> tuple[list[Issue], bytes | None]:
    """validate_fast's verdict, and orjson.dumps(resource) when the fast path had it at hand (else None)."""
    return default_template_validator().validate_encoded(resource, profile)
