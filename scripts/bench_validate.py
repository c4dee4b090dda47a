"""Measures sis2fhir's validator against fhir.resources (R4B) on the same attendance Observations, in one run.

Usage: .venv/bin/python scripts/bench_validate.py [--count 20000] [--seed 7]

Every resource is distinct (student, identifiers, day counts, rate, tier), as in a real district run;
25 schools and one school year, so codings, units and periods recur as they do in production.
Prints resources per CPU-second for each validator (single-threaded: one core); nothing else is timed.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from fhir.resources.R4B.observation import Observation

from sis2fhir.terminology import (
    ATTENDANCE_CS,
    ATTENDANCE_DISPLAY,
    MEASURES,
    OBSERVATION_CATEGORY_CS,
    OBSERVATION_PROFILE,
    TIER_CS,
    TIERS,
    UCUM,
    US_CORE_CATEGORY_CS,
)
from sis2fhir.validate.engine import Validator


def _coded(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _days(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "d", "system": UCUM, "code": "d"}


def attendance_observation(rng: random.Random, n: int) -> dict[str, Any]:
    membership = rng.randint(20, 120)
    absent = rng.randint(0, membership * 2) / 4
    excused = min(absent, rng.randint(0, 8) / 2)
    illness = min(excused, rng.randint(0, 4) / 2)
    oss = rng.choice([0, 0, 0, 1, 2])
    rate = round(100 * absent / membership, 1)
    tier = (
        "satisfactory"
        if rate < 5
        else "at-risk"
        if rate < 10
        else "moderate-chronic"
        if rate < 20
        else ("severe-chronic")
    )
    school = f"sch-{n % 25:03d}"
    values = {
        "days-in-membership": membership,
        "days-absent": absent,
        "days-absent-excused": excused,
        "days-absent-unexcused": absent - excused,
        "days-absent-illness": illness,
        "days-absent-oss": oss,
    }
    components: list[dict[str, Any]] = [
        {"code": _coded(ATTENDANCE_CS, code, MEASURES[code]), "valueQuantity": _days(value)}
        for code, value in values.items()
    ]
    components.append(
        {
            "code": _coded(ATTENDANCE_CS, "chronic-absence-tier", MEASURES["chronic-absence-tier"]),
            "valueCodeableConcept": _coded(TIER_CS, tier, TIERS[tier]),
        }
    )
    return {
        "resourceType": "Observation",
        "id": f"att-{n:07d}",
        "meta": {"profile": [OBSERVATION_PROFILE]},
        "identifier": [{"system": "http://sis2fhir.org/fhir/sid/attendance-summary", "value": f"lea|{school}|{n}"}],
        "status": "final",
        "category": [
            _coded(OBSERVATION_CATEGORY_CS, "social-history", "Social History"),
            _coded(US_CORE_CATEGORY_CS, "sdoh", "SDOH"),
        ],
        "code": _coded(ATTENDANCE_CS, "attendance-summary", ATTENDANCE_DISPLAY["attendance-summary"]),
        "subject": {"reference": f"Patient/stu-{n:07d}"},
        "effectivePeriod": {"start": "2025-08-25", "end": "2026-02-27"},
        "issued": "2026-02-28T06:00:00Z",
        "performer": [{"reference": f"Organization/{school}"}],
        "valueQuantity": {"value": rate, "unit": "%", "system": UCUM, "code": "%"},
        "interpretation": [_coded(TIER_CS, tier, TIERS[tier])],
        "component": components,
    }


def rate(label: str, check: Callable[[dict[str, Any]], int], resources: list[dict[str, Any]]) -> float:
    # CPU time of this process: on a shared machine wall time also counts other people's work.
    wall, cpu = time.perf_counter(), time.process_time()
    failures = sum(check(r) for r in resources)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_second = len(resources) / cpu
    print(
        f"{label:<46} {per_second:>8,.0f} resources/s of CPU  ({len(resources)} in {cpu:.2f} s CPU, "
        f"{wall:.2f} s wall; {failures} invalid)"
    )
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    resources = [attendance_observation(rng, n) for n in range(args.count)]

    memoised = Validator()
    plain = Validator(memo=False)
    warm = attendance_observation(random.Random(0), 0)
    memoised.validate(warm)  # compiles the profile once, as a long-running pipeline does
    plain.validate(warm)

    def sis2fhir_errors(validator: Validator) -> Callable[[dict[str, Any]], int]:
        return lambda r: int(any(i.severity == "error" for i in validator.validate(r)))

    def r4b(resource: dict[str, Any]) -> int:
        Observation.model_validate(resource)
        return 0

    print(f"{args.count} distinct school attendance Observations, one core")
    ours = rate("sis2fhir.validate (profile, memo on)", sis2fhir_errors(memoised), resources)
    rate("sis2fhir.validate (profile, memo off)", sis2fhir_errors(plain), resources)
    theirs = rate("fhir.resources R4B Observation.model_validate", r4b, resources)
    print(f"ratio sis2fhir / fhir.resources: {ours / theirs:.1f}x")


if __name__ == "__main__":
    main()
