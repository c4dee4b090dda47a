"""What the API may answer a recipient's client with: reads, FHIR R4 searches, Bulk exports and the Group of its
consented students, over the served set `sync` keeps in the state store (deliver/served.py), and the FERPA record
of what was read (one disclosures row per student per request, channel api-read or bulk-export).

Only what consent permits is ever returned: a student's Patient and Observations only while the served set holds a
Consent of theirs for that recipient that the gate relied on (a revocation notice's does not count; the next sync
removes them anyway); Consents (an inactive one stays readable) and Organizations always. Every filter is SQL on
indexed columns; nothing loads a recipient's whole set into memory (an export streams).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Engine, and_, exists, false, func, insert, or_, select

from sis2fhir.config import Settings
from sis2fhir.deliver.disclosure_log import CONFIRMED
from sis2fhir.deliver.served import CHUNK, CODE, IDENTIFIER, SUBJECT_IDENTIFIER, served_recipients
from sis2fhir.service.search_terms import (
    DateRange,
    SearchValueError,
    date_range,
    instant_range,
    reference_ids,
    split_values,
    token,
)
from sis2fhir.store import open_store
from sis2fhir.store.schema import as_utc, disclosures, served_resources, served_tokens

__all__ = [
    "SearchPage",
    "ServedResource",
    "ServedStore",
    "UnsupportedSearch",
    "open_served",
    "served_recipients",
]

TYPES = ("Patient", "Organization", "Observation", "Consent")  # an export's order when no _type is asked for
API_READ, BULK_EXPORT = "api-read", "bulk-export"  # disclosures.channel of what the API served
# per resource type: search parameter -> how it filters (the result parameters are the API's, not ours)
PARAMETERS: dict[str, frozenset[str]] = {
    "Patient": frozenset({"identifier"}),
    "Organization": frozenset({"identifier"}),
    "Observation": frozenset(
        {"identifier", "patient", "subject", "subject:identifier", "patient:identifier", "code", "date"}
    ),
    "Consent": frozenset({"identifier", "patient", "patient:identifier", "status"}),
}
COMMON = frozenset({"_id", "_lastUpdated"})
IGNORED = frozenset({"_count", "_offset", "_summary", "_format", "_pretty"})  # the API's paging and formats


class UnsupportedSearch(ValueError):
    """A search parameter this server does not support for the type, or a value it cannot read (the message says
    which; it quotes no value)."""


@dataclass(frozen=True, slots=True)
class ServedResource:
    resource_type: str
    resource_id: str
    student: str | None  # sourcedId; None for an Organization
    version_id: int
    last_updated: datetime  # UTC
    content: bytes  # the JSON, exactly the line `sync --out` writes


@dataclass(slots=True)
class SearchPage:
    total: int
    resources: list[ServedResource] = field(default_factory=list)


def open_served(settings: Settings) -> ServedStore:
    """The served set in the state store `sync` writes (settings.store_url, SQLite or PostgreSQL); a context
    manager. A store no sync has written yet is made (empty: every search finds nothing)."""
    return ServedStore(open_store(settings.store_url))


class ServedStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> ServedStore:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def read(self, recipient: str, resource_type: str, resource_id: str) -> ServedResource | None:
        t = served_resources
        with self.engine.connect() as conn:
            row = conn.execute(
                _columns().where(
                    t.c.recipient == recipient,
                    t.c.resource_type == resource_type,
                    t.c.resource_id == resource_id,
                    _visible(recipient),
                )
            ).first()
        return _resource(row) if row is not None else None

    def search(
        self, recipient: str, resource_type: str, params: Mapping[str, list[str]], count: int, offset: int
    ) -> SearchPage:
        """One page (`count` resources from `offset`, by last update then id) and the total. `count` 0: the total."""
        where = [served_resources.c.recipient == recipient, served_resources.c.resource_type == resource_type]
        try:
            where += _filters(recipient, resource_type, params)
        except SearchValueError as e:
            raise UnsupportedSearch(str(e)) from None
        where.append(_visible(recipient))
        t = served_resources
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(t).where(*where)) or 0
            rows = (
                conn.execute(
                    _columns()
                    .where(*where)
                    .order_by(t.c.last_updated, t.c.resource_id)
                    .limit(count)
                    .offset(max(offset, 0))
                ).all()
                if count > 0 and offset < total
                else []
            )
        return SearchPage(total, [_resource(r) for r in rows])

    def export(self, recipient: str, types: Sequence[str], since: datetime | None) -> Iterator[ServedResource]:
        """Every resource of these types (all four when none), type by type in that order, then by id; with `since`,
        only those changed after it. Streamed in chunks."""
        t = served_resources
        for rtype in types or TYPES:
            q = _columns().where(t.c.recipient == recipient, t.c.resource_type == rtype, _visible(recipient))
            if since is not None:
                q = q.where(t.c.last_updated > as_utc(since))
            with self.engine.connect() as conn:
                for row in conn.execution_options(yield_per=CHUNK).execute(q.order_by(t.c.resource_id)):
                    yield _resource(row)

    def group_members(self, recipient: str) -> list[str]:
        """The Patient ids of the recipient's consented students (the Group a Bulk export of it names)."""
        t = served_resources
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    select(t.c.resource_id)
                    .where(t.c.recipient == recipient, t.c.resource_type == "Patient", _visible(recipient))
                    .order_by(t.c.resource_id)
                )
            )

    def record_reads(
        self,
        recipient: str,
        client_id: str,
        students: Iterable[str],
        what: str,
        when: datetime,
        *,
        channel: str | None = None,
    ) -> None:
        """The FERPA 34 CFR 99.32 record of one request: a disclosures row per student whose data it returned,
        naming the recipient, the client (destination `api:<client_id>`), what was asked (`what`, e.g. the
        request's path and query, or the export's types), when, and the consent relied on (the student's Consent
        the gate relied on for the recipient, else the one a revocation notice left). `channel`: api-read, or
        bulk-export (the default when `what` names `$export`)."""
        wanted = sorted(set(students))
        if not wanted:
            return
        how = channel or (BULK_EXPORT if "$export" in what else API_READ)
        t = served_resources
        relied: dict[str, tuple[bool, datetime, str, str]] = {}  # student -> (active, updated, consent id, state id)
        with self.engine.begin() as conn:
            for i in range(0, len(wanted), CHUNK):
                for student, consent_id, state_id, permits, updated in conn.execute(
                    select(t.c.student, t.c.consent_id, t.c.state_student_id, t.c.permits, t.c.last_updated).where(
                        t.c.recipient == recipient,
                        t.c.resource_type == "Consent",
                        t.c.student.in_(wanted[i : i + CHUNK]),
                    )
                ):
                    candidate = (bool(permits), as_utc(updated), consent_id, state_id)
                    if student not in relied or candidate[:2] > relied[student][:2]:
                        relied[student] = candidate
            ts, disclosed = as_utc(when), orjson.dumps([what]).decode()
            conn.execute(
                insert(disclosures),
                [
                    {
                        "student_sourced_id": s,
                        "state_student_id": relied[s][3] if s in relied else "",
                        "recipient": recipient,
                        "destination": f"api:{client_id}",
                        "consent_id": relied[s][2] if s in relied else "",
                        "disclosed": disclosed,
                        "disclosed_at": ts,
                        "outbox_key": "",
                        "latency_seconds": None,
                        "certainty": CONFIRMED,
                        "channel": how,
                    }
                    for s in wanted
                ],
            )


