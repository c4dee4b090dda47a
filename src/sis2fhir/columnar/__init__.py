"""The columnar attendance engine (DuckDB) and the choice of engine for a run (engine.py is the interface)."""

from __future__ import annotations

from sis2fhir.columnar.choice import AUTO_MIN_BYTES, choose_engine
from sis2fhir.columnar.engine import ColumnarTally

__all__ = ["AUTO_MIN_BYTES", "ColumnarTally", "choose_engine"]
