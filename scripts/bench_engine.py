"""Benchmark: the attendance engines and the sync against their floor, measured side by side in one run.

    .venv/bin/python scripts/bench_engine.py --students 100000       # 100k x ~180 days = ~17.4M attendance rows

In one run, each in its own process (its own peak RSS), on the same generated district:
- the floor: DuckDB reading the same attendance.csv with a GROUP BY student and school, all threads;
- each engine's `measure()` (roster, calendar and consents read before the clock starts): columnar and streaming;
- `sis2fhir sync` to NDJSON with `engine: auto`, and the second floor of the issue: orjson serialising as many
  resources as the sync wrote (the written resources, loaded once).
Prints the ratios and Markdown rows for BENCHMARKS.md with the input size and the load average before each step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_sync import count_lines, generate, machine  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def floor(attendance: Path) -> dict[str, float]:
    import duckdb

    t = time.perf_counter()
    con = duckdb.connect()
    groups = con.execute(
        "SELECT count(*) FROM (SELECT studentSourcedId, schoolSourcedId, count(*) FROM read_csv(?, header = true, "
        "all_varchar = true) GROUP BY studentSourcedId, schoolSourcedId)",
        [str(attendance)],
    ).fetchone()
    return {"seconds": time.perf_counter() - t, "groups": groups[0] if groups else 0}


def engine_run(export: Path, as_of: str, kind: str) -> dict[str, float]:
    from datetime import date

    from sis2fhir.columnar import ColumnarTally
    from sis2fhir.engine import Rules, choose_school_year
    from sis2fhir.policy import PRESETS
    from sis2fhir.read.attendance import attendance_style
    from sis2fhir.read.calendar import read_calendar
    from sis2fhir.read.export import open_export
    from sis2fhir.read.oneroster import read_roster
    from sis2fhir.report import RowReport
    from sis2fhir.tally import StreamingTally

    report = RowReport()
    day = date.fromisoformat(as_of)
    with open_export(export) as ex:
        roster = read_roster(ex, report)
        calendar = read_calendar(ex, report)
        year = choose_school_year(roster, day)
        rules = Rules.of(roster, calendar, year, day, PRESETS["essa"], attendance_style(ex))
        engine = ColumnarTally() if kind == "columnar" else StreamingTally()
        t = time.perf_counter()
        measured = engine.measure(ex, roster, rules, report)
        seconds = time.perf_counter() - t
    assert measured.engine == kind, measured.fallback
    return {
        "seconds": seconds,
        "summaries": len(measured.every_summary),
        "events": measured.counts.events,
        "issues": len(report.issues),
    }


def child(step: str, export: Path, as_of: str) -> None:
    got = floor(export / "attendance.csv") if step == "floor" else engine_run(export, as_of, step)
    got["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(got))


def in_child(step: str, export: Path, as_of: str) -> dict[str, float]:
    la = load()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", step, "--export", str(export), "--as-of", as_of],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"{step} failed: {proc.stderr[-3000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    got["load"] = la
    return got


def sync(export: Path, as_of: str) -> dict[str, float | str]:
    la = load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        t = time.perf_counter()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "sis2fhir"), "sync", str(export), "--as-of", as_of, "--out", str(out)],
            capture_output=True,
            text=True,
            cwd=tmp,
            env={**os.environ, "SIS2FHIR_ENGINE": "auto"},
        )
        wall = time.perf_counter() - t
        if proc.returncode not in (0, 3):
            raise SystemExit(f"sync failed with exit {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
        resources = [orjson.loads(line) for p in sorted(out.glob("*/*.ndjson")) for line in p.open("rb")]
    t = time.perf_counter()
    for r in resources:
        orjson.dumps(r)
    serialise = time.perf_counter() - t
    stages = [
        " ".join(line.strip("│ ").replace("│", ":").split()) for line in proc.stdout.splitlines() if "time:" in line
    ]
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "seconds": wall,
        "resources": len(resources),
        "serialise": serialise,
        "stages": "; ".join(stages),
        "rss_mb": rss,
        "load": la,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=100_000)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--export", type=Path, help="an export already generated (default: DATA/district-STUDENTS)")
    ap.add_argument("--as-of", default="2026-06-12")
    ap.add_argument("--no-sync", action="store_true", help="measure the engines only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    export = args.export or args.data / f"district-{args.students}"
    if args.child:
        child(args.child, export, args.as_of)
        return
    generate(args.students, export)
    rows = count_lines(export / "attendance.csv") - 1
    size = f"{rows:,} rows ({(export / 'attendance.csv').stat().st_size / 1e9:.2f} GB)"
    print(f"machine: {machine()}; input: {export.name}, {size}")
    base = in_child("floor", export, args.as_of)
    print(f"floor (DuckDB read + GROUP BY student, school): {base['seconds']:.2f} s, load {base['load']}")
    results = {kind: in_child(kind, export, args.as_of) for kind in ("columnar", "streaming")}
    print("\n| what | input | figure | floor, same run | ratio | load before |")
    print(f"| floor: DuckDB reads attendance.csv, GROUP BY student and school | {size} | {base['seconds']:.2f} s, "
          f"{base['rss_mb']:.0f} MB | | 1.0x | {base['load']} |")  # fmt: skip
    for kind, got in results.items():
        print(
            f"| `{kind}` engine, `measure()` | {size}, {got['summaries']:,.0f} students x schools | "
            f"{got['seconds']:.2f} s, {got['rss_mb']:.0f} MB peak RSS | {base['seconds']:.2f} s | "
            f"{got['seconds'] / base['seconds']:.1f}x | {got['load']} |"
        )
    ratio = results["streaming"]["seconds"] / results["columnar"]["seconds"]
    print(f"| columnar vs streaming | | {ratio:.1f}x faster | | | |")
    if not args.no_sync:
        s = sync(export, args.as_of)
        floor_sync = base["seconds"] + float(s["serialise"])
        print(
            f"| `sis2fhir sync` to NDJSON, engine auto | {size}, {s['resources']:,} resources written | "
            f"{float(s['seconds']):.1f} s, {float(s['rss_mb']):.0f} MB peak RSS | {floor_sync:.2f} s (DuckDB "
            f"{base['seconds']:.2f} + orjson of the resources {float(s['serialise']):.2f}) | "
            f"{float(s['seconds']) / floor_sync:.1f}x | {s['load']} |"
        )
        print(f"\nstages: {s['stages']}")


if __name__ == "__main__":
    main()
