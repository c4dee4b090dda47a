"""The Subscriptions of the API's clients (Subscriptions R5 Backport STU 1.1, backport-subscription profile):
create, read, update, delete and search, each within the calling client's recipient; what a Subscription may ask
for is checked here, and anything this server cannot honour is refused with the field and the reason (Invalid:
the API answers it as an OperationOutcome, 422 or 400).

Accepted: `criteria` one of the topics (map/topics.py) enabled for the recipient (`notify.triggers_for`); filter
criteria (extension backport-filter-criteria on `criteria`) `patient=` and `school=` (with or without the
`Observation?` prefix; several values comma-separated are OR, several filters AND); `channel.type` rest-hook;
`channel.endpoint` per deliver/rest_hook.check_endpoint; `channel.payload` application/fhir+json with the content
extension empty | id-only (the default) | full-resource; `channel.header` lines; the heartbeat period, timeout and
max count extensions; and SIGNING_SECRET_EXTENSION (valueString, 16 to 512 characters: the subscriber's own HMAC
key, never answered back)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import select

from sis2fhir.config import Settings
from sis2fhir.deliver.rest_hook import EndpointRefused, check_endpoint, check_headers
from sis2fhir.map.notification import CONTENTS, ID_ONLY, SUBSCRIPTION_PROFILE
from sis2fhir.map.topics import BY_URL, TOPICS, Topic
from sis2fhir.service.served import ServedStore
from sis2fhir.store.schema import served_tokens
from sis2fhir.store.subscriptions import (
    StoredSubscription,
    delete_subscription,
    get_subscription,
    insert_subscription,
    replace_subscription,
    subscriptions_of,
)

BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FILTER_CRITERIA: Final = f"{BACKPORT}/backport-filter-criteria"
PAYLOAD_CONTENT: Final = f"{BACKPORT}/backport-payload-content"
HEARTBEAT: Final = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT: Final = f"{BACKPORT}/backport-timeout"
MAX_COUNT: Final = f"{BACKPORT}/backport-max-count"
SIGNING_SECRET_EXTENSION: Final = "http://sis2fhir.org/fhir/StructureDefinition/notification-signing-secret"
PAYLOAD_TYPE: Final = "application/fhir+json"
REQUESTED, ACTIVE, ERROR, OFF = "requested", "active", "error", "off"
LIMITS: Final = {HEARTBEAT: (1, 86_400 * 7), TIMEOUT: (1, 120), MAX_COUNT: (1, 1000)}
Resolver = Callable[[str, int], list[str]]


class Invalid(ValueError):
    """A Subscription this server refuses: `status` 422 (unprocessable) or 400 (not a Subscription at all)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _extensions(element: Any, url: str) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    return [e for e in element.get("extension") or [] if isinstance(e, dict) and e.get("url") == url]


def _number(channel: dict[str, Any], url: str, value_key: str, name: str) -> int | None:
    found = _extensions(channel, url)
    if not found:
        return None
    value = found[0].get(value_key)
    low, high = LIMITS[url]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"channel: the {name} extension needs {value_key} from {low} to {high}")
    return value


def _topic(resource: dict[str, Any], settings: Settings, recipient: str) -> Topic:
    criteria = resource.get("criteria")
    if not isinstance(criteria, str) or not criteria.strip():
        raise Invalid("criteria is required: the canonical URL of one of this server's SubscriptionTopics")
    topic = BY_URL.get(criteria.strip().partition("|")[0])
    if topic is None:
        known = ", ".join(t.url for t in TOPICS)
        raise Invalid(f"criteria: no such SubscriptionTopic on this server; the topics are {known}")
    if not getattr(settings.notify.triggers_for(recipient), topic.setting):
        raise Invalid(f"criteria: the topic {topic.url} is not enabled for this client's organization")
    return topic


