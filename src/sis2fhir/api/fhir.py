"""The FHIR R4 read API at /fhir: metadata, read and search (GET, and POST _search with a form) of Patient,
Observation, Consent and Organization, each answer scoped to the calling client's recipient organization.

What a client sees is exactly what `sync` holds for its recipient in the served store (sis2fhir.service.served):
a student without an active consent to that recipient is in no answer (search: absent; read: 404). Every answer
that holds a student's data is a disclosure, recorded once per request with the students in it
(`ServedStore.record_reads`). A search answers a Bundle searchset with `total` always, absolute fullUrls under
the public base, and offset paging links (`_offset`); `_summary=count` (or `_count=0`) answers the total only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sis2fhir.api.capability import SERVED_TYPES
from sis2fhir.api.outcome import FhirResponse, outcome_response
from sis2fhir.api.smart import ApiClient, require
from sis2fhir.service.served import SearchPage, ServedResource, ServedStore, UnsupportedSearch

DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 1000
MAX_OFFSET: Final = 10_000_000
_JSON_FORMATS: Final = frozenset({"json", "application/json", "application/fhir+json"})
# R4's _total (none | estimate | accurate) and fhirpy's count() (`_count=0&_totalMethod=count`, Aidbox's name)
_TOTAL: Final = frozenset({"_total", "_totalMethod"})
Params = dict[str, list[str]]


class BadRequest(Exception):
    """A request the API cannot answer as asked (a parameter's value): 400 with the message."""


def fhir_router(base_url: str) -> APIRouter:
    """The read and search routes of every served type; `base_url` the public base (the FHIR base is
    base_url/fhir). Each type's routes need that type's SMART scope (api.smart.require)."""
    router = APIRouter(prefix="/fhir", include_in_schema=False)
    for rtype in SERVED_TYPES:
        dependency = require(f"system/{rtype}.rs")
        router.add_api_route(f"/{rtype}", _search_get(rtype, base_url, dependency), methods=["GET"])
        router.add_api_route(f"/{rtype}/_search", _search_post(rtype, base_url, dependency), methods=["POST"])
        router.add_api_route(f"/{rtype}/{{resource_id}}", _read(rtype, dependency), methods=["GET"])
    return router


def _served(request: Request) -> ServedStore:
    served: ServedStore = request.app.state.served
    return served


def _search_get(rtype: str, base_url: str, dependency: Callable[..., Any]) -> Callable[..., Any]:
    by_token = Depends(dependency)

    def search(request: Request, client: ApiClient = by_token) -> Response:
        request.state.client_id = client.client_id
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        return answer_search(_served(request), client, rtype, pairs, base_url)

    return search


def _search_post(rtype: str, base_url: str, dependency: Callable[..., Any]) -> Callable[..., Any]:
    by_token = Depends(dependency)

    async def search(request: Request, client: ApiClient = by_token) -> Response:
        request.state.client_id = client.client_id
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return outcome_response(415, "POST _search takes the parameters as application/x-www-form-urlencoded")
        body = await request.body()
        try:
            form = body.decode("utf-8")
        except UnicodeDecodeError:
            return outcome_response(400, "the form is not UTF-8")
        pairs = parse_qsl(request.url.query, keep_blank_values=True) + parse_qsl(form, keep_blank_values=True)
        served = _served(request)
        return await run_in_threadpool(answer_search, served, client, rtype, pairs, base_url)

    return search


def _read(rtype: str, dependency: Callable[..., Any]) -> Callable[..., Any]:
    by_token = Depends(dependency)

    def read(resource_id: str, request: Request, client: ApiClient = by_token) -> Response:
        request.state.client_id = client.client_id
        served = _served(request)
        found = served.read(client.recipient, rtype, resource_id)
        if found is None:
            return outcome_response(404, f"no {rtype} with this id for this client")
        if found.student is not None:
            served.record_reads(
                client.recipient, client.client_id, [found.student], f"read /fhir/{rtype}/{resource_id}", _now()
            )
        return FhirResponse(found.content, headers=_version_headers(found))

    return read


def answer_search(
    served: ServedStore, client: ApiClient, rtype: str, pairs: Sequence[tuple[str, str]], base_url: str
) -> Response:
    """A search's Bundle (or its OperationOutcome), the students in it recorded as one disclosure."""
    try:
        params, count, offset, summary_count = parse_search(pairs)
        page = served.search(client.recipient, rtype, params, 0 if summary_count else count, offset)
    except BadRequest as e:
        return outcome_response(400, str(e))
    except UnsupportedSearch as e:
        return outcome_response(400, str(e), code="not-supported")
    students = list(dict.fromkeys(r.student for r in page.resources if r.student is not None))
    if students:
        what = f"search /fhir/{rtype}?{urlencode(pairs)}"  # what was asked; the log of the store, not of the server
        served.record_reads(client.recipient, client.client_id, students, what, _now())
    return FhirResponse(searchset(page, rtype, params, count, offset, summary_count, base_url))


def parse_search(pairs: Sequence[tuple[str, str]]) -> tuple[Params, int, int, bool]:
    """(search parameters, _count, _offset, _summary=count) from the query's pairs; BadRequest for a control
    parameter's bad value. The search parameters go to the store as given (it refuses what it cannot answer)."""
    params: Params = {}
    control: dict[str, str] = {}
    for name, value in pairs:
        if name in _TOTAL:
            continue  # `total` is always counted exactly
        if name in ("_count", "_offset", "_summary", "_format"):
            if name in control and control[name] != value:
                raise BadRequest(f"{name} is given twice with different values")
            control[name] = value
        else:
            params.setdefault(name, []).append(value)
    count = _number(control.get("_count"), "_count", DEFAULT_COUNT, MAX_COUNT, clamp=True)
    offset = _number(control.get("_offset"), "_offset", 0, MAX_OFFSET, clamp=False)
    summary = control.get("_summary")
    if summary not in (None, "count", "false"):
        raise BadRequest(f"_summary={summary} is not supported; this server answers _summary=count and _summary=false")
    fmt = control.get("_format")
    if fmt is not None and fmt.strip().lower() not in _JSON_FORMATS:
        raise BadRequest("this server answers JSON only (_format=json)")
    return params, count, offset, summary == "count" or count == 0


def _number(text: str | None, name: str, default: int, largest: int, *, clamp: bool) -> int:
    if text is None:
        return default
    if not text.strip().isdigit():
        raise BadRequest(f"{name} must be a whole number of 0 or more")
    value = int(text.strip())
    if value > largest:
        if clamp:  # as FHIR servers do: fewer per page than asked, the links say how to go on
            return largest
        raise BadRequest(f"{name} must be at most {largest}")
    return value


def searchset(
    page: SearchPage, rtype: str, params: Params, count: int, offset: int, summary_count: bool, base_url: str
) -> bytes:
    """The Bundle's JSON: the resources' stored bytes spliced in as they are (never parsed again)."""
    fhir_base = f"{base_url}/fhir"
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": page.total}
    kept = [(k, v) for k, values in params.items() for v in values]

    def url(at: int) -> str:
        extra: list[tuple[str, str]] = [("_summary", "count")] if summary_count else [("_count", str(count))]
        if at and not summary_count:
            extra.append(("_offset", str(at)))
        return f"{fhir_base}/{rtype}?{urlencode(kept + extra)}"

    links = [{"relation": "self", "url": url(offset)}]
    if not summary_count:
        if offset + count < page.total:
            links.append({"relation": "next", "url": url(offset + count)})
        if offset > 0:
            links.append({"relation": "previous", "url": url(max(0, offset - count))})
    head["link"] = links
    if summary_count or not page.resources:
        return orjson.dumps(head)
    entries = b",".join(
        b'{"fullUrl":'
        + orjson.dumps(f"{fhir_base}/{r.resource_type}/{r.resource_id}")
        + b',"resource":'
        + r.content
        + b',"search":{"mode":"match"}}'
        for r in page.resources
    )
    return orjson.dumps(head)[:-1] + b',"entry":[' + entries + b"]}"


def _version_headers(found: ServedResource) -> dict[str, str]:
    return {
        "ETag": f'W/"{found.version_id}"',
        "Last-Modified": found.last_updated.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }


def _now() -> datetime:
    return datetime.now(UTC)
