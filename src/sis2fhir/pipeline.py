"""One run of `sis2fhir sync`: read -> measure -> sanity gates -> consent gate -> map -> validate -> outbox -> deliver.

Each step lives in its own module; this file only wires them together and keeps the counts for the summary.
Memory grows with students (a few numbers each), never with attendance rows.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from sis2fhir.config import Settings
from sis2fhir.deliver.base import Destination, DestinationUnusable
from sis2fhir.deliver.outbox import DEAD, DELIVERED, PENDING, QUEUED, Envelope, Outbox
from sis2fhir.disclosure import DisclosureBuilder, DisclosureCounts, Route, build_disclosures
from sis2fhir.measure import AttendanceSummary
from sis2fhir.plausibility import (
    UNREADABLE_CODES,
    Baseline,
    GateStopped,
    Measures,
    Verdict,
    correction_message,
    is_positive,
    judge,
    measures_of,
)
from sis2fhir.policy import Policy
from sis2fhir.read.attendance import ATTENDANCE_FILE, attendance_style, edfi_files
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.consents import read_consents
from sis2fhir.read.export import Export, ExportError, open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import Roster, SchoolYear
from sis2fhir.report import RowReport
from sis2fhir.store import verdicts
from sis2fhir.store.runs import finish_run, start_run
from sis2fhir.store.summaries import record_changed
from sis2fhir.tally import Rules, Tallies, school_days_of, summaries_of, tally_attendance
from sis2fhir.withhold import MISSING, WITHHELD, Withheld, report_withheld, withhold

Progress = Callable[[str, int], None]  # (stage, count so far)
ENQUEUE_CHUNK = 1000  # items held in memory before they are written to the outbox


@dataclass(slots=True)
class SyncResult:
    as_of: date
    school_year: SchoolYear | None = None
    attendance_style: str = ""
    students: int = 0
    summaries: list[AttendanceSummary] = field(default_factory=list)  # the ones that may be sent (none withheld)
    withheld: list[Withheld] = field(default_factory=list)  # student x school summaries not sent in this run
    tiers: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)  # per student x recipient
    consented_students: int = 0
    resources_built: Counter[str] = field(default_factory=Counter)
    # per resource type: resources in this run's items for FHIR-taking destinations, new + unchanged
    to_recipients: Counter[str] = field(default_factory=Counter)
    to_recipients_new: Counter[str] = field(default_factory=Counter)  # per type: of which new or changed
    quarantined: int = 0
    unchanged: int = 0
    enqueued: int = 0
    withdrawn: int = 0  # undelivered items cancelled because consent no longer permits
    revocation_notices: int = 0  # revoked Consents sent to recipients that held the student's data
    delivery: Counter[str] = field(default_factory=Counter)  # what this run's deliveries came to
    outstanding: Counter[str] = field(default_factory=Counter)  # after the run: queued / pending / dead in the outbox
    report: RowReport = field(default_factory=RowReport)
    verdict: Verdict | None = None  # the sanity gates' findings (plausibility.py)
    measures: Measures | None = None
    run_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (per-stage latency, for operators)

    @property
    def changes(self) -> int:
        return self.enqueued


class _StageClock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self.t
        self.t = now


def choose_school_year(roster: Roster, as_of: date) -> SchoolYear:
    """The school year that contains the as-of date, else the latest one that started before it."""
    containing = [y for y in roster.school_years if y.start <= as_of <= y.end]
    if containing:
        return max(containing, key=lambda y: y.start)
    started = [y for y in roster.school_years if y.start <= as_of]
    if started:
        return max(started, key=lambda y: y.start)
    if not roster.school_years:
        raise ExportError("academicSessions.csv gives no school year: add a row of type schoolYear (or terms)")
    first = min(y.start for y in roster.school_years)
    raise ExportError(f"the as-of date {as_of} is before every school year in academicSessions.csv (first: {first})")


def measure_attendance(
    export: Export,
    roster: Roster,
    calendar: dict[str, list[date]] | None,
    year: SchoolYear,
    as_of: date,
    policy: Policy,
    report: RowReport,
    progress: Progress | None = None,
    workers: int = 0,
) -> list[AttendanceSummary]:
    """Stream the attendance events once and return a summary per student x school in membership on `as_of`."""
    tallies, rules = tally_year(export, roster, calendar, year, as_of, policy, report, progress, workers)
    return summaries_of(tallies, rules, calendar)


def tally_year(
    export: Export,
    roster: Roster,
    calendar: dict[str, list[date]] | None,
    year: SchoolYear,
    as_of: date,
    policy: Policy,
    report: RowReport,
    progress: Progress | None = None,
    workers: int = 0,
    compare_until: date | None = None,
) -> tuple[Tallies, Rules]:
    """Stream the attendance events once into tallies (per student x school, and the gates' counts);
    `compare_until`: also keep the days absent up to this date apart (the last accepted run's as-of date)."""
    base = year.start.toordinal()
    rules = Rules(
        year=year,
        as_of=as_of,
        policy=policy,
        memberships=roster.memberships,
        calendar_days=None
        if calendar is None
        else {s: {d.toordinal() - base for d in ds} for s, ds in calendar.items()},
        compare_until=None if compare_until is None else compare_until.toordinal() - base,
    )
    tallies = tally_attendance(export, roster, rules, report, workers)
    if progress is not None:
        progress("attendance rows", tallies.events)
    if tallies.outside_year:
        report.add(
            tallies.file,
            0,
            "date",
            "outside-school-year",
            f"{tallies.outside_year} rows are dated outside the school year {year.start} to {year.end}; not counted",
            severity="warning",
        )
    if tallies.after_as_of:
        report.add(
            tallies.file,
            0,
            "date",
            "after-as-of",
            f"{tallies.after_as_of} rows are dated after the as-of date {as_of}; not counted in this run",
            severity="warning",
        )
    return tallies, rules


def sanity_gates(
    export: Export,
    tallies: Tallies,
    rules: Rules,
    calendar: dict[str, list[date]] | None,
    style: str,
    summaries: list[AttendanceSummary],
    baseline: Baseline | None,
    settings: Settings,
    report: RowReport,
    accept_change: str = "",
) -> tuple[Measures, Verdict]:
    """Measure the attendance, judge it against the last accepted run, and list the findings in the row report."""
    files = attendance_files(export, style)
    unreadable = sorted({i.file for i in report.issues if i.code in UNREADABLE_CODES and i.file in files})
    measures = measures_of(
        tallies,
        rules,
        school_days_of(tallies, rules, calendar),
        style=style,
        calendar=calendar is not None,
        files=files,
        unreadable=unreadable,
        rows_read=sum(report.rows_read.get(f, 0) for f in files),
    )
    keys = [(s.student_sourced_id, s.school_sourced_id) for s in summaries]
    verdict = judge(measures, baseline, tallies.absent_until, keys, settings.plausibility, accept_change)
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


def sync(
    export_path: Path,
    as_of: date,
    settings: Settings,
    engine: Engine,
    routes: dict[str, list[Route]],
    destinations: dict[str, Destination],
    *,
    recipients_from_consents: list[Route] | None = None,
    quarantine_dir: Path | None = None,
    progress: Progress | None = None,
    report: RowReport | None = None,
    accept_change: str = "",
    baseline_store: Engine | None = None,
) -> SyncResult:
    """Run the whole job. `routes`: recipient -> routes (from the config); `recipients_from_consents`: routes that
    apply to every recipient named in consents.csv (one-off runs: `--out`, `--destination`).

    The sanity gates (plausibility.py) judge the attendance before anything is mapped, queued or sent; a stop
    raises GateStopped (an ExportError) after recording the run as stopped. `accept_change`: the operator's
    reason for letting an implausible change through; `baseline_store`: where the last accepted run is read
    (default `engine`; `sis2fhir check` reads the real store and writes to a throwaway one)."""
    result = SyncResult(as_of=as_of, report=report if report is not None else RowReport())
    report = result.report
    policy = settings.policy.resolve()
    district = settings.district
    started = datetime.now(UTC)

    export = open_export(export_path, settings.export.zip_limits())
    clock = _StageClock(result.timings)
    roster = read_roster(export, report, district.state_id_source)
    result.students = len(roster.students)
    calendar = read_calendar(export, report)
    style = attendance_style(export)  # exception-only without calendar.csv: refused by the sanity gates
    result.attendance_style = style
    consents = read_consents(export, roster, report, as_of)
    year = choose_school_year(roster, as_of)
    for dest in destinations.values():
        linker = getattr(dest, "linker", None)
        if linker is not None:  # demographics for Patient/$match (and for created Patients, when configured)
            linker.remember(roster.students.values())
    result.school_year = year

    clock.lap("read roster, calendar and consents")
    baseline = verdicts.last_accepted(baseline_store or engine, district.namespace, year.year)
    compare_until = baseline.as_of if baseline is not None and baseline.as_of <= as_of else None
    tallies, rules = tally_year(
        export, roster, calendar, year, as_of, policy, report, progress, settings.workers, compare_until
    )
    every_summary = summaries_of(tallies, rules, calendar)
    result.summaries, result.withheld = withhold_incomplete(export, tallies, style, every_summary, report)
    clock.lap("read and tally attendance")
    result.tiers.update(s.tier for s in result.summaries)
    result.measures, result.verdict = sanity_gates(
        export, tallies, rules, calendar, style, result.summaries, baseline, settings, report, accept_change
    )
    del tallies

    run_id = result.run_id = start_run(engine, started, as_of, str(export_path))
    absent = ((s.student_sourced_id, s.school_sourced_id, s.days_absent_h) for s in result.summaries)
    verdicts.record(engine, run_id, district.namespace, result.measures, result.verdict, absent)
    if result.verdict.stopping:
        _finish_run(engine, result)
        raise GateStopped(result.verdict)
    record_changed(engine, run_id, district.namespace, policy.name, result.summaries)  # for notifications, charts

    # recipients: from the config, or every recipient named in a consent
    all_routes: dict[str, list[Route]] = {r: list(v) for r, v in routes.items()}
    if recipients_from_consents:
        named = {c.recipient_organization for cs in consents.values() for c in cs}
        for recipient in sorted(named | set(all_routes)):
            rts = all_routes.setdefault(recipient, [])
            rts += [rt for rt in recipients_from_consents if rt not in rts]
    elif routes:
        for cs in consents.values():
            for c in cs:
                if c.recipient_organization not in routes:
                    report.add(
                        c.file,
                        c.line,
                        "recipientOrganization",
                        "recipient-not-configured",
                        "this recipient is not in the configuration's recipients; nothing is sent to it",
                        severity="warning",
                    )

    outbox = Outbox(engine, settings.outbox)
    # items a stopped run left in flight: in doubt, held by their recipient, queued again; settled as delivered
    # where the recipient can be seen to hold them; before the holders are known, who revocation notices go to
    outbox.recover_in_doubt()
    if destinations:
        asyncio.run(_settle_and_close(outbox, destinations))
    dest_names = {rt.destination for rts in all_routes.values() for rt in rts}
    builder = DisclosureBuilder(
        roster=roster,
        settings=settings,
        as_of=as_of,
        routes=all_routes,
        known=outbox.known_keys(dest_names),
        holders=outbox.delivered_subjects(dest_names),
        quarantine_dir=quarantine_dir,
        counts=DisclosureCounts(report),
    )
    by_student: dict[str, list[AttendanceSummary]] = {}
    for s in every_summary:  # a withheld student stays, with fewer summaries (or none): their Consent as always
        by_student.setdefault(s.student_sourced_id, [])
    for s in result.summaries:
        by_student[s.student_sourced_id].append(s)

    loop = asyncio.new_event_loop()
    try:
        envelopes: list[Envelope] = []
        mapped = 0
        for students_done, batch in build_disclosures(builder, by_student, consents, settings.workers):
            envelopes += batch
            if len(envelopes) >= ENQUEUE_CHUNK:  # written down as we go: memory stays flat
                _flush(envelopes, outbox, destinations, run_id, result, loop)
            mapped += students_done
            if progress is not None:
                progress("students mapped", mapped)
        _flush(envelopes, outbox, destinations, run_id, result, loop)
        counts = builder.counts
        result.decisions, result.resources_built = counts.decisions, counts.resources_built
        result.to_recipients, result.to_recipients_new = counts.to_recipients, counts.to_recipients_new
        result.quarantined, result.unchanged = counts.quarantined, counts.unchanged
        result.revocation_notices, result.consented_students = counts.revocation_notices, len(counts.consented)
        result.withdrawn = outbox.withdraw(counts.withdraw) if counts.withdraw else 0
        clock.lap("gate, map, validate, store and write local files")
        if destinations:
            outbox.make_due((PENDING,))  # students waiting for a patient match are tried again on every run
            result.delivery.update(loop.run_until_complete(drain_and_close(outbox, destinations)))
            clock.lap("deliver from the outbox")
    finally:
        loop.close()
    for (dest, status), n in outbox.counts().items():
        if dest in destinations and status in (QUEUED, PENDING, DEAD):
            result.outstanding[status] += n
    _finish_run(engine, result)
    return result


def withhold_incomplete(
    export: Export, tallies: Tallies, style: str, summaries: list[AttendanceSummary], report: RowReport
) -> tuple[list[AttendanceSummary], list[Withheld]]:
    """The summaries that may be sent; those of students with rejected attendance rows (or, in a positive file,
    without any row) are withheld, each reported once (withhold.py)."""
    positive = is_positive(style, tallies.presence_rows, tallies.rows_counted)
    kept, held = withhold(
        summaries,
        tallies.rejected,
        tallies.seen if positive else None,
        (attendance_files(export, style) or [ATTENDANCE_FILE])[0] if positive else "",
    )
    report_withheld(report, held)
    return kept, held


def attendance_files(export: Export, style: str) -> list[str]:
    """The files the attendance is read from: the Ed-Fi XML files, or attendance.csv."""
    return edfi_files(export) if style == "edfi" else [export.actual_name(ATTENDANCE_FILE)]


def _finish_run(engine: Engine, result: SyncResult) -> None:
    if result.run_id is not None:
        finish_run(engine, result.run_id, result.enqueued, _counts(result))


def _flush(
    envelopes: list[Envelope],
    outbox: Outbox,
    destinations: dict[str, Destination],
    run_id: int | None,
    result: SyncResult,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Write the items down and hand those for local destinations (a folder) over at once, while they are in memory.

    Network items are written down (with their payload) before any delivery and drained after the run. A folder
    is not a network: its items are written down in flight and without a payload (the folder will hold them), with
    their disclosure-log rows, then written to the folder and recorded; only those the folder could not take keep a
    payload for a retry. A crash in between leaves them in doubt: the next run writes them again, which the folder
    absorbs."""
    local: dict[str, list[Envelope]] = {}
    remote: list[Envelope] = []
    for env in envelopes:
        dest = destinations.get(env.destination)
        if dest is not None and dest.local:
            local.setdefault(env.destination, []).append(env)
        else:
            remote.append(env)
    result.enqueued += outbox.enqueue(remote, run_id)
    for name, envs in local.items():
        dest = destinations[name]
        items = [e.item for e in envs]
        result.enqueued += outbox.enqueue(envs, run_id, without_payload={i.key for i in items}, sending=dest)
        try:
            counts = loop.run_until_complete(outbox.deliver_batch(name, dest, items, fresh=True))
        except DestinationUnusable:  # a full disk: nothing of the batch landed; the run stops, the store as it was
            outbox.discard_fresh(i.key for i in items)
            raise
        result.delivery.update(counts)
        if counts[DELIVERED] < len(items):
            outbox.keep_payloads(envs)
    envelopes.clear()


async def _settle_and_close(outbox: Outbox, destinations: dict[str, Destination]) -> None:
    try:
        await outbox.settle_in_doubt(destinations)
    finally:
        for d in destinations.values():
            await d.close()


async def drain_and_close(outbox: Outbox, destinations: dict[str, Destination]) -> Counter[str]:
    try:
        return await outbox.drain(destinations)
    finally:
        for d in destinations.values():
            await d.close()


def _counts(result: SyncResult) -> dict[str, Any]:
    """The run's figures for the store: counts only, never PHI."""
    return {
        "students": result.students,
        "summaries": len(result.summaries),
        "withheld": {code: sum(1 for w in result.withheld if w.code == code) for code in (WITHHELD, MISSING)},
        "tiers": dict(result.tiers),
        "decisions": dict(result.decisions),
        "consented_students": result.consented_students,
        "resources_built": dict(result.resources_built),
        "quarantined": result.quarantined,
        "unchanged": result.unchanged,
        "enqueued": result.enqueued,
        "withdrawn": result.withdrawn,
        "revocation_notices": result.revocation_notices,
        "delivery": dict(result.delivery),
        "outstanding": dict(result.outstanding),
        "rows_rejected": dict(result.report.rows_rejected()),
        "timings_seconds": {k: round(v, 3) for k, v in result.timings.items()},
        "issues_by_code": dict(result.report.by_code()),
        "verdict": result.verdict.status if result.verdict is not None else "",
    }
