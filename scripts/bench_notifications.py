"""Benchmark: Subscription notifications from a real `sis2fhir serve` to a subscriber on loopback.

    .venv/bin/python scripts/bench_notifications.py --events 50 --subscriptions 1000

Syncs the example district into a SQLite store, serves it with the notifier (notify.poll_seconds as given), and
a subscriber (tests/support/subscriber.py, a threaded HTTP server) records every request with its arrival time:

  (a) latency: one id-only subscription; `--events` attendance events written into the store one at a time, as
      a finished sync records them, `--gap` seconds apart; the time from each insert to its notification's
      arrival, p50 and p99 (the poll period is most of it: a sync ends, the next poll finds its events);
  (b) fan-out: `--subscriptions` subscriptions (made through the API, each handshaken first), then one event:
      the time from its insert to the last of its notifications arriving;
  (c) the floor, same run: as many plain httpx POSTs of a notification-sized body to the same subscriber, with
      the notifier's concurrency (notify.max_concurrent_deliveries).

Prints a Markdown row for BENCHMARKS.md. No test runs this; the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.served_district import HARBOR, RIVERSIDE  # noqa: E402
from tests.support.subscriber import Subscriber, event_numbers, notification_type  # noqa: E402
from tests.support.subscriptions import (  # noqa: E402
    SCOPES,
    notifying_district,
    record_event,
    served_students,
    subscription,
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait(check: Callable[[], bool], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for notifications")
        time.sleep(0.01)


async def floor(url: str, body: bytes, n: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(trust_env=False) as client:

        async def one() -> None:
            async with slots:
                r = await client.post(url, content=body, headers={"Content-Type": "application/fhir+json"})
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--gap", type=float, default=0.25, help="seconds between the latency events")
    ap.add_argument("--subscriptions", type=int, default=1000)
    ap.add_argument("--poll-seconds", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-notify-") as tmp:
        notify = {"poll_seconds": args.poll_seconds}
        with notifying_district(Path(tmp), **notify) as district:
            headers = {
                "Authorization": f"Bearer {district.token(RIVERSIDE, SCOPES)}",
                "Content-Type": "application/fhir+json",
            }
            theirs = {s.student for s in served_students(district.out, HARBOR)}
            students = [s for s in served_students(district.out, RIVERSIDE) if s.student not in theirs]

            # (a) latency
            sub = Subscriber().start()
            made = httpx.post(f"{district.fhir}/Subscription", json=subscription(sub.url), headers=headers)
            made.raise_for_status()
            wait(lambda: len(sub.bundles("handshake")) == 1, 60)
            inserted: dict[int, float] = {}
            for i in range(args.events):
                inserted[i + 1] = time.time()
                record_event(district.store_url, students[i % len(students)], episode=f"bench-{i}")
                time.sleep(args.gap)
            wait(lambda: len(sub.bundles("event-notification")) >= args.events, 120)
            latency = [
                r.at - inserted[n]
                for r in sub.received
                if notification_type(r.json()) == "event-notification"
                for n in event_numbers(r.json())
            ]
            sub.stop()
            httpx.delete(f"{district.fhir}/Subscription/{made.json()['id']}", headers=headers).raise_for_status()

            # (b) fan-out
            fan = Subscriber().start()
            start = time.perf_counter()
            with httpx.Client(timeout=30) as client:
                for _ in range(args.subscriptions):
                    client.post(
                        f"{district.fhir}/Subscription", json=subscription(fan.url), headers=headers
                    ).raise_for_status()
            created = time.perf_counter() - start
            wait(lambda: len(fan.bundles("handshake")) >= args.subscriptions, 600)
            handshaken = time.perf_counter() - start
            at = time.time()
            record_event(district.store_url, students[0], episode="bench-fan-out")
            wait(lambda: len(fan.bundles("event-notification")) >= args.subscriptions, 600)
            arrivals = sorted(r.at for r in fan.received if b"event-notification" in r.body)
            first, last = arrivals[0] - at, arrivals[-1] - at
            body = next(r.body for r in fan.received if b"event-notification" in r.body)

            # (c) the floor
            plain = asyncio.run(floor(fan.url, body, args.subscriptions, 32))
            fan.stop()
    p50, p99 = percentile(latency, 0.5), percentile(latency, 0.99)
    print(
        f"latency over {len(latency)} events (poll {args.poll_seconds:g} s): p50 {p50:.3f} s, p99 {p99:.3f} s, "
        f"mean {statistics.mean(latency):.3f} s"
    )
    print(f"{args.subscriptions} subscriptions created in {created:.1f} s, all handshaken after {handshaken:.1f} s")
    print(f"fan-out of one event to {args.subscriptions}: first {first:.2f} s, last {last:.2f} s after the insert")
    print(f"floor: {args.subscriptions} plain httpx POSTs (concurrency 32), same {len(body)}-byte body: {plain:.2f} s")
    print()
    print(
        f"| notification latency and fan-out (issue 10) | `scripts/bench_notifications.py --events {args.events} "
        f"--subscriptions {args.subscriptions}` | example district, SQLite, subscriber on loopback, poll "
        f"{args.poll_seconds:g} s | insert to arrival p50 **{p50:.2f} s**, p99 **{p99:.2f} s**; one event to "
        f"{args.subscriptions} subscriptions: last arrival after **{last:.1f} s** | {args.subscriptions} plain httpx "
        f"POSTs: {plain:.1f} s | {last / plain:.1f}x the floor (the poll period included) | |"
    )


if __name__ == "__main__":
    main()
