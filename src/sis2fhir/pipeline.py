"""One run of `sis2fhir sync`: read -> measure -> sanity gates -> consent gate -> map -> validate -> outbox -> deliver.

Each step lives in its own module; this file orders them and keeps the counts for the summary (and, until the runs
repository lands, the run's row in `runs`: `_start_run`, `_finish_run`).
Memory grows with students (a few numbers each), never with attendance rows.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ParamSpec

from sqlalchemy import Engine

from sis2fhir.columnar.choice import choose_engine
from sis2fhir.config import Settings
from sis2fhir.deliver.base import Destination
from sis2fhir.deliver.flush import Flushed, drain_and_close, flush, settle_and_close
from sis2fhir.deliver.outbox import DEAD, PENDING, QUEUED, Envelope, KnownKeys, Outbox
from sis2fhir.deliver.routing import Route, recipient_routes
from sis2fhir.disclosure import DisclosureBuilder, DisclosureCounts, build_disclosures, revocation_subjects
from sis2fhir.engine import Rules, choose_school_year
from sis2fhir.map.observation import Measured
from sis2fhir.measure import AttendanceSummary, last_instructional_day
from sis2fhir.plausibility import GateStopped, Measures, Verdict, sanity_gates
from sis2fhir.policy import Policy
from sis2fhir.read.attendance import attendance_style
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.consents import check_consents, read_consents
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.records import Roster, SchoolYear
from sis2fhir.report import RowReport
from sis2fhir.store import verdicts
from sis2fhir.store.attendance_events import record_transitions
from sis2fhir.store.runs import finish_run, start_run
from sis2fhir.store.summaries import record_changed
from sis2fhir.student_chunks import StudentsToMap, student_chunks
from sis2fhir.transitions import judge_in_pieces
from sis2fhir.withhold import MISSING, WITHHELD, Withheld

P = ParamSpec("P")
Progress = Callable[[str, int], None]  # (stage, count so far)
ENQUEUE_CHUNK = 4000  # items held in memory before they are written to the outbox (a folder's batch: one fsync a file)


@dataclass(slots=True)
class SyncResult:
    as_of: date
    school_year: SchoolYear | None = None
    attendance_style: str = ""
    attendance_engine: str = ""  # the engine that read the attendance (settings.engine; columnar/choice.py)
    engine_fallback: str = ""  # why the columnar engine, asked, left the file to the streaming one
    students: int = 0
    summaries: int = 0  # student x school summaries that may be sent (none withheld)
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
    events: Counter[str] = field(default_factory=Counter)  # attendance events newly recorded, by trigger
    report: RowReport = field(default_factory=RowReport)
    verdict: Verdict | None = None  # the sanity gates' findings (plausibility.py)
    measures: Measures | None = None
    run_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (per-stage latency, for operators)
    # a re-run of identical input (service/rerun.py): the run whose outputs it stands on, and that run's figures
    identical_to: int | None = None
    counted: dict[str, Any] = field(default_factory=dict)

    @property
    def changes(self) -> int:
        return self.enqueued

    def summary_count(self) -> int:
        """Student x school summaries that may be sent (for a re-run of identical input: the earlier run's)."""
        return self.summaries if self.identical_to is None else int(self.counted.get("summaries", 0))

    def withheld_counts(self) -> Counter[str]:
        if self.identical_to is None:
            return Counter(w.code for w in self.withheld)
        return Counter({k: int(v) for k, v in (self.counted.get("withheld") or {}).items()})


class _StageClock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self.t
        self.t = now


def _measured(policy: Policy, calendar: dict[str, list[date]] | None, year: SchoolYear, roster: Roster) -> Measured:
    """What the mapper states about how the run measured: the policy, and per school its last instructional day of
    the year (a summary that reaches it is final)."""
    last = {
        school: last_instructional_day(calendar.get(school) if calendar is not None else None, year.start, year.end)
        for school in {sc for _, sc in roster.memberships}
    }
    return Measured(policy, last)


def _thawed_after(run: Callable[P, SyncResult]) -> Callable[P, SyncResult]:
    """The run, with the heap it freezes once the roster is read (`gc.freeze`) thawed whatever its outcome (a
    command or a server may go on after it)."""

    @functools.wraps(run)
    def thawing(*args: P.args, **kwargs: P.kwargs) -> SyncResult:
        try:
            return run(*args, **kwargs)
        finally:
            gc.unfreeze()

    return thawing


@_thawed_after
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
    loop: asyncio.AbstractEventLoop | None = None,
) -> SyncResult:
    """Run the whole job. `routes`: recipient -> routes (from the config); `recipients_from_consents`: routes that
    apply to every recipient named in consents.csv (one-off runs: `--out`, `--destination`).

    The sanity gates (plausibility.py) judge the attendance before anything is mapped, queued or sent; a stop
    raises GateStopped (an ExportError) after recording the run as stopped. `accept_change`: the operator's
    reason for letting an implausible change through; `baseline_store`: where the last accepted run is read
    (default `engine`; `sis2fhir check` reads the real store and writes to a throwaway one). `loop`: the command's
    event loop, in which the destinations are used (the recipient check before, a drain after); without one, the
    run makes its own and closes it at the end."""
    result = SyncResult(as_of=as_of, report=report if report is not None else RowReport())
    report = result.report
    policy = settings.policy.resolve()
    district = settings.district
    started = datetime.now(UTC)

    export = open_export(export_path, settings.export.zip_limits())
    clock = _StageClock(result.timings)
    roster = read_roster(export, report, district.state_id_source, as_of=as_of)
    result.students = len(roster.students)
    calendar = read_calendar(export, report)
    style = attendance_style(export)  # exception-only without calendar.csv: refused by the sanity gates
    result.attendance_style = style
    check_consents(export)  # an unusable consents.csv stops the run now; its rows are read after the attendance
    year = choose_school_year(roster, as_of)
    for destination in destinations.values():  # demographics for Patient/$match (and created Patients)
        destination.remember_students(roster.students.values())
    result.school_year = year

    clock.lap("read roster and calendar")
    # the roster lives for the whole run: kept out of the collector's full passes (about 0.6 s of the per-student
    # facts at 100k students was the collector walking it and the consents, measured); freed as usual at the end
    gc.freeze()
    baseline = verdicts.last_accepted(baseline_store or engine, district.namespace, year.year)
    compare_until = baseline.as_of if baseline is not None and baseline.as_of <= as_of else None
    window = settings.notify.early_warning_window_days
    rules = Rules.of(roster, calendar, year, as_of, policy, style, compare_until, window)
    measured = choose_engine(settings.engine, settings.workers).measure(export, roster, rules, report)
    if progress is not None:
        progress("attendance rows", measured.counts.events)
    summaries, result.withheld = measured.summaries, measured.withheld
    result.summaries = len(summaries)
    result.attendance_engine, result.engine_fallback = measured.engine, measured.fallback
    result.tiers.update(str(s.tier) for s in summaries)  # plain codes: the counts go to JSON
    result.measures, result.verdict = sanity_gates(measured, rules, baseline, settings, report, accept_change)
    clock.lap("read and tally attendance")
    every_summary = measured.every_summary
    del measured  # the tallies: only the summaries are needed from here on
    # read now, not with the roster: the attendance stage needs none of them (held during it: +289 MB at 1M)
    consents = read_consents(export, roster, report, as_of)
    clock.lap("read consents")

    run_id = result.run_id = start_run(engine, started, as_of, str(export_path))
    absent = ((s.student_sourced_id, s.school_sourced_id, s.days_absent_h) for s in summaries)
    measures, verdict = result.measures, result.verdict
    verdicts.record(
        engine,
        run_id,
        district.namespace,
        school_year=measures.school_year,
        as_of=measures.as_of,
        status=verdict.status,
        accept_reason=verdict.accept_reason,
        findings=verdict.findings_record(),
        measures=measures.as_json(),
        absent=absent,
    )
    if result.verdict.stopping:
        _finish_run(engine, result)
        raise GateStopped(result.verdict)

    def record_summaries_and_events() -> None:  # for notifications and charts; the mapping needs nothing of it
        sent = to_map.summaries
        record_changed(engine, run_id, district.namespace, policy.name, sent)
        result.events.update(_record_events(engine, run_id, settings, year, as_of, sent, policy))

    all_routes = recipient_routes(routes, recipients_from_consents or [], consents, report)
    outbox = Outbox(engine, settings.outbox)
    # items a stopped run left in flight: in doubt, held by their recipient, queued again; settled as delivered
    # where the recipient can be seen to hold them; before the holders are known, who revocation notices go to
    outbox.recover_in_doubt()
    run_loop = loop if loop is not None else asyncio.new_event_loop()
    try:
        if destinations:
            run_loop.run_until_complete(settle_and_close(outbox, destinations))
        dest_names = {rt.destination for rts in all_routes.values() for rt in rts}
        builder = DisclosureBuilder(
            roster=roster,
            settings=settings,
            as_of=as_of,
            routes=all_routes,
            known=KnownKeys(engine),
            holders=outbox.delivered_subjects(dest_names, among=revocation_subjects(consents)),
            quarantine_dir=quarantine_dir,
            counts=DisclosureCounts(report),
            measured=_measured(policy, calendar, year, roster),
        )
        chunks = student_chunks(every_summary, summaries)  # a withheld student: their Consent as always
        # the withheld summaries: counted already, never mapped; the rest, the chunks and the consents: from here
        # on held by `to_map` only, which the mapping lets go of once its workers have them
        to_map = StudentsToMap(chunks, summaries, consents)
        del every_summary, summaries, chunks, consents
        envelopes: list[Envelope] = []
        mapped = 0
        # the summaries and events are recorded while the workers map their first chunks, before anything is enqueued
        mapping = build_disclosures(builder, to_map, settings.workers, record_summaries_and_events)
        for students_done, batch in mapping:
            envelopes += batch
            if len(envelopes) >= ENQUEUE_CHUNK:  # written down as we go: memory stays flat
                _flushed(flush(envelopes, outbox, destinations, run_id, run_loop), result)
            mapped += students_done
            if progress is not None:
                progress("students mapped", mapped)
        _flushed(flush(envelopes, outbox, destinations, run_id, run_loop), result)
        counts = builder.counts
        result.decisions, result.resources_built = counts.decisions, counts.resources_built
        result.to_recipients, result.to_recipients_new = counts.to_recipients, counts.to_recipients_new
        result.quarantined, result.unchanged = counts.quarantined, counts.unchanged
        result.revocation_notices, result.consented_students = counts.revocation_notices, counts.consented
        result.withdrawn = outbox.withdraw(counts.withdraw) if counts.withdraw else 0
        for name, destination in destinations.items():  # a served set stops holding whom consent no longer permits
            destination.withdraw(counts.withdraw.at(name))
        clock.lap("gate, map, validate, store and write local files")
        if destinations:
            _deliver_due(outbox, destinations, run_loop, result, clock)
    finally:
        if loop is None:
            run_loop.close()
    _count_outstanding(outbox, destinations, result)
    _finish_run(engine, result)
    return result


