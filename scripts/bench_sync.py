"""Benchmark: `sis2fhir sync --out` of generated districts against their floor, measured side by side in one run.

    .venv/bin/python scripts/bench_sync.py --students 100000              # 100k x 180 days = ~17.4M attendance rows
    .venv/bin/python scripts/bench_sync.py --students 100000 1000000      # 100k, then 1M (about 10 GB of export)
    .venv/bin/python scripts/bench_sync.py --students 20000 --engines     # also each engine's measure() alone

For each size, every step in its own process (its own peak RSS, the load average before it), on the same export:
- floor, DuckDB: attendance.csv read with a GROUP BY student and school, all threads;
- the full sync as of D (the export's second-to-last school day, or --as-of) to a fresh NDJSON folder and store;
- floor, orjson: serialising as many resources as that sync wrote (each written line parsed outside the clock);
- the daily increment: the sync as of the next school day D+1 on the same export into the same folder and store
  (how a nightly run sees one more school day), with the students it re-emitted, against the floor of reading that
  day: DuckDB reading a file that holds only that day's rows (written from attendance.csv before the clock);
- the re-run that finds "0 changes": the same as-of D+1 again.
A sync's peak RSS is its largest process's (the parent or a forked mapping worker),
with the sync process's own peak (VmHWM, read from /proc while it runs) beside it.
Prints the ratios and Markdown rows for BENCHMARKS.md. Nothing is asserted: the figures are for the reader.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
GROUP_BY = "SELECT count(*) FROM (SELECT studentSourcedId, schoolSourcedId, count(*) FROM read_csv(?, header = true, all_varchar = true) GROUP BY studentSourcedId, schoolSourcedId)"  # noqa: E501


def generate(students: int, out: Path) -> None:
    if (out / "attendance.csv").exists():
        return
    gen = ROOT / "examples" / "generate_district.py"
    subprocess.run([sys.executable, str(gen), "--students", str(students), "--out", str(out)], check=True)


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


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def school_days(export: Path) -> list[date]:
    """Every date that calendar.csv marks instructional at some school, ascending."""
    with (export / "calendar.csv").open(newline="") as f:
        days = {r["date"] for r in csv.DictReader(f) if r["instructional"].strip().lower() in ("true", "1", "yes")}
    return sorted(date.fromisoformat(d) for d in days)


# -- the steps, each run in a child process (`--child STEP`) ---------------------------------------------------


def step_floor(attendance: Path) -> dict[str, Any]:
    import duckdb

    t = time.perf_counter()
    groups = duckdb.connect().execute(GROUP_BY, [str(attendance)]).fetchone()
    return {"seconds": time.perf_counter() - t, "groups": groups[0] if groups else 0}


def step_day_file(attendance: Path, day: str, out: Path) -> dict[str, Any]:
    """The rows of one day, with the header, into `out` (not timed: it stands for the export of that day)."""
    import duckdb

    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_csv(?, header = true, all_varchar = true) WHERE date = '{day}') TO '{out}' "
        "(HEADER, DELIMITER ',')",
        [str(attendance)],
    )
    return {"rows": count_lines(out) - 1}


def step_orjson(folder: Path) -> dict[str, Any]:
    """orjson.dumps of every resource written to `folder`, one at a time (each parsed first, outside the clock)."""
    spent, n = 0.0, 0
    for path in sorted(folder.glob("*/*.ndjson")):
        with path.open("rb") as f:
            for line in f:
                r = orjson.loads(line)
                t = time.perf_counter()
                orjson.dumps(r)
                spent += time.perf_counter() - t
                n += 1
    return {"seconds": spent, "resources": n}


def _watch_peak(pid: int, peak: list[int]) -> None:
    """peak[0]: the process's VmHWM in KiB, read every 0.2 s while it lives (the kernel keeps the high-water mark)."""
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak[0] = max(peak[0], int(line.split()[1]))
        time.sleep(0.2)


