"""Which attendance engine a run uses (`settings.engine`): auto, streaming or columnar.

auto: the columnar engine for an attendance.csv in a folder export of at least AUTO_MIN_BYTES, the streaming
engine for the rest. Under that size DuckDB's start (a connection, the tables of values) costs more than the
streaming tally takes; a zip (no file for DuckDB to read in parallel), Ed-Fi XML (the XML is parsed in Python
either way) and a file of odd shape (columnar/shape.py) are the streaming engine's whatever the size.
"""

from __future__ import annotations

from sis2fhir.columnar.engine import ColumnarTally
from sis2fhir.engine import AttendanceEngine
from sis2fhir.tally import StreamingTally

AUTO_MIN_BYTES = 16 << 20  # about 270,000 rows, 1,500 students x 180 days


def choose_engine(kind: str, workers: int = 0) -> AttendanceEngine:
    """The engine named by `settings.engine` on `workers` processes or threads (0: one per core)."""
    if kind == "streaming":
        return StreamingTally(workers)
    return ColumnarTally(workers, min_bytes=0 if kind == "columnar" else AUTO_MIN_BYTES)
