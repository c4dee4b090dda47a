"""Sanity gates before anything leaves: is the export's attendance usable, and plausible next to the last accepted
run of the same district?

An empty attendance file does not mean "nobody was absent": it means every student would be sent as 0 days absent,
"satisfactory", over whatever the recipient held (a real FHIR server had 25 chronic-absence Observations
overwritten that way). So the run measures what the attendance says (per school: school days passed, rows counted,
students with an absence; per student x school: days absent up to the last accepted run's as-of date) and this
module turns that, and the last accepted run, into findings. A finding that stops is either unusable input (never
overridable) or an implausible change, which an operator who knows it is deliberate lets through with
`--accept-change REASON`. Everything here is a pure function of its arguments (`sanity_gates` wires them to a run) and
store/verdicts.py keeps the baselines.

Finding messages say what to check and never name a student (row reports do, by sourcedId only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from sis2fhir.config import PlausibilitySettings, Settings
from sis2fhir.engine import Key, MeasuredAttendance, Rules
from sis2fhir.measure import HUNDREDTHS
from sis2fhir.read.attendance import ATTENDANCE_FILE
from sis2fhir.read.export import ExportError
from sis2fhir.report import RowReport
from sis2fhir.school_counts import Measures, measures_of
from sis2fhir.store.verdicts import Baseline

# Codes a reader gives a whole attendance file it could not read (the rows after the failure are missing).
UNREADABLE_CODES = frozenset({"file-unreadable", "bad-xml"})
Status = Literal["clean", "accepted", "stopped"]
ACCEPT_HINT = 'If the change is deliberate, run again with --accept-change "REASON" (recorded with the run).'


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # stable, machine-readable
    message: str  # what was found and what to check; never a student identifier
    stops: bool
    overridable: bool = True  # --accept-change lets it through (never for unusable attendance)


@dataclass(frozen=True, slots=True)
class Correction:
    """Days absent on already reported school days that are fewer now than the last accepted run said."""

    student: str
    school: str
    before_h: int
    now_h: int


@dataclass(slots=True)
class Verdict:
    findings: list[Finding]
    corrections: list[Correction]
    baseline: Baseline | None
    accept_reason: str = ""

    @property
    def stopping(self) -> list[Finding]:
        return [f for f in self.findings if f.stops and not (f.overridable and self.accept_reason)]

    @property
    def overridden(self) -> list[Finding]:
        return [f for f in self.findings if f.stops and f.overridable and self.accept_reason]

    @property
    def status(self) -> Status:
        if self.stopping:
            return "stopped"
        return "accepted" if self.overridden else "clean"

    def findings_record(self) -> list[dict[str, object]]:
        """The findings as the store keeps them with the run."""
        overridden = {f.code for f in self.overridden}
        return [
            {"code": f.code, "message": f.message, "stops": f.stops, "overridden": f.code in overridden}
            for f in self.findings
        ]


class GateStopped(ExportError):
    """A sanity gate stopped the run before anything was mapped, queued or sent."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(stop_message(verdict))


def stop_message(verdict: Verdict) -> str:
    stopping = verdict.stopping
    lines = ["the attendance cannot be used as it is, so nothing was sent or queued:"]
    lines += [f"  - {f.code}: {f.message}" for f in stopping]
    if all(f.overridable for f in stopping):
        lines.append(ACCEPT_HINT)
    return "\n".join(lines)


