// One valid instance per profile. Examples stay in profiles/fsh-generated; they are not package data.

Instance: school-attendance-observation-example
InstanceOf: SchoolAttendanceObservation
Title: "Attendance summary of a student at risk of chronic absence"
Usage: #example
* text.status = #generated
* text.div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">School year 2024-25 to 31 January 2025: 6.5 of 100 days in membership absent (6.5 %), at risk of chronic absence.</div>"
* status = #final
* identifier.system = "http://sis2fhir.org/fhir/sid/attendance-summary"
* identifier.value = "lea-1234|sch-001|stu-0042|2024"
* category[social-history] = $observation-category#social-history "Social History"
* category[sdoh] = $us-core-category#sdoh "SDOH"
* code = SchoolAttendance#attendance-summary "School attendance summary, school year to date"
* subject.identifier.system = "http://sis2fhir.org/fhir/sid/state-student-id"
* subject.identifier.value = "S0000042"
* subject.type = "Patient"
* effectivePeriod.start = "2024-08-26"
* effectivePeriod.end = "2025-01-31"
* issued = "2025-02-01T06:00:00Z"
* performer.identifier.system = "http://sis2fhir.org/fhir/sid/school"
* performer.identifier.value = "sch-001"
* performer.type = "Organization"
* performer.display = "Example Elementary School"
* valueQuantity = 6.5 '%' "%"
* interpretation = ChronicAbsenceTier#at-risk "At risk of chronic absence"
* component[days-in-membership].code = SchoolAttendance#days-in-membership "Days in membership, school year to date"
* component[days-in-membership].valueQuantity = 100 'd' "d"
* component[days-absent].code = SchoolAttendance#days-absent "Days absent, school year to date"
* component[days-absent].valueQuantity = 6.5 'd' "d"
* component[days-absent-excused].code = SchoolAttendance#days-absent-excused "Days absent, excused"
* component[days-absent-excused].valueQuantity = 4 'd' "d"
* component[days-absent-unexcused].code = SchoolAttendance#days-absent-unexcused "Days absent, unexcused"
* component[days-absent-unexcused].valueQuantity = 1.5 'd' "d"
* component[days-absent-illness].code = SchoolAttendance#days-absent-illness "Days absent for illness or medical reasons"
* component[days-absent-illness].valueQuantity = 3 'd' "d"
* component[days-absent-oss].code = SchoolAttendance#days-absent-oss "Days absent for out-of-school suspension"
* component[days-absent-oss].valueQuantity = 1 'd' "d"
* component[chronic-absence-tier].code = SchoolAttendance#chronic-absence-tier "Chronic absence tier"
* component[chronic-absence-tier].valueCodeableConcept = ChronicAbsenceTier#at-risk "At risk of chronic absence"

Instance: ferpa-attendance-consent-example
InstanceOf: FerpaAttendanceConsent
Title: "A parent's consent to release attendance to a pediatric clinic"
Usage: #example
* text.status = #generated
* text.div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">Active consent, signed 20 August 2024: the district may disclose attendance observations to the recipient clinic for treatment until 30 June 2025.</div>"
* status = #active
* scope = $consentscope#patient-privacy "Privacy Consent"
* category[patient-consent] = $LOINC#59284-0 "Patient Consent"
* category[idscl] = $v3-ActCode#IDSCL "information disclosure"
* patient.identifier.system = "http://sis2fhir.org/fhir/sid/state-student-id"
* patient.identifier.value = "S0000042"
* patient.type = "Patient"
* dateTime = "2024-08-20T14:03:00Z"
* performer.identifier.system = "http://sis2fhir.org/fhir/sid/guardian"
* performer.identifier.value = "par-0042-1"
* performer.type = "RelatedPerson"
* organization.identifier.system = "http://sis2fhir.org/fhir/sid/lea"
* organization.identifier.value = "lea-1234"
* organization.type = "Organization"
* sourceAttachment.contentType = #application/pdf
* sourceAttachment.url = "https://sis.example.org/consents/c-0042.pdf"
* sourceAttachment.creation = "2024-08-20"
* policy.authority = "https://studentprivacy.ed.gov"
* policy.uri = "https://www.ecfr.gov/current/title-34/subtitle-A/part-99"
* provision.type = #permit
* provision.period.start = "2024-08-20"
* provision.period.end = "2025-06-30"
* provision.actor[recipient].role = $v3-ParticipationType#IRCP "information recipient"
* provision.actor[recipient].reference.identifier.system = "http://hl7.org/fhir/sid/us-npi"
* provision.actor[recipient].reference.identifier.value = "1234567893"
* provision.actor[recipient].reference.type = "Organization"
* provision.action[disclose] = $consentaction#disclose "Disclose"
* provision.purpose = $v3-ActReason#TREAT "treatment"
* provision.class[observation] = $resource-types#Observation "Observation"
* provision.code[0] = SchoolAttendance#attendance-summary "School attendance summary, school year to date"
* provision.code[1] = SchoolAttendance#days-absent "Days absent, school year to date"
