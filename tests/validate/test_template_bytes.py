"""A resource's bytes filled into its template (validate/template_bytes.py) are orjson's bytes of the resource, for
any free values: strings with quotes, escapes, control characters and any Unicode, integers and floats of any
size, booleans. The sync writes these bytes to the NDJSON files and fingerprints them for the outbox."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from sis2fhir.validate.recorder import Position
from sis2fhir.validate.template_bytes import make_fill, serialised_order
from tests.validate.test_validate_cases import attendance_observation, ferpa_consent, patient

Resource = dict[str, Any]
VALUES = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8")),
    st.sampled_from(['"', "\\", "\x00", "\x1f", "\u2028", "</div>", "null", "\ud800", "😀"]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
TEMPLATES = [attendance_observation(), ferpa_consent(), patient()]


def leaves(node: Any, position: Position = ()) -> list[Position]:
    """The positions of every primitive value (a template's free positions may be any of them)."""
    if type(node) is dict:
        return [p for key, value in node.items() for p in leaves(value, (*position, key))]
    if type(node) is list:
        return [p for index, item in enumerate(node) for p in leaves(item, (*position, index))]
    return [position]


def put(resource: Resource, position: Position, value: Any) -> None:
    node: Any = resource
    for step in position[:-1]:
        node = node[step]
    node[position[-1]] = value


def key_of(resource: Resource, free: tuple[Position, ...]) -> bytes:
    blanked = copy.deepcopy(resource)
    for position in free:
        put(blanked, position, None)
    return orjson.dumps(blanked)


@given(st.sampled_from(range(len(TEMPLATES))), st.data())
def test_filled_bytes_are_orjsons_for_any_free_values(which: int, data: st.DataObject) -> None:
    template = TEMPLATES[which]
    positions = leaves(template)
    free = tuple(data.draw(st.lists(st.sampled_from(positions), min_size=1, max_size=12, unique=True)))
    fill = make_fill(template, key_of(template, free), free)
    assert fill is not None  # the template's own bytes come out exactly
    values = tuple(data.draw(VALUES) for _ in free)
    resource = copy.deepcopy(template)
    for position, value in zip(free, values, strict=True):
        put(resource, position, value)
    try:
        expected: bytes | None = orjson.dumps(resource)
    except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits: no bytes either way
        expected = None
    assert fill(values) == expected


def test_free_positions_are_filled_in_the_order_orjson_writes_them() -> None:
    observation = attendance_observation()
    free: tuple[Position, ...] = (("subject", "identifier", "value"), ("id",), ("effectivePeriod", "start"))
    assert serialised_order(observation, free) == [1, 0, 2]  # id, then subject, then effectivePeriod: as written
    fill = make_fill(observation, key_of(observation, free), free)
    assert fill is not None
    assert fill(("S1", "obs-1", "2025-09-02")) == orjson.dumps(
        {**observation, "id": "obs-1", "effectivePeriod": {**observation["effectivePeriod"], "start": "2025-09-02"},
         "subject": {**observation["subject"], "identifier": {**observation["subject"]["identifier"], "value": "S1"}}}
    )  # fmt: skip


def test_a_template_whose_pinned_text_says_null_fills_nothing() -> None:
    consent = ferpa_consent()
    consent["performer"][0]["display"] = "Anne Nullworth (null)"
    free: tuple[Position, ...] = (("id",),)
    assert make_fill(consent, key_of(consent, free), free) is None  # the key's pieces would not be the values'