def _filters(resource: dict[str, Any], served: ServedStore, settings: Settings, recipient: str) -> dict[str, list[str]]:
    """{"patient": [Patient ids], "school": [school sourcedIds]} from the filter criteria; Invalid naming the
    filter and the forms it takes."""
    out: dict[str, list[str]] = {}
    for i, ext in enumerate(_extensions(resource.get("_criteria"), FILTER_CRITERIA)):
        text = ext.get("valueString")
        if not isinstance(text, str) or not text.strip():
            raise Invalid(f"criteria filter {i}: needs a valueString such as Observation?patient=Patient/<id>")
        query = text.strip()
        if "?" in query:
            rtype, _, query = query.partition("?")
            if rtype not in ("Observation", ""):
                raise Invalid(f"criteria filter {i}: the topics filter Observation, not {rtype}")
        pairs = parse_qsl(query, keep_blank_values=True)
        if not pairs:
            raise Invalid(f"criteria filter {i}: not a name=value filter")
        for name, value in pairs:
            values = [v.strip() for v in value.split(",") if v.strip()]
            if not values:
                raise Invalid(f"criteria filter {i}: {name} has no value")
            if name == "patient":
                ids = [_patient(v, i, served, recipient) for v in values]
            elif name == "school":
                ids = [_school(v, i, served, settings, recipient) for v in values]
            else:
                raise Invalid(
                    f"criteria filter {i}: unknown filter {name!r}; the topics filter by patient "
                    "(Patient/<id> or <id>) and school (Organization/<id>, <system>|<value> or <value>)"
                )
            if name in out:  # two filters on the same key: AND, so only the values both allow
                ids = [v for v in out[name] if v in ids]
                if not ids:
                    raise Invalid(f"criteria filter {i}: the {name} filters exclude each other")
            out[name] = list(dict.fromkeys(ids))
    return out


def _patient(value: str, i: int, served: ServedStore, recipient: str) -> str:
    pid = value.removeprefix("Patient/")
    if "/" in pid or not pid or served.read(recipient, "Patient", pid) is None:
        raise Invalid(f"criteria filter {i}: patient must be Patient/<id> (or <id>) of a Patient this client can read")
    return pid


def _school(value: str, i: int, served: ServedStore, settings: Settings, recipient: str) -> str:
    """The school's sourcedId, from an Organization reference or its identifier."""
    school_system = settings.district.system("school")
    forms = "Organization/<id> of a school this client can read, or its identifier <system>|<value> or <value>"
    if value.startswith("Organization/"):
        org = served.read(recipient, "Organization", value.removeprefix("Organization/"))
        if org is not None:
            for ident in orjson.loads(org.content).get("identifier") or []:
                if ident.get("system") == school_system and ident.get("value"):
                    return str(ident["value"])
        raise Invalid(f"criteria filter {i}: school must be {forms}")
    system, sep, code = value.rpartition("|")
    if sep and system != school_system:
        raise Invalid(f"criteria filter {i}: school identifiers are of the system {school_system}")
    tk = served_tokens
    with served.engine.connect() as conn:
        known = conn.scalar(
            select(tk.c.resource_id).where(
                tk.c.recipient == recipient,
                tk.c.resource_type == "Organization",
                tk.c.kind == "identifier",
                tk.c.system == school_system,
                tk.c.value == code,
            )
        )
    if not code or known is None:
        raise Invalid(f"criteria filter {i}: school must be {forms}")
    return code


