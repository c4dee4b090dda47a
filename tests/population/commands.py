"""The commands the population tests run, as a user would: real subprocesses of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

AS_OF = date(2026, 3, 31)
START = date(2026, 1, 5)
AGREEMENT = "FERPA studies exception, 34 CFR 99.31(a)(6); agreement 2026-014 with the county health department"
SIS2FHIR = [sys.executable, "-m", "sis2fhir"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SIS2FHIR, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def config(folder: Path, agreement: str = AGREEMENT) -> Path:
    path = folder / "sis2fhir.yaml"
    path.write_text(f"population:\n  agreement: {json.dumps(agreement)}\n", encoding="utf-8")
    return path


def evaluate(export: Path, cohort: Path, out: Path, *extra: str) -> tuple[int, str]:
    done = run(
        "evaluate",
        str(export),
        "--cohort",
        str(cohort),
        "--program-start",
        START.isoformat(),
        "--as-of",
        AS_OF.isoformat(),
        "--out",
        str(out),
        "--report",
        str(out.parent / f"{out.name}-rows.csv"),
        *extra,
    )
    return done.returncode, done.stdout + done.stderr
