"""ORU^R01 names its consented recipient where HIEs route and restrict: MSH-5/6 from the configuration and
OBR-28 (Result Copies To, XCN) with the recipient's identifier and name; parsed with hl7apy STRICT."""

from __future__ import annotations

from datetime import datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from sis2fhir.config import Settings
from sis2fhir.map.oru import CopyTo, V2Settings, build_oru_r01, v2_settings
from sis2fhir.terminology import NPI_SYSTEM
from tests.map.test_oru import HIE, SCHOOL, SENT, parse_both, student, summary, text


def test_obr28_names_the_npi_recipient_with_its_name() -> None:
    to = CopyTo("1234567893", "Riverside Pediatrics & Teens", NPI_SYSTEM)
    er7 = build_oru_r01(summary(), student(), SCHOOL, HIE, "M20", SENT, to)
    msg = parse_both(er7)
    xcn = msg.segment("OBR")[28][0]
    assert str(xcn[0]) == "1234567893"
    assert text(msg, xcn[1]) == "Riverside Pediatrics & Teens"
    assert [str(s) for s in xcn[8]] == ["NPI", "2.16.840.1.113883.4.6", "ISO"]
    assert str(xcn[12]) == "NPI"
    strict = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    obr = strict.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.OBR
    assert obr.obr_28.xcn_1.to_er7() == "1234567893"
    assert obr.obr_28.xcn_9.hd_2.to_er7() == "2.16.840.1.113883.4.6"
    assert obr.obr_7.to_er7() == "20240826" and obr.obr_8.to_er7() == "20250228"


def test_obr28_with_an_hie_identifier_under_an_oid() -> None:
    to = CopyTo("HIE-77", "", "urn:oid:2.16.840.1.113883.3.999.9")
    msg = parse_both(build_oru_r01(summary(), student(), SCHOOL, HIE, "M21", SENT, to))
    xcn = msg.segment("OBR")[28][0]
    assert str(xcn[0]) == "HIE-77"
    assert [str(s) for s in xcn[8]] == ["", "2.16.840.1.113883.3.999.9", "ISO"]
    assert str(xcn[12]) == "XX"


def test_hl7_section_fills_msh_and_a_destination_overrides_it() -> None:
    settings = Settings(
        hl7={
            "sending_application": "SISADAPTER",
            "sending_facility": "LEA-42",
            "receiving_application": "CRISP",
            "receiving_facility": "CRISP",
        }
    )
    v2 = v2_settings(settings, {"receiving_facility": "1234567893"})
    msh = parse_both(build_oru_r01(summary(), student(), SCHOOL, v2, "M22", SENT)).segment("MSH")
    assert [str(msh[i]) for i in (3, 4, 5, 6)] == ["SISADAPTER", "LEA-42", "CRISP", "1234567893"]
    assert v2.empty_routing_fields() == []


def test_empty_routing_fields_are_named() -> None:
    v2 = V2Settings(state_id_authority="STATE")  # the defaults: only MSH-3 (SIS2FHIR)
    assert v2.empty_routing_fields() == ["sending_facility", "receiving_application", "receiving_facility"]


@pytest.mark.parametrize("value", ["A|B", "A~B", "A\\B"])
def test_hl7_section_values_that_cannot_be_sent_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        v2_settings(Settings(hl7={"receiving_facility": value}), {})


def test_message_time_is_obr22_and_not_the_period() -> None:
    later = datetime(2025, 4, 2, 9, 0, 0)
    obr = parse_both(build_oru_r01(summary(), student(), SCHOOL, HIE, "M23", later)).segment("OBR")
    assert str(obr[22]) == "20250402090000"
    assert str(obr[8]) == "20250228"
