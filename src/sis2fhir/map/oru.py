"""HL7 v2.5.1 ORU^R01 for HIEs: one student's year-to-date attendance summary as ER7 text, built by hand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from sis2fhir.config import Settings
from sis2fhir.measure import AttendanceSummary, rate_percent_hundredths
from sis2fhir.records import School, Student
from sis2fhir.terminology import ABSENCE_RATE_DISPLAY, ATTENDANCE_SUMMARY, MEASURES, NPI_SYSTEM, TIER_FLAG, TIERS

# HL7 table 0001 (Administrative Sex) for the OneRoster demographics `sex` values (1.1: male|female;
# 1.2 adds other|unspecified). Anything else is left out of PID-8 rather than guessed.
SEX_TO_V2_0001: Final[dict[str, str]] = {"male": "M", "female": "F", "other": "O", "unspecified": "U"}

# Universal service id of the OBR: the attendance summary as an HIE sees it in its result list.
ATTSUM: Final = "ATTSUM"
ATTSUM_TEXT: Final = "School attendance summary"

UCUM_DAY: Final = "d^day^UCUM"
UCUM_PERCENT: Final = "%^percent^UCUM"

# Escape sequences of HL7 v2 section 2.7: the escape character must be escaped too, and a CR inside
# a field would end the segment, so CR and LF travel as hexadecimal escapes.
_ESCAPES: Final = str.maketrans(
    {
        "\\": "\\E\\",
        "|": "\\F\\",
        "^": "\\S\\",
        "&": "\\T\\",
        "~": "\\R\\",
        "\r": "\\X0D\\",
        "\n": "\\X0A\\",
    }
)
_SPECIAL: Final = frozenset("\\|^&~\r\n")

# Characters that may never appear in a configured value; "^" and "&" are allowed where the value is
# itself a composite (an HD with namespace^universal id^type, or one inside a CX as namespace&id&type).
_HD_FORBIDDEN: Final = r"^[^|~\\&\r\n]*$"
_SUB_HD_FORBIDDEN: Final = r"^[^|~\\^\r\n]*$"
_CODE: Final = r"^[A-Za-z0-9_.\-]+$"

HdText = Annotated[str, Field(pattern=_HD_FORBIDDEN, max_length=227)]


class OruError(ValueError):
    """The summary cannot be sent as an ORU^R01 (the message says why; it names no person)."""


class V2Settings(BaseModel):
    """Who sends to whom, and how identifiers and codes are labelled in the HIE feed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # MSH-3..6 are HD: a namespace id, or "NAME^2.16.840.1...^ISO" when the HIE asks for OIDs.
    sending_application: HdText = "SIS2FHIR"
    sending_facility: HdText = ""
    receiving_application: HdText = ""
    receiving_facility: HdText = ""
    processing_id: Literal["P", "T", "D"] = "P"  # HL7 table 0103: production, training, debugging
    # PID-3.4 assigning authority of the state student id; inside a CX its parts are split by "&".
    state_id_authority: Annotated[str, Field(min_length=1, pattern=_SUB_HD_FORBIDDEN, max_length=227)]
    state_id_type: Annotated[str, Field(pattern=_CODE)] = "SR"  # table 0203: SR = state registry id
    # Name of coding system (table 0396) for our own codes: "L" local, or the "99zzz" the HIE assigned.
    observation_coding_system: Annotated[str, Field(pattern=_CODE)] = "L"
    # MSH-18 (table 0211). Names are not ASCII everywhere; the MLLP client sends UTF-8.
    character_set: Literal["", "UNICODE UTF-8", "ASCII", "8859/1"] = "UNICODE UTF-8"

    def empty_routing_fields(self) -> list[str]:
        """The MSH-3..6 settings left empty: an HIE routes and restricts on them, so network delivery needs all."""
        fields = ("sending_application", "sending_facility", "receiving_application", "receiving_facility")
        return [name for name in fields if not getattr(self, name).strip()]


# MSH-3..6 by their configuration names, as an HIE interface analyst knows them
MSH_FIELDS: Final[dict[str, str]] = {
    "sending_application": "MSH-3",
    "sending_facility": "MSH-4",
    "receiving_application": "MSH-5",
    "receiving_facility": "MSH-6",
}


