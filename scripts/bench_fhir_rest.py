"""Resources/s FhirRestDestination delivers to sekmet-fhir, against the server's own ceiling in the same run.

The ceiling: the same transaction Bundles (conditional PUTs, subjects already Patient/<id>), pre-built and
POSTed directly with httpx at the same concurrency.
Usage: .venv/bin/python scripts/bench_fhir_rest.py [--students 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.attendance_items import STATE_ID_SYSTEM, delivery_item
from tests.support.sekmet import running_sekmet

from sis2fhir.deliver.base import DeliveryItem, Outcome, deliver_all
from sis2fhir.deliver.fhir_rest import FhirRestDestination
from sis2fhir.deliver.smart_auth import NoAuth
from sis2fhir.link import PatientLinker

FHIR_JSON = "application/fhir+json"


def items_for(students: list[str], tag: str) -> list[DeliveryItem]:
    """One Observation and one Consent per student; `tag` makes the business identifiers new for each set."""
    items = []
    for state_id in students:
        item = delivery_item(state_id)
        item.key = f"{item.key}:{tag}"
        for resource in item.resources:
            resource["identifier"][0]["value"] += f"-{tag}"
        items.append(item)
    return items


def prebuilt_bundles(items: list[DeliveryItem], patients: dict[str, str], size: int) -> list[bytes]:
    entries = []
    for item in items:
        for resource in item.resources:
            sent = orjson.loads(orjson.dumps(resource))
            sent.pop("id", None)
            field = "subject" if sent["resourceType"] == "Observation" else "patient"
            sent[field] = {**sent[field], "reference": f"Patient/{patients[item.state_student_id]}"}
            ident = sent["identifier"][0]
            url = f"{sent['resourceType']}?identifier={ident['system']}|{ident['value']}"
            entries.append({"resource": sent, "request": {"method": "PUT", "url": url}})
    return [
        orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries[i : i + size]})
        for i in range(0, len(entries), size)
    ]


async def ceiling(base: str, bundles: list[bytes], concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def post(body: bytes) -> None:
            async with semaphore:
                response = await client.post(
                    base, content=body, headers={"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}
                )
            response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bundles))
        return time.perf_counter() - started


async def adapter(base: str, items: list[DeliveryItem], linker: PatientLinker, size: int, concurrency: int) -> float:
    dest = FhirRestDestination(base, NoAuth(), linker=linker, bundle_size=size, concurrency=concurrency)
    started = time.perf_counter()
    results = await deliver_all(dest, items)
    elapsed = time.perf_counter() - started
    await dest.close()
    bad = [r for r in results if r.outcome is not Outcome.DELIVERED]
    if bad:
        raise SystemExit(f"{len(bad)} items not delivered, e.g. {bad[0].outcome}: {bad[0].detail}")
    return elapsed


def seed_patients(base: str, students: list[str]) -> dict[str, str]:
    patients: dict[str, str] = {}
    with httpx.Client(timeout=60) as client:
        for i in range(0, len(students), 100):
            chunk = students[i : i + 100]
            entries = [
                {
                    "resource": {
                        "resourceType": "Patient",
                        "identifier": [{"system": STATE_ID_SYSTEM, "value": s}],
                    },
                    "request": {"method": "POST", "url": "Patient"},
                }
                for s in chunk
            ]
            response = client.post(base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
            response.raise_for_status()
            for state_id, answer in zip(chunk, response.json()["entry"], strict=True):
                patients[state_id] = answer["response"]["location"].split("Patient/")[1].split("/")[0]
    return patients


async def bench(base: str, args: argparse.Namespace) -> dict[str, list[float]]:
    students = [f"B{n:07d}" for n in range(args.students)]
    patients = seed_patients(base, students)
    resources = 2 * len(students)
    rates: dict[str, list[float]] = {"ceiling": [], "adapter, cold links": [], "adapter, warm links": []}
    for r in range(args.rounds):
        linker = PatientLinker(STATE_ID_SYSTEM)  # a new run: nothing linked yet
        bundles = prebuilt_bundles(items_for(students, f"c{r}"), patients, args.bundle_size)
        cold = items_for(students, f"a{r}")
        warm = items_for(students, f"w{r}")
        runs = [
            ("ceiling", ceiling(base, bundles, args.concurrency)),
            ("adapter, cold links", adapter(base, cold, linker, args.bundle_size, args.concurrency)),
            ("adapter, warm links", adapter(base, warm, linker, args.bundle_size, args.concurrency)),
        ]
        # Each set adds resources to the server; rotate who goes first (warm always after cold: it needs the links).
        if r % 2:
            runs = [runs[1], runs[2], runs[0]]
        for name, run in runs:
            rates[name].append(resources / await run)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--bundle-size", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with running_sekmet() as base:
        rates = asyncio.run(bench(base, args))
    top = statistics.median(rates["ceiling"])
    print(
        f"{args.students} students, {2 * args.students} resources per set, bundle {args.bundle_size}, "
        f"concurrency {args.concurrency}, {args.rounds} rounds (medians)"
    )
    for name, values in rates.items():
        median = statistics.median(values)
        spread = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:22s} {median:8.0f} resources/s  ({median / top:6.1%} of the ceiling)  rounds: {spread}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
