"""One log line per request, and the last net under the app: an exception no handler turned into an answer becomes
a 500 OperationOutcome here (no traceback), told in the log by its type and place only.

The line holds the method, the path with every segment that is not a fixed word of the API replaced by `{id}`
(resource ids are derived from student identifiers), the names of the query parameters without their values
(a search by identifier carries a state student id), the status, the duration and the client id once the token
named it. Never a value, a token or a body."""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

from sis2fhir.api.outcome import outcome_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("sis2fhir.api")

# the path segments shown as they are: the API's own words; anything else (ids, job ids, typos) is `{id}`
_WORDS: Final = frozenset(
    {
        "fhir",
        "metadata",
        "_search",
        "$export",
        "$export-poll-status",
        ".well-known",
        "smart-configuration",
        "auth",
        "token",
        "healthz",
        "readyz",
        "openapi.json",
        "docs",
        "bulk",
        "files",
        "status",
        "jobs",
        *("cds-services", "sis2fhir-school-attendance", "feedback", "app", "launch", "callback", "chart"),  # issue 11
    }
)
_TYPE: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}$")  # a FHIR resource type: shown (it is not data)
_PARAM: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.\-]{0,63}$")
_PACKAGE_DIR: Final = Path(__file__).resolve().parent.parent


def shown_path(path: str) -> str:
    """The path as logged: fixed words and resource types kept, every other segment `{id}`."""
    shown = []
    for segment in path.split("/"):
        shown.append(segment if not segment or segment in _WORDS or _TYPE.match(segment) else "{id}")
    return "/".join(shown)


def shown_params(query: str) -> str:
    """The query's parameter names, in order, without values (a name that is not a plain name: `?`)."""
    names: list[str] = []
    for name, _ in parse_qsl(query, keep_blank_values=True):
        shown = name if _PARAM.match(name) else "?"
        if shown not in names:
            names.append(shown)
    return ",".join(names)


def where_raised(exc: BaseException) -> str:
    """`module:line` of the innermost frame in sis2fhir's code (no message: it may hold data)."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve().is_relative_to(_PACKAGE_DIR)
    ]
    if not frames:
        return "outside sis2fhir"
    path = Path(frames[-1].filename).resolve().relative_to(_PACKAGE_DIR).with_suffix("")
    return f"sis2fhir.{'.'.join(path.parts)}:{frames[-1].lineno}"


class RequestLog:
    """ASGI middleware: the request's log line; an unhandled exception answered 500 (if nothing was sent yet)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.error(
                "unhandled %s in %s (details withheld: they may hold student data)",
                type(exc).__name__,
                where_raised(exc),
            )
            if status == 0:
                await outcome_response(500, "internal error; it has been logged")(scope, receive, sending)
            else:
                status = status or 500
        finally:
            self._line(scope, status, time.perf_counter() - started)

    @staticmethod
    def _line(scope: Scope, status: int, seconds: float) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        params = shown_params(query)
        state = scope.get("state") or {}
        client = state.get("client_id") if isinstance(state, dict) else None
        log.info(
            "%s %s%s %s %.1fms%s",
            scope.get("method", "?"),
            shown_path(scope.get("path", "")),
            f"?{params}" if params else "",
            status or "-",
            seconds * 1000,
            f" client={client}" if client else "",
        )
