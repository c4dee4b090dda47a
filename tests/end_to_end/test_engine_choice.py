"""`engine:` (SIS2FHIR_ENGINE) through the real command line: the columnar engine writes what the streaming one
writes, and the run records which engine read the attendance (and why the columnar one, asked, did not)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from sis2fhir.columnar import AUTO_MIN_BYTES, ColumnarTally, choose_engine
from sis2fhir.tally import StreamingTally
from tests.end_to_end.test_sync import EXAMPLE, EXAMPLE_AS_OF, run_sync


def last_run(out: Path) -> dict[str, Any]:
    with sqlite3.connect(out / "state.sqlite") as db:
        (summary,) = db.execute("SELECT summary FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    return orjson.loads(summary)


def test_the_columnar_engine_writes_what_the_streaming_engine_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outs = {}
    for engine in ("streaming", "columnar"):
        monkeypatch.setenv("SIS2FHIR_ENGINE", engine)
        out = outs[engine] = tmp_path / engine
        code, output = run_sync(EXAMPLE, out, "--as-of", EXAMPLE_AS_OF)
        assert code == 0, output
        assert last_run(out)["attendance_engine"] == {"engine": engine, "fallback": ""}
    written = sorted(p.relative_to(outs["streaming"]) for p in outs["streaming"].glob("*/*.ndjson"))
    assert written
    for name in [*written, Path("rows-report.csv")]:
        assert (outs["columnar"] / name).read_bytes() == (outs["streaming"] / name).read_bytes(), name


def test_auto_leaves_a_small_file_to_the_streaming_engine_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIS2FHIR_ENGINE", raising=False)
    code, output = run_sync(EXAMPLE, tmp_path / "out", "--as-of", EXAMPLE_AS_OF)
    assert code == 0, output
    used = last_run(tmp_path / "out")["attendance_engine"]
    assert used == {"engine": "streaming", "fallback": f"attendance.csv is under {AUTO_MIN_BYTES} bytes"}


def test_the_engine_named_is_the_engine_built() -> None:
    assert choose_engine("streaming", 3) == StreamingTally(3)
    assert choose_engine("columnar", 2) == ColumnarTally(2, min_bytes=0)
    assert choose_engine("auto") == ColumnarTally(0, min_bytes=AUTO_MIN_BYTES)
