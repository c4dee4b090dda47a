// Year-to-date attendance of one student at one school: the absence rate as the value, the day counts and
// the chronic absence tier as components (so the tier is searchable with component-code-value-concept).

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
Description: "A student's attendance at one school from the first day of the school year to the as-of date: absence rate, day counts and chronic absence tier."
* obeys sis-att-1
* status MS
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
* effectivePeriod ^short = "School year to date: first day of the school year to the as-of date"
* effectivePeriod.start 1..1 MS
* effectivePeriod.end 1..1 MS
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
* interpretation 1..1 MS
* interpretation from ChronicAbsenceTierVS (required)
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
