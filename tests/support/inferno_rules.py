"""The notification rules of the Inferno Subscriptions test kit (R5 Backport, R4 server), as they check what a
notification source sends (no runnable kit here: its rules, from its tests, written again). `problems(...)` lists
every rule a received notification breaks; the tests assert the list is empty for every Bundle received."""

from __future__ import annotations

from typing import Any

from tests.support.subscriber import Received

STATUS_PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
STATUS_CODES = {"requested", "active", "error", "off", "entered-in-error"}
TYPES = {"handshake", "heartbeat", "event-notification", "query-status", "query-event"}


def _value(p: dict[str, Any]) -> tuple[str, Any]:
    return next(((k, v) for k, v in p.items() if k.startswith("value")), ("", None))


def status_problems(params: dict[str, Any], subscription_id: str) -> list[str]:
    """backport-subscription-status-r4: subscription 1..1 (Reference), topic 0..1 canonical, status 1..1 code,
    type 1..1 code, events-since-subscription-start 0..1 string, notification-event parts (event-number 1..1
    string, timestamp instant, focus and additional-context Reference)."""
    out = []
    if params.get("resourceType") != "Parameters":
        return ["entry[0] is not a Parameters"]
    by: dict[str, list[dict[str, Any]]] = {}
    for p in params.get("parameter", []):
        by.setdefault(p.get("name", ""), []).append(p)
    for name, kind in (("subscription", "valueReference"), ("status", "valueCode"), ("type", "valueCode")):
        if len(by.get(name, [])) != 1 or _value(by[name][0])[0] != kind:
            out.append(f"parameter {name}: needs exactly one {kind}")
    if by.get("subscription") and not str(_value(by["subscription"][0])[1].get("reference", "")).endswith(
        f"Subscription/{subscription_id}"
    ):
        out.append("parameter subscription: does not reference the subscription")
    if by.get("status") and _value(by["status"][0])[1] not in STATUS_CODES:
        out.append("parameter status: not a subscription-status code")
    if by.get("type") and _value(by["type"][0])[1] not in TYPES:
        out.append("parameter type: not a subscription-notification-type code")
    for p in by.get("topic", []):
        if _value(p)[0] != "valueCanonical":
            out.append("parameter topic: must be a canonical")
    for p in by.get("events-since-subscription-start", []):
        if _value(p)[0] != "valueString":
            out.append("events-since-subscription-start: must be a string")
    for p in by.get("notification-event", []):
        parts: dict[str, list[dict[str, Any]]] = {}
        for part in p.get("part", []):
            parts.setdefault(part.get("name", ""), []).append(part)
        if len(parts.get("event-number", [])) != 1 or _value(parts["event-number"][0])[0] != "valueString":
            out.append("notification-event: needs one event-number string")
        for part in parts.get("timestamp", []):
            if _value(part)[0] != "valueInstant":
                out.append("notification-event timestamp: must be an instant")
        for name in ("focus", "additional-context"):
            for part in parts.get(name, []):
                if _value(part)[0] != "valueReference":
                    out.append(f"notification-event {name}: must be a Reference")
    return out


def problems(received: Received, subscription: dict[str, Any]) -> list[str]:
    """Every Inferno rule this notification breaks, for the Subscription (as created) it was sent for."""
    out: list[str] = []
    channel = subscription["channel"]
    payload = channel.get("payload", "")
    if not (received.header("Content-Type") or "").startswith(payload):
        out.append("Content-Type does not start with channel.payload")
    for header in channel.get("header", []):
        name, _, value = header.partition(":")
        if received.header(name.strip()) != value.strip():
            out.append(f"channel.header {name.strip()} did not arrive with its exact value")
    bundle = received.json()
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "history":
        return [*out, "not a Bundle of type history"]
    entries = bundle.get("entry") or []
    if not entries:
        return [*out, "the Bundle is empty"]
    for i, entry in enumerate(entries):
        if "request" not in entry or "response" not in entry:
            out.append(f"entry[{i}] lacks request or response")
    if not str(entries[0].get("request", {}).get("url", "")).endswith(f"Subscription/{subscription['id']}/$status"):
        out.append("entry[0].request.url does not end with Subscription/<id>/$status")
    params = entries[0].get("resource", {})
    out += status_problems(params, subscription["id"])
    values = {p["name"]: _value(p)[1] for p in params.get("parameter", []) if p["name"] != "notification-event"}
    kind = values.get("type")
    if kind == "handshake" and values.get("status") != "requested":
        out.append("a handshake must carry status requested")
    events = [p for p in params.get("parameter", []) if p["name"] == "notification-event"]
    content = next(
        (
            e.get("valueCode")
            for e in (channel.get("_payload") or {}).get("extension", [])
            if "payload-content" in e["url"]
        ),
        "id-only",
    )
    focus = [part for e in events for part in e.get("part", []) if part["name"] == "focus"]
    context = [part for e in events for part in e.get("part", []) if part["name"] == "additional-context"]
    full_urls = {e.get("fullUrl") for e in entries[1:]}
    if kind == "event-notification":
        if not events:
            out.append("an event-notification needs at least one notification-event")
        if content == "empty":
            if focus or len(entries) != 1:
                out.append("empty: no focus and no entry but the status")
        elif len(focus) != len(events):
            out.append(f"{content}: every notification-event needs a focus")
        if content == "id-only" and any("resource" in e for e in entries[1:]):
            out.append("id-only: entries have a fullUrl and no resource")
        if content == "full-resource":
            for part in focus + context:
                ref = part["valueReference"]["reference"]
                if ref not in full_urls or not any(e.get("fullUrl") == ref and "resource" in e for e in entries[1:]):
                    out.append(f"full-resource: {ref} is not an entry with its resource")
        if content == "id-only":
            for part in focus:
                if part["valueReference"]["reference"] not in full_urls:
                    out.append("id-only: the focus is not an entry's fullUrl")
    return out
