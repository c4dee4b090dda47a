"""ORU^R01 for HIEs: every message variant parsed by hl7apy (STRICT) and python-hl7, read as an HIE reads it.

hl7apy runs at VALIDATION_LEVEL.STRICT and then `Message.validate()`: that checks the ORU_R01 v2.5.1
structure (segment order, groups, required segments and fields, cardinality, datatype shapes) but
not NM contents or table values, so the values a receiver uses are asserted here field by field.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from pydantic import ValidationError

from sis2fhir.map.oru import OruError, V2Settings, build_oru_r01, escape
from sis2fhir.measure import AttendanceSummary
from sis2fhir.records import School, Student
from sis2fhir.terminology import ABSENCE_RATE_DISPLAY, ATTENDANCE_SUMMARY, MEASURES, TIERS

AS_OF = date(2025, 2, 28)
SENT = datetime(2025, 3, 1, 12, 0, 0)

HIE = V2Settings(
    sending_application="SISADAPTER",
    sending_facility="LEA",
    receiving_application="HIE",
    receiving_facility="HIE",
    state_id_authority="MDSTATE",
)


def summary(
    membership: int = 120,
    absent_h: int = 1250,
    excused_h: int = 500,
    unexcused_h: int = 750,
    illness_h: int = 300,
    oss_h: int = 100,
    tier: str = "moderate-chronic",
) -> AttendanceSummary:
    return AttendanceSummary(
        student_sourced_id="stu-1",
        school_sourced_id="sch-1",
        school_year=2025,
        period_start=date(2024, 8, 26),
        as_of=AS_OF,
        days_in_membership=membership,
        days_absent_h=absent_h,
        excused_h=excused_h,
        unexcused_h=unexcused_h,
        illness_h=illness_h,
        oss_h=oss_h,
        tier=tier,
    )


def student(**kw: Any) -> Student:
    base: dict[str, Any] = {
        "sourced_id": "stu-1",
        "state_id": "S123",
        "given_name": "Jane",
        "family_name": "Doe",
        "birth_date": date(2014, 5, 12),
        "sex": "female",
    }
    base.update(kw)
    return Student(**base)


SCHOOL = School(sourced_id="sch-1", name="Lincoln Elementary", identifier="0601234")


def parse_both(er7: str) -> hl7.Message:
    """Parse with hl7apy STRICT (and validate the structure) and with python-hl7; return the latter."""
    assert "\n" not in er7 and er7.count("\r") >= 3
    strict = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert strict.validate() is True
    assert strict.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    observations = strict.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.ORU_R01_OBSERVATION
    loose = hl7.parse(er7)
    # both parsers see the same OBX rows
    assert [o.OBX.obx_3.obx_3_1.to_er7() for o in observations] == [str(seg[3][0][0]) for seg in loose.segments("OBX")]
    return loose


def obx_by_code(msg: hl7.Message) -> dict[str, hl7.Segment]:
    return {str(seg[3][0][0]): seg for seg in msg.segments("OBX")}


def text(msg: hl7.Message, value: Any) -> str:
    return msg.unescape(str(value))


def test_hie_reads_every_measure_with_its_unit() -> None:
    msg = parse_both(build_oru_r01(summary(), student(), SCHOOL, HIE, "M0001", SENT))
    obx = obx_by_code(msg)
    days = {
        "days-in-membership": "120",
        "days-absent": "12.5",
        "days-absent-excused": "5",
        "days-absent-unexcused": "7.5",
        "days-absent-illness": "3",
        "days-absent-oss": "1",
    }
    for code, value in days.items():
        seg = obx[code]
        assert str(seg[2]) == "NM"
        assert str(seg[3][0][1]) == MEASURES[code]
        assert str(seg[3][0][2]) == "L"
        assert str(seg[5]) == value
        assert str(seg[6]) == "d^day^UCUM"
        assert str(seg[11]) == "F"
        assert str(seg[14]) == "20250228"
    rate = obx[ATTENDANCE_SUMMARY]
    assert (str(rate[2]), str(rate[5]), str(rate[6])) == ("NM", "10.42", "%^percent^UCUM")  # 12.5 / 120
    assert str(rate[3][0][1]) == ABSENCE_RATE_DISPLAY  # "10.42 %" reads as absence, not attendance
    assert str(rate[3][0][1]).startswith("Absence rate")
    tier = obx["chronic-absence-tier"]
    assert str(tier[2]) == "CWE"
    assert [str(c) for c in tier[5][0]] == ["moderate-chronic", TIERS["moderate-chronic"], "L"]
    assert [int(str(seg[1])) for seg in msg.segments("OBX")] == list(range(1, 9))


def test_header_patient_and_order_fields() -> None:
    msg = parse_both(build_oru_r01(summary(), student(), SCHOOL, HIE, "M0001", SENT))
    msh = msg.segment("MSH")
    assert str(msh[3]) == "SISADAPTER" and str(msh[4]) == "LEA"
    assert str(msh[5]) == "HIE" and str(msh[6]) == "HIE"
    assert str(msh[7]) == "20250301120000"
    assert str(msh[10]) == "M0001"
    assert (str(msh[11]), str(msh[12]), str(msh[15]), str(msh[16])) == ("P", "2.5.1", "AL", "NE")
    pid = msg.segment("PID")
    assert [str(c) for c in pid[3][0]] == ["S123", "", "", "MDSTATE", "SR"]
    assert str(pid[5][0][0]) == "Doe" and str(pid[5][0][1]) == "Jane"
    assert str(pid[7]) == "20140512"
    assert str(pid[8]) == "F"
    obr = msg.segment("OBR")
    assert [str(c) for c in obr[4][0]] == ["ATTSUM", "School attendance summary", "L"]
    assert (str(obr[7]), str(obr[8])) == ("20240826", "20250228")  # the period: school year start to as-of
    assert str(obr[22]) == "20250301120000"
    assert str(obr[25]) == "F"
    assert len(obr) == 26  # no recipient given: no OBR-28 copies-to (tests/map/test_oru_recipient.py)
    # the school performed the observation: OBX-23 XON name and organization identifier
    for seg in msg.segments("OBX"):
        assert str(seg[23][0][0]) == "Lincoln Elementary"
        assert str(seg[23][0][9]) == "0601234"


def test_name_with_delimiters_is_escaped_and_reads_back_unchanged() -> None:
    tricky = student(family_name="O'Brien^Smith & Co", given_name="Ann~Marie", middle_name="a|b\\c")
    school = School(sourced_id="sch-1", name="Lincoln Elementary & Middle")
    er7 = build_oru_r01(summary(), tricky, school, HIE, "M0002", SENT)
    assert "O'Brien\\S\\Smith \\T\\ Co" in er7
    msg = parse_both(er7)
    pid = msg.segment("PID")
    assert len(pid[5][0]) == 7  # family^given^middle^^^^L: the escaped name did not split
    assert text(msg, pid[5][0][0]) == "O'Brien^Smith & Co"
    assert text(msg, pid[5][0][1]) == "Ann~Marie"
    assert text(msg, pid[5][0][2]) == "a|b\\c"
    assert str(pid[5][0][6]) == "L"
    assert text(msg, msg.segment("OBX")[23]) == "Lincoln Elementary & Middle"
    strict = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    xpn = strict.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.PID.pid_5
    assert xpn.xpn_1.fn_1.to_er7() == "O'Brien\\S\\Smith \\T\\ Co"
    assert xpn.xpn_2.to_er7() == "Ann\\R\\Marie"


def test_missing_birth_date_and_sex_leave_the_fields_empty() -> None:
    msg = parse_both(build_oru_r01(summary(), student(birth_date=None, sex=""), SCHOOL, HIE, "M3", SENT))
    pid = msg.segment("PID")
    assert str(pid[7]) == ""
    assert str(pid[8]) == ""
    assert str(pid[3][0][0]) == "S123"


@pytest.mark.parametrize(
    ("oneroster", "table_0001"),
    [("male", "M"), ("female", "F"), ("other", "O"), ("unspecified", "U"), ("Female", "F"), ("x", "")],
)
def test_sex_maps_to_hl7_table_0001(oneroster: str, table_0001: str) -> None:
    msg = parse_both(build_oru_r01(summary(), student(sex=oneroster), SCHOOL, HIE, "M4", SENT))
    assert str(msg.segment("PID")[8]) == table_0001


def test_insufficient_data_sends_the_tier_and_no_rate() -> None:
    empty = summary(0, 0, 0, 0, 0, 0, tier="insufficient-data")
    msg = parse_both(build_oru_r01(empty, student(), SCHOOL, HIE, "M5", SENT))
    obx = obx_by_code(msg)
    assert ATTENDANCE_SUMMARY not in obx
    assert str(obx["days-in-membership"][5]) == "0"
    assert str(obx["days-absent"][5]) == "0"
    assert [str(c) for c in obx["chronic-absence-tier"][5][0]] == [
        "insufficient-data",
        TIERS["insufficient-data"],
        "L",
    ]


def test_short_membership_keeps_its_rate_with_insufficient_data_tier() -> None:
    few = summary(5, 100, 100, 0, 0, 0, tier="insufficient-data")
    obx = obx_by_code(parse_both(build_oru_r01(few, student(), SCHOOL, HIE, "M6", SENT)))
    assert str(obx[ATTENDANCE_SUMMARY][5]) == "20"
    assert str(obx["chronic-absence-tier"][5][0][0]) == "insufficient-data"


def test_partial_days_keep_their_hundredths() -> None:
    s = summary(absent_h=1233, excused_h=1233, unexcused_h=0, illness_h=33, oss_h=0, tier="moderate-chronic")
    obx = obx_by_code(parse_both(build_oru_r01(s, student(), SCHOOL, HIE, "M7", SENT)))
    assert str(obx["days-absent"][5]) == "12.33"
    assert str(obx["days-absent-illness"][5]) == "0.33"
    assert str(obx[ATTENDANCE_SUMMARY][5]) == "10.28"  # 12.33 / 120 = 10.275 %


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_every_tier_is_a_valid_cwe(tier: str) -> None:
    s = summary(tier=tier)
    obx = obx_by_code(parse_both(build_oru_r01(s, student(), SCHOOL, HIE, "M8", SENT)))
    assert [str(c) for c in obx["chronic-absence-tier"][5][0]] == [tier, TIERS[tier], "L"]
    # OBX-8 abnormal flag (table 0078) on the tier and the rate: A for chronic absence, N below it, none without data
    flag = {"moderate-chronic": "A", "severe-chronic": "A", "satisfactory": "N", "at-risk": "N"}.get(tier, "")
    assert str(obx["chronic-absence-tier"][8]) == flag
    if ATTENDANCE_SUMMARY in obx:
        assert str(obx[ATTENDANCE_SUMMARY][8]) == flag
    assert all(str(obx[code][8]) == "" for code in MEASURES if code != "chronic-absence-tier")
    assert all(str(seg[11]) == "F" for seg in obx.values())


def test_settings_with_oids_processing_id_and_local_coding_system() -> None:
    v2 = V2Settings(
        sending_application="SISADAPTER^2.16.840.1.113883.3.999.1^ISO",
        receiving_application="CRISP",
        processing_id="T",
        state_id_authority="MDSTATE&2.16.840.1.113883.3.999.2&ISO",
        state_id_type="PI",
        observation_coding_system="99ATT",
    )
    when = datetime(2025, 3, 1, 7, 30, 5, tzinfo=timezone(timedelta(hours=-5)))
    msg = parse_both(build_oru_r01(summary(), student(), School("sch-1", "Lincoln"), v2, "M9", when))
    msh = msg.segment("MSH")
    assert [str(c) for c in msh[3][0]] == ["SISADAPTER", "2.16.840.1.113883.3.999.1", "ISO"]
    assert str(msh[7]) == "20250301073005-0500"
    assert str(msh[11]) == "T"
    cx = msg.segment("PID")[3][0]
    assert [str(s) for s in cx[3]] == ["MDSTATE", "2.16.840.1.113883.3.999.2", "ISO"]
    assert str(cx[4]) == "PI"
    for seg in msg.segments("OBX"):
        assert str(seg[3][0][2]) == "99ATT"
        assert str(seg[23]) == "Lincoln"  # no school identifier: the name alone
    assert str(msg.segment("OBR")[4][0][2]) == "99ATT"


def test_student_without_state_id_is_refused_without_naming_them() -> None:
    with pytest.raises(OruError, match="stu-1 has no state student id") as err:
        build_oru_r01(summary(), student(state_id=""), SCHOOL, HIE, "M10", SENT)
    assert "Jane" not in str(err.value) and "Doe" not in str(err.value)


@pytest.mark.parametrize("control_id", ["", "X" * 21, "A|B", "A^B"])
def test_bad_control_id_is_refused(control_id: str) -> None:
    with pytest.raises(OruError, match="control id"):
        build_oru_r01(summary(), student(), SCHOOL, HIE, control_id, SENT)


@pytest.mark.parametrize("field", ["sending_facility", "receiving_application"])
def test_settings_refuse_field_separators(field: str) -> None:
    with pytest.raises(ValidationError):
        V2Settings(state_id_authority="LEA", **{field: "A|B"})
    with pytest.raises(ValidationError):
        V2Settings(state_id_authority="A^B")  # inside CX-4 the parts are split by "&"


def test_escape_covers_every_delimiter() -> None:
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert escape("plain") == "plain"
    assert escape("line\r\nbreak") == "line\\X0D\\\\X0A\\break"
