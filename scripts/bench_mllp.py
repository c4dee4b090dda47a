"""Benchmark: ORU^R01 messages per second over loopback MLLP, each waiting for its ACK (MllpDestination).

    .venv/bin/python scripts/bench_mllp.py [--n 20000] [--batch 500] [--same-process]

The listener (tests/support/mllp_listener.py, answering AA) runs in its own process by default, as a real
receiver would; --same-process runs it on the sender's event loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support

from tests.support.mllp_listener import MllpListener  # noqa: E402

from sis2fhir.deliver.base import DeliveryItem, Outcome, deliver_all  # noqa: E402
from sis2fhir.deliver.mllp import MllpDestination  # noqa: E402
from sis2fhir.map.oru import V2Settings, build_oru_r01  # noqa: E402
from sis2fhir.measure import AttendanceSummary  # noqa: E402
from sis2fhir.records import School, Student  # noqa: E402


def items(n: int) -> list[DeliveryItem]:
    v2 = V2Settings(sending_facility="LEA", receiving_application="HIE", state_id_authority="LEA")
    school = School("sch-1", "Lincoln Elementary", "0601234")
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        summary = AttendanceSummary(
            f"stu-{i}", "sch-1", 2025, date(2024, 8, 26), date(2025, 2, 28), 120, 1250, 500, 750, 300, 0,
            "moderate-chronic",
        )  # fmt: skip
        student = Student(f"stu-{i}", f"S{i:08d}", "Jane", "Doe", birth_date=date(2014, 5, 12), sex="female")
        message = build_oru_r01(summary, student, school, v2, f"M{i:08d}", at)
        out.append(DeliveryItem(f"key-{i}", "HIE", f"stu-{i}", f"S{i:08d}", f"c-{i}", hl7v2=message))
    return out


async def send_all(port: int, batch: list[DeliveryItem], batch_size: int) -> float:
    dest = MllpDestination("127.0.0.1", port, ack_timeout=10.0)
    delivered = 0
    start = time.perf_counter()
    try:
        for i in range(0, len(batch), batch_size):
            results = await deliver_all(dest, batch[i : i + batch_size])
            delivered += sum(r.outcome is Outcome.DELIVERED for r in results)
    finally:
        await dest.close()
    elapsed = time.perf_counter() - start
    if delivered != len(batch):
        raise SystemExit(f"only {delivered} of {len(batch)} delivered")
    return len(batch) / elapsed


async def serve() -> None:
    async with MllpListener() as listener:
        print(listener.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


async def same_process(batch: list[DeliveryItem], batch_size: int) -> float:
    async with MllpListener() as listener:
        return await send_all(listener.port, batch, batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="items per deliver() call, as the outbox drains")
    parser.add_argument("--same-process", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    batch = items(args.n)
    if args.same_process:
        rate = asyncio.run(same_process(batch, args.batch))
        where = "listener on the same event loop"
    else:
        listener = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert listener.stdout is not None
            port = int(listener.stdout.readline())
            rate = asyncio.run(send_all(port, batch, args.batch))
        finally:
            assert listener.stdin is not None
            listener.stdin.close()
            listener.wait(timeout=10)
        where = "listener in its own process"
    print(f"MLLP send + ACK over loopback: {rate:,.0f} messages/s ({args.n:,} messages, {where})")


if __name__ == "__main__":
    main()
