// Year-to-date attendance of one student at one school: the absence rate as the value, the day counts and
// the chronic absence tier as components (so the tier is searchable with component-code-value-concept).

// meta.security of every disclosed resource (src/sis2fhir/map/labels.py): restricted, and no redisclosure
// without consent (FERPA, 34 CFR 99.33).
RuleSet: DisclosureLabels
* meta 1..1 MS
* meta.security 2..* MS
* meta.security ^slicing.discriminator.type = #pattern
* meta.security ^slicing.discriminator.path = "$this"
* meta.security ^slicing.rules = #open
* meta.security ^slicing.description = "Slice by the label: confidentiality R and NORDSCLCD."
* meta.security contains
    restricted 1..1 MS and
    no-redisclosure 1..1 MS
* meta.security[restricted] = $v3-Confidentiality#R
* meta.security[no-redisclosure] = $v3-ActCode#NORDSCLCD

RuleSet: DayCount(code)
* component[{code}].code = SchoolAttendance#{code}
* component[{code}].value[x] 1..1 MS
* component[{code}].value[x] only Quantity
* component[{code}].valueQuantity = $UCUM#d "d"
* component[{code}].valueQuantity.value 1..1 MS

Invariant: sis-att-1
Description: "Days absent must not exceed days in membership."
Severity: #error
Expression: "(component.where(code.coding.where(system = 'http://sis2fhir.org/fhir/CodeSystem/school-attendance' and code = 'days-absent').exists()).value.ofType(Quantity).value.exists() and component.where(code.coding.where(system = 'http://sis2fhir.org/fhir/CodeSystem/school-attendance' and code = 'days-in-membership').exists()).value.ofType(Quantity).value.exists()) implies (component.where(code.coding.where(system = 'http://sis2fhir.org/fhir/CodeSystem/school-attendance' and code = 'days-absent').exists()).value.ofType(Quantity).value.first() <= component.where(code.coding.where(system = 'http://sis2fhir.org/fhir/CodeSystem/school-attendance' and code = 'days-in-membership').exists()).value.ofType(Quantity).value.first())"

Profile: SchoolAttendanceObservation
Parent: Observation
Id: school-attendance-observation
Title: "School attendance observation"
Description: "A student's absence at one school from the first day of the school year to the as-of date: the absence rate (days absent as a percentage of days in membership) as the value, day counts and the chronic absence tier as components, the tier and an HL7 v3 A/N flag as interpretations, and the policy that made the tier as the method. One Observation per student, school and school year, updated as the year goes on: status is preliminary while the school year is in progress (the figure changes every school day) and final once the school's last instructional day of the year is in it; issued is the last second (UTC) of the period's last day."
* obeys sis-att-1
* insert DisclosureLabels
* status MS
* status ^short = "preliminary while the school year is in progress; final once it is complete"
* identifier 1..* MS
* category 2..* MS
* category ^slicing.discriminator.type = #pattern
* category ^slicing.discriminator.path = "$this"
* category ^slicing.rules = #open
* category ^slicing.description = "Slice by the category code: social history and US Core SDOH."
* category contains
    social-history 1..1 MS and
    sdoh 1..1 MS
* category[social-history] = $observation-category#social-history
* category[sdoh] = $us-core-category#sdoh
* code MS
* code = SchoolAttendance#attendance-summary
// A logical reference (identifier only, e.g. the state student ID) is allowed: reference stays 0..1.
* subject 1..1 MS
* subject only Reference(Patient)
* effective[x] 1..1 MS
* effective[x] only Period
* effectivePeriod ^short = "School year to date: first day of the school year to the as-of date (or the year's end)"
* effectivePeriod.start 1..1 MS
* effectivePeriod.end 1..1 MS
* issued 1..1 MS
* issued ^short = "The last second (UTC) of the period's last day: derived from the figures, so the same export gives the same resource"
* performer 1..1 MS
* performer only Reference(Organization)
* performer ^short = "The school"
// With no day in membership there is no rate: value is absent and dataAbsentReason is given (obs-6).
* value[x] MS
* value[x] only Quantity
* valueQuantity ^short = "Absence rate: days absent as a percentage of days in membership"
* valueQuantity.system = "http://unitsofmeasure.org"
* valueQuantity.code = #%
* valueQuantity.unit = "%"
* valueQuantity.value 1..1 MS
* dataAbsentReason MS
// The tier, and beside it the HL7 v3 flag (A chronic, N not) for EHRs that flag abnormal results; insufficient
// data has no flag.
* interpretation 1..2 MS
* interpretation ^slicing.discriminator.type = #value
* interpretation ^slicing.discriminator.path = "coding.system"
* interpretation ^slicing.rules = #closed
* interpretation ^slicing.description = "Slice by the coding's system: the chronic absence tier, the v3 flag."
* interpretation contains
    tier 1..1 MS and
    flag 0..1 MS
* interpretation[tier].coding 1..1 MS
* interpretation[tier].coding.system 1..1
* interpretation[tier].coding.system = "http://sis2fhir.org/fhir/CodeSystem/chronic-absence-tier" (exactly)
* interpretation[tier] from ChronicAbsenceTierVS (required)
* interpretation[flag].coding 1..1 MS
* interpretation[flag].coding.system 1..1
* interpretation[flag].coding.system = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation" (exactly)
* interpretation[flag] from AbsenceFlagVS (required)
* method 1..1 MS
* method from ChronicAbsencePolicyVS (required)
* method ^short = "The chronic absence policy that made the tier"
* method.text 1..1 MS
* method.text ^short = "The thresholds and counting rules actually used"
* component 7..* MS
* component ^slicing.discriminator.type = #pattern
* component ^slicing.discriminator.path = "code"
* component ^slicing.rules = #open
* component ^slicing.description = "Slice by the component code from the school-attendance code system."
* component contains
    days-in-membership 1..1 MS and
    days-absent 1..1 MS and
    days-absent-excused 1..1 MS and
    days-absent-unexcused 1..1 MS and
    days-absent-illness 1..1 MS and
    days-absent-oss 1..1 MS and
    chronic-absence-tier 1..1 MS
* insert DayCount(days-in-membership)
* insert DayCount(days-absent)
* insert DayCount(days-absent-excused)
* insert DayCount(days-absent-unexcused)
* insert DayCount(days-absent-illness)
* insert DayCount(days-absent-oss)
* component[chronic-absence-tier].code = SchoolAttendance#chronic-absence-tier
* component[chronic-absence-tier].value[x] 1..1 MS
* component[chronic-absence-tier].value[x] only CodeableConcept
* component[chronic-absence-tier].valueCodeableConcept from ChronicAbsenceTierVS (required)
