// sis2fhir's own code systems and value sets. Codes and displays must equal src/sis2fhir/terminology.py
// (tests/test_profiles.py checks both directions).

CodeSystem: SchoolAttendance
Id: school-attendance
Title: "School attendance"
Description: "Codes for a student's school attendance summary, school year to date, and its component counts."
* ^caseSensitive = true
* ^experimental = false
* #attendance-summary "School attendance summary, school year to date" "Summary of a student's attendance at one school from the first day of the school year to the as-of date; the value is the absence rate: days absent as a percentage of days in membership."
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