def unusable(m: Measures) -> list[Finding]:
    """Attendance that cannot be used at all: unreadable, empty, nothing countable, school days unknown."""
    files = ", ".join(m.files) or "the attendance file"
    if m.unreadable:
        return [
            Finding(
                "attendance-unreadable",
                f"{', '.join(m.unreadable)} could not be read to the end (see the row report), so attendance is "
                "missing for an unknown part of the year. Export the attendance again and check that the file is "
                "complete.",
                stops=True,
                overridable=False,
            )
        ]
    if m.rows_read == 0:
        return [
            Finding(
                "attendance-empty",
                f"{files} holds no attendance rows (the file is empty or has only its header): every student would "
                "be sent as present on every school day. Check the attendance export.",
                stops=True,
                overridable=False,
            )
        ]
    if m.rows_used == 0:
        why = [f"{m.outside_year} dated outside the school year"] if m.outside_year else []
        why += [f"{m.after_as_of} dated after the as-of date {m.as_of}"] if m.after_as_of else []
        rest = m.rows_read - m.outside_year - m.after_as_of
        why += [f"{rest} rejected, see the row report"] if rest > 0 else []
        return [
            Finding(
                "attendance-unusable",
                f"none of the {m.rows_read} rows of {files} can be counted ({'; '.join(why)}). Check the row "
                "report and --as-of; a missing header line makes the first data row the header, so that the "
                "columns are not found.",
                stops=True,
                overridable=False,
            )
        ]
    if not m.calendar and (m.style == "exception-only" or m.presence_rows == 0):
        return [
            Finding(
                "exception-only-without-calendar",
                f"{files} lists only absences (no In Attendance or Present row) and the export has no calendar.csv, "
                "so the school days are unknown: guessing them from the absence dates would give wrong days in "
                "membership and rates. Add calendar.csv (schoolSourcedId, date, instructional) to the export.",
                stops=True,
                overridable=False,
            )
        ]
    return []


def schools_without_rows(m: Measures) -> list[Finding]:
    """Positive files: a school whose school days have passed and whose students are enrolled, without a row."""
    if not m.positive:
        return []  # exception-only: a school without absences has no rows, which is normal
    found = []
    for school, c in sorted(m.schools.items()):
        if c.rows or not c.enrolled or (m.calendar and not c.school_days):
            continue
        days = f"{c.school_days} school days up to {m.as_of} by calendar.csv and " if m.calendar else ""
        found.append(
            Finding(
                "school-without-attendance",
                f"school {school} has {days}{c.enrolled} students enrolled, but the attendance holds no row for "
                "it: its students would count as present on every school day. Check that the attendance export "
                "includes this school.",
                stops=True,
            )
        )
    return found


def school_days_without_rows(m: Measures) -> list[Finding]:
    """Positive files with calendar.csv: a school with rows, but none on some school days that have passed. Every
    student would count as present on those days; a SIS export cut short, or a day's attendance never taken into
    the SIS, looks like this."""
    if not m.positive or not m.calendar:
        return []
    found = []
    for school, c in sorted(m.schools.items()):
        if not c.rows or not c.days_without_rows:
            continue  # a school without any row is school-without-attendance
        shown = ", ".join(d.isoformat() for d in c.days_without_rows[:5])
        more = f" and {len(c.days_without_rows) - 5} more" if len(c.days_without_rows) > 5 else ""
        found.append(
            Finding(
                "school-days-without-attendance",
                f"school {school} has no attendance row on {len(c.days_without_rows)} school days of calendar.csv "
                f"up to {m.as_of} ({shown}{more}): its students would count as present on those days. Check that "
                "the attendance export covers every school day, or correct calendar.csv.",
                stops=True,
            )
        )
    return found


def drops(m: Measures, b: Baseline, limits: PlausibilitySettings) -> list[Finding]:
    """District-wide drops against the last accepted run beyond the configured fractions."""
    found = []
    last = f"the last accepted run of this district (run {b.run_id}, as of {b.as_of})"
    if m.as_of < b.as_of:
        found.append(
            Finding(
                "as-of-before-baseline",
                f"the as-of date {m.as_of} is before that of {last}: recipients would get older numbers over "
                "newer ones. Check --as-of.",
                stops=True,
            )
        )
    now, before = m.rows_per_school_day, b.rows_per_school_day
    if now is not None and before:
        drop = 1 - now / before
        if drop > limits.max_drop_rows_per_school_day:
            found.append(
                Finding(
                    "rows-per-school-day-dropped",
                    f"the attendance has {now:.1f} rows per school day, {drop:.0%} fewer than {last}: "
                    f"{before:.1f} (allowed: {limits.max_drop_rows_per_school_day:.0%}). Check that the export "
                    "holds every school and every school day (not a partial or filtered export).",
                    stops=True,
                )
            )
    if b.students_absent:
        drop = 1 - m.students_absent / b.students_absent
        if drop > limits.max_drop_students_absent:
            found.append(
                Finding(
                    "students-absent-dropped",
                    f"{m.students_absent} students (x schools) have an absence, {drop:.0%} fewer than the "
                    f"{b.students_absent} of {last} (allowed: {limits.max_drop_students_absent:.0%}). Check that "
                    "absences were not left out of the export (a filter on category, reason or date).",
                    stops=True,
                )
            )
    return found


