"""From attendance events to the notifications of each subscription, under the consent gate, and the record of
what was delivered (the notifier, api/notifier.py, does the sending).

- Fan-out (`fan_out`): each new event (attendance_events, by id) is numbered for every subscription whose topic is
  its trigger, whose filters it passes, whose recipient `notify.triggers_for` allows that trigger, and whose
  recipient's served set holds the student's Observation for that school with a Consent of theirs active on the
  event's date. Only events of finished syncs are fanned out (a sync records its events before it writes the
  served set): a sync still running holds the cursor back. A number is never given twice (the table's unique
  keys), and a subscription's numbers follow the events' order.
- Sending (`next_delivery`): a `requested` subscription gets its handshake; an `active` one its queued events in
  order, up to its max count per Bundle, each checked again against the gate (a consent revoked since the fan-out
  withholds it: its number stays a gap), or a heartbeat when due. `record_outcome` marks them delivered with one
  FERPA disclosure row per event (channel "notification") in the same transaction, or schedules the retry with
  exponential backoff; past `notify.max_age_hours` they are dead and the subscription is in `error`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import Connection, Engine, exists, insert, select

from sis2fhir.config import Settings
from sis2fhir.deliver.disclosure_log import CONFIRMED
from sis2fhir.map.notification import (
    EMPTY,
    EVENT,
    FULL_RESOURCE,
    HANDSHAKE,
    HEARTBEAT,
    NotificationEvent,
    SubscriptionState,
    notification_bundle,
)
from sis2fhir.map.topics import BY_URL
from sis2fhir.store.attendance_events import events_after
from sis2fhir.store.schema import as_utc, attendance_events, disclosures, runs, served_resources, served_tokens
from sis2fhir.store.subscriptions import (
    DEAD,
    DELIVERED,
    WITHHELD,
    StoredNotification,
    StoredSubscription,
    add_notifications,
    get_subscription,
    mark_sent,
    queued,
    set_notifications,
    set_status,
    subscriptions_of,
)

NOTIFICATION: Final = "notification"  # disclosures.channel
FAN_OUT_BATCH: Final = 1000
DEFAULT_MAX_COUNT: Final = 1  # events per Bundle when the subscription names no max count


@dataclass(frozen=True, slots=True)
class Event:
    """The columns of an attendance_events row a notification needs."""

    id: int
    student: str
    school: str
    school_year: int
    trigger: str
    occurred_on: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Focus:
    """What the gate found for one event and recipient: the served Observation and Patient, the consent relied on."""

    observation: str  # "Observation/<id>"
    observation_version: int
    patient: str  # "Patient/<id>"
    patient_version: int
    consent_id: str
    state_student_id: str
    resources: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification to POST for a subscription."""

    subscription: StoredSubscription
    kind: str  # handshake | heartbeat | event-notification
    body: bytes
    notifications: tuple[StoredNotification, ...] = ()
    focuses: tuple[tuple[Event, Focus], ...] = field(default=())


def _event(row: Any) -> Event:
    return Event(
        row.id,
        row.student_sourced_id,
        row.school_sourced_id,
        row.school_year,
        row.trigger,
        row.occurred_on,
        as_utc(row.recorded_at),
    )


def _finished_events_after(engine: Engine, after: int, limit: int) -> list[Event]:
    """Events after id `after`, in order, up to the first of a sync still running (one that has not finished and
    after which no other sync started: a sync that stopped without finishing does not hold them back)."""
    events = events_after(engine, after, limit)
    if not events:
        return []
    r, later = runs, runs.alias("later")
    wanted = sorted({e.run_id for e in events})
    with engine.connect() as conn:
        done = set(
            conn.scalars(
                select(r.c.id).where(
                    r.c.id.in_(wanted), r.c.finished_at.is_not(None) | exists().where(later.c.id > r.c.id)
                )
            )
        )
    out = []
    for e in events:
        if e.run_id not in done:
            break
        out.append(
            Event(
                e.id,
                e.student_sourced_id,
                e.school_sourced_id,
                e.school_year,
                e.trigger,
                e.occurred_on.isoformat(),
                e.recorded_at,
            )
        )
    return out


def events_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, Event]:
    e = attendance_events
    return {row.id: _event(row) for row in conn.execute(select(e).where(e.c.id.in_(list(ids))))} if ids else {}


def _consent_active(content: bytes, on: str) -> bool:
    """The served Consent was in effect on `on` (ISO date): active with its period holding the day, or revoked
    since (map/consent.py: status inactive, the period ending on the revocation day, which gate.py no longer
    permits). Anything else (rejected, an inactive one without an end) is not."""
    consent = orjson.loads(content)
    period = (consent.get("provision") or {}).get("period") or {}
    start, end = str(period.get("start") or "")[:10], str(period.get("end") or "")[:10]
    if start and on < start:
        return False
    if consent.get("status") == "active":
        return not end or on <= end
    return consent.get("status") == "inactive" and bool(end) and on < end


