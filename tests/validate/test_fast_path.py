"""The fast path of validation (validate/templates.py) gives the full validator's verdicts, issue for issue: on the
example district's every resource, on 10,000 resources with fuzzed values, and on every broken variant of the
validator's tests. Each comparison is against a full validator with its memo off (every item walked)."""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from sis2fhir import terminology as t
from sis2fhir.cli import app
from sis2fhir.validate import Issue, Validator
from sis2fhir.validate.engine import default_validator
from sis2fhir.validate.templates import WATCH, TemplateValidator, default_template_validator
from tests.support import paths
from tests.validate.test_medplum import VARIANTS
from tests.validate.test_validate_cases import BROKEN_CORE, BROKEN_PROFILE, VALID_PROFILE, Broken

Resource = dict[str, Any]
# what the sync validates each resource type against (disclosure.py): our profile, or R4 core (None)
SYNC_PROFILES: dict[str, str | None] = {
    "Observation": t.OBSERVATION_PROFILE,
    "Consent": t.CONSENT_PROFILE,
    "Patient": None,
    "Organization": None,
}

FULL = Validator(memo=False)


def verdict(validate: Callable[[Resource, str | None], list[Issue]], resource: Any, profile: str | None) -> Any:
    """The issues, or the exception (type and text) if validation raised: both validators must do the same."""
    try:
        return validate(resource, profile)
    except Exception as error:  # a value no validator expects: the fast path must fail the same way
        return (type(error).__name__, str(error))


