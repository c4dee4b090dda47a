"""A rest-hook subscriber on loopback for the Subscription tests: a small HTTP server (its own thread) that records
every request (method, path, headers, body) and answers `status` (200 unless told otherwise). `stop()` closes the
port (a subscriber that is down: connection refused), `start()` opens it again on the same port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.sekmet import free_port


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # as sent (names as the client spelt them)
    body: bytes
    at: float = field(default_factory=time.time)  # when it arrived (wall clock)

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # http.server's 5 resets connections when many notifications arrive at once
    allow_reuse_address = True  # started again on the same port after stop()


class Subscriber:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.status = 200
        self.location: str | None = None  # with a 3xx status: the Location answered
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    def start(self) -> Subscriber:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner._lock:
                    owner.received.append(Received("POST", self.path, dict(self.headers.items()), body))
                    status, location = owner.status, owner.location
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bundles(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The notification Bundles received (of this notification type), in arrival order."""
        with self._lock:
            got = [r.json() for r in self.received]
        return [b for b in got if kind is None or notification_type(b) == kind]

    def wait_for(self, check: Callable[[Subscriber], bool], limit: float = 60.0) -> None:
        """Until `check(self)` holds (AssertionError after `limit` seconds: the machine is shared, so generous)."""
        deadline = time.monotonic() + limit
        while not check(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"the subscriber did not get what was expected; it got {len(self.received)}")
            time.sleep(0.05)


def status_parameters(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = bundle["entry"][0]["resource"]
    return resource


def parameter(bundle: dict[str, Any], name: str) -> Any:
    for p in status_parameters(bundle)["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def notification_type(bundle: dict[str, Any]) -> str:
    return str(parameter(bundle, "type"))


def event_numbers(bundle: dict[str, Any]) -> list[int]:
    return [
        int(next(part["valueString"] for part in p["part"] if part["name"] == "event-number"))
        for p in status_parameters(bundle)["parameter"]
        if p["name"] == "notification-event"
    ]


def focuses(bundle: dict[str, Any]) -> list[str]:
    return [
        part["valueReference"]["reference"]
        for p in status_parameters(bundle)["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "focus"
    ]
