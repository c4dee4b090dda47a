"""Benchmark: FHIR searches per second against a real `sis2fhir serve` on loopback, over a synthetic district.

    .venv/bin/python scripts/bench_api_search.py --students 10000 --seconds 20

Generates the district (examples/generate_district.py, the generator of bench_sync.py), syncs it into a SQLite
state store with an API client for recipient 1582147033, starts `sis2fhir serve` as its own process, gets a real
token (SMART Backend Services, a key made here), then, through one keep-alive httpx client, one request at a time:

  (a) `GET /fhir/Observation?patient=Patient/<id>` for random consented students (each a FERPA log write),
  (b) `GET /fhir/Patient?identifier=<system>|<state id>` likewise,
  (c) the floors measured in the same run: `GET /healthz` through the same client (HTTP + the app, no store),
      and `ServedStore.search` called directly in this process, alone and with `record_reads` (no HTTP).

Prints a Markdown row for BENCHMARKS.md. No test runs this; the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import network, serve_process, smart  # noqa: E402

RECIPIENT = "1582147033"  # Riverbend Pediatrics in the generator (NPI with its check digit)
CLIENT_ID = "bench-ehr"
SCOPES = "system/Patient.rs system/Observation.rs"


def generate(students: int, out: Path) -> None:
    if (out / "attendance.csv").exists():
        return
    gen = ROOT / "examples" / "generate_district.py"
    subprocess.run([sys.executable, str(gen), "--students", str(students), "--out", str(out)], check=True)


def rate(call: Callable[[int], None], seconds: float) -> tuple[float, int]:
    """Calls per second of `call(i)` for about `seconds` (at least 20 calls)."""
    n, start = 0, time.perf_counter()
    while n < 20 or time.perf_counter() - start < seconds:
        call(n)
        n += 1
    return n / (time.perf_counter() - start), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    ap.add_argument("--as-of", default="2026-06-12")
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    args = ap.parse_args()

    district = args.data / f"api-{args.students}"
    generate(args.students, district)
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    port = serve_process.free_port()
    keys = smart.make_client_keys("ES384")
    config = network.write_config(
        work / "sis2fhir.yaml",
        store_url=f"sqlite:///{work / 'state.sqlite'}",
        api={
            "base_url": f"http://127.0.0.1:{port}",
            "clients": [smart.api_client_config(CLIENT_ID, RECIPIENT, keys, SCOPES)],
        },
    )
    t = time.perf_counter()
    done = subprocess.run(
        [
            serve_process.SIS2FHIR,
            "sync",
            str(district),
            "--as-of",
            args.as_of,
            "--config",
            str(config),
            "--out",
            str(work / "out"),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0, 3):
        sys.exit(f"sync failed ({done.returncode}): {done.stderr[-2000:]}")
    print(f"sync: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    patients = [orjson.loads(line) for line in (work / "out" / RECIPIENT / "Patient.ndjson").read_bytes().splitlines()]
    observations = sum(1 for _ in (work / "out" / RECIPIENT / "Observation.ndjson").open("rb"))
    ids = [p["id"] for p in patients]
    idents = [
        next(f"{i['system']}|{i['value']}" for i in p["identifier"] if i["system"].endswith("state-student-id"))
        for p in patients
    ]
    rng = random.Random(9)
    picks = [rng.randrange(len(ids)) for _ in range(200_000)]

    with serve_process.serving(config, port, work / "serve.log") as served:
        token = smart.get_token(served.url, CLIENT_ID, keys, SCOPES)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=30) as client:

            def observations_of(i: int) -> None:
                r = client.get("/fhir/Observation", params={"patient": f"Patient/{ids[picks[i]]}"})
                assert r.status_code == 200 and r.json()["total"] >= 1, r.text[:300]

            def patient_by_identifier(i: int) -> None:
                r = client.get("/fhir/Patient", params={"identifier": idents[picks[i]]})
                assert r.status_code == 200 and r.json()["total"] == 1, r.text[:300]

            def healthz(i: int) -> None:
                assert client.get("/healthz").status_code == 200

            for warm in range(50):
                observations_of(warm)
            obs_rate, obs_n = rate(observations_of, args.seconds)
            pat_rate, pat_n = rate(patient_by_identifier, args.seconds)
            health_rate, health_n = rate(healthz, args.seconds)

    from sis2fhir.config import load_settings
    from sis2fhir.service.served import open_served

    with open_served(load_settings(config)) as store:

        def direct(i: int) -> None:
            page = store.search(RECIPIENT, "Observation", {"patient": [f"Patient/{ids[picks[i]]}"]}, 50, 0)
            assert page.total >= 1

        def direct_recorded(i: int) -> None:
            page = store.search(RECIPIENT, "Observation", {"patient": [f"Patient/{ids[picks[i]]}"]}, 50, 0)
            students = {r.student for r in page.resources if r.student}
            store.record_reads(RECIPIENT, CLIENT_ID, students, "bench", datetime.now(UTC))

        direct_rate, direct_n = rate(direct, args.seconds)
        recorded_rate, recorded_n = rate(direct_recorded, args.seconds)

    print(
        f"| FHIR searches on loopback (`sis2fhir serve`, SQLite) | `scripts/bench_api_search.py --students "
        f"{args.students}` | {args.students:,} students generated, {len(ids):,} Patients and {observations:,} "
        f"Observations served to one client; one keep-alive httpx client, one request at a time | "
        f"**{obs_rate:,.0f} searches/s** Observation?patient ({obs_n:,} requests, each a FERPA log row), "
        f"{pat_rate:,.0f}/s Patient?identifier ({pat_n:,}) | `GET /healthz` through the same client: "
        f"{health_rate:,.0f}/s ({health_n:,}); `ServedStore.search` in process: {direct_rate:,.0f}/s ({direct_n:,}), "
        f"with `record_reads`: {recorded_rate:,.0f}/s ({recorded_n:,}) | {obs_rate / health_rate:.0%} of the HTTP "
        f"floor, {obs_rate / recorded_rate:.0%} of the store's search + record rate | |"
    )


if __name__ == "__main__":
    main()
