"""A TCP proxy in front of an HTTP server that kills a process at the n-th matching request, at a chosen moment.

Moments, for the n-th request whose first bytes start with `trigger` (e.g. b"POST /fhir "):
- "before": the request never reaches the server;
- "stored": the server gets it and answers, and the answer never reaches the client;
- "answered": the answer reaches the client, and the process dies `delay` seconds later.
HTTP/1.1 clients wait for a response before the next request on a connection, so a new request starts a new read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class KillPlan:
    pid: int
    at: int  # the n-th matching request from now (1-based)
    moment: str  # before | stored | answered
    delay: float = 0.0


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class KillingProxy:
    def __init__(self, upstream_port: int, trigger: bytes) -> None:
        self.upstream_port = upstream_port
        self.trigger = trigger
        self.port = 0
        self.seen = 0  # matching requests so far, over all connections
        self.plan: KillPlan | None = None
        self._target = 0
        self.fired = threading.Event()
        self._server: asyncio.Server | None = None

    def arm(self, plan: KillPlan) -> None:
        self.fired.clear()
        self._target = self.seen + plan.at
        self.plan = plan

    def disarm(self) -> None:
        self.plan = None

    def _fire(self) -> None:
        plan, self.plan = self.plan, None
        if plan is not None:
            kill_group(plan.pid)
            self.fired.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cwriter.close()
            return
        armed: list[KillPlan] = []  # the plan this connection's current request carries

        async def up() -> None:
            while data := await creader.read(65536):
                if data.startswith(self.trigger):
                    self.seen += 1
                    if self.plan is not None and self.seen == self._target:
                        if self.plan.moment == "before":
                            self._fire()
                            return
                        armed.append(self.plan)
                swriter.write(data)
                await swriter.drain()

        async def down() -> None:
            while data := await sreader.read(65536):
                if armed and armed[0].moment == "stored":
                    self._fire()
                    return
                cwriter.write(data)
                await cwriter.drain()
                if armed:
                    plan = armed.pop()
                    asyncio.get_running_loop().call_later(plan.delay, self._fire)

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (cwriter, swriter):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextmanager
def running_proxy(upstream_port: int, trigger: bytes) -> Iterator[KillingProxy]:
    """The proxy on its own event loop in a thread, as a separate network hop would be."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = KillingProxy(upstream_port, trigger)
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
