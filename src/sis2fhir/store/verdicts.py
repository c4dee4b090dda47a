"""The runs' verdicts in the state store: each run's gate findings and measures, and the baseline the next run of
the same district is compared with (the last accepted run, with its digest of days absent per student x school)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import orjson
from sqlalchemy import Engine, insert, inspect, select, update

from sis2fhir.store.schema import run_verdicts

ACCEPTED = ("clean", "accepted")


Key = tuple[str, str]  # (student sourcedId, school sourcedId)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The last accepted run of the same district and school year (what the sanity gates compare with)."""

    run_id: int
    as_of: date
    rows_per_school_day: float | None
    students_absent: int
    # per student x school, hundredths of a day absent on or before `as_of`, as stored (encode_digest): parsed only
    # when compared (`absent_by_school`), not held through the run (1M students' keys and numbers took about 250 MB
    # of Python objects parsed, the blob about 6 MB)
    digest: bytes

    def absent_by_school(self) -> dict[str, dict[str, int]]:
        """school -> student -> hundredths absent on or before `as_of` (empty without a digest)."""
        parsed: dict[str, dict[str, int]] = orjson.loads(zlib.decompress(self.digest)) if self.digest else {}
        return parsed


def encode_digest(absent: Iterable[tuple[str, str, int]]) -> bytes:
    """(student, school, hundredths absent) as zlib-compressed JSON {school: {student: hundredths}}."""
    by_school: dict[str, dict[str, int]] = {}
    for student, school, hundredths in absent:
        by_school.setdefault(school, {})[student] = hundredths
    return zlib.compress(orjson.dumps(by_school, option=orjson.OPT_SORT_KEYS), 6)


def last_accepted(engine: Engine | None, district: str, school_year: int) -> Baseline | None:
    """The latest clean or accepted run of this district and school year, or None (a first run, or a store from
    before the gates existed: only the absolute gates apply)."""
    if engine is None or not inspect(engine).has_table(run_verdicts.name):
        return None
    t = run_verdicts
    with engine.connect() as conn:
        row = conn.execute(
            select(t.c.run_id, t.c.as_of, t.c.measures, t.c.absent_digest)
            .where(t.c.district == district, t.c.school_year == school_year, t.c.verdict.in_(ACCEPTED))
            .order_by(t.c.run_id.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    measures = orjson.loads(row.measures)
    return Baseline(
        run_id=row.run_id,
        as_of=date.fromisoformat(row.as_of),
        rows_per_school_day=measures.get("rows_per_school_day"),
        students_absent=int(measures.get("students_absent") or 0),
        digest=row.absent_digest or b"",
    )


def record(
    engine: Engine,
    run_id: int,
    district: str,
    *,
    school_year: int,
    as_of: date,
    status: str,
    accept_reason: str,
    findings: list[dict[str, object]],
    measures: dict[str, object],
    absent: Iterable[tuple[str, str, int]] = (),
) -> None:
    """Write the run's verdict (`status`: clean | accepted | stopped; `findings` and `measures` as JSON). An
    accepted run keeps the digest and becomes the baseline; older digests of the district are dropped (one per
    district is all a comparison needs)."""
    digest = encode_digest(absent) if status in ACCEPTED else None
    t = run_verdicts
    with engine.begin() as conn:
        if digest is not None:
            conn.execute(
                update(t).where(t.c.district == district, t.c.absent_digest.is_not(None)).values(absent_digest=None)
            )
        conn.execute(
            insert(t).values(
                run_id=run_id,
                district=district,
                school_year=school_year,
                as_of=as_of.isoformat(),
                verdict=status,
                accepted_reason=accept_reason,
                findings=orjson.dumps(findings).decode(),
                measures=orjson.dumps(measures).decode(),
                absent_digest=digest,
                recorded_at=datetime.now(UTC),
            )
        )