def focus_of(conn: Connection, recipient: str, event: Event) -> Focus | None:
    """The gate for one event and recipient: the student's attendance Observation for that school as served to
    that recipient, its Patient, and a Consent of theirs the gate relied on that is active on the event's date;
    None when any is missing."""
    t, tk = served_resources, served_tokens
    value = f"{event.school_year}-{event.school}-{event.student}"  # map/observation.summary_identifier
    obs = conn.execute(
        select(t.c.resource_id, t.c.version_id, t.c.patient_id, t.c.content).where(
            t.c.recipient == recipient,
            t.c.resource_type == "Observation",
            t.c.student == event.student,
            t.c.resource_id.in_(
                select(tk.c.resource_id).where(
                    tk.c.recipient == recipient,
                    tk.c.resource_type == "Observation",
                    tk.c.kind == "identifier",
                    tk.c.value == value,
                )
            ),
        )
    ).first()
    if obs is None or not obs.patient_id:
        return None
    patient = conn.execute(
        select(t.c.version_id, t.c.content).where(
            t.c.recipient == recipient, t.c.resource_type == "Patient", t.c.resource_id == obs.patient_id
        )
    ).first()
    if patient is None:
        return None
    on = event.occurred_on or date.today().isoformat()
    for consent_id, state_id, content in conn.execute(
        select(t.c.consent_id, t.c.state_student_id, t.c.content).where(
            t.c.recipient == recipient, t.c.resource_type == "Consent", t.c.student == event.student, t.c.permits
        )
    ):
        if _consent_active(bytes(content), on):
            o, p = f"Observation/{obs.resource_id}", f"Patient/{obs.patient_id}"
            return Focus(
                o,
                obs.version_id,
                p,
                patient.version_id,
                consent_id,
                state_id,
                {o: bytes(obs.content), p: bytes(patient.content)},
            )
    return None


def _passes(sub: StoredSubscription, event: Event, focus: Focus) -> bool:
    if event.trigger != sub.trigger:
        return False
    schools = sub.filters.get("school")
    patients = sub.filters.get("patient")
    if schools and event.school not in schools:
        return False
    return not patients or focus.patient.removeprefix("Patient/") in patients


def _allowed(settings: Settings, sub: StoredSubscription) -> bool:
    topic = BY_URL.get(sub.topic)
    return topic is not None and bool(getattr(settings.notify.triggers_for(sub.recipient), topic.setting))


