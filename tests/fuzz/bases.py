"""The clean exports the variants start from: the committed example and two shapes the generator writes from it."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from tests.fuzz.district import EXAMPLE, GENERATOR
from tests.fuzz.model import Bases


@cache
def generated() -> Bases:
    """Ed-Fi and exception-only versions of the example (same seed: the same students and absences), made once."""
    given = os.environ.get("FUZZ_BASES")
    root = Path(given or tempfile.mkdtemp(prefix="sis2fhir-fuzz-bases-"))
    if not given:
        atexit.register(shutil.rmtree, root, True)
    bases = Bases(csv=EXAMPLE, edfi=root / "edfi", exceptions=root / "exceptions")
    for folder, args in (
        (bases.edfi, ["--attendance-format", "edfi"]),
        (bases.exceptions, ["--style", "exception-only"]),
    ):
        if not (folder / "manifest.csv").exists():
            subprocess.run(
                [sys.executable, str(GENERATOR), "--seed", "2026", *args, "--out", str(folder)],
                check=True,
                capture_output=True,
            )
    return bases
