"""The columnar attendance engine (DuckDB) and the choice of engine for a run (engine.py is the interface)."""

from __future__ import annotations

from sis2fhir.columnar.engine import ColumnarTally

__all__ = ["ColumnarTally"]
