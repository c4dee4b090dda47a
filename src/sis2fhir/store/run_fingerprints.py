"""The runs' fingerprints in the state store: what a completed sync's output depended on, and whether the next run
of the same district may stand on it instead of reading, measuring and mapping the same input again.

Fail closed: a run may stand on the district's last run only when that run completed (it is recorded here only
after its deliveries were all queued and its row report written, with a clean or accepted verdict), no later run
of the district started (a stopped, failed or crashed run has a verdict or a `runs` row after it), the outbox is as
that run left it (no retry, replay or crash since: the items per status and the last id are the same). Whether an
item status forbids standing on it (service/rerun.py: items waiting for a patient match) is the caller's to say,
from `Completed.outbox`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, insert, select

from sis2fhir.store.schema import outbox, run_fingerprints, run_verdicts, runs


@dataclass(frozen=True, slots=True)
class Completed:
    """The district's last completed run, as far as a re-run needs it."""

    run_id: int  # the run recorded (full or itself standing on an earlier one)
    source: int  # the full run whose outputs and row report this is
    fingerprint: str
    verdict: str
    report_path: str
    report_sha256: str
    counts: dict[str, Any]  # the full run's figures (runs.summary)
    findings: list[dict[str, Any]]  # the full run's sanity-gate findings (run_verdicts.findings)
    outbox: dict[str, int]  # the outbox's items per status, as that run left it and as it is now


def outbox_mark(conn: Connection) -> str:
    """The outbox's state in two index reads: items per status and the highest id (JSON)."""
    grouped = conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))
    per_status: dict[str, int] = {status: n for status, n in grouped}
    last = conn.execute(select(func.max(outbox.c.id))).scalar()
    return orjson.dumps({"last": last, "status": per_status}, option=orjson.OPT_SORT_KEYS).decode()


def record(
    engine: Engine,
    run_id: int,
    district: str,
    fingerprint: str,
    *,
    verdict: str,
    report_path: str,
    report_sha256: str,
    identical_to: int | None = None,
) -> None:
    """Record a completed run's fingerprint, with the outbox's state as the run leaves it."""
    with engine.begin() as conn:
        conn.execute(
            insert(run_fingerprints).values(
                run_id=run_id,
                district=district,
                fingerprint=fingerprint,
                identical_to=identical_to,
                verdict=verdict,
                report_path=report_path,
                report_sha256=report_sha256,
                outbox_mark=outbox_mark(conn),
                recorded_at=datetime.now(UTC),
            )
        )


def last_completed(engine: Engine, district: str) -> Completed | None:
    """The district's last run, when it completed and nothing touched the outbox since; None on any doubt."""
    t = run_fingerprints
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.district == district).order_by(t.c.run_id.desc()).limit(1)).first()
        if row is None:
            return None
        later_verdict = conn.execute(
            select(func.max(run_verdicts.c.run_id)).where(run_verdicts.c.district == district)
        ).scalar()
        if later_verdict is not None and later_verdict > row.run_id:
            return None  # a later run of the district measured and then stopped, failed or crashed
        unrecorded = conn.execute(
            select(func.count())
            .select_from(runs)
            .where(
                runs.c.id > row.run_id,
                runs.c.id.not_in(select(run_verdicts.c.run_id)),
                runs.c.id.not_in(select(t.c.run_id)),
            )
        ).scalar()
        if unrecorded:
            return None  # a run (of some district) started after it and recorded nothing: in doubt
        mark = outbox_mark(conn)
        if mark != row.outbox_mark:
            return None
        source = row.identical_to if row.identical_to is not None else row.run_id
        ran = conn.execute(
            select(runs.c.finished_at, runs.c.summary, run_verdicts.c.findings)
            .join(run_verdicts, run_verdicts.c.run_id == runs.c.id)
            .where(runs.c.id == source)
        ).first()
    if ran is None or ran.finished_at is None or not ran.summary:
        return None
    counts, findings = orjson.loads(ran.summary), orjson.loads(ran.findings)
    return Completed(
        row.run_id,
        source,
        row.fingerprint,
        row.verdict,
        row.report_path,
        row.report_sha256,
        counts,
        findings,
        orjson.loads(mark)["status"],
    )
