"""The numbers clinicians see: days in membership, days absent, rate, tier, chronic flag (pure functions)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sis2fhir.measure import (
    HUNDREDTHS,
    AbsenceTally,
    absence_rate,
    absence_weight,
    chronic_absence_tier,
    day_hundredths,
    days_in_membership,
    is_chronic,
)
from sis2fhir.policy import PRESETS, Policy, resolve_policy
from sis2fhir.records import AttendanceCategory as C

ESSA = PRESETS["essa"]
CRDC = PRESETS["crdc"]
START = date(2025, 9, 1)
SCHOOL_DAYS = [START + timedelta(days=i) for i in range(0, 250) if (START + timedelta(days=i)).weekday() < 5]


def tally_of(events: list[tuple[C, float, str]], policy: Policy = ESSA) -> AbsenceTally:
    t = AbsenceTally()
    for category, duration, reason in events:
        t.add(category, day_hundredths(duration), reason, policy)
    return t


def test_exactly_ten_percent_is_chronic_under_essa() -> None:
    t = tally_of([(C.UNEXCUSED_ABSENCE, 1, "")] * 10)
    assert chronic_absence_tier(t.absent, 100, ESSA) == "moderate-chronic"
    assert is_chronic(chronic_absence_tier(t.absent, 100, ESSA)) is True


def test_half_a_day_below_ten_percent_is_at_risk() -> None:
    t = tally_of([(C.EXCUSED_ABSENCE, 1, "")] * 9 + [(C.EXCUSED_ABSENCE, 0.5, "")])
    assert t.absent == 950
    assert chronic_absence_tier(t.absent, 100, ESSA) == "at-risk"


def test_tier_bands_follow_attendance_works() -> None:
    assert chronic_absence_tier(4 * HUNDREDTHS, 100, ESSA) == "satisfactory"
    assert chronic_absence_tier(5 * HUNDREDTHS, 100, ESSA) == "at-risk"
    assert chronic_absence_tier(19 * HUNDREDTHS, 100, ESSA) == "moderate-chronic"
    assert chronic_absence_tier(20 * HUNDREDTHS, 100, ESSA) == "severe-chronic"


def test_thirds_of_a_day_add_up_to_exactly_one_day() -> None:
    t = tally_of([(C.UNEXCUSED_ABSENCE, 0.33, ""), (C.UNEXCUSED_ABSENCE, 0.33, ""), (C.UNEXCUSED_ABSENCE, 0.34, "")])
    assert t.absent == HUNDREDTHS


def test_fewer_than_ten_days_in_membership_is_insufficient_data_never_chronic() -> None:
    tier = chronic_absence_tier(9 * HUNDREDTHS, 9, ESSA)
    assert tier == "insufficient-data"
    assert is_chronic(tier) is None


def test_in_school_suspension_is_not_an_absence_but_out_of_school_is() -> None:
    t = tally_of([(C.EXCUSED_ABSENCE, 1, "suspension-in-school"), (C.PRESENT, 1, "suspension-out-of-school")])
    assert t.absent == HUNDREDTHS
    assert t.oss == HUNDREDTHS
    assert t.excused == 0


def test_a_policy_can_stop_counting_out_of_school_suspension() -> None:
    no_oss = resolve_policy("essa", out_of_school_suspension_counts=False)
    t = tally_of([(C.UNEXCUSED_ABSENCE, 1, "suspension-out-of-school")], no_oss)
    assert t.absent == 0


def test_tardy_and_early_departure_are_not_absences_by_default() -> None:
    t = tally_of([(C.TARDY, 1, ""), (C.EARLY_DEPARTURE, 0.5, ""), (C.PARTIAL, 0.5, "")])
    assert t.absent == 0


def test_illness_and_breakdowns_are_counted_separately() -> None:
    t = tally_of([(C.EXCUSED_ABSENCE, 1, "illness"), (C.UNEXCUSED_ABSENCE, 0.5, "transportation")])
    assert (t.absent, t.excused, t.unexcused, t.illness, t.oss) == (150, 100, 50, 100, 0)


def test_crdc_counts_a_day_only_when_half_or_more_was_missed() -> None:
    t = tally_of([(C.UNEXCUSED_ABSENCE, 0.5, ""), (C.UNEXCUSED_ABSENCE, 0.33, ""), (C.EXCUSED_ABSENCE, 1, "")], CRDC)
    assert t.absent == 2 * HUNDREDTHS


def test_crdc_is_chronic_from_fifteen_days_whatever_the_membership() -> None:
    assert chronic_absence_tier(15 * HUNDREDTHS, 170, CRDC) == "moderate-chronic"
    assert chronic_absence_tier(14 * HUNDREDTHS, 20, CRDC) == "at-risk"


def test_days_in_membership_stop_at_the_as_of_date_and_the_enrollment_end() -> None:
    monday = date(2025, 9, 1)
    assert days_in_membership(SCHOOL_DAYS, monday, date(2026, 6, 1), monday + timedelta(days=6)) == 5
    assert (
        days_in_membership(SCHOOL_DAYS, monday + timedelta(days=2), monday + timedelta(days=3), date(2026, 1, 1)) == 2
    )
    assert days_in_membership(SCHOOL_DAYS, date(2026, 1, 5), date(2026, 6, 1), date(2025, 12, 1)) == 0


def test_an_unknown_preset_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="essa"):
        resolve_policy("nope")


def test_tier_bounds_must_rise() -> None:
    with pytest.raises(ValueError):
        resolve_policy("essa", at_risk_from=12)


events = st.lists(
    st.tuples(
        st.sampled_from(list(C)),
        st.sampled_from([1.0, 0.5, 0.33, 0.25, 0.75, 0.1]),
        st.sampled_from(["", "illness", "suspension-out-of-school", "suspension-in-school", "family"]),
    ),
    max_size=60,
)
policies = st.sampled_from([ESSA, CRDC, resolve_policy("essa", partial_days="half-day", threshold_percent=15)])


@given(evs=events, extra_days=st.integers(0, 120), policy=policies)
def test_rate_stays_between_zero_and_one(evs: list[tuple[C, float, str]], extra_days: int, policy: Policy) -> None:
    # one event per school day: membership is at least the number of events
    t = tally_of(evs, policy)
    rate = absence_rate(t.absent, len(evs) + extra_days)
    assert rate is None or 0.0 <= rate <= 1.0
    assert t.excused + t.unexcused <= t.absent
    assert t.illness + t.oss <= t.absent


@given(evs=events, extra_days=st.integers(1, 120), policy=policies, duration=st.sampled_from([1.0, 0.5, 0.33]))
def test_one_more_absence_never_lowers_the_rate_or_the_tier(
    evs: list[tuple[C, float, str]], extra_days: int, policy: Policy, duration: float
) -> None:
    dim = len(evs) + extra_days
    before = tally_of(evs, policy)
    after = tally_of([*evs, (C.UNEXCUSED_ABSENCE, duration, "")], policy)
    order = ["insufficient-data", "satisfactory", "at-risk", "moderate-chronic", "severe-chronic"]
    assert (absence_rate(after.absent, dim) or 0) >= (absence_rate(before.absent, dim) or 0)
    assert order.index(chronic_absence_tier(after.absent, dim, policy)) >= order.index(
        chronic_absence_tier(before.absent, dim, policy)
    )


@given(absent_days=st.integers(0, 200), dim=st.integers(0, 200))
def test_chronic_flag_agrees_with_the_threshold(absent_days: int, dim: int) -> None:
    absent_days = min(absent_days, dim)
    tier = chronic_absence_tier(absent_days * HUNDREDTHS, dim, ESSA)
    if dim < ESSA.minimum_days_in_membership:
        assert tier == "insufficient-data"
    else:
        assert is_chronic(tier) == (absent_days * 100 >= 10 * dim)


@given(category=st.sampled_from(list(C)), duration=st.floats(0.01, 1.0), reason=st.sampled_from(["", "illness"]))
def test_half_day_rule_gives_whole_days_only(category: C, duration: float, reason: str) -> None:
    w = absence_weight(category, day_hundredths(duration), reason, CRDC)
    assert w in (0, HUNDREDTHS)


def test_a_rate_exactly_at_a_configured_bound_is_in_the_higher_tier() -> None:
    # 101 of 1000 days is 10.1 % exactly; as floats, 10100 * 100 / 100000 and the bound 10.1 need not agree
    policy = resolve_policy("essa", threshold_percent=10.1)
    assert chronic_absence_tier(101 * HUNDREDTHS, 1000, policy) == "moderate-chronic"
    assert chronic_absence_tier(101 * HUNDREDTHS - 1, 1000, policy) == "at-risk"
    assert chronic_absence_tier(18 * HUNDREDTHS, 180, resolve_policy("essa")) == "moderate-chronic"  # 10 % of 180
