// The population measure of `sis2fhir population` and `sis2fhir evaluate` (docs/population.md): the MeasureReports
// (type summary) they write point at it. Codes must equal src/sis2fhir/terminology.py (POPULATION_CS).

Alias: $measure-population = http://terminology.hl7.org/CodeSystem/measure-population
Alias: $measure-scoring = http://terminology.hl7.org/CodeSystem/measure-scoring
Alias: $measure-type = http://terminology.hl7.org/CodeSystem/measure-type
Alias: $measure-improvement = http://terminology.hl7.org/CodeSystem/measure-improvement-notation

CodeSystem: PopulationMeasure
Id: population-measure
Title: "Population measure"
Description: "The group and the stratifiers of sis2fhir's chronic absence measure, and the periods of a program evaluation."
* ^caseSensitive = true
* ^experimental = false
* #chronic-absence "Chronic absence" "Students chronically absent under the district's policy, as a share of the students with enough days in membership."
* #school "School" "Stratified by school (the school's OneRoster sourcedId)."
* #grade "Grade" "Stratified by grade (OneRoster grades, the first listed for the student)."
* #month "Month" "Stratified by calendar month of the school year (YYYY-MM); each month measured on its own days."
* #period "Evaluation period" "Before or after a program's start date."
* #before "Before the program start" "From the first day of the school year to the day before the program start."
* #after "After the program start" "From the program start to the as-of date."

Instance: chronic-absence
InstanceOf: Measure
Usage: #definition
Title: "Chronic absence"
Description: "The share of students chronically absent under the district's chronic absence policy, school year to date: per district, school, grade and month. Counts below the configured minimum cell size are withheld, with complementary suppression (sis2fhir docs/population.md)."
* url = "http://sis2fhir.org/fhir/Measure/chronic-absence"
* version = "0.1.0"
* name = "ChronicAbsence"
* title = "Chronic absence"
* status = #draft
* experimental = false
* description = "The share of students chronically absent under the district's chronic absence policy, school year to date: per district, school, grade and month. Counts below the configured minimum cell size are withheld, with complementary suppression (sis2fhir docs/population.md)."
* scoring = $measure-scoring#proportion
* type = $measure-type#outcome
* improvementNotation = $measure-improvement#decrease
* group[0].code = PopulationMeasure#chronic-absence
* group[0].population[0].code = $measure-population#initial-population
* group[0].population[0].description = "Students with at least the policy's minimum days in membership in the period (a student with fewer has no tier)."
* group[0].population[0].criteria.language = #text/plain
* group[0].population[0].criteria.expression = "days in membership >= policy minimum_days_in_membership"
* group[0].population[1].code = $measure-population#denominator
* group[0].population[1].description = "The initial population."
* group[0].population[1].criteria.language = #text/plain
* group[0].population[1].criteria.expression = "the initial population"
* group[0].population[2].code = $measure-population#numerator
* group[0].population[2].description = "Students of the denominator in a chronic tier (moderate or severe) under the policy."
* group[0].population[2].criteria.language = #text/plain
* group[0].population[2].criteria.expression = "tier in (moderate-chronic, severe-chronic)"
* group[0].stratifier[0].code = PopulationMeasure#school
* group[0].stratifier[0].criteria.language = #text/plain
* group[0].stratifier[0].criteria.expression = "the school of the student x school stay"
* group[0].stratifier[1].code = PopulationMeasure#grade
* group[0].stratifier[1].criteria.language = #text/plain
* group[0].stratifier[1].criteria.expression = "the student's grade"
* group[0].stratifier[2].code = PopulationMeasure#month
* group[0].stratifier[2].criteria.language = #text/plain
* group[0].stratifier[2].criteria.expression = "the calendar month"
* group[0].stratifier[3].code = PopulationMeasure#period
* group[0].stratifier[3].criteria.language = #text/plain
* group[0].stratifier[3].criteria.expression = "before or after the program start"
