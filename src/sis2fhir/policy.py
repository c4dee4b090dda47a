"""Chronic-absence policy: the state's rules as configuration, with named presets.

Defaults are those of the input contract (docs/formats.md): ESSA 10 % of days in membership, at least
10 days in membership, excused and unexcused absences count, partial days add their fraction,
out-of-school suspension counts and in-school suspension does not, Attendance Works tiers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sis2fhir.records import AttendanceCategory


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "essa"
    # "percent": chronic when days absent / days in membership >= threshold_percent.
    # "days": chronic when days absent >= threshold_days (CRDC: 15).
    measure: Literal["percent", "days"] = "percent"
    threshold_percent: float = Field(10.0, gt=0, le=100)
    threshold_days: float = Field(15.0, gt=0)
    minimum_days_in_membership: int = Field(10, ge=0)
    absence_categories: frozenset[AttendanceCategory] = frozenset(
        {AttendanceCategory.EXCUSED_ABSENCE, AttendanceCategory.UNEXCUSED_ABSENCE}
    )
    # "fraction": a partial-day absence adds its duration; "half-day" (CRDC): 1 when duration >= 0.5, else 0.
    partial_days: Literal["fraction", "half-day"] = "fraction"
    out_of_school_suspension_counts: bool = True
    in_school_suspension_counts: bool = False
    # Lower bounds of the tiers, in the unit of `measure` (percent or days). None: derived from the
    # threshold as Attendance Works does for 10 %: at-risk from half of it, severe from twice it.
    at_risk_from: float | None = None
    severe_from: float | None = None

    @model_validator(mode="after")
    def _tiers_in_order(self) -> Policy:
        if not self.at_risk_bound < self.chronic_bound < self.severe_bound:
            raise ValueError("tier bounds must rise: at_risk_from < threshold < severe_from")
        return self

    @property
    def chronic_bound(self) -> float:
        return self.threshold_percent if self.measure == "percent" else self.threshold_days

    @property
    def at_risk_bound(self) -> float:
        return self.at_risk_from if self.at_risk_from is not None else self.chronic_bound / 2

    @property
    def severe_bound(self) -> float:
        return self.severe_from if self.severe_from is not None else self.chronic_bound * 2


PRESETS: dict[str, Policy] = {
    # ESSA / EDFacts FS195: 10 % or more of school days.
    "essa": Policy(name="essa"),
    # CRDC: 15 or more school days; a day counts when the student missed at least half of it.
    "crdc": Policy(name="crdc", measure="days", threshold_days=15, partial_days="half-day"),
}


def resolve_policy(preset: str = "essa", **overrides: object) -> Policy:
    """A named preset with settings overridden from configuration."""
    try:
        base = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown policy preset {preset!r}; known: {', '.join(sorted(PRESETS))}") from None
    if not overrides:
        return base
    data = base.model_dump()
    data.update(overrides)
    data.setdefault("name", preset)
    return Policy.model_validate(data)
