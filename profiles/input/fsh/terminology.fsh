// sis2fhir's own code systems and value sets. Codes and displays must equal src/sis2fhir/terminology.py
// (tests/test_profiles.py checks both directions).

CodeSystem: SchoolAttendance
Id: school-attendance
Title: "School attendance"
Description: "Codes for a student's school attendance summary, school year to date, and its component counts."
* ^caseSensitive = true
* ^experimental = false
* #attendance-summary "Absence rate, school year to date" "A student's absence rate at one school from the first day of the school year to the as-of date: days absent as a percentage of days in membership (not the attendance rate). The code keeps its name, attendance-summary, so receivers that key on it need not change."
* #days-in-membership "Days in membership, school year to date" "Instructional days on which the student was enrolled at the school (in membership), from the first day of the school year to the as-of date."
* #days-absent "Days absent, school year to date" "Days in membership on which the student was absent, that count as absences under the district's chronic absence policy; partial days count as the policy says (fraction or half-day)."
* #days-absent-excused "Days absent, excused" "Days absent that the school recorded as excused."
* #days-absent-unexcused "Days absent, unexcused" "Days absent that the school recorded as unexcused."
* #days-absent-illness "Days absent for illness or medical reasons" "Days absent recorded with an illness reason."
* #days-absent-oss "Days absent for out-of-school suspension" "Days absent because of an out-of-school suspension."
* #chronic-absence-tier "Chronic absence tier" "The student's attendance tier, from the district's chronic absence policy."

CodeSystem: ChronicAbsenceTier
Id: chronic-absence-tier
Title: "Chronic absence tier"
Description: "Attendance tiers by share of days in membership missed; the thresholds are the district's policy."
* ^caseSensitive = true
* ^experimental = false
* #satisfactory "Satisfactory attendance" "Absent on fewer days than the at-risk threshold."
* #at-risk "At risk of chronic absence" "Absent at or above the at-risk threshold and below the chronic absence threshold."
* #moderate-chronic "Moderate chronic absence" "Chronically absent, below the severe threshold."
* #severe-chronic "Severe chronic absence" "Chronically absent at or above the severe threshold."
* #insufficient-data "Insufficient data (too few days in membership)" "Fewer days in membership than the policy's minimum, so no tier is assigned."

CodeSystem: AbsenceReason
Id: absence-reason
Title: "Absence reason"
Description: "Reasons for a student's absence from school, normalised from the SIS's own codes."
* ^caseSensitive = true
* ^experimental = false
* #illness "Illness"
* #medical "Medical appointment or treatment"
* #mental-health "Mental health"
* #suspension-out-of-school "Out-of-school suspension"
* #suspension-in-school "In-school suspension"
* #transportation "Transportation"
* #family "Family reasons"
* #religious "Religious observance"
* #unknown "Unknown or not recorded"

CodeSystem: ChronicAbsencePolicy
Id: chronic-absence-policy
Title: "Chronic absence policy"
Description: "The rule that made a chronic absence tier (Observation.method); the method's text states the thresholds actually used."
* ^caseSensitive = true
* ^experimental = false
* #essa-10-percent "ESSA: chronically absent at 10 % or more of days in membership" "ESSA / EDFacts FS195 as shipped: chronic at 10 % or more of days in membership, at risk from 5 %, severe from 20 %, at least 10 days in membership; excused and unexcused absences and out-of-school suspension count, partial days add their fraction."
* #crdc-15-days "CRDC: chronically absent on 15 or more school days" "Civil Rights Data Collection as shipped: chronic at 15 or more days absent, at risk from 7.5, severe from 30; a day counts when at least half of it was missed."
* #custom "District policy (thresholds in the text)" "A preset with some setting changed by the district; Observation.method.text states the thresholds and what counts."

ValueSet: AttendanceMeasure
Id: attendance-measure
Title: "Attendance measure"
Description: "All codes of the school-attendance code system."
* ^experimental = false
* include codes from system SchoolAttendance

ValueSet: ChronicAbsenceTierVS
Id: chronic-absence-tier
Title: "Chronic absence tier"
Description: "All codes of the chronic-absence-tier code system."
* ^experimental = false
* include codes from system ChronicAbsenceTier

ValueSet: AbsenceReasonVS
Id: absence-reason
Title: "Absence reason"
Description: "All codes of the absence-reason code system."
* ^experimental = false
* include codes from system AbsenceReason

ValueSet: ChronicAbsencePolicyVS
Id: chronic-absence-policy
Title: "Chronic absence policy"
Description: "All codes of the chronic-absence-policy code system."
* ^experimental = false
* include codes from system ChronicAbsencePolicy

ValueSet: AbsenceFlagVS
Id: absence-flag
Title: "Chronic absence flag"
Description: "The HL7 v3 ObservationInterpretation codes given beside the chronic absence tier: A (abnormal) for moderate and severe chronic absence, N (normal) for satisfactory attendance and at risk. Insufficient data gets neither."
* ^experimental = false
* $v3-ObservationInterpretation#A "Abnormal"
* $v3-ObservationInterpretation#N "Normal"
