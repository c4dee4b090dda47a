"""Where the tests find the repository and their fixtures, whatever folder a test lives in."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests/support/paths.py
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
EXPORTS = FIXTURES / "exports"  # small hand-written exports, one quirk each
EXAMPLE = ROOT / "examples" / "district"  # the bundled example district
GENERATOR = ROOT / "examples" / "generate_district.py"
