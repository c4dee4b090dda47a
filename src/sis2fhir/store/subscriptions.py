"""The Subscriptions of the API's clients and their numbered event notifications, in the state store (tables
`subscriptions` and `subscription_notifications`, store/schema.py). SQL only: what a subscription may be sent, and
when, is decided in service/notifications.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, insert, select, update

from sis2fhir.store.attendance_events import last_event_id
from sis2fhir.store.schema import as_utc, subscription_notifications, subscriptions

QUEUED, DELIVERED, WITHHELD, DEAD = "queued", "delivered", "withheld", "dead"  # subscription_notifications.status


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    id: str
    client_id: str
    recipient: str
    status: str  # requested | active | error | off
    topic: str
    trigger: str
    filters: dict[str, list[str]]  # {"patient": [Patient ids], "school": [school sourcedIds]}
    endpoint: str
    content: str  # empty | id-only | full-resource
    headers: tuple[str, ...]  # "Name: value"
    heartbeat_seconds: int | None
    timeout_seconds: int | None
    max_count: int | None
    secret: str | None
    resource: dict[str, Any]
    events: int  # events-since-subscription-start
    cursor: int  # the last attendance_events.id fanned out to it
    error: str
    version_id: int
    created_at: datetime
    updated_at: datetime
    last_sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredNotification:
    id: int
    subscription_id: str
    event_number: int
    attendance_event_id: int
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str


def _subscription(row: Any) -> StoredSubscription:
    m = row._mapping
    return StoredSubscription(
        id=m["id"],
        client_id=m["client_id"],
        recipient=m["recipient"],
        status=m["status"],
        topic=m["topic"],
        trigger=m["trigger"],
        filters=orjson.loads(m["filters"]),
        endpoint=m["endpoint"],
        content=m["content"],
        headers=tuple(orjson.loads(m["headers"])),
        heartbeat_seconds=m["heartbeat_seconds"],
        timeout_seconds=m["timeout_seconds"],
        max_count=m["max_count"],
        secret=m["secret"],
        resource=orjson.loads(m["resource"]),
        events=m["events"],
        cursor=m["cursor"],
        error=m["error"],
        version_id=m["version_id"],
        created_at=as_utc(m["created_at"]),
        updated_at=as_utc(m["updated_at"]),
        last_sent_at=as_utc(m["last_sent_at"]) if m["last_sent_at"] is not None else None,
    )


def _notification(row: Any) -> StoredNotification:
    m = row._mapping
    return StoredNotification(
        id=m["id"],
        subscription_id=m["subscription_id"],
        event_number=m["event_number"],
        attendance_event_id=m["attendance_event_id"],
        status=m["status"],
        attempts=m["attempts"],
        created_at=as_utc(m["created_at"]),
        next_attempt_at=as_utc(m["next_attempt_at"]),
        delivered_at=as_utc(m["delivered_at"]) if m["delivered_at"] is not None else None,
        last_error=m["last_error"],
    )


def subscription_values(sub: StoredSubscription) -> dict[str, Any]:
    """The table row of a subscription."""
    return {
        "id": sub.id,
        "client_id": sub.client_id,
        "recipient": sub.recipient,
        "status": sub.status,
        "topic": sub.topic,
        "trigger": sub.trigger,
        "filters": orjson.dumps(sub.filters).decode(),
        "endpoint": sub.endpoint,
        "content": sub.content,
        "headers": orjson.dumps(list(sub.headers)).decode(),
        "heartbeat_seconds": sub.heartbeat_seconds,
        "timeout_seconds": sub.timeout_seconds,
        "max_count": sub.max_count,
        "secret": sub.secret,
        "resource": orjson.dumps(sub.resource).decode(),
        "events": sub.events,
        "cursor": sub.cursor,
        "error": sub.error,
        "version_id": sub.version_id,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "last_sent_at": sub.last_sent_at,
    }


def insert_subscription(engine: Engine, sub: StoredSubscription) -> StoredSubscription:
    """Store a new subscription; its cursor starts at the latest event (events before it are not its own)."""
    values = subscription_values(sub) | {"cursor": last_event_id(engine), "events": 0}
    with engine.begin() as conn:
        conn.execute(insert(subscriptions), [values])
    found = get_subscription(engine, sub.id)
    assert found is not None
    return found


def get_subscription(engine: Engine, subscription_id: str, recipient: str | None = None) -> StoredSubscription | None:
    """A subscription by id; with `recipient`, only if it belongs to that recipient."""
    q = select(subscriptions).where(subscriptions.c.id == subscription_id)
    if recipient is not None:
        q = q.where(subscriptions.c.recipient == recipient)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return _subscription(row) if row is not None else None


def subscriptions_of(
    engine: Engine, recipient: str | None = None, statuses: Iterable[str] = ()
) -> list[StoredSubscription]:
    """The subscriptions of a recipient (every one when None), by creation; only these statuses when given."""
    t = subscriptions
    q = select(t).order_by(t.c.created_at, t.c.id)
    if recipient is not None:
        q = q.where(t.c.recipient == recipient)
    wanted = list(statuses)
    if wanted:
        q = q.where(t.c.status.in_(wanted))
    with engine.connect() as conn:
        return [_subscription(r) for r in conn.execute(q)]


def replace_subscription(engine: Engine, sub: StoredSubscription) -> None:
    """Write every column of a subscription but its counters and cursor (an update from the API)."""
    values = subscription_values(sub)
    for kept in ("id", "events", "cursor", "created_at", "client_id", "recipient"):
        values.pop(kept)
    with engine.begin() as conn:
        conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(values))


def set_status(
    engine: Engine, subscription_id: str, status: str, error: str, now: datetime, *, only_if: Sequence[str] = ()
) -> bool:
    """Change a subscription's status (and reason); with `only_if`, only from one of those statuses. True if
    changed. A changed status is a new version of the resource."""
    t = subscriptions
    q = update(t).where(t.c.id == subscription_id)
    if only_if:
        q = q.where(t.c.status.in_(list(only_if)))
    with engine.begin() as conn:
        done = conn.execute(
            q.values(status=status, error=error, updated_at=now, version_id=t.c.version_id + 1)
        ).rowcount
    return bool(done)


def mark_sent(engine: Engine, subscription_id: str, now: datetime) -> None:
    """The subscriber accepted a notification (any kind): the heartbeat period starts again."""
    with engine.begin() as conn:
        conn.execute(update(subscriptions).where(subscriptions.c.id == subscription_id).values(last_sent_at=now))


def delete_subscription(engine: Engine, subscription_id: str, recipient: str) -> bool:
    t, n = subscriptions, subscription_notifications
    with engine.begin() as conn:
        gone = conn.execute(delete(t).where(t.c.id == subscription_id, t.c.recipient == recipient)).rowcount
        if gone:
            conn.execute(delete(n).where(n.c.subscription_id == subscription_id))
    return bool(gone)


def add_notifications(
    conn: Connection, subscription_id: str, event_ids: Sequence[int], cursor: int, now: datetime
) -> int:
    """Number these events (in the order given) for a subscription and move its cursor to `cursor`, in the
    caller's transaction; an event it already has is not numbered again. Returns how many were numbered."""
    t, n = subscriptions, subscription_notifications
    events = int(conn.scalar(select(t.c.events).where(t.c.id == subscription_id).with_for_update()) or 0)
    held = (
        set(
            conn.scalars(
                select(n.c.attendance_event_id).where(
                    n.c.subscription_id == subscription_id, n.c.attendance_event_id.in_(list(event_ids))
                )
            )
        )
        if event_ids
        else set()
    )
    rows = []
    for event_id in event_ids:
        if event_id in held:
            continue
        held.add(event_id)
        events += 1
        rows.append(
            {
                "subscription_id": subscription_id,
                "event_number": events,
                "attendance_event_id": event_id,
                "kind": "event-notification",
                "status": QUEUED,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "delivered_at": None,
                "last_error": "",
            }
        )
    if rows:
        conn.execute(insert(n), rows)
    conn.execute(update(t).where(t.c.id == subscription_id).values(events=events, cursor=cursor))
    return len(rows)