def assert_same(fast: TemplateValidator, resource: Any, profile: str | None) -> None:
    """The fast path's verdict is the full validator's; the bytes it gives with it (when it gives them) are the
    resource's own orjson bytes, which the sync writes as the resource's line."""
    before = pickle.dumps(resource)
    encoded: list[bytes | None] = []

    def validate(resource: Any, profile: str | None) -> list[Issue]:
        issues, line = fast.validate_encoded(resource, profile)
        encoded.append(line)
        return issues

    got = verdict(validate, resource, profile)
    assert pickle.dumps(resource) == before, "the fast path must leave the resource as it found it"
    assert got == verdict(FULL.validate, resource, profile)
    if encoded and encoded[0] is not None:
        assert encoded[0] == orjson.dumps(resource)


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> list[Resource]:
    """Every resource the example district's sync writes, over all recipients."""
    out = tmp_path_factory.mktemp("fast-path") / "out"
    result = CliRunner().invoke(app, ["sync", str(paths.ROOT / "examples" / "district"), "--as-of", "2026-03-31",
                                      "--out", str(out), "--workers", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    resources = [orjson.loads(line) for f in sorted(out.glob("*/*.ndjson")) for line in f.read_bytes().splitlines()]
    assert len(resources) > 400
    return resources


def test_the_example_district_gets_the_full_verdicts_mostly_by_the_fast_path(district: list[Resource]) -> None:
    fast = TemplateValidator(default_validator())
    for resource in district + district:
        assert_same(fast, resource, SYNC_PROFILES[resource["resourceType"]])
        assert_same(fast, resource, None)  # against what meta.profile claims, as `sis2fhir validate` does
    # a template per shape and tier, learnt once; every other resource by the fast path
    assert fast.hits > 0.8 * 4 * len(district)
    assert fast.learnt < 50


def test_the_fast_path_gives_most_resources_their_own_bytes_with_the_verdict(district: list[Resource]) -> None:
    fast = TemplateValidator(default_validator())
    given = 0
    for resource in district + district:
        issues, line = fast.validate_encoded(resource, SYNC_PROFILES[resource["resourceType"]])
        assert issues == FULL.validate(resource, SYNC_PROFILES[resource["resourceType"]])
        if line is not None:
            assert line == orjson.dumps(resource)
            given += 1
    assert given > 0.8 * 2 * len(district)  # the sync writes these bytes instead of serialising each again


@pytest.mark.parametrize("case", BROKEN_CORE + BROKEN_PROFILE, ids=lambda c: c.name)
def test_every_broken_variant_of_the_validator_tests_gets_the_full_verdict(case: Broken) -> None:
    fast = TemplateValidator(default_validator())
    for _ in range(2):  # the first of each is learnt, the second is the fast path's (or the full way's, if unfit)
        assert_same(fast, case.base(), None)
        assert_same(fast, case.resource(), None)
        assert_same(fast, case.resource(), t.OBSERVATION_PROFILE)


def test_every_broken_variant_of_the_medplum_comparison_gets_the_full_verdict(district: list[Resource]) -> None:
    fast = TemplateValidator(default_validator())
    bases = {}
    for resource in district:
        claims = resource.get("meta", {}).get("profile", [])
        kind = resource["resourceType"]
        if kind not in bases and (t.OBSERVATION_PROFILE in claims or t.CONSENT_PROFILE in claims):
            bases[kind] = resource
    for variant in VARIANTS:
        base = bases[variant.resource_type]
        resource = copy.deepcopy(base)
        variant.mutate(resource)
        for _ in range(2):
            assert_same(fast, base, SYNC_PROFILES[variant.resource_type])
            assert_same(fast, resource, SYNC_PROFILES[variant.resource_type])
            assert_same(fast, resource, None)


# -- fuzzed values ---------------------------------------------------------------------------------------------

FUZZED = 10_000
LONG = "x" * 20_000
STRINGS = [
    "",
    " ",
    "  two  spaces",
    LONG,
    "é",
    "Zoë Ñúñez",
    "\u00a0",
    "\u200b",
    "日本語",
    "🙂",
    "\x00",
    "\x1f",
    "\ud800",
    "null",
    "#",
    "#p1",
    "Patient/",
    "Patient/x y",
    "Foo/123",
    "Organization/1/_history/2",
    "urn:uuid:x",
    "javascript:x()",
    "a&b",
    "<p>x</p>",
    "]]>",
    "d",
    "days",
    "%",
    "mo",
    "{absent}",
    "bogus",
    "final",
    "amended",
    "social-history",
    "sdoh",
    "satisfactory",
    "at-risk",
    "A",
    "N",
    "R",
]
DATES = [
    "2025-02-30",
    "2023-02-29",
    "2024-02-29",
    "2025-13-01",
    "2025-1-1",
    "25-01-01",
    "2025",
    "2025-02",
    "2026-03-31",
    "2025-08-25",
    "2026-06-30",
    "2027-01-01",
    "1999-12-31",
    "2026-03-31T23:59:59Z",
    "2026-03-31T24:00:00Z",
    "2026-03-31T23:59:59",
    "2026-03-31T23:59:59+14:00",
    "2026-03-31T23:59:59.123-05:00",
    "2026-02-31T10:00:00Z",
]
NUMBERS: list[Any] = [
    0,
    1,
    -1,
    0.5,
    12.5,
    99.99,
    100,
    101,
    180,
    1e9,
    -1e-9,
    2**31 - 1,
    2**31,
    -(2**31),
    2**63,
    1e308,
    1.0,
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    False,
]
OTHERS: list[Any] = [None, [], {}, [None], ["a"], {"value": 1}, [{}], {"extension": []}]


def _leaves(node: Any, position: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position in a JSON tree (objects' keys and arrays' indexes), the tree's own included."""
    yield position
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*position, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*position, index))


def _parent(resource: Resource, position: tuple[Any, ...]) -> Any:
    node: Any = resource
    for step in position[:-1]:
        node = node[step]
    return node


# what may be written into a narrative's text: entities XML has or has not, markup, characters XML refuses
IN_NARRATIVE = ["&amp;", "&#x27;", "&nbsp;", "&", "<b>x</b>", "<script>x</script>", "</p>", "]]>", "]]", ">", "'",
                '"', "\x01", "\x7f", "\ufffe", "é", "\u00a0", " ", "\n", "", "<!-- c -->", "<br/>"]  # fmt: skip


def _new_value(rng: random.Random, old: Any) -> Any:
    pick = rng.random()
    if isinstance(old, str) and old.startswith("<div") and pick < 0.8:
        at = rng.randint(0, len(old))
        return old[:at] + rng.choice(IN_NARRATIVE) + old[at:]
    if isinstance(old, str) and pick < 0.35:
        if "-" in old[:8] and old[:4].isdigit():
            return rng.choice(DATES)
        return rng.choice([old + rng.choice(STRINGS), old.upper(), old[: rng.randint(0, len(old))], old + " "])
    if isinstance(old, int | float) and not isinstance(old, bool) and pick < 0.45:
        return rng.choice([*NUMBERS, old + 0.25, old - 1, -old, round(old * 1.5, 2)])
    if pick < 0.7:
        return rng.choice(STRINGS + DATES)
    if pick < 0.85:
        return rng.choice(NUMBERS)
    return copy.deepcopy(rng.choice(OTHERS))


def fuzzed(rng: random.Random, base: Resource) -> Resource:
    """The resource with one to three changes: a value replaced, a key dropped, an element added, an array item
    dropped or repeated."""
    resource = copy.deepcopy(base)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        positions = [p for p in _leaves(resource) if p]
        position = rng.choice(positions)
        parent, last = _parent(resource, position), position[-1]
        action = rng.random()
        if action < 0.7:
            parent[last] = _new_value(rng, parent[last])
        elif action < 0.8:
            del parent[last]  # a missing value, required or not
        elif action < 0.9 and isinstance(parent, dict):
            parent[rng.choice(["colour", "extension", "_status", "id", "text", "valueString", "modifierExtension"])] = (
                rng.choice([*STRINGS[:6], *OTHERS, [{"url": "http://example.org/x", "valueBoolean": True}]])
            )
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        else:
            parent[last] = [parent[last]]  # an array where one value belongs
    return resource


def test_ten_thousand_fuzzed_resources_get_the_full_verdicts(district: list[Resource]) -> None:
    rng = random.Random(20261201)
    bases = [(r, SYNC_PROFILES[r["resourceType"]]) for r in district]
    bases += [(build(), None) for build in VALID_PROFILE.values()]
    fast = TemplateValidator(default_validator())
    for base, profile in bases:  # the templates a sync learns first
        assert_same(fast, base, profile)
    hits_before = fast.hits
    for _ in range(FUZZED):
        base, profile = rng.choice(bases)
        assert_same(fast, fuzzed(rng, base), profile)
    # the fuzzed values that keep the template (another valid date, a longer name) were checked by the fast path
    assert fast.hits - hits_before > FUZZED // 10


def test_a_value_shared_with_a_pinned_part_is_not_taken_for_the_template() -> None:
    fast = TemplateValidator(default_validator())
    observation = VALID_PROFILE["attendance observation, tier at-risk"]()
    copied = copy.deepcopy(observation)
    copied["method"] = copy.deepcopy(observation["code"])  # the same values, in an object of its own
    shared = copy.deepcopy(observation)
    shared["method"] = shared["code"]  # one object at two positions: what is free in one is pinned in the other
    for resource in (copied, shared, copied, shared):
        assert_same(fast, resource, t.OBSERVATION_PROFILE)


class Status(StrEnum):
    ACTIVE = "active"


def test_a_string_subclass_takes_the_full_way_and_gets_the_full_verdict() -> None:
    fast = TemplateValidator(default_validator())
    consent = VALID_PROFILE["ferpa consent"]()
    assert_same(fast, consent, t.CONSENT_PROFILE)
    odd = copy.deepcopy(consent)
    odd["status"] = Status.ACTIVE
    assert_same(fast, odd, t.CONSENT_PROFILE)
    assert any(i.expression == "Consent.status" for i in FULL.validate(odd, t.CONSENT_PROFILE))


def test_narratives_with_text_markup_and_characters_written_into_them_get_the_full_verdicts(
    district: list[Resource],
) -> None:
    rng = random.Random(7)
    bases = [(r, SYNC_PROFILES[r["resourceType"]]) for r in district[:: len(district) // 40]]
    fast = TemplateValidator(default_validator())
    for base, profile in bases:
        assert_same(fast, base, profile)
    hits_before = fast.hits
    for _ in range(2_000):
        base, profile = rng.choice(bases)
        resource = copy.deepcopy(base)
        div = resource["text"]["div"]
        for _ in range(rng.choice([1, 1, 2])):
            at = rng.randint(0, len(div))
            div = div[:at] + rng.choice(IN_NARRATIVE) + div[at:]
        resource["text"]["div"] = div
        assert_same(fast, resource, profile)
    assert fast.hits - hits_before > 200  # safe text in the template's markup: the fast path's


def test_values_pinned_after_they_never_changed_still_get_the_full_verdict_when_they_change() -> None:
    fast = TemplateValidator(default_validator())
    students = []
    for n in range(WATCH + 50):  # the same identifier system, units and period in each: pinned after WATCH hits
        observation = VALID_PROFILE["attendance observation, tier at-risk"]()
        observation["id"] = f"obs-{n}"
        observation["subject"]["identifier"]["value"] = f"S{n:07d}"
        students.append(observation)
        assert_same(fast, observation, t.OBSERVATION_PROFILE)
    changed = [
        ("identifier", 0, "system", "urn:example:other"),  # another valid system
        ("identifier", 0, "system", "not a uri"),
        ("effectivePeriod", "start", "2025-02-30"),
        ("effectivePeriod", "start", "2026-12-01"),  # after the end: per-1
        ("valueQuantity", "unit", ""),
        ("status", "amended"),
        ("status", "bogus"),
    ]
    for *where, value in changed:
        resource = copy.deepcopy(students[-1])
        _parent(resource, tuple(where))[where[-1]] = value
        for _ in range(2):
            assert_same(fast, resource, t.OBSERVATION_PROFILE)
    assert fast.hits > WATCH


def test_the_sync_quarantines_a_resource_whose_value_breaks_a_known_template_as_the_full_validator_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sis2fhir.disclosure as disclosure

    real = disclosure.attendance_observation
    made: list[str] = []

    def mapper_with_a_bug(summary, student, school, district, measured, literal=False):  # type: ignore[no-untyped-def]
        observation = real(summary, student, school, district, measured, literal)
        made.append(student.sourced_id)
        if len(made) == 30:  # long after its template was learnt: only a value differs
            observation = copy.deepcopy(observation)  # the mapper shares constant parts between resources
            observation["effectivePeriod"]["end"] = "2026-02-30"
        return observation

    monkeypatch.setattr(disclosure, "attendance_observation", mapper_with_a_bug)
    out = tmp_path / "out"
    hits = default_template_validator().hits  # the sync's (one process: --workers 1)
    result = CliRunner().invoke(app, ["sync", str(paths.ROOT / "examples" / "district"), "--as-of", "2026-03-31",
                                      "--out", str(out), "--workers", "1"])  # fmt: skip
    assert result.exit_code == 3, result.output  # completed, with something to look at
    assert default_template_validator().hits > hits + 100  # the others by the fast path
    lines = (out / "quarantine" / "Observation.ndjson").read_bytes().splitlines()
    (quarantined,) = [orjson.loads(line) for line in lines]
    resource, outcome = quarantined["resource"], quarantined["outcome"]
    assert resource["effectivePeriod"]["end"] == "2026-02-30"
    full = FULL.validate(resource, t.OBSERVATION_PROFILE)
    assert [(i["code"], i["expression"], i["details"]["text"]) for i in outcome["issue"]] == [
        (i.code, [i.expression], i.message) for i in full
    ]
    assert ["Observation.effectivePeriod.end"] in [i["expression"] for i in outcome["issue"]]
