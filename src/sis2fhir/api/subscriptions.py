"""The Subscriptions API at /fhir (Subscriptions R5 Backport STU 1.1): create, read, update, delete and search
Subscription, `$status` and `$events`, and the SubscriptionTopics as Basic resources. Every route needs its
`system/Subscription.*` scope and answers only the calling client's recipient's subscriptions (another's: 404).
The checks are service/subscriptions.py's; the sending is api/notifier.py's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sis2fhir.api.outcome import FhirResponse, outcome_response
from sis2fhir.api.smart import ApiClient, require
from sis2fhir.config import Settings
from sis2fhir.map.notification import CONTENTS, QUERY_EVENT, SubscriptionState, notification_bundle, status_searchset
from sis2fhir.map.topics import BY_ID, TOPICS, topic_basic
from sis2fhir.service import subscriptions as subs
from sis2fhir.service.notifications import events_by_id, focus_of, notification_event
from sis2fhir.service.served import ServedStore
from sis2fhir.store.subscriptions import StoredSubscription, notifications_between

MAX_BODY: Final = 64 * 1024
MAX_EVENTS: Final = 1000  # per $events answer
_JSON: Final = frozenset({"application/fhir+json", "application/json"})

router = APIRouter(prefix="/fhir", include_in_schema=False)
_create, _read, _update = (
    Depends(require("system/Subscription.c")),
    Depends(require("system/Subscription.r")),
    Depends(require("system/Subscription.u")),
)
_delete, _search = Depends(require("system/Subscription.d")), Depends(require("system/Subscription.s"))


def _served(request: Request) -> ServedStore:
    served: ServedStore = request.app.state.served
    return served


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _wake(request: Request) -> None:
    notifier = getattr(request.app.state, "notifier", None)
    if notifier is not None:
        notifier.wake()


async def _body(request: Request) -> Any:
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in _JSON:
        raise subs.Invalid("send the Subscription as application/fhir+json", 415)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise subs.Invalid("the body is too large for a Subscription", 413)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise subs.Invalid("the body is not JSON", 400) from None


def _answer(sub: StoredSubscription, settings: Settings, status: int = 200) -> Response:
    base = settings.api.fhir_base
    headers = {
        "ETag": f'W/"{sub.version_id}"',
        "Location": f"{base}/Subscription/{sub.id}/_history/{sub.version_id}",
    }
    return FhirResponse(subs.as_resource(sub), status_code=status, headers=headers)


def _refused(e: subs.Invalid) -> Response:
    return outcome_response(e.status, str(e))


@router.post("/Subscription")
async def create(request: Request, client: ApiClient = _create) -> Response:
    request.state.client_id = client.client_id
    settings, served = _settings(request), _served(request)
    try:
        resource = await _body(request)
        sub = await run_in_threadpool(subs.create, settings, served, client.client_id, client.recipient, resource)
    except subs.Invalid as e:
        return _refused(e)
    _wake(request)  # the handshake goes at once
    return _answer(sub, settings, 201)


@router.get("/Subscription")
async def search(request: Request, client: ApiClient = _search) -> Response:
    request.state.client_id = client.client_id
    settings = _settings(request)
    found = await run_in_threadpool(subs.search, _served(request), client.recipient)
    wanted = [v for k, v in parse_qsl(request.url.query) if k == "_id"]
    if wanted:
        ids = {i for v in wanted for i in v.split(",")}
        found = [s for s in found if s.id in ids]
    base = settings.api.fhir_base
    return FhirResponse(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [
                {"fullUrl": f"{base}/Subscription/{s.id}", "resource": subs.as_resource(s), "search": {"mode": "match"}}
                for s in found
            ],
        }
    )


def _state(sub: StoredSubscription) -> SubscriptionState:
    return SubscriptionState(sub.id, sub.topic, sub.status, sub.events, sub.error)


@router.get("/Subscription/$status")
async def status_of_all(request: Request, client: ApiClient = _search) -> Response:
    request.state.client_id = client.client_id
    found = await run_in_threadpool(subs.search, _served(request), client.recipient)
    wanted = {i for k, v in parse_qsl(request.url.query) if k in ("id", "_id") for i in v.split(",")}
    states = [_state(s) for s in found if not wanted or s.id in wanted]
    return FhirResponse(status_searchset(_settings(request).api.fhir_base, states))


@router.get("/Subscription/{subscription_id}")
async def read(subscription_id: str, request: Request, client: ApiClient = _read) -> Response:
    request.state.client_id = client.client_id
    sub = await run_in_threadpool(subs.read, _served(request), client.recipient, subscription_id)
    if sub is None:
        return outcome_response(404, "no Subscription with this id for this client")
    return _answer(sub, _settings(request))


@router.put("/Subscription/{subscription_id}")
async def update(subscription_id: str, request: Request, client: ApiClient = _update) -> Response:
    request.state.client_id = client.client_id
    settings, served = _settings(request), _served(request)
    try:
        resource = await _body(request)
        sub = await run_in_threadpool(
            subs.update, settings, served, client.client_id, client.recipient, subscription_id, resource
        )
    except subs.Invalid as e:
        return _refused(e)
    if sub is None:
        return outcome_response(404, "no Subscription with this id for this client (create it with POST)")
    _wake(request)
    return _answer(sub, settings)


@router.delete("/Subscription/{subscription_id}")
async def delete(subscription_id: str, request: Request, client: ApiClient = _delete) -> Response:
    request.state.client_id = client.client_id
    gone = await run_in_threadpool(subs.delete, _served(request), client.recipient, subscription_id)
    if not gone:
        return outcome_response(404, "no Subscription with this id for this client")
    return Response(status_code=204)


async def _params(request: Request) -> dict[str, str]:
    """Operation parameters from the query, and from a Parameters body on POST."""
    params = dict(parse_qsl(request.url.query))
    if request.method == "POST" and (await request.body()).strip():
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise subs.Invalid("the body is not a Parameters resource", 400) from None
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise subs.Invalid("the body is not a Parameters resource", 400)
        for p in body.get("parameter") or []:
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(p.get("name"), str) and value is not None:
                params[p["name"]] = str(value)
    return params


@router.api_route("/Subscription/{subscription_id}/$status", methods=["GET", "POST"])
async def status(subscription_id: str, request: Request, client: ApiClient = _read) -> Response:
    request.state.client_id = client.client_id
    sub = await run_in_threadpool(subs.read, _served(request), client.recipient, subscription_id)
    if sub is None:
        return outcome_response(404, "no Subscription with this id for this client")
    return FhirResponse(status_searchset(_settings(request).api.fhir_base, [_state(sub)]))


def _whole(params: dict[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    if not text.strip().isdigit():
        raise subs.Invalid(f"{name} must be a whole number (an event number)", 400)
    return int(text)


def _events_answer(
    served: ServedStore, settings: Settings, client: ApiClient, sub: StoredSubscription, params: dict[str, str]
) -> dict[str, Any]:
    since = _whole(params, "eventsSinceNumber") or 1
    until = _whole(params, "eventsUntilNumber")
    content = params.get("content", sub.content)
    if content not in CONTENTS:
        raise subs.Invalid(f"content must be one of {', '.join(CONTENTS)}", 400)
    notes = notifications_between(served.engine, sub.id, since, until, MAX_EVENTS)
    events, students = [], []
    with served.engine.connect() as conn:
        found = events_by_id(conn, [n.attendance_event_id for n in notes])
        for n in notes:
            event = found.get(n.attendance_event_id)
            focus = focus_of(conn, sub.recipient, event) if event is not None else None
            if event is None or focus is None:
                continue  # the gate says no today: the number is a gap in the answer
            events.append(notification_event(n.event_number, event, focus, content))
            students.append(event.student)
    now = datetime.now(UTC)
    if students:
        served.record_reads(sub.recipient, client.client_id, students, f"$events Subscription/{sub.id}", now)
    state = SubscriptionState(sub.id, sub.topic, sub.status, sub.events, sub.error)
    return notification_bundle(settings.api.fhir_base, state, QUERY_EVENT, events, content, now)


@router.api_route("/Subscription/{subscription_id}/$events", methods=["GET", "POST"])
async def events(subscription_id: str, request: Request, client: ApiClient = _read) -> Response:
    request.state.client_id = client.client_id
    served, settings = _served(request), _settings(request)
    sub = await run_in_threadpool(subs.read, served, client.recipient, subscription_id)
    if sub is None:
        return outcome_response(404, "no Subscription with this id for this client")
    try:
        params = await _params(request)
        bundle = await run_in_threadpool(_events_answer, served, settings, client, sub, params)
    except subs.Invalid as e:
        return _refused(e)
    return FhirResponse(bundle)


@router.get("/Basic")
async def topics(request: Request, client: ApiClient = _read) -> Response:
    """The SubscriptionTopics (Basic, code SubscriptionTopic); `code` and `_id` filter."""
    request.state.client_id = client.client_id
    params = parse_qsl(request.url.query)
    ids = {i for k, v in params if k == "_id" for i in v.split(",")}
    codes = {c.rpartition("|")[2] for k, v in params if k == "code" for c in v.split(",")}
    found = [t for t in TOPICS if (not ids or t.basic_id in ids) and (not codes or "SubscriptionTopic" in codes)]
    base = _settings(request).api.fhir_base
    return FhirResponse(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [
                {"fullUrl": f"{base}/Basic/{t.basic_id}", "resource": topic_basic(t), "search": {"mode": "match"}}
                for t in found
            ],
        }
    )


@router.get("/Basic/{basic_id}")
async def topic(basic_id: str, request: Request, client: ApiClient = _read) -> Response:
    request.state.client_id = client.client_id
    found = BY_ID.get(basic_id)
    if found is None:
        return outcome_response(404, "no Basic with this id (the Basic resources here are the SubscriptionTopics)")
    return FhirResponse(topic_basic(found))
