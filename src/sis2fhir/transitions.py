"""What changed for a student x school since the last judged sync: the notification triggers (docs/notifications.md).

Pure functions: (the state stored after the last judgment of a student x school, or none; the current summary; the
policy; the streak lengths wanted) -> (the transitions that fire, the new state). The store keeps the state per
district (store/attendance_events.py) and inserts each transition once (its episode is in the unique key), so
re-runs, replays, restarts and syncs of an older as-of date record nothing new.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from fractions import Fraction
from operator import attrgetter
from typing import Any

import orjson

from sis2fhir.measure import HUNDREDTHS, AttendanceSummary
from sis2fhir.policy import Policy
from sis2fhir.store.attendance_events import Judge, Judged, StoredState
from sis2fhir.store.pieces import by_piece
from sis2fhir.terminology import Tier


def _projection(
    days_in_membership: int, days_absent_h: int, window_days: int, window_absent_h: int, days_left: int, policy: Policy
) -> tuple[int, int] | None:
    """The projected rate, not capped, as (numerator, denominator > 0) in exact integers; None: it cannot be made."""
    if days_in_membership < max(1, policy.minimum_days_in_membership) or window_days <= 0:
        return None
    # (absent so far + window rate x days left) / (days in membership + days left): (a w + b l) / (w (m + l) 100)
    numerator = days_absent_h * window_days + window_absent_h * days_left
    return numerator, window_days * (days_in_membership + days_left) * HUNDREDTHS


def projected_rate(
    days_in_membership: int, days_absent_h: int, window_days: int, window_absent_h: int, days_left: int, policy: Policy
) -> float | None:
    """The absence rate projected to the end of the year: the rate of the last `window_days` school days in
    membership (`window_absent_h` hundredths absent on them) applied to the `days_left` school days left, added to
    the year so far; None when it cannot be made (fewer days in membership than the policy's minimum, or no window).

        projected = (absent_h + window_absent_h / window_days x days_left) / ((days_in_membership + days_left) x 100)
    """
    p = _projection(days_in_membership, days_absent_h, window_days, window_absent_h, days_left, policy)
    if p is None:
        return None
    numerator, denominator = p  # at most 1; int / int is correctly rounded, as float(Fraction) is
    return 1.0 if numerator >= denominator else numerator / denominator


class Trigger(StrEnum):
    """What a transition is about (attendance_events.trigger; the topics of the Subscriptions)."""

    INTO_CHRONIC = "into-chronic"
    BACK_BELOW = "back-below"
    TIER_CHANGED = "tier-changed"
    CONSECUTIVE_ABSENCES = "consecutive-absences"
    EARLY_WARNING = "early-warning"


@dataclass(frozen=True, slots=True)
class StudentState:
    """What was judged of a student x school so far this school year: the state a transition is a change of, and
    how many episodes of each trigger there were (the k-th crossing is episode k, whatever re-runs happen)."""

    chronic: bool = False  # a missing state is not chronic (as Medplum's previous-state rule)
    tier: str = ""  # the last tier with enough data ("": none yet)
    crossings: int = 0  # into-chronic episodes
    recoveries: int = 0  # back-below episodes
    tier_changes: int = 0
    warnings: int = 0  # early-warning episodes
    warned: bool = False  # in an early-warning episode now

    def as_json(self) -> list[Any]:
        return [int(self.chronic), self.tier, self.crossings, self.recoveries, self.tier_changes, self.warnings,
                int(self.warned)]  # fmt: skip

    @classmethod
    def from_json(cls, v: list[Any]) -> StudentState:
        return cls(bool(v[0]), str(v[1]), int(v[2]), int(v[3]), int(v[4]), int(v[5]), bool(v[6]))


@dataclass(frozen=True, slots=True)
class Transition:
    """One event to record: unique per (district, school year, student, school, trigger, episode)."""

    school_year: int
    student_sourced_id: str
    school_sourced_id: str
    trigger: Trigger
    episode: str
    occurred_on: date  # the school day it is about: the summary's as-of date, or the day a streak reached N
    detail: dict[str, Any]  # figures only (no names)


def _reaches_bound(summary: AttendanceSummary, policy: Policy) -> bool | None:
    """Does the projection reach the policy's chronic bound? None: no projection."""
    p = _projection(summary.days_in_membership, summary.days_absent_h, summary.window_days, summary.window_absent_h,
                    summary.days_left, policy)  # fmt: skip
    if p is None:
        return None
    # exactly, in integers: min(1, n / d) x scale >= b / c, with d and c > 0 (about half the judging's time went
    # to Fraction arithmetic, measured at 20k students)
    numerator, denominator = p
    b, c = _exact(policy.chronic_bound)
    scale = 100 if policy.measure == "percent" else summary.days_in_membership + summary.days_left  # projected days
    if numerator >= denominator:
        return scale * c >= b
    return numerator * scale * c >= b * denominator


@functools.lru_cache(maxsize=16)
def _exact(bound: Any) -> tuple[int, int]:
    """The bound as written, as a fraction in lowest terms (10.1 is 101/10)."""
    f = Fraction(str(bound))
    return f.numerator, f.denominator


def _figures(s: AttendanceSummary) -> dict[str, Any]:
    return {
        "tier": str(s.tier),
        "days_in_membership": s.days_in_membership,
        "days_absent_h": s.days_absent_h,
        "rate": s.rate,
        "projected_rate": s.projected_rate,
    }


def judge(
    previous: StudentState | None,
    summary: AttendanceSummary,
    policy: Policy,
    streak_lengths: Iterable[int],
    since: date | None,
) -> tuple[list[Transition], StudentState]:
    """The transitions of one student x school and its new state. `since`: the as-of date judged last for the
    district this school year (None: this is the district's first judgment of the year)."""
    before = previous or StudentState()
    found: list[Transition] = []
    key = (summary.school_year, summary.student_sourced_id, summary.school_sourced_id)

    def fire(trigger: Trigger, episode: str, on: date, **detail: Any) -> None:
        found.append(Transition(*key, trigger, episode, on, {**_figures(summary), **detail}))

    chronic, crossings, recoveries = before.chronic, before.crossings, before.recoveries
    now = summary.chronic  # None: too few days in membership: not chronic, and nothing changes
    if now is True and not before.chronic:
        crossings += 1
        fire(Trigger.INTO_CHRONIC, str(crossings), summary.as_of)
    elif now is False and before.chronic:
        recoveries += 1
        fire(Trigger.BACK_BELOW, str(recoveries), summary.as_of)
    if now is not None:
        chronic = now

    tier, tier_changes = before.tier, before.tier_changes
    if summary.tier != Tier.INSUFFICIENT_DATA:  # no change to or from insufficient data: the last tier with data
        if before.tier and summary.tier != before.tier:
            tier_changes += 1
            fire(Trigger.TIER_CHANGED, str(tier_changes), summary.as_of, previous_tier=before.tier)
        tier = str(summary.tier)

    for n in sorted(set(streak_lengths)):
        for i, run in enumerate(summary.absence_runs):
            if len(run) < n:
                continue
            reached = run[n - 1]
            last_running = i == len(summary.absence_runs) - 1 and summary.run_is_running
            if (reached > since) if since is not None else last_running:
                fire(Trigger.CONSECUTIVE_ABSENCES, f"{n}:{run[0].isoformat()}", reached, days=n,
                     first_day=run[0].isoformat(), days_in_row=len(run))  # fmt: skip

    warnings = before.warnings
    warning = now is False and _reaches_bound(summary, policy) is True
    if warning and not before.warned:
        warnings += 1
        fire(Trigger.EARLY_WARNING, str(warnings), summary.as_of, window_days=summary.window_days,
             window_absent_h=summary.window_absent_h, days_left=summary.days_left)  # fmt: skip
    return found, StudentState(chronic, tier, crossings, recoveries, tier_changes, warnings, warning)


@dataclass(frozen=True, slots=True)
class DistrictState:
    """The state of every student x school of a district after its last judgment, and that judgment's date."""

    school_year: int
    as_of: date
    # school -> student -> state: keyed by the sourcedIds' own strings (a (student, school) tuple per key took
    # 62 MB at 1M students)
    schools: dict[str, dict[str, StudentState]] = field(default_factory=dict)

    def schools_json(self) -> bytes:
        """The state's `{school: {student: state}}` as JSON (what `of_schools` reads): the store keeps a district's
        in pieces (store/pieces.py), each the state of the students of one piece."""
        encoded: dict[int, bytes] = {}  # by state object: equal states are mostly one object (judge_district)
        parts = [b"{"]
        for n, (school, by_student) in enumerate(self.schools.items()):
            parts.append((b"," if n else b"") + orjson.dumps(school) + b":{")
            for m, (student, st) in enumerate(by_student.items()):
                value = encoded.get(id(st))
                if value is None:
                    value = encoded[id(st)] = orjson.dumps(st.as_json())
                parts.append((b"," if m else b"") + orjson.dumps(student) + b":" + value)
            parts.append(b"}")
        parts.append(b"}")
        return b"".join(parts)

    @classmethod
    def of_schools(cls, school_year: int, as_of: date, v: dict[str, dict[str, list[Any]]]) -> DistrictState:
        shared: dict[StudentState, StudentState] = {}  # equal states: one object, as judge_district keeps them
        schools: dict[str, dict[str, StudentState]] = {}
        for school, by_student in v.items():
            states = schools[school] = {}
            for student, st in by_student.items():
                state = StudentState.from_json(st)
                states[student] = shared.setdefault(state, state)
        return cls(school_year, as_of, schools)


def judge_district(
    previous: DistrictState | None,
    school_year: int,
    as_of: date,
    summaries: Iterable[AttendanceSummary],
    policy: Policy,
    streak_lengths: Iterable[int],
) -> tuple[list[Transition], DistrictState] | None:
    """A sync's transitions and the district's new state; None when nothing is judged: the as-of date is not after
    the one judged last (a re-run, a replay, an older export). A new school year starts from an empty state, and
    its first judgment counts as a first one (streaks only if still running on the as-of date). Students x schools
    without a summary in this sync (withheld, or gone) keep their state."""
    if previous is not None and as_of <= previous.as_of:
        return None
    same_year = previous is not None and previous.school_year == school_year
    schools = {k: dict(v) for k, v in previous.schools.items()} if previous is not None and same_year else {}
    since = previous.as_of if previous is not None and same_year else None
    lengths = sorted(set(streak_lengths))
    found: list[Transition] = []
    shared: dict[StudentState, StudentState] = {}
    # by school, then student: two stable sorts on the ids' own strings (no key tuple per summary)
    by_student = sorted(summaries, key=attrgetter("student_sourced_id"))
    for s in sorted(by_student, key=attrgetter("school_sourced_id")):
        states = schools.get(s.school_sourced_id)
        if states is None:
            states = schools[s.school_sourced_id] = {}
        transitions, state = judge(states.get(s.student_sourced_id), s, policy, lengths, since)
        states[s.student_sourced_id] = shared.setdefault(state, state)  # most students share theirs: one object
        found += transitions
    return found, DistrictState(school_year, as_of, schools)


def judge_in_pieces(
    school_year: int,
    as_of: date,
    summaries: Iterable[AttendanceSummary],
    policy: Policy,
    streak_lengths: Iterable[int],
) -> Judge:
    """The judgment of a sync for store/attendance_events.record_transitions: `judge_district` piece by piece of the
    stored state (only the pieces of the students with a summary are read and written again), the events in the
    order one judgment of the whole district gives them (by school, then student)."""
    lengths = tuple(streak_lengths)
    groups = by_piece(summaries, attrgetter("student_sourced_id"))

    def judge(stored: StoredState | None) -> Judged | None:
        if stored is not None and as_of <= stored.as_of:
            return None
        same_year = stored is not None and stored.school_year == school_year
        found: list[Transition] = []
        pieces: dict[int, bytes] = {}
        for n, group in sorted(groups.items()):
            previous = None
            if stored is not None and same_year:
                previous = DistrictState.of_schools(stored.school_year, stored.as_of, stored.piece(n))
            judged = judge_district(previous, school_year, as_of, group, policy, lengths)
            if judged is None:  # pragma: no cover - as_of is after stored.as_of (above)
                return None
            found += judged[0]
            pieces[n] = judged[1].schools_json()
        found.sort(key=attrgetter("school_sourced_id", "student_sourced_id"))  # stable: a student's in firing order
        return Judged(found, school_year, pieces, fresh=not same_year)

    return judge
