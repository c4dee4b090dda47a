"""The process pool for work split across cores: forked workers that are handed one job explicitly.

A job (the export, the roster, the rules; or the mapper and its students) is large and read-only. Forked workers
inherit it without pickling: the pool's initializer receives it as an argument (fork passes initializer arguments
to the child as memory, not as bytes) and files it under the job's id in this worker's registry; each task then
carries only the job id and its item. The parent's registry is never written, so two jobs (or a job inside a
worker) cannot see each other's state.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import AsyncResult
from typing import Any, Generic, TypeVar

J = TypeVar("J")  # the job shared by every task
T = TypeVar("T")  # one task's item
R = TypeVar("R")  # one task's result


class _Task(Generic[J, T, R]):
    """What a worker keeps of a job: the function and the job it is applied with."""

    __slots__ = ("fn", "job")

    def __init__(self, fn: Callable[[J, T], R], job: J) -> None:
        self.fn = fn
        self.job = job


# job id -> task, filled in each worker by its initializer (never in the parent)
_WORKER_TASKS: dict[int, _Task[Any, Any, Any]] = {}
_job_ids = itertools.count(1)


def can_fork() -> bool:
    """Whether this platform starts workers by fork (Linux); elsewhere the work runs in this process."""
    return "fork" in multiprocessing.get_all_start_methods()


def workers_wanted(workers: int) -> int:
    """`workers` processes, 0 meaning one per core."""
    return workers or os.cpu_count() or 1


def _enter(job_id: int, task: _Task[Any, Any, Any]) -> None:
    _WORKER_TASKS[job_id] = task


def _run(job_and_item: tuple[int, Any]) -> Any:
    job_id, item = job_and_item
    task = _WORKER_TASKS[job_id]
    return task.fn(task.job, item)


def fork_map(
    fn: Callable[[J, T], R],
    job: J,
    items: Iterable[T],
    processes: int,
    ahead: int = 0,
    *,
    meanwhile: Callable[[], None] | None = None,
    ahead_meanwhile: int = 0,
) -> Iterator[R]:
    """`fn(job, item)` for each item, in forked worker processes, yielded in the items' order as they are done.

    `fn` and `job` reach the workers by fork, unpickled; each item and result is pickled. The pool lives while the
    iterator is consumed. At most `ahead` items (0: two per process) are in hand at a time: with `Pool.imap`,
    workers that outran the consumer (mappers ahead of the process writing the store) left their results waiting
    here, up to the whole run's (at 20k students the parent's traced memory rose by 124 MB while mapping,
    measured). `meanwhile`: this process's own work, done once the workers are forked and hold the first
    `ahead_meanwhile` items (0: `ahead`), before the first result is yielded; the workers see nothing it does."""
    job_id = next(_job_ids)
    context = multiprocessing.get_context("fork")
    window = ahead or 2 * processes
    with context.Pool(processes, initializer=_enter, initargs=(job_id, _Task(fn, job))) as pool:
        pending: deque[AsyncResult[R]] = deque()
        rest = iter(items)
        if meanwhile is not None:
            for item in itertools.islice(rest, ahead_meanwhile or window):
                pending.append(pool.apply_async(_run, ((job_id, item),)))
            meanwhile()
        for item in rest:
            pending.append(pool.apply_async(_run, ((job_id, item),)))
            while len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
