"""What changed for a student x school since the last judged sync: the notification triggers (docs/notifications.md).

Pure functions: (the state stored after the last judgment of a student x school, or none; the current summary; the
policy; the streak lengths wanted) -> (the transitions that fire, the new state). The store keeps the state per
district (store/attendance_events.py) and inserts each transition once (its episode is in the unique key), so
re-runs, replays, restarts and syncs of an older as-of date record nothing new.
"""

from __future__ import annotations

from fractions import Fraction

from sis2fhir.measure import HUNDREDTHS
from sis2fhir.policy import Policy


def _projection(
    days_in_membership: int, days_absent_h: int, window_days: int, window_absent_h: int, days_left: int, policy: Policy
) -> Fraction | None:
    if days_in_membership < max(1, policy.minimum_days_in_membership) or window_days <= 0:
        return None
    # (absent so far + window rate x days left) / (days in membership + days left), in exact fractions
    absent = Fraction(days_absent_h) + Fraction(window_absent_h * days_left, window_days)
    return min(Fraction(1), absent / ((days_in_membership + days_left) * HUNDREDTHS))


def projected_rate(
    days_in_membership: int, days_absent_h: int, window_days: int, window_absent_h: int, days_left: int, policy: Policy
) -> float | None:
    """The absence rate projected to the end of the year: the rate of the last `window_days` school days in
    membership (`window_absent_h` hundredths absent on them) applied to the `days_left` school days left, added to
    the year so far; None when it cannot be made (fewer days in membership than the policy's minimum, or no window).

        projected = (absent_h + window_absent_h / window_days x days_left) / ((days_in_membership + days_left) x 100)
    """
    p = _projection(days_in_membership, days_absent_h, window_days, window_absent_h, days_left, policy)
    return None if p is None else float(p)
