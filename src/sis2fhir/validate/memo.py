"""The validator's memo: the same coding, quantity or period recurs across thousands of resources, so an item's
verdict is kept by its content and replayed where the same content recurs.

The memo owns all of its state; compiled rules are never written. It holds each rule it keeps verdicts for (so
the rule's id, which keys the verdicts, cannot be reused by another object while they are kept). Memoising is
adaptive: after `trial` lookups for one element, the memo keeps memoising it only while hits outnumber misses
(an identifier or a subject is always new; the attendance components differ per student, so their array is not
memoised whole, but their items are).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sis2fhir.validate.compiler import ElementRule, SliceRule
from sis2fhir.validate.issues import Issue

MEMO_LIMIT = 50_000  # memoised verdicts kept before the memo starts over: a few tens of MB at most
MEMO_TRIAL = 1_000  # after this many lookups for one element, keep its memo only while hits outnumber misses
ARRAY = "[]"  # the key of a whole array's verdict (an item's is its JSON key)

# the slice an item was found to be (slicing only), and its issues with paths relative to the item
Verdict = tuple[SliceRule | None, tuple[Issue, ...]]


@dataclass(slots=True)
class _Trial:
    """Lookups of one kind (items, or whole arrays) for one element."""

    hits: int = 0
    misses: int = 0
    on: bool = True

    def note(self, hit: bool, trial: int) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if self.hits + self.misses >= trial:
            self.on = self.misses < self.hits


@dataclass(slots=True)
class _Element:
    """What the memo knows of one element rule (held here, so its id stays its own)."""

    rule: ElementRule
    context_free: bool
    items: _Trial
    arrays: _Trial


class VerdictMemo:
    """Verdicts by (rule, JSON key, content). `context_free(element)`: whether an element's verdict depends on
    nothing but its content (Compiler.context_free), asked once per element."""

    def __init__(
        self, context_free: Callable[[ElementRule], bool], limit: int = MEMO_LIMIT, trial: int = MEMO_TRIAL
    ) -> None:
        self._context_free = context_free
        self.limit = limit
        self.trial = trial
        self._verdicts: dict[tuple[int, str, bytes], Verdict] = {}
        self._elements: dict[int, _Element] = {}
        self._held: dict[int, object] = {}  # other rules (slicings) verdicts are kept for, by id

    def _element(self, element: ElementRule) -> _Element:
        known = self._elements.get(id(element))
        if known is None:
            known = self._elements[id(element)] = _Element(element, self._context_free(element), _Trial(), _Trial())
        return known

    # -- what may be memoised ---------------------------------------------------------------------------

    def items_on(self, element: ElementRule) -> bool:
        """Whether items of this element are memoised (context-free, and not mostly new content)."""
        known = self._element(element)
        return known.context_free and known.items.on

    def arrays_on(self, element: ElementRule) -> bool:
        """Whether whole arrays of this element are memoised (its items are memoised, and arrays recur)."""
        return self._element(element).arrays.on

    def item_content(self, element: ElementRule, item: Any) -> bytes | None:
        """The item's content as a memo key, or None when its verdict may depend on more than its content: an
        element that reads %resource (Compiler.context_free) or a local "#id" reference (ref-1), or one holding a
        null: orjson writes NaN and infinities as null too, and a null is not a number."""
        if type(item) is not dict or not self.items_on(element):
            return None
        try:
            blob = orjson.dumps(item)
        except TypeError:
            return None
        return None if b'"#' in blob or b"null" in blob else blob

    def array_content(self, element: ElementRule, value: list[Any]) -> bytes | None:
        """A whole array's content as a memo key (the two categories, the performer, the interpretation recur
        verbatim), or None: not memoised, or it holds a local reference or a null."""
        if not self.items_on(element):
            return None
        try:
            blob = orjson.dumps(value)
        except TypeError:
            return None
        return None if b'"#' in blob or b"null" in blob else blob

    def note_item(self, element: ElementRule, hit: bool) -> None:
        self._element(element).items.note(hit, self.trial)

    def note_array(self, element: ElementRule, hit: bool) -> None:
        self._element(element).arrays.note(hit, self.trial)

    # -- verdicts ---------------------------------------------------------------------------------------

    def _key(self, rule: object, key: str, content: bytes) -> tuple[int, str, bytes]:
        if id(rule) not in self._elements:
            self._held.setdefault(id(rule), rule)
        return (id(rule), key, content)

    def lookup(self, rule: object, key: str, content: bytes) -> Verdict | None:
        return self._verdicts.get(self._key(rule, key, content))

    def remember(
        self, rule: object, key: str, content: bytes, chosen: SliceRule | None, path: str, issues: list[Issue]
    ) -> None:
        """Keep the verdict of the item at `path`: its issues relative to it."""
        verdicts = self._verdicts
        if len(verdicts) >= self.limit:
            verdicts.clear()
        cut = len(path)
        verdicts[self._key(rule, key, content)] = (
            chosen,
            tuple(Issue(i.severity, i.code, i.expression[cut:], i.message, i.rule) for i in issues),
        )


def replay(verdict: Verdict, path: str, issues: list[Issue]) -> SliceRule | None:
    """Add a kept verdict's issues for the item at `path`; return the slice it was found to be."""
    chosen, found = verdict
    for issue in found:
        issues.append(Issue(issue.severity, issue.code, path + issue.expression, issue.message, issue.rule))
    return chosen