def fan_out(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Number the new events for every subscription they are for (see the module). Returns how many
    notifications were made."""
    now = now or datetime.now(UTC)
    subs = [s for s in subscriptions_of(engine) if s.status != "off"]
    if not subs:
        return 0
    cursors = {s.id: s.cursor for s in subs}
    made = 0
    while True:
        low = min(cursors.values())
        events = _finished_events_after(engine, low, FAN_OUT_BATCH)
        if not events:
            return made
        last = events[-1].id
        gate: dict[tuple[str, int], Focus | None] = {}  # (recipient, event id): once however many subscriptions
        with engine.begin() as conn:
            for sub in subs:
                if cursors[sub.id] >= last:
                    continue
                wanted = []
                for event in events:
                    if event.id <= cursors[sub.id] or event.trigger != sub.trigger or not _allowed(settings, sub):
                        continue
                    key = (sub.recipient, event.id)
                    if key not in gate:
                        gate[key] = focus_of(conn, sub.recipient, event)
                    focus = gate[key]
                    if focus is not None and _passes(sub, event, focus):
                        wanted.append(event.id)
                made += add_notifications(conn, sub.id, wanted, last, now)
                cursors[sub.id] = last


def _state(sub: StoredSubscription, status: str | None = None) -> SubscriptionState:
    return SubscriptionState(sub.id, sub.topic, status or sub.status, sub.events, sub.error)


def _body(
    settings: Settings, sub: StoredSubscription, kind: str, events: Sequence[NotificationEvent], status: str
) -> bytes:
    bundle = notification_bundle(
        settings.api.fhir_base, _state(sub, status), kind, events, sub.content, datetime.now(UTC)
    )
    return orjson.dumps(bundle)


def notification_event(number: int, event: Event, focus: Focus, content: str) -> NotificationEvent:
    if content == EMPTY:
        return NotificationEvent(number, event.recorded_at)
    resources = focus.resources if content == FULL_RESOURCE else {}
    return NotificationEvent(number, event.recorded_at, focus.observation, (focus.patient,), resources)


def next_delivery(engine: Engine, settings: Settings, subscription_id: str, now: datetime) -> Delivery | None:
    """What to send this subscription now, if anything (see the module)."""
    sub = get_subscription(engine, subscription_id)
    if sub is None:
        return None
    if sub.status == "requested":
        return Delivery(sub, HANDSHAKE, _body(settings, sub, HANDSHAKE, (), "requested"))
    if sub.status != "active":
        return None
    while True:
        batch = queued(engine, sub.id, sub.max_count or DEFAULT_MAX_COUNT)
        if not batch:
            break
        if batch[0].next_attempt_at > now:
            return None  # waiting to retry: nothing later may overtake it, and no heartbeat meanwhile
        with engine.begin() as conn:
            found = events_by_id(conn, [n.attendance_event_id for n in batch])
            kept: list[tuple[StoredNotification, Event, Focus]] = []
            withheld = []
            for n in batch:
                event = found.get(n.attendance_event_id)
                focus = focus_of(conn, sub.recipient, event) if event is not None else None
                if event is None or focus is None or not _allowed(settings, sub):
                    withheld.append(n.id)
                else:
                    kept.append((n, event, focus))
            set_notifications(conn, withheld, status=WITHHELD, last_error="the consent gate withheld it at send time")
        if kept:
            events = [notification_event(n.event_number, e, f, sub.content) for n, e, f in kept]
            return Delivery(
                sub,
                EVENT,
                _body(settings, sub, EVENT, events, "active"),
                tuple(n for n, _, _ in kept),
                tuple((e, f) for _, e, f in kept),
            )
    if sub.heartbeat_seconds and (sub.last_sent_at or sub.created_at) + timedelta(seconds=sub.heartbeat_seconds) <= now:
        return Delivery(sub, HEARTBEAT, _body(settings, sub, HEARTBEAT, (), "active"))
    return None


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: initial x 2^(attempts-1), at most the maximum."""
    n = settings.notify
    return float(min(n.max_backoff_seconds, n.initial_backoff_seconds * 2 ** max(0, min(attempts - 1, 40))))


def record_outcome(engine: Engine, settings: Settings, delivery: Delivery, ok: bool, error: str, now: datetime) -> None:
    """The subscriber's answer to a delivery (see the module)."""
    sub = delivery.subscription
    if delivery.kind == HANDSHAKE:
        if ok:
            set_status(engine, sub.id, "active", "", now, only_if=("requested",))
            mark_sent(engine, sub.id, now)
        else:
            set_status(engine, sub.id, "error", f"the handshake was not accepted: {error}", now, only_if=("requested",))
        return
    if delivery.kind == HEARTBEAT:
        mark_sent(engine, sub.id, now)  # a failed heartbeat is tried again a period later, not sooner
        return
    ids = [n.id for n in delivery.notifications]
    if ok:
        with engine.begin() as conn:
            set_notifications(conn, ids, status=DELIVERED, delivered_at=now, last_error="")
            conn.execute(
                insert(disclosures),
                [
                    _disclosure(sub, n, e, f, now)
                    for n, (e, f) in zip(delivery.notifications, delivery.focuses, strict=True)
                ],
            )
        mark_sent(engine, sub.id, now)
        return
    attempts = max(n.attempts for n in delivery.notifications) + 1
    oldest = min(n.created_at for n in delivery.notifications)
    max_age = timedelta(hours=settings.notify.max_age_hours)
    with engine.begin() as conn:
        if now - oldest >= max_age:
            set_notifications(conn, ids, status=DEAD, attempts=attempts, last_error=error)
        else:
            retry = now + timedelta(seconds=backoff(settings, attempts))
            set_notifications(conn, ids, attempts=attempts, next_attempt_at=retry, last_error=error)
    if now - oldest >= max_age:
        reason = f"notifications not accepted for {settings.notify.max_age_hours:g} hours (last: {error})"
        set_status(engine, sub.id, "error", reason, now, only_if=("active",))


def _disclosure(
    sub: StoredSubscription, n: StoredNotification, event: Event, focus: Focus, now: datetime
) -> dict[str, Any]:
    what = [f"Subscription/{sub.id} event {n.event_number} ({sub.content})"]
    if sub.content != EMPTY:
        what += [
            f"{focus.observation}/_history/{focus.observation_version}",
            f"{focus.patient}/_history/{focus.patient_version}",
        ]
    return {
        "student_sourced_id": event.student,
        "state_student_id": focus.state_student_id,
        "recipient": sub.recipient,
        "destination": f"subscription:{sub.id}",
        "consent_id": focus.consent_id,
        "disclosed": orjson.dumps(what).decode(),
        "disclosed_at": now,
        "outbox_key": f"{sub.id[:48]}:{n.event_number}"[:64],
        "latency_seconds": max(0.0, (now - event.recorded_at).total_seconds()),
        "certainty": CONFIRMED,
        "channel": NOTIFICATION,
    }