def checked(
    resource: Any,
    settings: Settings,
    served: ServedStore,
    client_id: str,
    recipient: str,
    resolver: Resolver | None = None,
) -> StoredSubscription:
    """A Subscription resource, checked, as a new subscription row (id and times to be set by the caller)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Subscription":
        raise Invalid("the body must be a FHIR Subscription resource (JSON)", 400)
    topic = _topic(resource, settings, recipient)
    filters = _filters(resource, served, settings, recipient)
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise Invalid("channel is required (type rest-hook, endpoint, payload)")
    if channel.get("type") != "rest-hook":
        raise Invalid("channel.type: only rest-hook is supported")
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise Invalid("channel.endpoint is required for a rest-hook channel")
    try:
        if resolver is None:
            check_endpoint(endpoint.strip(), settings.notify.allowed_endpoints)
        else:
            check_endpoint(endpoint.strip(), settings.notify.allowed_endpoints, resolver)
    except EndpointRefused as e:
        raise Invalid(f"channel.endpoint: {e}") from None
    if channel.get("payload") != PAYLOAD_TYPE:
        raise Invalid(f"channel.payload must be {PAYLOAD_TYPE}")
    content_ext = _extensions(channel.get("_payload"), PAYLOAD_CONTENT)
    content = content_ext[0].get("valueCode") if content_ext else ID_ONLY
    if content not in CONTENTS:
        raise Invalid(f"channel.payload content must be one of {', '.join(CONTENTS)}")
    headers = channel.get("header") or []
    if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
        raise Invalid("channel.header must be a list of 'Name: value' strings")
    try:
        lines = check_headers(headers)
    except ValueError as e:
        raise Invalid(str(e)) from None
    secret_ext = _extensions(channel, SIGNING_SECRET_EXTENSION)
    secret = secret_ext[0].get("valueString") if secret_ext else None
    if secret_ext and (not isinstance(secret, str) or not 16 <= len(secret) <= 512):
        raise Invalid("channel: the signing secret extension needs a valueString of 16 to 512 characters")
    kept = dict(resource)
    kept["channel"] = {
        **channel,
        "extension": [e for e in channel.get("extension") or [] if e.get("url") != SIGNING_SECRET_EXTENSION],
    }
    if not kept["channel"]["extension"]:
        kept["channel"].pop("extension")
    for noise in ("id", "meta", "status", "error"):
        kept.pop(noise, None)
    now = datetime.now(UTC)
    return StoredSubscription(
        id="",
        client_id=client_id,
        recipient=recipient,
        status=REQUESTED,
        topic=topic.url,
        trigger=topic.trigger,
        filters=filters,
        endpoint=endpoint.strip(),
        content=content,
        headers=tuple(lines),
        heartbeat_seconds=_number(channel, HEARTBEAT, "valueUnsignedInt", "heartbeat period"),
        timeout_seconds=_number(channel, TIMEOUT, "valueUnsignedInt", "timeout"),
        max_count=_number(channel, MAX_COUNT, "valuePositiveInt", "max count"),
        secret=secret,
        resource=kept,
        events=0,
        cursor=0,
        error="",
        version_id=1,
        created_at=now,
        updated_at=now,
        last_sent_at=None,
    )


def as_resource(sub: StoredSubscription) -> dict[str, Any]:
    """The Subscription as the API answers it: what the client sent (no secret), with the id, status, error."""
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": sub.id,
        "meta": {
            "versionId": str(sub.version_id),
            "lastUpdated": sub.updated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "profile": [SUBSCRIPTION_PROFILE],
        },
    }
    resource |= {k: v for k, v in sub.resource.items() if k not in ("resourceType", "id", "meta")}
    resource["status"] = sub.status
    resource.setdefault("reason", "Attendance notifications")  # R4: reason is 1..1
    if sub.status == ERROR and sub.error:
        resource["error"] = sub.error
    return resource


def create(
    settings: Settings,
    served: ServedStore,
    client_id: str,
    recipient: str,
    resource: Any,
    resolver: Resolver | None = None,
) -> StoredSubscription:
    """A new subscription, `requested` (the notifier sends its handshake)."""
    sub = checked(resource, settings, served, client_id, recipient, resolver)
    return insert_subscription(served.engine, replace(sub, id=uuid.uuid4().hex))


def read(served: ServedStore, recipient: str, subscription_id: str) -> StoredSubscription | None:
    return get_subscription(served.engine, subscription_id, recipient)


def search(served: ServedStore, recipient: str) -> list[StoredSubscription]:
    return subscriptions_of(served.engine, recipient)


def update(
    settings: Settings,
    served: ServedStore,
    client_id: str,
    recipient: str,
    subscription_id: str,
    resource: Any,
    resolver: Resolver | None = None,
) -> StoredSubscription | None:
    """Replace a subscription's settings (None when it is not this recipient's). `status: off` stops it; any other
    update makes it `requested` again (a new handshake; its queued events then go out in order)."""
    before = get_subscription(served.engine, subscription_id, recipient)
    if before is None:
        return None
    if isinstance(resource, dict) and resource.get("id") not in (None, subscription_id):
        raise Invalid("the Subscription's id differs from the id in the URL", 400)
    sub = checked(resource, settings, served, client_id, recipient, resolver)
    status = OFF if isinstance(resource, dict) and resource.get("status") == OFF else REQUESTED
    now = datetime.now(UTC)
    after = replace(
        sub,
        id=subscription_id,
        status=status,
        version_id=before.version_id + 1,
        created_at=before.created_at,
        updated_at=now,
        last_sent_at=before.last_sent_at,
    )
    replace_subscription(served.engine, after)
    return get_subscription(served.engine, subscription_id, recipient)


def delete(served: ServedStore, recipient: str, subscription_id: str) -> bool:
    return delete_subscription(served.engine, subscription_id, recipient)