def v2_settings(settings: Settings, route_v2: Mapping[str, Any]) -> V2Settings:
    """The V2Settings of one MLLP destination: the district's PID-3.4 authority, then the `hl7:` section (set
    values only), then the destination's own `v2:`; pydantic's ValidationError when a value cannot be sent."""
    common = {k: v for k, v in settings.hl7.model_dump().items() if v}
    return V2Settings(**{"state_id_authority": settings.district.state_id_authority, **common, **route_v2})


@dataclass(frozen=True, slots=True)
class CopyTo:
    """The consented recipient, named in OBR-28 (Result Copies To) of every message: an HIE routes and restricts
    on it. `system` is the identifier's FHIR system (the NPI's by default, as in the configuration)."""

    identifier: str
    name: str = ""
    system: str = NPI_SYSTEM

    def xcn(self) -> str:
        """XCN: 1 id, 2 family name (the organisation's name, as HIEs fill it for a practice), 9 assigning
        authority (HD, sub-components), 13 identifier type (table 0203: NPI, or XX organisation identifier)."""
        if self.system == NPI_SYSTEM:
            authority, kind = "NPI&2.16.840.1.113883.4.6&ISO", "NPI"
        else:
            oid = self.system.removeprefix("urn:oid:")
            authority = f"&{escape(oid)}&ISO" if self.system.startswith("urn:oid:") else f"&{escape(self.system)}&URI"
            kind = "XX"
        return f"{escape(self.identifier)}^{escape(self.name)}^^^^^^^{authority}^^^^{kind}"


def escape(text: str) -> str:
    """`text` with the HL7 delimiters replaced by their escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\)."""
    if _SPECIAL.isdisjoint(text):
        return text
    return text.translate(_ESCAPES)


