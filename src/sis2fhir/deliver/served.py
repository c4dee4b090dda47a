"""What the API serves: per recipient, the resources a `sync --out` folder holds for it, in the state store's
`served_resources` table (and their search terms in `served_tokens`), for `sis2fhir serve` to read.

A local, self-contained destination like the NDJSON folder (deliver/ndjson.py): every item carries the Patient and
Organizations its resources refer to, by literal references; each resource keeps its latest version, whose content
is exactly the line the folder would hold. A batch is written in one database transaction before it is answered
"delivered", and the outbox records the answer with its disclosure-log row (deliver/outbox/recording.py), the way
it records the folder's: a crash in between leaves the items in doubt, and the next run writes them again, which
the table absorbs (same content: no new version).

Consent: a revocation notice (the student's Consent, inactive, sent to holders) removes that student's
Observations and Patient for that recipient, and the inactive Consent stays readable; Organizations stay. A
student the gate no longer permits at all (no consent, or it expired) is withdrawn (`withdraw`): every resource
of theirs for that recipient goes, but the Consent a revocation notice left.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import make_url

from sis2fhir.config import ConfigError, Settings
from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome
from sis2fhir.store import open_store
from sis2fhir.store.schema import served_resources, served_tokens

SERVED = "served"  # the destination's name in the outbox and the disclosure log
CHUNK = 500  # values per IN (...) list
IDENTIFIER, CODE, SUBJECT_IDENTIFIER = "identifier", "code", "subject-identifier"  # served_tokens.kind
STUDENT_BOUND_ON_REVOCATION = ("Observation", "Patient")  # what a revocation takes away; the Consent stays


def served_recipients(settings: Settings) -> set[str]:
    """The recipients the API serves: every one an `api.clients`, `api.cds_clients` or `api.ehr_launch` entry is
    bound to."""
    api = settings.api
    return (
        {c.recipient for c in api.clients}
        | {c.recipient for c in api.cds_clients}
        | {e.recipient for e in api.ehr_launch}
    )


@dataclass(frozen=True, slots=True)
class Row:
    """A resource as `served_resources` holds it, before its version is known."""

    recipient: str
    resource_type: str
    resource_id: str
    student: str | None
    state_student_id: str
    consent_id: str
    content: bytes
    digest: str
    patient_id: str | None
    effective_end: str | None
    status: str | None
    permits: bool  # a Consent the gate relied on (not a revocation notice's)
    tokens: tuple[tuple[str, str, str], ...] = field(default=())  # (kind, system, value)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.recipient, self.resource_type, self.resource_id


def row_of(item: DeliveryItem, resource: dict[str, Any]) -> Row:
    """The table's row for one resource of an item: its content as the NDJSON folder writes it, its search terms."""
    rtype, rid = resource["resourceType"], resource["id"]
    content = orjson.dumps(resource)
    reference = (resource.get("subject") or resource.get("patient") or {}) if rtype != "Patient" else {}
    patient_id = rid if rtype == "Patient" else _literal_id(reference.get("reference"), "Patient")
    tokens = [(IDENTIFIER, i.get("system", ""), i["value"]) for i in resource.get("identifier") or [] if i.get("value")]
    if rtype == "Observation":
        tokens += [(CODE, c.get("system", ""), c["code"]) for c in resource["code"].get("coding", []) if c.get("code")]
    ident = reference.get("identifier") or {}
    if ident.get("value"):
        tokens.append((SUBJECT_IDENTIFIER, ident.get("system", ""), ident["value"]))
    period = resource.get("effectivePeriod") or {}
    end = period.get("end") or resource.get("effectiveDateTime")
    return Row(
        item.recipient,
        rtype,
        rid,
        None if rtype == "Organization" else item.student_sourced_id,
        "" if rtype == "Organization" else item.state_student_id,
        "" if rtype == "Organization" else item.consent_id,
        content,
        hashlib.sha256(content).hexdigest(),
        patient_id,
        end[:10] if isinstance(end, str) and rtype == "Observation" else None,
        resource.get("status") if rtype == "Consent" else None,
        rtype == "Consent" and not _revoked(item),
        tuple(dict.fromkeys(tokens)),
    )


def _literal_id(reference: Any, rtype: str) -> str | None:
    if isinstance(reference, str) and reference.startswith(f"{rtype}/"):
        return reference.split("/", 2)[1]
    return None


def _revoked(item: DeliveryItem) -> bool:
    """A revocation notice: the Consent alone (disclosure.py sends nothing else with it). Not the Consent's status:
    a consent revoked after the run's as-of date is still relied on as of then, and goes with the data."""
    return all(r["resourceType"] == "Consent" for r in item.resources)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