def step_sync(export: Path, as_of: str, out: Path) -> dict[str, Any]:
    cmd = [str(Path(sys.executable).parent / "sis2fhir"), "sync", str(export), "--as-of", as_of, "--out", str(out)]
    t = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out.parent) as proc:
        own_peak = [0]  # the sync process's own peak RSS (VmHWM), read until it exits; its workers not counted
        watch = threading.Thread(target=_watch_peak, args=(proc.pid, own_peak), daemon=True)
        watch.start()
        stdout, stderr = proc.communicate()
    watch.join()  # the process is reaped: the watcher's next read fails and it ends
    seconds = time.perf_counter() - t
    if proc.returncode not in (0, 3):
        raise SystemExit(f"sync failed with exit {proc.returncode}: {stdout[-2000:]} {stderr[-2000:]}")
    got: dict[str, Any] = {"seconds": seconds, "stages": [], "changes": 0, "own_rss_mb": own_peak[0] / 1024}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) != 2:
            continue
        if cells[0].startswith("time:"):
            got["stages"].append(f"{cells[0][5:].strip()} {cells[1]}")
        elif cells[0].startswith("changes ("):
            got["changes"] = int(cells[1].replace(",", ""))
        elif cells[0].startswith("of which new or changed in this run:"):
            got["new_resources"] = got.get("new_resources", 0) + int(cells[1].replace(",", ""))
    m = re.search(r"\d+ changes[^.\n]*", stdout)
    got["said"] = m.group(0) if m else ""
    with sqlite3.connect(out / "state.sqlite") as db:  # the students this run queued anything for
        (run,) = db.execute("SELECT max(id) FROM runs").fetchone()
        (got["students"],) = db.execute(
            "SELECT count(DISTINCT student_sourced_id) FROM outbox WHERE run_id = ?", [run]
        ).fetchone()
    return got


def step_engine(export: Path, as_of: str, kind: str) -> dict[str, Any]:
    """One engine's measure() alone (roster, calendar and consents read before the clock)."""
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
    return {"seconds": seconds, "summaries": len(measured.every_summary)}


def child(args: argparse.Namespace) -> None:
    step, a = args.child, args.arg
    if step == "floor":
        got = step_floor(Path(a[0]))
    elif step == "day-file":
        got = step_day_file(Path(a[0]), a[1], Path(a[2]))
    elif step == "orjson":
        got = step_orjson(Path(a[0]))
    elif step == "sync":
        got = step_sync(Path(a[0]), a[1], Path(a[2]))
    else:
        got = step_engine(Path(a[0]), a[1], step)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the sync (its largest process)
    got["rss_mb"] = max(own, children) / 1024
    print(json.dumps(got))


