"""The validator's memo: verdicts kept by content and replayed, adaptively, never changing what is reported."""

from __future__ import annotations

import copy
from typing import Any

from sis2fhir.terminology import OBSERVATION_PROFILE
from sis2fhir.validate import Validator
from sis2fhir.validate.memo import VerdictMemo
from tests.validate.test_validate_cases import attendance_observation

TRIAL = 20


def _validators() -> tuple[Validator, Validator]:
    memoised = Validator()
    memoised.memo = VerdictMemo(memoised.compiler.context_free, trial=TRIAL)
    return memoised, Validator(memo=False)


def _student(i: int, absent: float) -> dict[str, Any]:
    observation = attendance_observation(absent=absent)
    observation["subject"] = {"reference": f"Patient/student-{i}"}  # always new content
    return observation


def test_the_memo_drops_elements_whose_content_is_always_new_and_keeps_those_that_recur() -> None:
    memoised, plain = _validators()
    for i in range(3 * TRIAL):
        observation = _student(i, absent=10 + i / 8)  # days absent differ per student
        assert memoised.validate(observation) == plain.validate(observation)
    rule = memoised.compiler.structure(OBSERVATION_PROFILE)
    assert rule is not None and memoised.memo is not None
    assert not memoised.memo.items_on(rule.by_key["subject"])  # a new subject every time: not memoised
    assert memoised.memo.items_on(rule.by_key["code"])  # the same code every time: memoised
    assert memoised.memo.arrays_on(rule.by_key["category"])  # the same categories: the whole array memoised
    # the components differ per student (days absent): not memoised as a whole array, their items still are
    assert not memoised.memo.arrays_on(rule.by_key["component"])
    assert memoised.memo.items_on(rule.by_key["component"])


def test_replayed_issues_point_at_each_resource_where_they_recur() -> None:
    memoised, plain = _validators()
    broken = _student(0, absent=12.5)
    broken["component"][1]["valueQuantity"]["code"] = "days"  # not UCUM "d": the same error in every resource
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": copy.deepcopy(broken), "request": {"method": "POST", "url": "Observation"}}
            for _ in range(2 * TRIAL)
        ],
    }
    found = memoised.validate(bundle)
    assert found == plain.validate(bundle)
    errors = [i for i in found if i.severity == "error"]
    assert {i.rule for i in errors} == {"pattern", "ucum"}  # the profile wants "d"; "days" is no UCUM code either
    assert len({i.expression.split(".resource")[0] for i in errors}) == 2 * TRIAL  # one per entry, each its own
    assert memoised.validate(bundle) == found  # and again, from the memo


def test_the_memo_starts_over_when_full_without_changing_verdicts() -> None:
    memoised, plain = _validators()
    memoised.memo = VerdictMemo(memoised.compiler.context_free, limit=5, trial=TRIAL)
    for i in range(TRIAL):
        observation = _student(i, absent=i)
        assert memoised.validate(observation) == plain.validate(observation)
