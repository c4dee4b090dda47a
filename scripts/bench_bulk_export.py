"""Benchmark: a Bulk Data $export of one recipient of a generated district over loopback, against writing the same
NDJSON locally, measured in the same run.

    .venv/bin/python scripts/bench_bulk_export.py --students 100000     # generates bench-data/ (1 GB) on first use

1. `sis2fhir sync EXPORT --out OUT --config CFG` with an `api.clients` entry for the recipient with the most
   consents: the local NDJSON folder (OUT/<recipient>/*.ndjson) and the served table, in one run (timed: the
   baseline "sync --out", which also reads and measures the export).
2. The same resources written locally again from the store, in-process (`ServedStore.export` to one NDJSON file
   per type: the export's own work without HTTP; the baseline "local NDJSON from the store").
3. `sis2fhir serve` as a process on loopback; a SMART Backend Services token (a key made here); kick-off of
   `Group/<id>/$export`, polling, and the download of every file of the manifest (timed from kick-off to the last
   byte). The downloaded lines are checked against the folder of step 1 (as sets per type).

Prints a Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_sync import count_lines, generate, machine  # noqa: E402

CLIENT = "bench-bulk"
SCOPES = "system/Patient.rs system/Observation.rs system/Consent.rs system/Organization.rs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def busiest_recipient(export: Path) -> str:
    counts: dict[str, int] = {}
    with (export / "consents.csv").open(newline="", encoding="utf-8") as f:
        import csv

        for row in csv.DictReader(f):
            counts[row["recipientOrganization"]] = counts.get(row["recipientOrganization"], 0) + 1
    return max(counts, key=lambda r: counts[r])


def write_config(tmp: Path, recipient: str, port: int, key: rsa.RSAPrivateKey) -> Path:
    public = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "bench-1", "alg": "RS384", "use": "sig"})
    config = {
        "store_url": f"sqlite:///{tmp / 'state.sqlite'}",
        "api": {
            "base_url": f"http://127.0.0.1:{port}",
            "clients": [{"client_id": CLIENT, "recipient": recipient, "jwks": {"keys": [public]}, "scopes": SCOPES}],
            "export_dir": str(tmp / "exports"),
        },
    }
    path = tmp / "sis2fhir.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def server(config: Path, port: int) -> Iterator[str]:
    exe = str(Path(sys.executable).parent / "sis2fhir")
    proc = subprocess.Popen(
        [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"serve exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def token(client: httpx.Client, base: str, key: rsa.RSAPrivateKey) -> str:
    found = client.get(f"{base}/fhir/.well-known/smart-configuration").json()
    url = found["token_endpoint"]
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": CLIENT, "sub": CLIENT, "aud": url, "exp": now + 240, "jti": str(uuid.uuid4())},
        key,
        algorithm="RS384",
        headers={"kid": "bench-1"},
    )
    answer = client.post(
        url,
        data={
            "grant_type": "client_credentials",
            "scope": SCOPES,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    answer.raise_for_status()
    access: str = answer.json()["access_token"]
    return access


def bulk_export(base: str, key: rsa.RSAPrivateKey, into: Path) -> tuple[float, dict[str, Any]]:
    """Kick-off of the recipient's Group export, polling, download of every file; (seconds, manifest)."""
    with httpx.Client(timeout=120) as client:
        auth = {"Authorization": f"Bearer {token(client, base, key)}"}
        groups = client.get(f"{base}/fhir/Group", headers=auth).json()
        gid = groups["entry"][0]["resource"]["id"]
        t0 = time.perf_counter()
        kick = client.get(
            f"{base}/fhir/Group/{gid}/$export",
            headers={**auth, "Accept": "application/fhir+json", "Prefer": "respond-async"},
        )
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["Content-Location"]
        while True:
            status = client.get(status_url, headers=auth)
            if status.status_code == 200:
                break
            assert status.status_code == 202, status.text
            time.sleep(0.2)
        manifest: dict[str, Any] = status.json()
        for n, out in enumerate(manifest["output"]):
            with (
                client.stream("GET", out["url"], headers=auth) as r,
                (into / f"{n}-{out['type']}.ndjson").open("wb") as f,
            ):
                r.raise_for_status()
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
        seconds = time.perf_counter() - t0
        client.delete(status_url, headers=auth)
    return seconds, manifest