def corrections(b: Baseline, absent_until: Mapping[Key, int], keys: Iterable[Key]) -> tuple[list[Correction], int]:
    """Per student x school of this run also in the baseline: days absent on or before the baseline's as-of date
    that are fewer now than it reported. Returns the corrections and how many student x schools were compared."""
    found = []
    compared = 0
    before_by_school = b.absent_by_school()
    for key in keys:
        of_school = before_by_school.get(key[1])
        before = None if of_school is None else of_school.get(key[0])
        if before is None:
            continue
        compared += 1
        now = absent_until.get(key, 0)
        if now < before:
            found.append(Correction(key[0], key[1], before, now))
    return found, compared


def shrink_finding(found: list[Correction], compared: int, b: Baseline, limits: PlausibilitySettings) -> list[Finding]:
    if not found:
        return []
    share = len(found) / compared
    stops = share > limits.max_shrink_share
    what = (
        f"{len(found)} of {compared} students (x schools) have fewer days absent on or before {b.as_of} than the "
        f"last accepted run (run {b.run_id}) reported ({share:.1%}; allowed: {limits.max_shrink_share:.1%}); each "
        "is listed in the row report as days-absent-shrank. "
    )
    if stops:
        what += "Check whether absences already reported were removed or the export is incomplete."
    else:
        what += "These are taken as corrections in the SIS and sent."
    return [Finding("days-absent-shrank", what, stops=stops)]


def judge(
    m: Measures,
    baseline: Baseline | None,
    absent_until: Mapping[Key, int],
    keys: Iterable[Key],
    limits: PlausibilitySettings,
    accept_reason: str = "",
) -> Verdict:
    """The verdict on one run: unusable input stops alone; else every implausibility found, with corrections."""
    findings = unusable(m)
    found: list[Correction] = []
    if not findings:
        findings = schools_without_rows(m) + school_days_without_rows(m)
        if baseline is not None:
            findings += drops(m, baseline, limits)
            if baseline.as_of <= m.as_of:  # else the baseline counted days this run does not
                found, compared = corrections(baseline, absent_until, keys)
                findings += shrink_finding(found, compared, baseline, limits)
    return Verdict(findings, found, baseline, accept_reason.strip())


def correction_message(c: Correction, b: Baseline) -> str:
    """For the row report (students by sourcedId only)."""
    return (
        f"student {c.student} at school {c.school}: {c.before_h / HUNDREDTHS:.2f} days absent on or before "
        f"{b.as_of} in the last accepted run (run {b.run_id}), {c.now_h / HUNDREDTHS:.2f} now"
    )


def sanity_gates(
    measured: MeasuredAttendance,
    rules: Rules,
    baseline: Baseline | None,
    settings: Settings,
    report: RowReport,
    accept_change: str = "",
) -> tuple[Measures, Verdict]:
    """Measure the attendance, judge it against the last accepted run, and list the findings in the row report."""
    files = measured.files
    unreadable = sorted({i.file for i in report.issues if i.code in UNREADABLE_CODES and i.file in files})
    counts = measured.counts
    measures = measures_of(
        counts,
        rules,
        measured.school_days,
        style=rules.style,
        calendar=rules.calendar is not None,
        files=files,
        unreadable=unreadable,
        rows_read=sum(report.rows_read.get(f, 0) for f in files),
    )
    keys = ((s.student_sourced_id, s.school_sourced_id) for s in measured.summaries)  # read once: no 1M-tuple list
    verdict = judge(measures, baseline, counts.absent_until, keys, settings.plausibility, accept_change)
    file = files[0] if files else ATTENDANCE_FILE
    stopping, overridden = verdict.stopping, verdict.overridden
    for f in verdict.findings:
        note = f" Accepted with --accept-change: {verdict.accept_reason}" if f in overridden else ""
        report.add(file, 0, "", f.code, f.message + note, severity="error" if f in stopping else "warning")
    if verdict.baseline is not None:
        for c in verdict.corrections:
            message = correction_message(c, verdict.baseline)
            report.add(file, 0, "studentSourcedId", "days-absent-shrank", message, severity="warning")
    return measures, verdict