def in_child(step: str, *arg: str) -> dict[str, Any]:
    before = load()
    proc = subprocess.run([sys.executable, __file__, "--child", step, *arg], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{step} failed: {proc.stderr[-3000:]}")
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    got["load"] = before
    return got


# -- one size ---------------------------------------------------------------------------------------------------


def bench(export: Path, as_of: str | None, engines: bool, increment: bool) -> None:
    rows = count_lines(export / "attendance.csv") - 1
    size = f"{rows:,} rows ({(export / 'attendance.csv').stat().st_size / 1e9:.2f} GB)"
    days = school_days(export)
    d = date.fromisoformat(as_of) if as_of else days[-2]
    d1 = next((x for x in days if x > d), None)
    print(f"\n## {export.name}: {size}; full sync as of {d}, increment as of {d1}; {machine()}")
    out_rows: list[str] = []

    def row(what: str, inp: str, figure: str, floor: str, ratio: str, la: str) -> None:
        out_rows.append(f"| {what} | {inp} | {figure} | {floor} | {ratio} | {la} |")

    base = in_child("floor", str(export / "attendance.csv"))
    print(f"floor, DuckDB read + GROUP BY student, school: {base['seconds']:.2f} s, {base['rss_mb']:.0f} MB")
    row("floor: DuckDB reads attendance.csv, GROUP BY student and school, all threads", size,
        f"{base['seconds']:.2f} s, {base['rss_mb']:.0f} MB", "", "1.0x", base["load"])  # fmt: skip
    if engines:
        for kind in ("columnar", "streaming"):
            got = in_child(kind, str(export), str(d))
            print(f"{kind} engine measure(): {got['seconds']:.2f} s, {got['rss_mb']:.0f} MB")
            row(f"`{kind}` engine, `measure()` (roster read before the clock)", f"{size}, {got['summaries']:,} "
                "students x schools", f"{got['seconds']:.2f} s, {got['rss_mb']:.0f} MB peak RSS",
                f"{base['seconds']:.2f} s", f"{got['seconds'] / base['seconds']:.1f}x", got["load"])  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        out = Path(tmp) / "out"
        full = in_child("sync", str(export), str(d), str(out))
        ser = in_child("orjson", str(out))
        floor = base["seconds"] + ser["seconds"]
        own = full["own_rss_mb"]
        stages = "; ".join(full["stages"])
        print(f"full sync: {full['seconds']:.1f} s, {full['rss_mb']:.0f} MB (own {own:.0f}); stages: {stages}")
        print(f"floor, orjson of the {ser['resources']:,} resources written: {ser['seconds']:.2f} s")
        print(f"sync / floor: {full['seconds'] / floor:.1f}x (floor {floor:.2f} s)")
        row("floor: orjson serialises as many resources as the sync wrote", f"{ser['resources']:,} resources",
            f"{ser['seconds']:.2f} s", "", "", ser["load"])  # fmt: skip
        row(f"`sis2fhir sync --out` as of {d}", f"{size}, {ser['resources']:,} resources written, "
            f"{full['students']:,} students queued", f"**{full['seconds']:.1f} s**, {full['rss_mb']:,.0f} MB peak "
            f"RSS (largest process; the sync's own {own:,.0f} MB); stages: {stages}",
            f"{floor:.2f} s (DuckDB {base['seconds']:.2f} + orjson "
            f"{ser['seconds']:.2f})", f"**{full['seconds'] / floor:.1f}x**", full["load"])  # fmt: skip
        if increment and d1 is not None:
            day_csv = Path(tmp) / "one-day.csv"
            day_rows = in_child("day-file", str(export / "attendance.csv"), str(d1), str(day_csv))["rows"]
            day_floor = in_child("floor", str(day_csv))
            inc = in_child("sync", str(export), str(d1), str(out))
            again = in_child("sync", str(export), str(d1), str(out))
            ratio = inc["seconds"] / day_floor["seconds"]
            print(f"floor of one day ({day_rows:,} rows in a file of their own): {day_floor['seconds']:.2f} s")
            print(
                f"increment as of {d1}: {inc['seconds']:.1f} s, {inc['rss_mb']:.0f} MB (own "
                f"{inc['own_rss_mb']:.0f}), {inc['students']:,} students "
                f"re-emitted ({inc['changes']:,} student x recipient changes), {ratio:.1f}x its floor"
            )
            print(f"re-run as of {d1}: {again['seconds']:.1f} s, {again['rss_mb']:.0f} MB, '{again['said']}'")
            row(f"floor of one day: DuckDB reads only the rows of {d1} (a file holding just them), GROUP BY",
                f"{day_rows:,} rows", f"{day_floor['seconds']:.2f} s, {day_floor['rss_mb']:.0f} MB", "", "1.0x",
                day_floor["load"])  # fmt: skip
            row(f"daily increment: `sync --out` as of {d1} after the full sync as of {d}, same export and store",
                f"{size}; {inc['students']:,} students re-emitted ({inc['changes']:,} student x recipient)",
                f"**{inc['seconds']:.1f} s**, {inc['rss_mb']:,.0f} MB peak RSS (largest process; the sync's own "
                f"{inc['own_rss_mb']:,.0f} MB); stages: {'; '.join(inc['stages'])}",
                f"{day_floor['seconds']:.2f} s", f"**{ratio:.1f}x**", inc["load"])  # fmt: skip
            row(f"re-run as of {d1} again (\"0 changes\")", size, f"{again['seconds']:.1f} s, {again['rss_mb']:,.0f} "
                f"MB peak RSS; said: {again['said']}", "", "", again["load"])  # fmt: skip
    print("\n| what | input | figure | floor, same run | ratio | load before |\n|---|---|---|---|---|---|")
    print(*out_rows, sep="\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, nargs="+", default=[100_000], help="district sizes, in this order")
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data", help="where districts are generated")
    ap.add_argument("--export", type=Path, help="an export already made (instead of DATA/district-STUDENTS)")
    ap.add_argument("--as-of", help="the full sync's as-of date (default: the second-to-last school day)")
    ap.add_argument("--engines", action="store_true", help="also each engine's measure() alone, against the floor")
    ap.add_argument("--no-increment", action="store_true", help="skip the daily increment and the re-run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("arg", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    exports = [args.export] if args.export else [args.data / f"district-{n}" for n in args.students]
    for n, export in zip(args.students, exports, strict=False):
        generate(n, export)
        bench(export, args.as_of, args.engines, not args.no_increment)


if __name__ == "__main__":
    main()