def _columns() -> Any:
    t = served_resources
    return select(t.c.resource_type, t.c.resource_id, t.c.student, t.c.version_id, t.c.last_updated, t.c.content)


def _resource(row: Any) -> ServedResource:
    return ServedResource(
        row.resource_type, row.resource_id, row.student, row.version_id, as_utc(row.last_updated), bytes(row.content)
    )


def _visible(recipient: str) -> ColumnElement[bool]:
    """A student's Patient and Observations only while a Consent of theirs for the recipient is one the gate
    relied on (a revocation notice's Consent is not; nor is any after `withdraw`)."""
    t, c = served_resources, served_resources.alias("consent")
    active = exists().where(
        c.c.recipient == recipient, c.c.resource_type == "Consent", c.c.student == t.c.student, c.c.permits
    )
    return or_(t.c.resource_type.in_(("Consent", "Organization")), active)


def _filters(recipient: str, resource_type: str, params: Mapping[str, list[str]]) -> list[ColumnElement[bool]]:
    """The SQL conditions of a search: a repeated parameter is AND, a parameter's comma-separated values OR."""
    allowed = PARAMETERS.get(resource_type)
    if allowed is None:
        raise UnsupportedSearch(f"{resource_type} is not served (Patient, Organization, Observation, Consent)")
    t = served_resources
    out: list[ColumnElement[bool]] = []
    for name, occurrences in params.items():
        if name in IGNORED:
            continue
        if name not in allowed and name not in COMMON:
            raise UnsupportedSearch(f"the search parameter {name!r} is not supported for {resource_type}")
        for occurrence in occurrences:
            values = split_values(occurrence)
            if not values:
                raise UnsupportedSearch(f"the search parameter {name!r} has no value")
            if name == "_id":
                out.append(t.c.resource_id.in_(values))
            elif name in ("patient", "subject"):
                out.append(t.c.patient_id.in_(reference_ids(values, "Patient")))
            elif name == "status":
                out.append(t.c.status.in_(values))
            elif name == "date":
                out.append(or_(*(_in_range(t.c.effective_end, date_range(v, name)) for v in values)))
            elif name == "_lastUpdated":
                out.append(or_(*(_in_range(t.c.last_updated, instant_range(v, name)) for v in values)))
            else:
                kind = {"identifier": IDENTIFIER, "code": CODE}.get(name, SUBJECT_IDENTIFIER)
                out.append(_token(recipient, resource_type, kind, [token(v) for v in values]))
    return out


def _token(
    recipient: str, resource_type: str, kind: str, tokens: list[tuple[str | None, str | None]]
) -> ColumnElement[bool]:
    """The resource has a term of this kind matching one of (system, value): None for either means any."""
    tk = served_tokens
    matches = []
    for system, value in tokens:
        cond = []
        if value is not None:
            cond.append(tk.c.value == value)
        if system is not None:
            cond.append(tk.c.system == system)
        matches.append(and_(*cond) if cond else tk.c.value.is_not(None))
    return served_resources.c.resource_id.in_(
        select(tk.c.resource_id).where(
            tk.c.recipient == recipient, tk.c.resource_type == resource_type, tk.c.kind == kind, or_(*matches)
        )
    )


def _in_range(column: Any, wanted: DateRange) -> ColumnElement[bool]:
    """FHIR R4 prefixes over a half-open range [low, high) of the value's precision."""
    low, high = wanted.low, wanted.high
    if isinstance(low, datetime) and isinstance(high, datetime):
        low, high = as_utc(low), as_utc(high)
    return {
        "eq": and_(column >= low, column < high),
        "ne": or_(column < low, column >= high),
        "ge": column >= low,
        "gt": column >= high,
        "le": column < high,
        "lt": column < low,
    }.get(wanted.prefix, false())
