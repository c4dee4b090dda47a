"""The Patient and Organizations of a self-contained set (map/patient.py, map/organization.py), and the literal
references the Observation and Consent mappers give for it: each resolves to the id of the resource built for the
same business identifier, every resource is valid R4, and identifier-only leaves out what is not needed."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from sis2fhir.map import organization
from sis2fhir.map.consent import ferpa_consent
from sis2fhir.map.observation import attendance_observation
from sis2fhir.map.organization import (
    SetOrganizations,
    district_organization,
    recipient_organization,
    school_organization,
    set_organizations,
)
from sis2fhir.map.patient import student_patient
from sis2fhir.records import District, School, Student
from sis2fhir.terminology import NPI_SYSTEM
from sis2fhir.validate import validate_resource
from tests.support.attendance_items import (
    DISTRICT,
    MEASURED,
    RECIPIENT,
    SCHOOL,
    STATE_ID_SYSTEM,
    consent_record,
    summary,
)

LEA = District(sourced_id="lea-1", name="Example Unified School District")


def a_student(**changes: Any) -> Student:
    fields: dict[str, Any] = {
        "sourced_id": "u-S1",
        "state_id": "S1",
        "given_name": "Ana",
        "middle_name": "Maria",
        "family_name": "Lopez",
        "birth_date": date(2014, 5, 2),
        "sex": "female",
    }
    return Student(**{**fields, **changes})


def errors(resource: dict[str, Any]) -> list[str]:
    return [f"{i.expression}: {i.message}" for i in validate_resource(resource) if i.severity == "error"]


def test_the_patient_carries_what_matching_needs_and_is_valid_r4() -> None:
    patient = student_patient(a_student(), DISTRICT)
    assert patient["identifier"] == [
        {"system": STATE_ID_SYSTEM, "value": "S1"},
        {"system": DISTRICT.system("student-sourced-id"), "value": "u-S1"},
    ]
    assert patient["name"] == [{"use": "official", "family": "Lopez", "given": ["Ana", "Maria"]}]
    assert patient["birthDate"] == "2014-05-02"
    assert patient["gender"] == "female"
    assert errors(patient) == []


@pytest.mark.parametrize(
    ("sex", "gender"), [("male", "male"), ("female", "female"), ("other", "other"), ("unspecified", "unknown")]
)
def test_oneroster_sex_becomes_administrative_gender(sex: str, gender: str) -> None:
    assert student_patient(a_student(sex=sex), DISTRICT)["gender"] == gender


def test_what_the_roster_does_not_say_is_left_out_not_invented() -> None:
    patient = student_patient(a_student(sex="", birth_date=None, given_name="", middle_name=""), DISTRICT)
    assert "gender" not in patient and "birthDate" not in patient
    assert patient["name"] == [{"use": "official", "family": "Lopez"}]
    assert errors(patient) == []


def test_identifier_only_writes_no_name_birth_date_or_gender_anywhere() -> None:
    patient = student_patient(a_student(), DISTRICT, "identifier-only")
    assert set(patient) == {"resourceType", "id", "meta", "identifier", "text"}
    text = patient["text"]["div"]
    assert "Lopez" not in text and "Ana" not in text and "2014" not in text and "female" not in text
    assert patient["id"] == student_patient(a_student(), DISTRICT)["id"]  # the same Patient, less said
    assert errors(patient) == []


def test_a_student_without_a_state_id_is_known_by_the_district_id() -> None:
    patient = student_patient(a_student(state_id=""), DISTRICT)
    assert patient["identifier"] == [{"system": DISTRICT.system("student-sourced-id"), "value": "u-S1"}]
    obs = attendance_observation(summary("S1"), a_student(state_id=""), SCHOOL, DISTRICT, MEASURED, literal=True)
    assert obs["subject"]["reference"] == f"Patient/{patient['id']}"


def test_literal_references_resolve_to_the_resources_built_for_the_same_identifiers() -> None:
    student = a_student()
    school = School(sourced_id=SCHOOL.sourced_id, name=SCHOOL.name, parent_sourced_id=LEA.sourced_id)
    obs = attendance_observation(summary("S1"), student, school, DISTRICT, MEASURED, literal=True)
    consent = ferpa_consent(consent_record("S1"), student, LEA, DISTRICT, NPI_SYSTEM, literal=True)
    patient = student_patient(student, DISTRICT)
    lea = district_organization(LEA, DISTRICT)
    sch = school_organization(school, LEA, DISTRICT)
    clinic = recipient_organization(NPI_SYSTEM, RECIPIENT, "Pediatric Clinic")

    assert obs["subject"]["reference"] == f"Patient/{patient['id']}"
    assert consent["patient"]["reference"] == f"Patient/{patient['id']}"
    assert obs["performer"][0]["reference"] == f"Organization/{sch['id']}"
    assert consent["organization"][0]["reference"] == f"Organization/{lea['id']}"
    assert consent["provision"]["actor"][0]["reference"]["reference"] == f"Organization/{clinic['id']}"
    assert sch["partOf"]["reference"] == f"Organization/{lea['id']}"
    # the business identifier stays beside the literal reference
    assert obs["subject"]["identifier"] == patient["identifier"][0]
    assert consent["provision"]["actor"][0]["reference"]["identifier"] == clinic["identifier"][0]
    for resource in (obs, consent, lea, sch, clinic):
        assert errors(resource) == [], resource["resourceType"]


def test_without_literal_the_references_stay_logical_as_fhir_rest_recipients_get_them() -> None:
    student = a_student()
    obs = attendance_observation(summary("S1"), student, SCHOOL, DISTRICT, MEASURED)
    consent = ferpa_consent(consent_record("S1"), student, LEA, DISTRICT)
    refs = [obs["subject"], obs["performer"][0], consent["patient"], consent["organization"][0],
            consent["provision"]["actor"][0]["reference"]]  # fmt: skip
    assert all("reference" not in r and r["identifier"]["value"] for r in refs)


def test_the_district_and_schools_are_educational_organizations_each_listed_once() -> None:
    other = School(sourced_id="sch-2", name="Jefferson Middle School")
    orgs = set_organizations([SCHOOL, other, SCHOOL], LEA, DISTRICT, (NPI_SYSTEM, RECIPIENT, "Pediatric Clinic"))
    assert [o.get("name") for o in orgs] == [LEA.name, SCHOOL.name, other.name, "Pediatric Clinic"]
    assert len({o["id"] for o in orgs}) == 4
    assert [o["type"][0]["coding"][0]["code"] for o in orgs[:3]] == ["edu"] * 3
    for org in orgs:
        assert errors(org) == []


def test_a_runs_sets_share_organizations_made_once_and_equal_to_fresh_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    other = School(sourced_id="sch-2", name="Jefferson Middle School")
    made = SetOrganizations(LEA, DISTRICT)
    clinic, hie = (NPI_SYSTEM, RECIPIENT, "Pediatric Clinic"), (NPI_SYSTEM, "1999999992", "State HIE")
    asked = [([SCHOOL], clinic), ([other, SCHOOL], hie), ([SCHOOL, other, SCHOOL], clinic), ([other], hie)]
    sets = [made(schools, recipient) for schools, recipient in asked]
    assert sets == [set_organizations(schools, LEA, DISTRICT, recipient) for schools, recipient in asked]
    assert sets[0][0] is sets[3][0] and sets[0][1] is sets[2][1]  # the district's, a school's: the same object
    monkeypatch.setattr(organization, "ORGANIZATIONS_KEPT", 2)
    small = SetOrganizations(LEA, DISTRICT)
    assert [small([SCHOOL, other], r) for _, r in asked] == [set_organizations([SCHOOL, other], LEA, DISTRICT, r)
                                                             for _, r in asked]  # fmt: skip
    assert len(small._made) <= 2


def test_a_roster_without_a_district_org_still_gives_a_valid_district_organization() -> None:
    lea = district_organization(None, DISTRICT)
    assert lea["identifier"] == [{"system": DISTRICT.system("organization"), "value": "district"}]
    assert "name" not in lea and errors(lea) == []
    consent = ferpa_consent(consent_record("S1"), a_student(), None, DISTRICT, literal=True)
    assert consent["organization"][0]["reference"] == f"Organization/{lea['id']}"


def test_ids_are_the_same_on_every_run() -> None:
    assert student_patient(a_student(), DISTRICT) == student_patient(a_student(), DISTRICT)
    assert school_organization(SCHOOL, LEA, DISTRICT)["id"] == school_organization(SCHOOL, LEA, DISTRICT)["id"]