def v2_date(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def v2_datetime(moment: datetime) -> str:
    """DTM to the second, with the UTC offset when the time carries one (+HHMM / -HHMM)."""
    text = f"{moment.year:04d}{moment.month:02d}{moment.day:02d}{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    offset = moment.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        minutes = abs(minutes)
        text += f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    return text


def hundredths_text(hundredths: int) -> str:
    """An NM from a count of hundredths, without trailing zeros: 1200 -> 12, 1250 -> 12.5, 833 -> 8.33."""
    whole, part = divmod(hundredths, 100)
    if not part:
        return str(whole)
    return f"{whole}.{part:02d}".rstrip("0")


def percent_text(days_absent_h: int, days_in_membership: int) -> str:
    """The absence rate in percent to two decimals (measure.rate_percent_hundredths), as ER7 text."""
    scaled = rate_percent_hundredths(days_absent_h, days_in_membership)
    if scaled is None:
        raise ValueError("no rate without a day in membership")
    return hundredths_text(scaled)


def _check_control_id(control_id: str) -> None:
    # MSH-10 is ST, at most 20 characters in v2.5.1; the receiver echoes it in MSA-2.
    if not control_id or len(control_id) > 20 or not _SPECIAL.isdisjoint(control_id):
        raise OruError(f"message control id {control_id!r} must be 1 to 20 characters without HL7 delimiters")


def build_oru_r01(
    summary: AttendanceSummary,
    student: Student,
    school: School,
    v2: V2Settings,
    control_id: str,
    message_time: datetime,
    copy_to: CopyTo | None = None,
) -> str:
    """The ORU^R01 (v2.5.1) for one student's attendance summary: ER7 text, segments separated by CR.

    OBR-7 and OBR-8 (observation date/time and end date/time) are the period the numbers cover: the first day of
    the school year and the as-of date. OBR-28 names the consented recipient (`copy_to`) when given."""
    _check_control_id(control_id)
    if not student.state_id:
        raise OruError(f"student {student.sourced_id} has no state student id; PID-3 needs one to match the patient")
    cs = v2.observation_coding_system
    as_of = v2_date(summary.as_of)
    msh = (
        f"MSH|^~\\&|{v2.sending_application}|{v2.sending_facility}|{v2.receiving_application}|"
        f"{v2.receiving_facility}|{v2_datetime(message_time)}||ORU^R01^ORU_R01|{control_id}|"
        f"{v2.processing_id}|2.5.1|||AL|NE||{v2.character_set}"
    ).rstrip("|")
    birth = v2_date(student.birth_date) if student.birth_date else ""
    sex = SEX_TO_V2_0001.get(student.sex.strip().lower(), "")
    name = ""
    if student.family_name or student.given_name or student.middle_name:  # XPN-7 L: legal name
        name = f"{escape(student.family_name)}^{escape(student.given_name)}^{escape(student.middle_name)}^^^^L"
    pid = f"PID|1||{escape(student.state_id)}^^^{v2.state_id_authority}^{v2.state_id_type}||{name}||{birth}|{sex}"
    # OBR-3: one filler order number per student, school, year and as-of date, so a resend of the same
    # summary is recognisably the same result and next month's summary is a new one.
    filler = escape(f"ATT-{summary.school_year}-{summary.school_sourced_id}-{summary.student_sourced_id}-{as_of}")
    # OBR-7 the period's start, OBR-8 its end, OBR-22 when the result was reported, OBR-25 F (final),
    # OBR-28 the copies-to: the consented recipient
    fields = [""] * 29
    fields[0] = "OBR"
    fields[1] = "1"
    fields[3] = f"{filler}^{v2.sending_application.split('^', 1)[0]}"
    fields[4] = f"{ATTSUM}^{ATTSUM_TEXT}^{cs}"
    fields[7] = v2_date(summary.period_start)
    fields[8] = as_of
    fields[22] = v2_datetime(message_time)
    fields[25] = "F"
    fields[28] = copy_to.xcn() if copy_to is not None else ""
    obr = "|".join(fields).rstrip("|")
    performer = escape(school.name)
    if school.identifier:
        performer += f"^^^^^^^^^{escape(school.identifier)}"
    tail = f"|||||F|||{as_of}|||||||||{performer}"

    segments = [msh, pid, obr]
    set_id = 0

    # OBX-8 (HL7 table 0078, the same A / N as FHIR's v3 ObservationInterpretation) on the rate and the tier, so a
    # results grid flags chronic absence; insufficient data is neither, and gets no flag.
    flagged = tail.replace("|||||F", f"||{TIER_FLAG.get(summary.tier, '')}|||F", 1)

    def numeric(code: str, display: str, value: str, unit: str, after: str = tail) -> None:
        nonlocal set_id
        set_id += 1
        segments.append(f"OBX|{set_id}|NM|{code}^{display}^{cs}||{value}|{unit}{after}")

    numeric("days-in-membership", MEASURES["days-in-membership"], str(summary.days_in_membership), UCUM_DAY)
    numeric("days-absent", MEASURES["days-absent"], hundredths_text(summary.days_absent_h), UCUM_DAY)
    numeric("days-absent-excused", MEASURES["days-absent-excused"], hundredths_text(summary.excused_h), UCUM_DAY)
    numeric(
        "days-absent-unexcused",
        MEASURES["days-absent-unexcused"],
        hundredths_text(summary.unexcused_h),
        UCUM_DAY,
    )
    numeric("days-absent-illness", MEASURES["days-absent-illness"], hundredths_text(summary.illness_h), UCUM_DAY)
    numeric("days-absent-oss", MEASURES["days-absent-oss"], hundredths_text(summary.oss_h), UCUM_DAY)
    if summary.days_in_membership > 0:  # with no day in membership there is no rate, and no OBX claims one
        rate = percent_text(summary.days_absent_h, summary.days_in_membership)
        numeric(ATTENDANCE_SUMMARY, ABSENCE_RATE_DISPLAY, rate, UCUM_PERCENT, flagged)
    tier = summary.tier
    set_id += 1
    segments.append(
        f"OBX|{set_id}|CWE|chronic-absence-tier^{MEASURES['chronic-absence-tier']}^{cs}||"
        f"{tier}^{TIERS[tier]}^{cs}|{flagged}"
    )
    return "\r".join(segments)
