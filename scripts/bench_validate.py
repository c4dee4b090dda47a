"""Measures sis2fhir's validator against fhir.resources (R4B) on the same attendance Observations, in one run, and
the fast path (validate/templates.py) against the full validator on the resources a sync validates.

Usage: .venv/bin/python scripts/bench_validate.py [--count 20000] [--seed 7] [--only-fast-path]

Every resource is distinct (student, identifiers, day counts, rate, tier), as in a real district run, and made by
the real mapper (map/observation.py), so it is what the sync validates; codings, units and periods recur as they do
in production.
Prints resources per CPU-second for each validator (single-threaded: one core); nothing else is timed.

The fast path is measured on what the real mapper makes (map/observation.py, map/consent.py, map/patient.py: the
narrative, security labels, identifiers), each validated as the sync validates it (disclosure.py), the full way
(default_validator, memo on, as before) and by the fast path, on the same resources in the same run; every verdict
of the fast path is compared with the full one.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fhir.resources.R4B.observation import Observation

from sis2fhir.terminology import OBSERVATION_PROFILE
from sis2fhir.validate.engine import Validator
from sis2fhir.validate.templates import TemplateValidator

T = TypeVar("T")


def rate(label: str, check: Callable[[T], int], resources: Sequence[T]) -> float:
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


Mapped = list[tuple[dict[str, Any], str | None]]


def student_mappers(rng: random.Random, count: int) -> list[Callable[[], Mapped]]:
    """Per student, what maps them as the sync does: (resource, profile) for their Observation, Consent and Patient,
    each validated against what the sync validates it against (disclosure.py)."""
    from datetime import date, timedelta

    from sis2fhir.config import DistrictSettings
    from sis2fhir.map import consent as consent_map
    from sis2fhir.map import observation as observation_map
    from sis2fhir.map import patient as patient_map
    from sis2fhir.map.observation import Measured
    from sis2fhir.measure import HUNDREDTHS, AttendanceSummary, chronic_absence_tier
    from sis2fhir.policy import resolve_policy
    from sis2fhir.records import ConsentRecord, School, Student
    from sis2fhir.terminology import CONSENT_PROFILE

    district = DistrictSettings(
        namespace="urn:sis2fhir:district:bench", state_id_system="urn:oid:2.16.840.1.113883.4.9"
    )
    policy = resolve_policy()
    schools = [School(sourced_id=f"sch-{n:03d}", name=f"School {n}") for n in range(25)]
    start, as_of = date(2025, 8, 25), date(2026, 3, 31)
    measured = Measured(policy, {s.sourced_id: date(2026, 6, 12) for s in schools})
    given = ["Ava", "Noah", "Zoë", "Mateo", "Priya", "Liam", "Aaliyah", "José", "Mei", "Omar"]
    family = ["Nguyen", "Smith", "García", "O'Brien", "Okafor", "Kowalski", "Brightwater", "Haddad", "Lee"]
    out: list[Callable[[], Mapped]] = []
    for n in range(count):
        state_id = f"{1_000_000_000 + n * 7919 % 900_000_000}"
        student = Student(
            sourced_id=f"stu-{n:07d}",
            state_id=state_id,
            given_name=rng.choice(given),
            family_name=rng.choice(family),
            birth_date=date(2010, 1, 1) + timedelta(days=rng.randint(0, 3650)),
            sex=rng.choice(["male", "female", "other", "unspecified"]),
        )
        school = schools[n % 25]
        membership = rng.randint(20, 140)
        absent_h = rng.randint(0, membership * HUNDREDTHS // 4 // 25) * 25
        excused_h = min(absent_h, rng.randint(0, 8) * 50)
        summary = AttendanceSummary(
            student_sourced_id=student.sourced_id,
            school_sourced_id=school.sourced_id,
            school_year=2026,
            period_start=start,
            as_of=as_of,
            days_in_membership=membership,
            days_absent_h=absent_h,
            excused_h=excused_h,
            unexcused_h=absent_h - excused_h,
            illness_h=min(excused_h, rng.randint(0, 4) * 50),
            oss_h=rng.choice([0, 0, 0, 100, 200]),
            tier=chronic_absence_tier(absent_h, membership, policy),
        )
        consent = ConsentRecord(
            consent_id=f"CNS-{n:07d}",
            student_sourced_id=student.sourced_id,
            grantor_name="Parent",
            grantor_relationship="mother",
            recipient_organization="1234567893",
            recipient_name="Riverbend Pediatrics",
            purpose="treatment",
            data_scope=("attendance",),
            signed=start + timedelta(days=rng.randint(0, 30)),
            period_start=start,
            period_end=date(2026, 6, 30),
            status="active",
            revoked=None,
            document_url="",
            file="consents.csv",
            line=n + 2,
        )

        def mapped(summary: AttendanceSummary = summary, student: Student = student, school: School = school,
                   consent: ConsentRecord = consent) -> Mapped:  # fmt: skip
            return [
                (
                    observation_map.attendance_observation(summary, student, school, district, measured),
                    OBSERVATION_PROFILE,
                ),
                (consent_map.ferpa_consent(consent, student, None, district), CONSENT_PROFILE),
                (patient_map.student_patient(student, district), None),
            ]

        out.append(mapped)
    return out


def fast_path(count: int, seed: int) -> None:
    """Each student's resources validated right after they are mapped, as the sync does (a resource just built is
    in the CPU's caches; the same resources validated later from a list of thousands are not). What validating
    costs is the CPU time of mapping and validating less that of mapping alone, measured in the same run."""
    students = student_mappers(random.Random(seed), count)
    full = Validator()
    fast = TemplateValidator(Validator())
    plain = Validator(memo=False)
    for mapped in students[:100]:  # compiled, and the memo warm, as in a long-running sync
        for resource, profile in mapped():
            full.validate(resource, profile)
    resources = 3 * len(students)

    def timed(validate: Callable[[dict[str, Any], str | None], Any] | None) -> float:
        cpu = time.process_time()
        for mapped in students:
            for resource, profile in mapped():
                if validate is not None:
                    validate(resource, profile)
        return time.process_time() - cpu

    mapping = min(timed(None) for _ in range(2))
    full_cpu = timed(full.validate) - mapping
    fast_cpu = timed(fast.validate) - mapping
    print(f"{resources} distinct resources as the sync maps them (Observation, Consent, Patient per student), one core")
    print(f"mapping alone (subtracted)                     {resources / mapping:>8,.0f} resources/s of CPU")
    print(f"full validator (memo on: what the sync used)   {resources / full_cpu:>8,.0f} resources/s of CPU")
    print(f"fast path (templates; the full way on a miss)  {resources / fast_cpu:>8,.0f} resources/s of CPU")
    print(
        f"fast path: {fast.hits} by template, {fast.full} the full way ({fast.learnt} templates learnt); "
        f"ratio fast / full: {full_cpu / fast_cpu:.1f}x"
    )
    differ = sum(
        fast.validate(resource, profile) != plain.validate(resource, profile)
        for mapped in students[:1000]
        for resource, profile in mapped()
    )
    print(f"verdicts compared with the full validator (memo off) on the first 3000 resources: {differ} differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only-fast-path", action="store_true", help="measure only the fast path against the full")
    args = parser.parse_args()
    fast_path(args.count, args.seed)
    if args.only_fast_path:
        return
    # the real mapper's Observations (map/observation.py), as the sync validates them against the profile
    resources = [
        resource
        for mapped in student_mappers(random.Random(args.seed), args.count)
        for resource, profile in mapped()
        if profile == OBSERVATION_PROFILE
    ]

    memoised = Validator()
    plain = Validator(memo=False)
    memoised.validate(resources[0])  # compiles the profile once, as a long-running pipeline does
    plain.validate(resources[0])

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
