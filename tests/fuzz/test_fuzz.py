"""Each broken variant of the example district through the real CLI: no traceback, a documented exit code, the bad
row named, every other student unchanged, nothing sent from unusable input (see tests/fuzz/runner.py).

Plain `pytest` (and `make test`) runs a fixed sample across every kind; `make fuzz` (FUZZ=all) runs them all.
"""

from __future__ import annotations

import pytest

from tests.fuzz.catalogue import selected
from tests.fuzz.model import Variant
from tests.fuzz.runner import Result

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.mark.parametrize("variant", selected(), ids=lambda v: v.id)
def test_variant(variant: Variant, fuzz_results: dict[str, Result]) -> None:
    result = fuzz_results[variant.id]
    if result.skipped:
        pytest.skip(result.skipped)
    assert not result.failures, result.explain()
