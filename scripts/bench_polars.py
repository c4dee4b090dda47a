"""Benchmark: DuckDB against Polars for the columnar engine's reading and grouping (issue 12 asks for the
comparison before a choice is kept).

    python -m venv /tmp/polenv && /tmp/polenv/bin/pip install polars duckdb==2.0.1
    /tmp/polenv/bin/python scripts/bench_polars.py bench-data/district-100000/attendance.csv

Polars is not a dependency of sis2fhir: this script runs in a throwaway environment that has both libraries.
Each query runs in its own process (its own peak RSS), alternating DuckDB and Polars, `--rounds` times; the best
round of each is printed, with the ratio. Both libraries use all cores. Queries, on the file as the engine reads it
(every column as text):
- `group`: the issue's floor, rows per student x school;
- `days`: the one-event-per-day check: student x school x date groups with more than one row (the engine reports
  them as conflicts or duplicates), over all 17M keys;
- `tally`: what the engine's SQL computes per student x school: rows, distinct dates, absent rows and their summed
  duration (category not Present), and the rows of each category (an engine-like aggregate, not the engine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

QUERIES = ("group", "days", "tally")


def run_duckdb(path: str, query: str) -> int:
    import duckdb

    con = duckdb.connect()
    src = "read_csv(?, header = true, all_varchar = true)"
    if query == "group":
        sql = f"SELECT count(*) FROM (SELECT studentSourcedId, schoolSourcedId, count(*) FROM {src} GROUP BY 1, 2)"
    elif query == "days":
        sql = (
            f"SELECT count(*) FROM (SELECT 1 FROM {src} GROUP BY studentSourcedId, schoolSourcedId, date"
            " HAVING count(*) > 1)"
        )
    else:
        sql = (
            "SELECT count(*) FROM (SELECT studentSourcedId, schoolSourcedId, count(*) AS n, count(DISTINCT date) AS d,"
            " count(*) FILTER (WHERE category <> 'Present') AS a,"
            " sum(TRY_CAST(duration AS DOUBLE)) FILTER (WHERE category <> 'Present') AS ad,"
            " count(*) FILTER (WHERE category = 'Excused Absence') AS e,"
            " count(*) FILTER (WHERE category = 'Unexcused Absence') AS u,"
            f" count(*) FILTER (WHERE category = 'Tardy') AS t FROM {src} GROUP BY 1, 2)"
        )
    row = con.execute(sql, [path]).fetchone()
    return int(row[0]) if row else 0


def run_polars(path: str, query: str) -> int:
    import polars as pl

    lf = pl.scan_csv(path, infer_schema=False)  # every column as text, like all_varchar
    keys = ["studentSourcedId", "schoolSourcedId"]
    if query == "group":
        out = lf.group_by(keys).agg(pl.len())
    elif query == "days":
        out = lf.group_by([*keys, "date"]).agg(pl.len()).filter(pl.col("len") > 1)
    else:
        absent = pl.col("category") != "Present"
        out = lf.group_by(keys).agg(
            pl.len().alias("n"),
            pl.col("date").n_unique().alias("d"),
            absent.sum().alias("a"),
            pl.col("duration").cast(pl.Float64, strict=False).filter(absent).sum().alias("ad"),
            (pl.col("category") == "Excused Absence").sum().alias("e"),
            (pl.col("category") == "Unexcused Absence").sum().alias("u"),
            (pl.col("category") == "Tardy").sum().alias("t"),
        )
    return out.select(pl.len()).collect().item()


def child(lib: str, query: str, path: str) -> None:
    t = time.perf_counter()
    groups = (run_duckdb if lib == "duckdb" else run_polars)(path, query)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"seconds": seconds, "groups": groups, "rss_mb": rss}))


def measure(lib: str, path: str, query: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", lib, query, path], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("attendance", nargs="?")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("LIB", "QUERY", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if not args.attendance:
        ap.error("the attendance.csv to read")
    import duckdb
    import polars

    size = os.path.getsize(args.attendance)
    print(f"{args.attendance}: {size / 1e9:.2f} GB; duckdb {duckdb.__version__}, polars {polars.__version__}; "
          f"{os.cpu_count()} cores; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    for query in QUERIES:
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for lib in ("duckdb", "polars"):
                r = measure(lib, args.attendance, query)
                if lib not in best or r["seconds"] < best[lib]["seconds"]:
                    best[lib] = r
        d, p = best["duckdb"], best["polars"]
        assert d["groups"] == p["groups"], (d, p)
        ratio = p["seconds"] / d["seconds"]
        print(f"| {query} | {d['groups']:,} groups | DuckDB {d['seconds']:.2f} s, {d['rss_mb']:.0f} MB | "
              f"Polars {p['seconds']:.2f} s, {p['rss_mb']:.0f} MB | Polars/DuckDB {ratio:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
