"""The process pool: each forked worker is handed its job, and results come back in the items' order."""

from __future__ import annotations

import os

import pytest

from sis2fhir.parallel import can_fork, fork_map

pytestmark = pytest.mark.skipif(not can_fork(), reason="workers are forked only where fork exists")


def _scaled(job: dict[str, int], item: int) -> tuple[int, int]:
    return item * job["factor"], os.getpid()


def test_each_worker_is_handed_the_job_and_results_keep_the_items_order() -> None:
    results = list(fork_map(_scaled, {"factor": 3}, range(20), 3))
    assert [r for r, _ in results] == [3 * i for i in range(20)]
    assert os.getpid() not in {pid for _, pid in results}  # done in workers, not here


def test_two_jobs_at_once_do_not_see_each_others_state() -> None:
    outer = fork_map(_scaled, {"factor": 2}, range(5), 2)
    first = next(outer)
    inner = [r for r, _ in fork_map(_scaled, {"factor": 10}, range(5), 2)]
    assert inner == [0, 10, 20, 30, 40]
    assert [first[0]] + [r for r, _ in outer] == [0, 2, 4, 6, 8]
