"""The process pool: each forked worker is handed its job, and results come back in the items' order."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sis2fhir.errors import Exit, WorkerLost
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


def test_a_slow_consumer_is_handed_at_most_ahead_items_and_can_stop_early() -> None:
    drawn: list[int] = []

    def items() -> Iterator[int]:
        for i in range(30):
            drawn.append(i)
            yield i

    taken = 0
    for result, _ in fork_map(_scaled, {"factor": 1}, items(), 2, ahead=3):
        assert result == taken
        taken += 1
        time.sleep(0.02)  # slower than the workers: without the window they would be handed every item
        assert len(drawn) <= taken + 3 + 1  # + the one drawn while the window is full
    assert taken == 30
    stopped = fork_map(_scaled, {"factor": 1}, range(1000), 2, ahead=1)
    assert next(stopped)[0] == 0
    stopped.close()  # the pool ends; the items are not all handed over


def test_results_made_while_this_process_works_wait_in_the_spill_folder_and_are_removed_once_read(
    tmp_path: Path,
) -> None:
    seen: list[list[str]] = []

    def meanwhile() -> None:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.iterdir())) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # the workers write the first 4 results to files, not through the pool's pipe
        seen.append(sorted(p.suffix for p in tmp_path.iterdir()))

    mapped = fork_map(_scaled, {"factor": 5}, range(10), 2, meanwhile=meanwhile, ahead_meanwhile=4, spill_to=tmp_path)
    assert [r for r, _ in mapped] == [5 * i for i in range(10)]
    assert seen == [[".pickle"] * 4]
    assert list(tmp_path.iterdir()) == []  # each file removed as its result was taken


def test_a_spill_folder_that_cannot_be_written_costs_no_result(tmp_path: Path) -> None:
    gone = tmp_path / "removed"  # never made: each worker's write fails and it sends its result instead
    mapped = fork_map(_scaled, {"factor": 7}, range(8), 2, meanwhile=lambda: None, ahead_meanwhile=4, spill_to=gone)
    assert [r for r, _ in mapped] == [7 * i for i in range(8)]
    assert not gone.exists()


def _dies_on(job: dict[str, int], item: int) -> int:
    if item == job["fatal"]:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer ends a process
    return item


@pytest.mark.timeout(60)  # before: the pool forked a new worker and the lost item's result was waited for for ever
@pytest.mark.parametrize("ahead", [0, 3])
def test_a_worker_killed_mid_run_ends_the_run_with_worker_lost_instead_of_a_hang(ahead: int) -> None:
    taken: list[int] = []
    with pytest.raises(WorkerLost, match="killed by signal 9") as lost:
        for result in fork_map(_dies_on, {"fatal": 5}, range(40), 2, ahead):
            taken.append(result)
    assert lost.value.worker_exit == -signal.SIGKILL and lost.value.exit_code == Exit.INTERNAL
    assert taken == list(range(len(taken))) and len(taken) <= 5  # in order, and nothing past the lost item
