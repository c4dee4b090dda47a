"""Benchmark: `sis2fhir sync` of a generated district to NDJSON, and the fhir.resources baseline in the same run.

    .venv/bin/python scripts/bench_sync.py --students 100000          # 100k x ~180 days = ~18M attendance rows

Prints a Markdown row for BENCHMARKS.md: wall time, peak RSS, attendance rows/s, resources/s, and, measured side by
side on the same resources, (a) our map-and-validate rate (dict -> profile validation -> JSON bytes) and
(b) the baseline: the same resources built and validated through fhir.resources R4B models and serialised.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]


def generate(students: int, out: Path) -> None:
    if (out / "attendance.csv").exists():
        return
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "generate_district.py"),
            "--students",
            str(students),
            "--out",
            str(out),
        ],
        check=True,
    )


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def sample_resources(out_dir: Path, n: int) -> list[dict]:
    res: list[dict] = []
    for path in sorted(out_dir.glob("*/*.ndjson")):
        with path.open("rb") as f:
            for line in f:
                res.append(orjson.loads(line))
                if len(res) >= n:
                    return res
    return res


def ours_rate(resources: list[dict]) -> float:
    from sis2fhir.validate import validate_resource

    t = time.perf_counter()
    for r in resources:
        issues = validate_resource(r)
        assert not [i for i in issues if i.severity == "error"], issues
        orjson.dumps(r)
    return len(resources) / (time.perf_counter() - t)


def baseline_rate(resources: list[dict]) -> float:
    from fhir.resources.R4B.consent import Consent
    from fhir.resources.R4B.observation import Observation

    models = {"Observation": Observation, "Consent": Consent}
    t = time.perf_counter()
    for r in resources:
        m = models[r["resourceType"]].model_validate(r)
        m.model_dump_json()
    return len(resources) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=100_000)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--as-of", default="2026-06-12")
    ap.add_argument("--sample", type=int, default=20_000, help="resources for the side-by-side rate comparison")
    args = ap.parse_args()

    export = args.data / f"district-{args.students}"
    t0 = time.perf_counter()
    generate(args.students, export)
    gen_s = time.perf_counter() - t0
    rows = count_lines(export / "attendance.csv") - 1
    size_mb = (export / "attendance.csv").stat().st_size / 1e6

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "sis2fhir"),
                "sync",
                str(export),
                "--as-of",
                args.as_of,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode not in (0, 3):
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"sync failed with exit {proc.returncode}")
        written = sum(count_lines(p) for p in out.glob("*/*.ndjson"))
        sample = sample_resources(out, args.sample)
        ours = ours_rate(sample)
        base = baseline_rate(sample)

    stages = [line.strip("│ ").replace("│", ":") for line in proc.stdout.splitlines() if "time:" in line]
    print("stages (from the sync summary):", *stages, sep="\n  ")
    print(f"generated {args.students:,} students, {rows:,} attendance rows ({size_mb:.0f} MB) in {gen_s:.0f} s")
    print(f"machine: {machine()}")
    print(
        f"sync: {wall:.1f} s wall, peak RSS {rss_mb:.0f} MB, {rows / wall:,.0f} attendance rows/s, "
        f"{written:,} resources written = {written / wall:,.0f} resources/s end to end"
    )
    print(
        f"map+validate+serialise on {len(sample):,} of those resources: ours {ours:,.0f}/s, "
        f"fhir.resources R4B baseline {base:,.0f}/s, ratio {ours / base:.1f}x"
    )
    print("\n| what | input | figure | baseline in the same run | ratio |")
    print(
        f"| sync to NDJSON, end to end | {args.students:,} students, {rows:,} rows | {wall:.1f} s, "
        f"{rss_mb:.0f} MB peak RSS, {rows / wall:,.0f} rows/s, {written / wall:,.0f} resources/s | | |"
    )
    print(
        f"| validate + serialise, per resource | {len(sample):,} resources | {ours:,.0f}/s | "
        f"fhir.resources R4B {base:,.0f}/s | {ours / base:.1f}x |"
    )


if __name__ == "__main__":
    main()