def deliver_pending(
    result: SyncResult,
    export_path: Path,
    settings: Settings,
    engine: Engine,
    destinations: dict[str, Destination],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> SyncResult:
    """A run whose input is identical to run `result.identical_to` (service/rerun.py decides, and gives `result`
    that run's figures): nothing is read, measured, mapped or disclosed anew (a full run would find every item in
    the outbox already); what a full run does with the outbox all the same is done: items a stopped run left in
    doubt recovered and settled, the due ones (retries) delivered. Recorded in `runs` like any run."""
    clock = _StageClock(result.timings)
    result.run_id = start_run(engine, datetime.now(UTC), result.as_of, str(export_path))
    outbox = Outbox(engine, settings.outbox)
    outbox.recover_in_doubt()
    run_loop = loop if loop is not None else asyncio.new_event_loop()
    try:
        if destinations:
            run_loop.run_until_complete(settle_and_close(outbox, destinations))
            _deliver_due(outbox, destinations, run_loop, result, clock)
    finally:
        if loop is None:
            run_loop.close()
    _count_outstanding(outbox, destinations, result)
    _finish_run(engine, result)
    return result


def _deliver_due(
    outbox: Outbox,
    destinations: dict[str, Destination],
    run_loop: asyncio.AbstractEventLoop,
    result: SyncResult,
    clock: _StageClock,
) -> None:
    outbox.make_due((PENDING,))  # students waiting for a patient match are tried again on every run
    result.delivery.update(run_loop.run_until_complete(drain_and_close(outbox, destinations)))
    clock.lap("deliver from the outbox")


def _count_outstanding(outbox: Outbox, destinations: dict[str, Destination], result: SyncResult) -> None:
    for (name, status), n in outbox.counts().items():
        if name in destinations and status in (QUEUED, PENDING, DEAD):
            result.outstanding[status] += n


def _record_events(
    engine: Engine,
    run_id: int,
    settings: Settings,
    year: SchoolYear,
    as_of: date,
    summaries: list[AttendanceSummary],
    policy: Policy,
) -> dict[str, int]:
    """The run's transitions (transitions.py) judged against the stored state and recorded (store.attendance_events),
    in one transaction; the events newly recorded, by trigger (none for a re-run or an older as-of date)."""
    judge = judge_in_pieces(year.year, as_of, summaries, policy, settings.notify.consecutive_days_wanted())
    return record_transitions(engine, settings.district.namespace, as_of, run_id, judge).events


# -- the run's record in the store (the one place this module writes `runs`) ---------------------------------


def _finish_run(engine: Engine, result: SyncResult) -> None:
    if result.run_id is not None:
        finish_run(engine, result.run_id, result.enqueued, _counts(result))


def _flushed(done: Flushed, result: SyncResult) -> None:
    result.enqueued += done.enqueued
    result.delivery.update(done.delivery)


def _counts(result: SyncResult) -> dict[str, Any]:
    """The run's figures for the store: counts only, never PHI."""
    year = result.school_year
    return {
        "school_year": None
        if year is None
        else [year.sourced_id, year.title, str(year.start), str(year.end), year.year],
        "students": result.students,
        "attendance_engine": {"engine": result.attendance_engine, "fallback": result.engine_fallback},
        "summaries": result.summary_count(),
        "withheld": {code: result.withheld_counts()[code] for code in (WITHHELD, MISSING)},
        "tiers": dict(result.tiers),
        "decisions": dict(result.decisions),
        "consented_students": result.consented_students,
        "resources_built": dict(result.resources_built),
        "to_recipients": dict(result.to_recipients),
        "quarantined": result.quarantined,
        "unchanged": result.unchanged,
        "enqueued": result.enqueued,
        "withdrawn": result.withdrawn,
        "revocation_notices": result.revocation_notices,
        "delivery": dict(result.delivery),
        "outstanding": dict(result.outstanding),
        "events": dict(result.events),
        "rows_rejected": dict(result.report.rows_rejected()),
        "timings_seconds": {k: round(v, 3) for k, v in result.timings.items()},
        "issues_by_code": dict(result.report.by_code()),
        "verdict": result.verdict.status if result.verdict is not None else "",
        **({} if result.identical_to is None else {"identical_to": result.identical_to}),
    }
