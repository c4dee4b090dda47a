"""The attendance stage in a process of its own: the engine's measure() and the sanity gates, and of it all only
what the rest of the run needs (the summaries, the withheld, the gates' findings).

The tallies, DuckDB's tables and the facts passes are the run's largest transient memory; freed in the process
that made them, most of it would stay there (a Python heap keeps partly used arenas, DuckDB's allocator its pages)
for the rest of the run, under the mapping workers forked from it. Measured at 100k students before this stage ran
apart: 224 MB after the roster and consents, 346 MB after the stage, of which the summaries are about 40 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

from sis2fhir.config import Settings
from sis2fhir.engine import AttendanceEngine, Rules
from sis2fhir.measure import AttendanceSummary
from sis2fhir.parallel import apart
from sis2fhir.plausibility import Measures, Verdict, sanity_gates
from sis2fhir.read.export import Export, ExportError
from sis2fhir.records import Roster
from sis2fhir.report import RowReport
from sis2fhir.store.verdicts import Baseline
from sis2fhir.withhold import Withheld


@dataclass(slots=True)
class AttendanceStage:
    every_summary: list[AttendanceSummary]  # per student x school with a school day in membership
    summaries: list[AttendanceSummary]  # of those, the ones that may be sent
    withheld: list[Withheld]
    events: int  # attendance events read
    engine: str  # the engine that read the attendance (MeasuredAttendance.engine)
    fallback: str
    measures: Measures
    verdict: Verdict


def measure_and_judge(
    engine: AttendanceEngine,
    export: Export,
    roster: Roster,
    rules: Rules,
    baseline: Baseline | None,
    settings: Settings,
    report: RowReport,
    accept_change: str = "",
) -> AttendanceStage:
    """`engine.measure` and `plausibility.sanity_gates`, in a forked process (parallel.apart); the row report
    carries on from what that process added. An ExportError there is raised here, after the report has it."""

    def stage() -> tuple[AttendanceStage | None, RowReport, ExportError | None]:
        try:
            measured = engine.measure(export, roster, rules, report)
            measures, verdict = sanity_gates(measured, rules, baseline, settings, report, accept_change)
        except ExportError as e:
            return None, report, e
        every, kept = measured.every_summary, measured.summaries
        counts = measured.counts
        done = AttendanceStage(every, kept, measured.withheld, counts.events, measured.engine, measured.fallback,
                               measures, verdict)  # fmt: skip
        return done, report, None

    done, carried, error = apart(stage)
    report.carry_on_from(carried)
    if error is not None:
        raise error
    assert done is not None
    students = roster.students
    for s in done.every_summary:  # the roster's id strings again, not one unpickled copy each (60 MB at 1M)
        student = students.get(s.student_sourced_id)
        if student is not None:
            object.__setattr__(s, "student_sourced_id", student.sourced_id)  # frozen; the same value
    return done