class ServedDestination(Destination):
    """The `served_resources` table of the state store, for every recipient an API client is bound to."""

    batch_size = 5000  # one transaction per batch
    local = True  # no network: the pipeline hands items over as they are made
    self_contained = True  # what a `sync --out` folder holds: Patient and Organizations included, literally

    def __init__(self, store_url: str) -> None:
        url = make_url(store_url)
        if url.get_backend_name() == "sqlite" and (url.database or ":memory:") in (":memory:", ""):
            raise ConfigError("api.clients: the API serves from the state store; an in-memory store_url holds nothing")
        self.store_url = store_url
        self.name = SERVED
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_store(self.store_url)  # the sync opened (and upgraded) it already: one read
        return self._engine

    async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        with self.engine.begin() as conn:
            versions = write_items(conn, items, datetime.now(UTC))
        yield [
            DeliveryResult(
                item.key,
                Outcome.DELIVERED,
                disclosed=[
                    f"{r['resourceType']}/{r['id']}/_history/{versions[(item.recipient, r['resourceType'], r['id'])]}"
                    for r in item.resources
                ],
            )
            for item in items
        ]

    def withdraw(self, subjects: Iterable[tuple[str, str]]) -> None:
        by_recipient: dict[str, set[str]] = {}
        for recipient, student in subjects:
            by_recipient.setdefault(recipient, set()).add(student)
        t = served_resources
        with self.engine.begin() as conn:
            for recipient, students in by_recipient.items():
                # the (few) students served to this recipient, not the (many) it was never sent
                held = set(conn.scalars(select(t.c.student).where(t.c.recipient == recipient).distinct()))
                gone = sorted(held & students)
                for part in _chunks(gone):
                    _delete(
                        conn,
                        recipient,
                        and_(t.c.student.in_(part), or_(t.c.resource_type != "Consent", t.c.permits)),
                    )

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def write_items(conn: Connection, items: Sequence[DeliveryItem], ts: datetime) -> dict[tuple[str, str, str], int]:
    """Write a batch's resources (latest version of each; a new version only when the content changed), after
    applying its revocations. Returns each resource's version."""
    t = served_resources
    revoked: dict[str, set[str]] = {}
    for item in items:
        if _revoked(item):
            revoked.setdefault(item.recipient, set()).add(item.student_sourced_id)
    for recipient, students in revoked.items():
        for part in _chunks(sorted(students)):
            _delete(conn, recipient, and_(t.c.student.in_(part), t.c.resource_type.in_(STUDENT_BOUND_ON_REVOCATION)))
    rows: dict[tuple[str, str, str], Row] = {}
    for item in items:
        for resource in item.resources:
            row = row_of(item, resource)
            rows[row.key] = row  # an Organization in many items: once
    held: dict[tuple[str, str, str], tuple[int, str]] = {}
    by_recipient: dict[str, list[str]] = {}
    for recipient, _, rid in rows:
        by_recipient.setdefault(recipient, []).append(rid)
    for recipient, ids in by_recipient.items():
        for part in _chunks(sorted(set(ids))):
            for rtype, rid, version, digest in conn.execute(
                select(t.c.resource_type, t.c.resource_id, t.c.version_id, t.c.digest).where(
                    t.c.recipient == recipient, t.c.resource_id.in_(part)
                )
            ):
                held[(recipient, rtype, rid)] = (version, digest)
    versions: dict[tuple[str, str, str], int] = {}
    new, changed = [], []
    for key, row in rows.items():
        before = held.get(key)
        if before is None:
            versions[key] = 1
            new.append(row)
        elif before[1] != row.digest:
            versions[key] = before[0] + 1
            changed.append(row)
        else:
            versions[key] = before[0]
    values = [_values(r, versions[r.key], ts) for r in new + changed]
    if new:
        conn.execute(insert(t), values[: len(new)])
    if changed:
        conn.execute(
            update(t)
            .where(
                t.c.recipient == bindparam("b_recipient"),
                t.c.resource_type == bindparam("b_type"),
                t.c.resource_id == bindparam("b_id"),
            )
            .values({c: bindparam(c) for c in values[0] if c not in ("recipient", "resource_type", "resource_id")}),
            [
                v | {"b_recipient": v["recipient"], "b_type": v["resource_type"], "b_id": v["resource_id"]}
                for v in values[len(new) :]
            ],
        )
        _delete_tokens(conn, [r.key for r in changed])
    tokens = [
        {
            "recipient": r.recipient,
            "resource_type": r.resource_type,
            "resource_id": r.resource_id,
            "kind": kind,
            "system": system,
            "value": value,
        }
        for r in new + changed
        for kind, system, value in r.tokens
    ]
    if tokens:
        conn.execute(insert(served_tokens), tokens)
    return versions


def _values(row: Row, version: int, ts: datetime) -> dict[str, Any]:
    return {
        "recipient": row.recipient,
        "resource_type": row.resource_type,
        "resource_id": row.resource_id,
        "student": row.student,
        "state_student_id": row.state_student_id,
        "consent_id": row.consent_id,
        "version_id": version,
        "last_updated": ts,
        "digest": row.digest,
        "content": row.content,
        "patient_id": row.patient_id,
        "effective_end": row.effective_end,
        "status": row.status,
        "permits": row.permits,
    }


def _delete(conn: Connection, recipient: str, where: Any) -> None:
    """Delete the recipient's rows that match, with their tokens."""
    t = served_resources
    found = conn.execute(select(t.c.resource_type, t.c.resource_id).where(t.c.recipient == recipient, where))
    keys = [(recipient, rt, rid) for rt, rid in found]
    if keys:
        _delete_tokens(conn, keys)
        conn.execute(delete(t).where(t.c.recipient == recipient, where))


def _delete_tokens(conn: Connection, keys: Sequence[tuple[str, str, str]]) -> None:
    tk = served_tokens
    by: dict[tuple[str, str], list[str]] = {}
    for recipient, rtype, rid in keys:
        by.setdefault((recipient, rtype), []).append(rid)
    for (recipient, rtype), ids in by.items():
        for part in _chunks(ids):
            conn.execute(
                delete(tk).where(tk.c.recipient == recipient, tk.c.resource_type == rtype, tk.c.resource_id.in_(part))
            )
