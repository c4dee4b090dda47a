"""The re-run that finds nothing changed, without reading it all again: when a sync's fingerprint (fingerprint.py)
equals that of the district's last completed run (store/run_fingerprints.py), its outputs would be that run's, so it
reads, measures and maps nothing; it still does what the outbox asks (pipeline.deliver_pending: retries, items in
doubt), and its row report is the earlier run's, byte for byte (its SHA-256 checked; copied when this run writes the
report elsewhere). Any doubt runs the full sync: no earlier run, a stopped, failed or crashed one since, a changed
setting, as-of date, recipient or byte of input, --accept-change, a file that cannot be read, a report that is gone
or changed, an outbox touched since.

A skipped run writes no disclosure (nothing was disclosed: a full run would have found every item's key in the
outbox), no attendance event (a re-run of the same as-of date records none) and no verdict (the baseline stays the
run it stands on, whose measures are the same)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections import Counter
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from sis2fhir.deliver.base import Destination
from sis2fhir.deliver.outbox.items import PENDING
from sis2fhir.pipeline import SyncResult, deliver_pending
from sis2fhir.plausibility import Finding, Verdict
from sis2fhir.records import SchoolYear
from sis2fhir.report import RowReport
from sis2fhir.service.fingerprint import Fingerprint
from sis2fhir.store import run_fingerprints
from sis2fhir.store.run_fingerprints import Completed
from sis2fhir.store.verdicts import ACCEPTED

CLEAN = "clean"  # plausibility.Verdict.status of a run no gate stopped and nothing needed accepting

if TYPE_CHECKING:  # service.sync calls this module
    from sis2fhir.service.sync import SyncRequest


def stand_on_last(
    request: SyncRequest,
    engine: Engine,
    fingerprint: Fingerprint | None,
    destinations: dict[str, Destination],
    loop: asyncio.AbstractEventLoop,
) -> SyncResult | None:
    """The run, done as a re-run of identical input; None when it must run in full."""
    if fingerprint is None or request.accept_change:
        return None
    last = run_fingerprints.last_completed(engine, request.settings.district.namespace)
    # only a clean run is stood on: one let through by --accept-change could be stopped again without it
    if last is None or last.fingerprint != fingerprint.digest or last.verdict != CLEAN:
        return None
    if last.outbox.get(PENDING):  # a FHIR recipient's patient match needs the roster's demographics: not read here
        return None
    report = _earlier_report(last, request.report_path)
    if report is None:
        return None
    result = SyncResult(as_of=request.as_of, identical_to=last.source)
    _take_figures(result, last.counts, last.findings, report)
    deliver_pending(result, request.export, request.settings, engine, destinations, loop=loop)
    assert result.run_id is not None  # deliver_pending records the run
    run_fingerprints.record(
        engine,
        result.run_id,
        request.settings.district.namespace,
        fingerprint.digest,
        verdict=last.verdict,
        report_path=str(Path(request.report_path).absolute()),
        report_sha256=last.report_sha256,
        identical_to=last.source,
    )
    return result


def remember(request: SyncRequest, engine: Engine, fingerprint: Fingerprint | None, result: SyncResult) -> None:
    """Record a full run that completed (its items all queued, its report written), unless its input changed while
    it ran or its verdict is not one a re-run may stand on."""
    verdict = result.verdict.status if result.verdict is not None else ""
    if fingerprint is None or result.run_id is None or verdict not in ACCEPTED:
        return
    if not fingerprint.unchanged_since(Path(request.export)):
        return
    try:
        digest = hashlib.sha256(Path(request.report_path).read_bytes()).hexdigest()
    except OSError:
        return
    run_fingerprints.record(
        engine,
        result.run_id,
        request.settings.district.namespace,
        fingerprint.digest,
        verdict=verdict,
        report_path=str(Path(request.report_path).absolute()),
        report_sha256=digest,
    )


def _earlier_report(last: Completed, report_path: Path) -> RowReport | None:
    """The earlier run's row report, now at `report_path` too; None when it cannot be had as it was written."""
    target = Path(report_path)
    blob = _bytes_if(target, last.report_sha256)
    if blob is None:
        blob = _bytes_if(Path(last.report_path), last.report_sha256)
        if blob is None:
            return None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        except OSError:
            return None
    report = RowReport()
    try:
        rows = csv.reader(io.StringIO(blob.decode("utf-8"), newline=""))
        next(rows, None)  # the header
        for file, line, column, code, severity, message in rows:
            report.add(file, int(line), column, code, message, "error" if severity == "error" else "warning")
    except (ValueError, csv.Error):  # not a report RowReport.write_csv wrote: in doubt
        return None
    return report


def _bytes_if(path: Path, sha256: str) -> bytes | None:
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    return blob if hashlib.sha256(blob).hexdigest() == sha256 else None


def _take_figures(
    result: SyncResult, counts: dict[str, Any], findings: list[dict[str, Any]], report: RowReport
) -> None:
    """The figures of the run stood on, as a full re-run would state them: every delivery unchanged, none new."""
    result.counted = counts
    result.report = report
    year = counts.get("school_year")
    if year:
        sourced_id, title, start, end, number = year
        result.school_year = SchoolYear(sourced_id, title, date.fromisoformat(start), date.fromisoformat(end), number)
    result.students = int(counts.get("students", 0))
    engine = counts.get("attendance_engine") or {}
    result.attendance_engine, result.engine_fallback = engine.get("engine", ""), engine.get("fallback", "")
    result.tiers = Counter(counts.get("tiers") or {})
    result.decisions = Counter(counts.get("decisions") or {})
    result.consented_students = int(counts.get("consented_students", 0))
    result.resources_built = Counter(counts.get("resources_built") or {})
    result.to_recipients = Counter(counts.get("to_recipients") or {})
    result.to_recipients_new = Counter({rtype: 0 for rtype in result.to_recipients})
    result.quarantined = int(counts.get("quarantined", 0))
    # the findings that did not stop it (warnings): a full run of the same input would find them again
    found = [Finding(f["code"], f["message"], stops=False) for f in findings if not f.get("stops")]
    result.verdict = Verdict(found, [], None)
    result.unchanged = int(counts.get("enqueued", 0)) + int(counts.get("unchanged", 0))
