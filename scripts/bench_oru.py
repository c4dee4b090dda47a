"""Benchmark: ORU^R01 messages built per second by sis2fhir's hand-built ER7 and by hl7apy, in the same run.

    .venv/bin/python scripts/bench_oru.py [--n 20000] [--n-hl7apy 1000]

Both builders get the same summaries and produce the same segments and fields (checked on a sample with
python-hl7 before timing); hl7apy builds through its object model and serialises with to_er7().
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

import hl7
from hl7apy.core import Message

from sis2fhir.map.oru import (
    ATTSUM,
    ATTSUM_TEXT,
    SEX_TO_V2_0001,
    UCUM_DAY,
    UCUM_PERCENT,
    V2Settings,
    build_oru_r01,
    escape,
    hundredths_text,
    percent_text,
    v2_date,
    v2_datetime,
)
from sis2fhir.measure import AttendanceSummary
from sis2fhir.records import School, Student
from sis2fhir.terminology import ATTENDANCE_DISPLAY, ATTENDANCE_SUMMARY, MEASURES, TIERS

Case = tuple[AttendanceSummary, Student, School, str]


def cases(n: int, seed: int = 7) -> list[Case]:
    rng = random.Random(seed)
    school = School(sourced_id="sch-1", name="Lincoln Elementary & Middle", identifier="0601234")
    out = []
    for i in range(n):
        membership = rng.randint(0, 150)
        absent = rng.randint(0, membership * 30) if membership else 0
        excused = rng.randint(0, absent)
        tier = "insufficient-data" if membership < 10 else rng.choice(sorted(TIERS))
        summary = AttendanceSummary(
            f"stu-{i}", "sch-1", 2025, date(2024, 8, 26), date(2025, 2, 28), membership,
            absent, excused, absent - excused, excused // 2, 0, tier,
        )  # fmt: skip
        student = Student(
            sourced_id=f"stu-{i}", state_id=f"S{i:08d}", given_name="Jane", family_name=f"O'Doe^{i}",
            birth_date=date(2014, 5, 12), sex=rng.choice(["male", "female", "other", "unspecified"]),
        )  # fmt: skip
        out.append((summary, student, school, f"M{i:08d}"))
    return out


def build_with_hl7apy(s: AttendanceSummary, st: Student, sc: School, v2: V2Settings, cid: str, at: datetime) -> str:
    """The same ORU^R01 through hl7apy's object model (fields set one by one, then to_er7)."""
    cs = v2.observation_coding_system
    as_of = v2_date(s.as_of)
    m = Message("ORU_R01", version="2.5.1")
    m.msh.msh_3 = v2.sending_application
    m.msh.msh_4 = v2.sending_facility
    m.msh.msh_5 = v2.receiving_application
    m.msh.msh_6 = v2.receiving_facility
    m.msh.msh_7 = v2_datetime(at)
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = cid
    m.msh.msh_11 = v2.processing_id
    m.msh.msh_15 = "AL"
    m.msh.msh_16 = "NE"
    m.msh.msh_18 = v2.character_set
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    pid.pid_3 = f"{escape(st.state_id)}^^^{v2.state_id_authority}^{v2.state_id_type}"
    pid.pid_5 = f"{escape(st.family_name)}^{escape(st.given_name)}^{escape(st.middle_name)}^^^^L"
    if st.birth_date:
        pid.pid_7 = v2_date(st.birth_date)
    pid.pid_8 = SEX_TO_V2_0001.get(st.sex, "")
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.obr
    obr.obr_1 = "1"
    filler = escape(f"ATT-{s.school_year}-{s.school_sourced_id}-{s.student_sourced_id}-{as_of}")
    obr.obr_3 = f"{filler}^{v2.sending_application}"
    obr.obr_4 = f"{ATTSUM}^{ATTSUM_TEXT}^{cs}"
    obr.obr_7 = as_of
    obr.obr_22 = v2_datetime(at)
    obr.obr_25 = "F"
    performer = f"{escape(sc.name)}^^^^^^^^^{escape(sc.identifier)}"
    rows: list[tuple[str, str, str, str, str]] = [
        ("NM", "days-in-membership", MEASURES["days-in-membership"], str(s.days_in_membership), UCUM_DAY)
    ]
    for code, hundredths in (
        ("days-absent", s.days_absent_h),
        ("days-absent-excused", s.excused_h),
        ("days-absent-unexcused", s.unexcused_h),
        ("days-absent-illness", s.illness_h),
        ("days-absent-oss", s.oss_h),
    ):
        rows.append(("NM", code, MEASURES[code], hundredths_text(hundredths), UCUM_DAY))
    if s.days_in_membership > 0:
        rate = percent_text(s.days_absent_h, s.days_in_membership)
        rows.append(("NM", ATTENDANCE_SUMMARY, ATTENDANCE_DISPLAY[ATTENDANCE_SUMMARY], rate, UCUM_PERCENT))
    rows.append(
        (
            "CWE",
            "chronic-absence-tier",
            MEASURES["chronic-absence-tier"],
            f"{s.tier}^{TIERS[s.tier]}^{cs}",
            "",
        )
    )
    for n, (vt, code, display, value, unit) in enumerate(rows, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(n)
        obx.obx_2 = vt
        obx.obx_3 = f"{code}^{display}^{cs}"
        obx.obx_5 = value
        if unit:
            obx.obx_6 = unit
        obx.obx_11 = "F"
        obx.obx_14 = as_of
        obx.obx_23 = performer
    return m.to_er7()


def same_fields(ours: str, theirs: str) -> bool:
    a, b = hl7.parse(ours), hl7.parse(theirs)
    if len(a) != len(b):
        return False
    for seg_a, seg_b in zip(a, b, strict=True):
        fields_a = [str(f) for f in seg_a]
        fields_b = [str(f) for f in seg_b]
        width = max(len(fields_a), len(fields_b))
        fields_a += [""] * (width - len(fields_a))
        fields_b += [""] * (width - len(fields_b))
        if fields_a != fields_b:
            return False
    return True


def rate(build: Callable[..., str], batch: list[Case], v2: V2Settings, at: datetime) -> float:
    start = time.perf_counter()
    for summary, student, school, cid in batch:
        build(summary, student, school, v2, cid, at)
    return len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="messages built by sis2fhir")
    parser.add_argument("--n-hl7apy", type=int, default=300, help="messages built by hl7apy (slow)")
    args = parser.parse_args()
    v2 = V2Settings(
        sending_facility="LEA",
        receiving_application="HIE",
        receiving_facility="HIE",
        state_id_authority="LEA",
    )
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    batch = cases(max(args.n, args.n_hl7apy))
    sample = batch[:50]
    if not all(
        same_fields(build_oru_r01(*c[:3], v2, c[3], at), build_with_hl7apy(*c[:3], v2, c[3], at)) for c in sample
    ):
        raise SystemExit("the two builders disagree on the sample: fix the benchmark before timing it")
    ours = rate(build_oru_r01, batch[: args.n], v2, at)
    theirs = rate(build_with_hl7apy, batch[: args.n_hl7apy], v2, at)
    print(f"sis2fhir build_oru_r01 : {ours:10,.0f} messages/s  ({args.n:,} messages)")
    print(f"hl7apy Message builder : {theirs:10,.0f} messages/s  ({args.n_hl7apy:,} messages)")
    print(f"ratio                  : {ours / theirs:10,.1f}x  (goal 10x)")


if __name__ == "__main__":
    main()
