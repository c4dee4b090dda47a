"""The notification rules (transitions.py) as properties: a sequence of daily summaries, judged in any order of
re-runs, replays and restarts, gives exactly one event per crossing, per streak and per warning episode."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sis2fhir.absence_days import add_day, day_facts, new_masks
from sis2fhir.measure import AttendanceSummary, is_chronic
from sis2fhir.policy import PRESETS
from sis2fhir.records import AttendanceCategory
from sis2fhir.store.attendance_events import StoredState
from sis2fhir.store.pieces import pack, split
from sis2fhir.terminology import Tier
from sis2fhir.transitions import (
    DistrictState,
    Transition,
    Trigger,
    judge_district,
    judge_in_pieces,
    projected_rate,
)

ESSA = PRESETS["essa"]
START = date(2025, 9, 1)
TIERS = [Tier.INSUFFICIENT_DATA, Tier.SATISFACTORY, Tier.AT_RISK, Tier.MODERATE_CHRONIC, Tier.SEVERE_CHRONIC]


def summary(day: int, tier: str = Tier.SATISFACTORY, **facts: Any) -> AttendanceSummary:
    fields: dict[str, Any] = {"days_in_membership": 100, "days_absent_h": 0, **facts}
    return AttendanceSummary("stu-1", "sch-1", 2026, START, START + timedelta(days=day), excused_h=0,
                             unexcused_h=0, illness_h=0, oss_h=0, tier=Tier(tier), **fields)  # fmt: skip


class Store:
    """What the store does with a judgment: keep the state, insert each (trigger, episode) once."""

    def __init__(self) -> None:
        self.state: DistrictState | None = None
        self.events: dict[tuple[str, str, str, str], Transition] = {}

    def sync(self, day: int, summaries: list[AttendanceSummary], lengths: tuple[int, ...] = (3,)) -> None:
        judged = judge_district(self.state, 2026, START + timedelta(days=day), summaries, ESSA, lengths)
        if judged is None:
            return
        transitions, new_state = judged
        self.state = DistrictState.of_schools(  # as the store keeps it: JSON
            new_state.school_year, new_state.as_of, orjson.loads(new_state.schools_json())
        )
        for t in transitions:
            self.events.setdefault((t.student_sourced_id, t.school_sourced_id, t.trigger, t.episode), t)

    def of(self, trigger: Trigger) -> list[Transition]:
        return sorted((t for t in self.events.values() if t.trigger == trigger), key=lambda t: t.occurred_on)


@st.composite
def schedules(draw: st.DrawFn, days: int) -> list[int]:
    """Every day 0..days-1 judged in order, with re-runs of any earlier day (replays, older exports) and
    restarts (the same day again) between them."""
    order: list[int] = []
    for d in range(days):
        order.append(d)
        order += draw(st.lists(st.integers(0, d), max_size=2))
    return order


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(st.sampled_from(TIERS), min_size=1, max_size=30))
def test_exactly_one_into_chronic_per_upward_crossing_whatever_the_reruns(data: st.DataObject, tiers: list) -> None:
    def run(order: list[int]) -> Store:
        store = Store()
        for d in order:
            store.sync(d, [summary(d, tiers[d])])
        return store

    a = run(data.draw(schedules(len(tiers))))
    b = run(data.draw(schedules(len(tiers))))
    # brute force: a day chronic whose last day with enough data before it was not chronic (or there was none)
    ups, downs, changes = [], [], []
    for i, t in enumerate(tiers):
        known = [x for x in tiers[:i] if x != Tier.INSUFFICIENT_DATA]
        if is_chronic(t) is True and (not known or not is_chronic(known[-1])):
            ups.append(i)
        if is_chronic(t) is False and known and is_chronic(known[-1]):
            downs.append(i)
        if t != Tier.INSUFFICIENT_DATA and known and known[-1] != t:
            changes.append(i)
    for store in (a, b):
        assert [(t.occurred_on - START).days for t in store.of(Trigger.INTO_CHRONIC)] == ups
        assert [t.episode for t in store.of(Trigger.INTO_CHRONIC)] == [str(k + 1) for k in range(len(ups))]
        assert [(t.occurred_on - START).days for t in store.of(Trigger.BACK_BELOW)] == downs
        assert [(t.occurred_on - START).days for t in store.of(Trigger.TIER_CHANGED)] == changes
    assert a.events == b.events  # the same events, with the same episodes, whatever the order of re-runs


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(st.booleans(), min_size=3, max_size=40), st.sampled_from([(2,), (3,), (2, 5), (3, 4)]))
def test_streaks_against_a_brute_force_count(data: st.DataObject, absent: list[bool], lengths: tuple) -> None:
    n_days = len(absent)
    days = [START + timedelta(days=k) for k in range(n_days)]  # every day a school day in membership
    base = START.toordinal()
    first = data.draw(st.integers(0, n_days - 1))  # the district's first judgment
    judged = [d for d in range(first + 1, n_days) if data.draw(st.booleans())]

    def summary_on(t: int) -> AttendanceSummary:
        masks = new_masks()
        for k in range(t + 1):
            if absent[k]:
                add_day(masks, k, 100, AttendanceCategory.UNEXCUSED_ABSENCE, "")
        f = day_facts(masks, days[: t + 1], START, days[-1], days[t], base, 20)
        return summary(t, absence_runs=f.absence_runs, run_is_running=f.running)

    store = Store()
    for t in [first, *judged]:
        store.sync(t, [summary_on(t)], lengths)
        store.sync(data.draw(st.integers(0, t)), [summary_on(t)], lengths)  # a replay: nothing new
    last = max([first, *judged])
    expected = set()
    k = 0
    while k <= last:  # maximal runs of absent days up to the last judged day
        if not absent[k]:
            k += 1
            continue
        j = k
        while j + 1 <= last and absent[j + 1]:
            j += 1
        for n in lengths:
            reached = k + n - 1
            if reached <= j and (reached > first or (k <= first <= j and reached <= first)):
                expected.add((f"{n}:{days[k].isoformat()}", reached))
        k = j + 1
    got = {(t.episode, (t.occurred_on - START).days) for t in store.of(Trigger.CONSECUTIVE_ABSENCES)}
    assert got == expected


def test_a_first_sync_in_march_does_not_alert_for_a_streak_of_september() -> None:
    old = (date(2025, 9, 8), date(2025, 9, 9), date(2025, 9, 10))
    store = Store()
    store.sync(190, [summary(190, absence_runs=(old,), run_is_running=False)])
    assert store.of(Trigger.CONSECUTIVE_ABSENCES) == []
    now = tuple(START + timedelta(days=d) for d in (188, 189, 190))
    store = Store()
    store.sync(190, [summary(190, absence_runs=(old, now), run_is_running=True)])
    assert [t.episode for t in store.of(Trigger.CONSECUTIVE_ABSENCES)] == [f"3:{now[0].isoformat()}"]


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(st.tuples(st.booleans(), st.integers(0, 2000)), min_size=1, max_size=30))
def test_one_early_warning_per_episode(data: st.DataObject, days: list[tuple[bool, int]]) -> None:
    # 100 days in membership, none absent so far, 80 left: the window's rate reaches 10 % at 450 of 20 x 100
    def on(d: int) -> AttendanceSummary:
        chronic, window_h = days[d]
        tier = Tier.MODERATE_CHRONIC if chronic else Tier.SATISFACTORY
        return summary(d, tier, window_days=20, window_absent_h=window_h, days_left=80)

    store = Store()
    for d in data.draw(schedules(len(days))):
        store.sync(d, [on(d)])
    warning = [not c and w >= 450 for c, w in days]
    starts = [i for i, w in enumerate(warning) if w and (i == 0 or not warning[i - 1])]
    got = store.of(Trigger.EARLY_WARNING)
    assert [(t.occurred_on - START).days for t in got] == starts
    assert [t.episode for t in got] == [str(k + 1) for k in range(len(starts))]


def test_a_new_school_year_starts_from_an_empty_state() -> None:
    store = Store()
    store.sync(10, [summary(10, Tier.MODERATE_CHRONIC)])
    assert len(store.of(Trigger.INTO_CHRONIC)) == 1
    assert store.state is not None
    next_year = AttendanceSummary("stu-1", "sch-1", 2027, date(2026, 8, 24), date(2026, 10, 1), 30, 500, 0, 0, 0, 0,
                                  Tier.MODERATE_CHRONIC)  # fmt: skip
    judged = judge_district(store.state, 2027, date(2026, 10, 1), [next_year], ESSA, (3,))
    assert judged is not None
    transitions, state = judged
    assert [(t.trigger, t.episode, t.school_year) for t in transitions] == [(Trigger.INTO_CHRONIC, "1", 2027)]
    assert state.school_year == 2027
    assert judge_district(state, 2026, date(2026, 6, 1), [summary(270)], ESSA, (3,)) is None  # an older year


def test_the_projection() -> None:
    # 40 days in membership, 2 absent; the last 20 days: 3 absent; 140 days left: (2 + 3/20 x 140) / 180 = 23/180
    assert projected_rate(40, 200, 20, 300, 140, ESSA) == pytest.approx(23 / 180)
    assert projected_rate(40, 200, 20, 300, 0, ESSA) == pytest.approx(0.05)  # the year is over: the rate so far
    assert projected_rate(9, 900, 9, 900, 100, ESSA) is None  # fewer than the policy's 10 days in membership
    assert projected_rate(10, 1000, 10, 1000, 100, ESSA) == 1.0
    assert projected_rate(40, 0, 0, 0, 140, ESSA) is None  # no window


def test_the_state_as_json_reads_back_equal_with_equal_states_shared() -> None:
    tiers = [Tier.SATISFACTORY, Tier.MODERATE_CHRONIC, Tier.INSUFFICIENT_DATA]
    summaries = [
        replace(
            summary(30, tiers[i % 3], days_absent_h=1500 * (i % 3 == 1)),
            student_sourced_id=f"s{i}",
            school_sourced_id=school,
        )
        for i in range(7)
        for school in ("sch-b", "sch-a")
    ]
    judged = judge_district(None, 2026, START + timedelta(days=30), summaries, ESSA, {3})
    assert judged is not None
    state = judged[1]
    parsed = orjson.loads(state.schools_json())
    assert sorted(parsed) == ["sch-a", "sch-b"]
    for school, by_student in parsed.items():
        assert sorted(by_student) == sorted(f"s{i}" for i in range(7))
        for student, value in by_student.items():
            st = state.schools[school][student]
            assert value == [int(st.chronic), st.tier, st.crossings, st.recoveries, st.tier_changes, st.warnings,
                             int(st.warned)]  # fmt: skip
    again = DistrictState.of_schools(2026, state.as_of, parsed)
    assert again == state
    assert again.schools["sch-a"]["s1"] is again.schools["sch-b"]["s4"]  # equal states: one object
    assert state.schools["sch-a"]["s1"].chronic and not state.schools["sch-a"]["s0"].chronic


def test_judged_in_pieces_is_judged_whole() -> None:
    """Piece by piece of the stored state (store/pieces.py), the same events in the same order, and the same state,
    as one judgment of the whole district: 400 students x 2 schools over three days, some withheld on the third."""
    tiers = [Tier.SATISFACTORY, Tier.MODERATE_CHRONIC, Tier.AT_RISK, Tier.SEVERE_CHRONIC, Tier.INSUFFICIENT_DATA]

    def day(d: int, students: range) -> list[AttendanceSummary]:
        return [
            replace(summary(d, tiers[(i * 7 + d * (i % 5)) % 5]), student_sourced_id=f"stu-{i}", school_sourced_id=s)
            for i in students
            for s in (("sch-2", "sch-1") if i % 4 == 0 else ("sch-1",))
        ]

    whole: DistrictState | None = None
    stored: StoredState | None = None
    for d, students in ((1, range(400)), (2, range(400)), (3, range(0, 400, 3))):
        as_of = START + timedelta(days=d)
        judged = judge_district(whole, 2026, as_of, day(d, students), ESSA, (2, 3))
        assert judged is not None
        events, whole = judged
        in_pieces = judge_in_pieces(2026, as_of, day(d, students), ESSA, (2, 3))(stored)
        assert in_pieces is not None and in_pieces.fresh == (d == 1)
        assert list(in_pieces.events) == events and len(events) > 50
        packed = dict(stored.packed) if stored is not None else {}
        packed.update({n: pack(piece_json) for n, piece_json in in_pieces.pieces.items()})
        stored = StoredState(2026, as_of, packed)
        assert split(orjson.loads(whole.schools_json())) == {n: stored.piece(n) for n in packed}