def queued(engine: Engine, subscription_id: str, limit: int) -> list[StoredNotification]:
    """The subscription's first `limit` queued notifications, by number (they go out in that order)."""
    n = subscription_notifications
    with engine.connect() as conn:
        rows = conn.execute(
            select(n)
            .where(n.c.subscription_id == subscription_id, n.c.status == QUEUED)
            .order_by(n.c.event_number)
            .limit(limit)
        )
        return [_notification(r) for r in rows]


def notifications_between(
    engine: Engine, subscription_id: str, since: int, until: int | None, limit: int
) -> list[StoredNotification]:
    """The subscription's notifications numbered since..until (inclusive), any status, by number."""
    n = subscription_notifications
    q = select(n).where(n.c.subscription_id == subscription_id, n.c.event_number >= since)
    if until is not None:
        q = q.where(n.c.event_number <= until)
    with engine.connect() as conn:
        return [_notification(r) for r in conn.execute(q.order_by(n.c.event_number).limit(limit))]


def set_notifications(conn: Connection, ids: Sequence[int], **values: Any) -> None:
    """Change these notifications (status, attempts, next_attempt_at, delivered_at, last_error)."""
    if ids:
        n = subscription_notifications
        conn.execute(update(n).where(n.c.id.in_(list(ids))).values(**values))
