"""The notifier `serve` runs beside the API (started and stopped by the app's lifespan): every
`notify.poll_seconds`, or at once when a Subscription is made or changed, it fans new attendance events out to the
subscriptions (service/notifications.fan_out) and sends what each subscription is due: its handshake, its queued
events in order, a heartbeat.

Each subscription is served by one task at a time, at most `notify.max_concurrent_deliveries` sending at once: a
dead or slow endpoint holds only its own task (for at most its timeout), never the others'. The endpoint is
checked again before every send (deliver/rest_hook.check_endpoint). What is logged: the subscription id, the kind,
the event numbers and the outcome; never the endpoint's headers, the body, a secret or a student."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from sis2fhir.config import Settings
from sis2fhir.deliver.rest_hook import EndpointRefused, HookAnswer, check_endpoint, post_notification
from sis2fhir.service.notifications import fan_out, next_delivery, record_outcome
from sis2fhir.store.subscriptions import subscriptions_of

log = logging.getLogger("sis2fhir.notifier")


class Notifier:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.notify.max_concurrent_deliveries)
        self._main: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look for work now (a Subscription was made or changed)."""
        self._wake.set()

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run(), name="sis2fhir-notifier")

    async def stop(self) -> None:
        tasks = [t for t in [self._main, *self._tasks.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.settings.notify.max_concurrent_deliveries * 2)
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False, limits=limits) as client:
            while True:
                try:
                    await self.tick(client)
                except Exception as e:  # the store unreachable a moment: try again next period, no traceback
                    log.error("notifier: this round failed (%s); trying again", e.__class__.__name__)
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.notify.poll_seconds)
                self._wake.clear()

    async def tick(self, client: httpx.AsyncClient) -> None:
        """Fan out, then start a sending task for every subscription that has none running."""
        made = await asyncio.to_thread(fan_out, self.engine, self.settings)
        if made:
            log.info("notifier: %d new event notification(s)", made)
        subs = await asyncio.to_thread(subscriptions_of, self.engine, None, ("requested", "active"))
        for sub in subs:
            if sub.id not in self._tasks:
                self._tasks[sub.id] = asyncio.get_running_loop().create_task(self._serve(sub.id, client))

    async def _serve(self, subscription_id: str, client: httpx.AsyncClient) -> None:
        """Send this subscription what is due, one notification after the other, until nothing is (or one fails:
        its retry waits for its time)."""
        try:
            while True:
                async with self._slots:
                    delivery = await asyncio.to_thread(
                        next_delivery, self.engine, self.settings, subscription_id, datetime.now(UTC)
                    )
                    if delivery is None:
                        return
                    sub = delivery.subscription
                    try:
                        await asyncio.to_thread(check_endpoint, sub.endpoint, self.settings.notify.allowed_endpoints)
                        timeout = float(sub.timeout_seconds or self.settings.notify.timeout_seconds)
                        answer = await post_notification(
                            client, sub.endpoint, delivery.body, sub.headers, timeout, sub.secret
                        )
                    except EndpointRefused as e:
                        answer = HookAnswer(False, None, f"the endpoint is refused: {e}")
                    await asyncio.to_thread(
                        record_outcome, self.engine, self.settings, delivery, answer.ok, answer.error, datetime.now(UTC)
                    )
                numbers = ",".join(str(n.event_number) for n in delivery.notifications)
                log.info(
                    "notification subscription=%s kind=%s events=%s %s",
                    sub.id,
                    delivery.kind,
                    numbers or "-",
                    "delivered" if answer.ok else f"failed: {answer.error}",
                )
                if not answer.ok:
                    return
        except Exception as e:  # never a traceback; the next round tries again
            log.error("notifier: subscription %s: %s", subscription_id, e.__class__.__name__)
        finally:
            self._tasks.pop(subscription_id, None)
