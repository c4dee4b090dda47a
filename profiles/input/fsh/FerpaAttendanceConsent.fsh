// A parent's (or eligible student's) written consent under FERPA, 34 CFR 99.30, to disclose attendance
// records to a named recipient. R4 Consent; R5 renamed most of these elements.

Profile: FerpaAttendanceConsent
Parent: Consent
Id: ferpa-attendance-consent
Title: "FERPA attendance release consent"
Description: "Consent of a parent or eligible student to disclose a student's attendance records from the school district to a named recipient organization (34 CFR 99.30)."
* insert DisclosureLabels
* status MS
* scope MS
* scope = $consentscope#patient-privacy
* category 2..* MS
* category ^slicing.discriminator.type = #pattern
* category ^slicing.discriminator.path = "$this"
* category ^slicing.rules = #open
* category ^slicing.description = "Slice by the category code: LOINC patient consent and v3 information disclosure."
* category contains
    patient-consent 1..1 MS and
    idscl 1..1 MS
* category[patient-consent] = $LOINC#59284-0
* category[idscl] = $v3-ActCode#IDSCL
* patient 1..1 MS
* patient ^short = "The student"
* dateTime 1..1 MS
* dateTime ^short = "When the consent was signed (34 CFR 99.30: signed and dated)"
* performer 1..* MS
* performer ^short = "Who granted the consent: the parent or the eligible student"
* organization 1..* MS
* organization ^short = "The custodian of the records: the school district"
// The signed form: its url, type and date when consents.csv gives documentUrl; else a title and the signing
// date (the form is kept where it cannot be linked), never an invented url.
* source[x] 1..1 MS
* source[x] only Attachment
* sourceAttachment.title 1..1 MS
* sourceAttachment.creation 1..1 MS
* sourceAttachment.creation ^short = "When the form was signed"
* sourceAttachment.url MS
* sourceAttachment.contentType MS
* policy 1..* MS
* policy.uri 1..1 MS
* policy.uri = "https://www.ecfr.gov/current/title-34/subtitle-A/part-99" (exactly)
* provision 1..1 MS
* provision.type 1..1 MS
* provision.period 1..1 MS
* provision.period.start 1..1 MS
* provision.actor 1..* MS
* provision.actor ^slicing.discriminator.type = #pattern
* provision.actor ^slicing.discriminator.path = "role"
* provision.actor ^slicing.rules = #open
* provision.actor ^slicing.description = "Slice by the actor's role."
* provision.actor contains recipient 1..* MS
* provision.actor[recipient].role = $v3-ParticipationType#IRCP
* provision.actor[recipient].reference only Reference(Organization)
* provision.actor[recipient] ^short = "The party the records may be disclosed to"
* provision.action 1..* MS
* provision.action ^slicing.discriminator.type = #pattern
* provision.action ^slicing.discriminator.path = "$this"
* provision.action ^slicing.rules = #open
* provision.action contains disclose 1..1 MS
* provision.action[disclose] = $consentaction#disclose
* provision.purpose 1..* MS
* provision.class 1..* MS
* provision.class ^slicing.discriminator.type = #pattern
* provision.class ^slicing.discriminator.path = "$this"
* provision.class ^slicing.rules = #open
* provision.class contains observation 1..1 MS
* provision.class[observation] = $resource-types#Observation
* provision.code MS
* provision.code from AttendanceMeasure (required)
