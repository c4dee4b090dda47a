"""The Bundles of topic-based Subscriptions in R4 (Subscriptions R5 Backport IG STU 1.1): the notification Bundle
(type history, entry 0 a Parameters per backport-subscription-status-r4, every entry with request and response),
the $status answer (a searchset of that Parameters) and the $events answer (a history Bundle of type
query-event). Pure functions of what the notifier and the API hand them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
STATUS_PROFILE: Final = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE: Final = f"{BACKPORT}/backport-subscription-notification-r4"
SUBSCRIPTION_PROFILE: Final = f"{BACKPORT}/backport-subscription"
ERROR_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/subscription-error"
EMPTY, ID_ONLY, FULL_RESOURCE = "empty", "id-only", "full-resource"
CONTENTS: Final = (EMPTY, ID_ONLY, FULL_RESOURCE)
HANDSHAKE, HEARTBEAT, EVENT, QUERY_STATUS, QUERY_EVENT = (
    "handshake",
    "heartbeat",
    "event-notification",
    "query-status",
    "query-event",
)


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One event of a notification: its number in the subscription, when it was recorded, and (unless the payload
    is empty) the focus and context resources as `Type/id` with their JSON (used for full-resource)."""

    number: int
    timestamp: datetime
    focus: str | None = None  # "Observation/<id>"
    context: tuple[str, ...] = ()  # ("Patient/<id>",)
    resources: Mapping[str, bytes] = field(default_factory=dict)  # "Type/id" -> the resource's JSON


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """What a status Parameters says about a subscription."""

    subscription_id: str
    topic: str
    status: str  # requested | active | error | off
    events_since_start: int
    error: str = ""  # the reason of an `error` status (no personal data)


def _instant(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(
    fhir_base: str, state: SubscriptionState, kind: str, events: Sequence[NotificationEvent], content: str
) -> dict[str, Any]:
    """The backport-subscription-status-r4 Parameters of a notification of this kind (or a $status answer)."""
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{fhir_base}/Subscription/{state.subscription_id}"}}
    ]
    if content != EMPTY:  # IG: the topic SHOULD NOT be given with an empty payload
        params.append({"name": "topic", "valueCanonical": state.topic})
    params += [
        {"name": "status", "valueCode": state.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(state.events_since_start)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": _instant(event.timestamp)},
        ]
        if content != EMPTY and event.focus:
            parts.append({"name": "focus", "valueReference": {"reference": f"{fhir_base}/{event.focus}"}})
            parts += [
                {"name": "additional-context", "valueReference": {"reference": f"{fhir_base}/{ref}"}}
                for ref in event.context
            ]
        params.append({"name": "notification-event", "part": parts})
    if state.status == "error" and state.error:
        params.append(
            {
                "name": "error",
                "valueCodeableConcept": {
                    "coding": [{"system": ERROR_SYSTEM, "code": "no-response"}],
                    "text": state.error,
                },
            }
        )
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def notification_bundle(
    fhir_base: str,
    state: SubscriptionState,
    kind: str,
    events: Sequence[NotificationEvent],
    content: str,
    now: datetime,
) -> dict[str, Any]:
    """A notification (handshake, heartbeat, event-notification) or a $events answer (query-event): Bundle type
    history; entry 0 the status Parameters; then, unless the payload is empty, one entry per focus and context
    resource (id-only: fullUrl only; full-resource: with the resource), each with request and response."""
    status = status_parameters(fhir_base, state, kind, events, content)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"{fhir_base}/Subscription/{state.subscription_id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != EMPTY:
        seen: set[str] = set()
        for event in events:
            for ref in ([event.focus] if event.focus else []) + list(event.context):
                if ref in seen:
                    continue
                seen.add(ref)
                entry: dict[str, Any] = {"fullUrl": f"{fhir_base}/{ref}"}
                if content == FULL_RESOURCE and ref in event.resources:
                    entry["resource"] = orjson.loads(event.resources[ref])
                entry["request"] = {"method": "GET", "url": ref}
                entry["response"] = {"status": "200"}
                entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": _instant(now),
        "entry": entries,
    }


def status_searchset(fhir_base: str, states: Sequence[SubscriptionState]) -> dict[str, Any]:
    """The answer of $status: a searchset Bundle of one query-status Parameters per subscription."""
    entries = []
    for state in states:
        params = status_parameters(fhir_base, state, QUERY_STATUS, (), ID_ONLY)
        entries.append({"fullUrl": f"urn:uuid:{params['id']}", "resource": params, "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