def local_from_store(config: Path, recipient: str, into: Path) -> tuple[float, int]:
    """The same resources written to NDJSON files in this process, straight from the store."""
    from sis2fhir.config import load_settings
    from sis2fhir.service.served import open_served

    settings = load_settings(config)
    lines = 0
    files: dict[str, Any] = {}
    with open_served(settings) as served:  # opened before the clock starts, as the server has it open
        t0 = time.perf_counter()
        for res in served.export(recipient, ("Patient", "Organization", "Observation", "Consent"), None):
            f = files.get(res.resource_type) or files.setdefault(
                res.resource_type, (into / f"{res.resource_type}.ndjson").open("wb")
            )
            f.write(res.content + b"\n")
            lines += 1
        for f in files.values():
            f.close()
        return time.perf_counter() - t0, lines


def lines_by_type(files: list[Path]) -> dict[str, set[bytes]]:
    found: dict[str, set[bytes]] = {}
    for path in files:
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    found.setdefault(orjson.loads(line)["resourceType"], set()).add(line.rstrip(b"\n"))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=100_000)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--as-of", default="2026-06-12")
    args = ap.parse_args()

    export = args.data / f"district-{args.students}"
    generate(args.students, export)
    recipient = busiest_recipient(export)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    try:
        config = write_config(tmp, recipient, port, key)
        out = tmp / "out"
        t0 = time.perf_counter()
        exe = str(Path(sys.executable).parent / "sis2fhir")
        proc = subprocess.run(
            [exe, "sync", str(export), "--as-of", args.as_of, "--out", str(out), "--config", str(config)],
            capture_output=True,
            text=True,
        )
        sync_s = time.perf_counter() - t0
        if proc.returncode not in (0, 3):
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"sync failed with exit {proc.returncode}")
        folder = out / recipient
        written = sum(count_lines(p) for p in folder.glob("*.ndjson"))
        local_dir = tmp / "local"
        local_dir.mkdir()
        local_s, local_lines = local_from_store(config, recipient, local_dir)
        downloaded = tmp / "downloaded"
        downloaded.mkdir()
        with server(config, port) as base:
            bulk_s, manifest = bulk_export(base, key, downloaded)
        got = lines_by_type(sorted(downloaded.glob("*.ndjson")))
        want = lines_by_type(sorted(folder.glob("*.ndjson")))
        same = got == want
        exported = sum(o["count"] for o in manifest["output"])
        size_mb = sum(p.stat().st_size for p in downloaded.glob("*.ndjson")) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {machine()}")
    print(
        f"recipient {recipient}: {written:,} lines in its sync --out folder; exported {exported:,} ({size_mb:.0f} MB)"
    )
    print(f"files equal the sync --out folder (sets of lines per type): {same}")
    print(f"sync --out (read, measure, map, validate, store, write): {sync_s:.1f} s")
    print(f"local NDJSON from the store, in-process: {local_s:.2f} s, {local_lines / local_s:,.0f} resources/s")
    print(f"Bulk $export, kick-off to last byte over loopback: {bulk_s:.2f} s, {exported / bulk_s:,.0f} resources/s")
    print("\n| goal | script | input | figure | baseline, same run | ratio | met? |")
    print(
        f"| Bulk $export of one recipient's Group over loopback | `scripts/bench_bulk_export.py --students "
        f"{args.students}` | {args.students:,} students, recipient {recipient}: {exported:,} resources "
        f"({size_mb:.0f} MB) | **{bulk_s:.1f} s** kick-off to last byte, {exported / bulk_s:,.0f} resources/s; "
        f"files equal the `sync --out` folder: {same} | writing the same NDJSON locally from the store: "
        f"{local_s:.1f} s; the whole `sync --out`: {sync_s:.1f} s | {bulk_s / local_s:.1f}x the local write | |"
    )
    if not same:
        raise SystemExit("the exported files differ from the sync --out folder")


if __name__ == "__main__":
    main()
