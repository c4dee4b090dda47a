"""The fuzz variants run once per session, two at a time, before their tests look at the results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fuzz.model import Variant
from tests.fuzz.runner import Result, run_all, summary


@pytest.fixture(scope="session")
def fuzz_results(request: pytest.FixtureRequest) -> dict[str, Result]:
    """Every collected variant's result (the CLI subprocesses dominate: threads keep two of them running)."""
    variants: list[Variant] = []
    for item in request.session.items:
        v = getattr(item, "callspec", None) and item.callspec.params.get("variant")
        if isinstance(v, Variant):
            variants.append(v)
    results, seconds = run_all(variants, jobs=int(os.environ.get("FUZZ_JOBS", "2")))
    if os.environ.get("FUZZ_RESULTS"):
        path = Path(os.environ["FUZZ_RESULTS"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary(results, seconds), encoding="utf-8")
    return {r.variant.id: r for r in results}
