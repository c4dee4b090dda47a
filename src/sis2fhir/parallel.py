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
import pickle
from collections import deque
from collections.abc import Callable, Generator, Iterable
from multiprocessing.pool import AsyncResult
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Generic, TypeVar

from sis2fhir.errors import WorkerLost

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


class _Spilled:
    """A result a worker wrote to a file instead of sending it: the parent holds only its name until it is taken."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path


def _run_spilled(job_item_path: tuple[int, Any, Path]) -> Any:
    """`_run`, its result pickled to `path`; where that file cannot be written, the result itself (nothing lost)."""
    job_id, item, path = job_item_path
    result = _run((job_id, item))
    try:
        with path.open("xb") as f:
            pickle.dump(result, f, pickle.HIGHEST_PROTOCOL)
    except OSError:
        path.unlink(missing_ok=True)
        return result
    return _Spilled(path)


WATCH_SECONDS = 0.5  # how often a wait for a result looks at whether the pool's workers are still there


def _outcome(result: AsyncResult[Any], workers: list[BaseProcess]) -> Any:
    """The task's result (its exception raised here); WorkerLost once one of the pool's workers has ended. The pool
    forks a new worker in its place, but the task the old one held never finishes: `AsyncResult.get()` would wait
    for ever (a nightly run hung, not failed: seen with a worker killed by SIGKILL)."""
    while not result.ready():
        result.wait(WATCH_SECONDS)
        _check_alive(workers)
    if not result.successful():
        _check_alive(workers)  # a worker forked to replace a lost one may fail first (student_chunks.StudentsToMap)
    return result.get()


def _check_alive(workers: list[BaseProcess]) -> None:
    for worker in workers:
        code = worker.exitcode
        if code is not None:
            raise WorkerLost(code)


def _taken(result: Any) -> Any:
    if not isinstance(result, _Spilled):
        return result
    with result.path.open("rb") as f:
        value = pickle.load(f)
    result.path.unlink()
    return value


def fork_map(
    fn: Callable[[J, T], R],
    job: J,
    items: Iterable[T],
    processes: int,
    ahead: int = 0,
    *,
    meanwhile: Callable[[], None] | None = None,
    ahead_meanwhile: int = 0,
    spill_to: Path | None = None,
) -> Generator[R, None, None]:
    """`fn(job, item)` for each item, in forked worker processes, yielded in the items' order as they are done.

    `fn` and `job` reach the workers by fork, unpickled; each item and result is pickled. The pool lives while the
    iterator is consumed. At most `ahead` items (0: two per process) are in hand at a time: with `Pool.imap`,
    workers that outran the consumer (mappers ahead of the process writing the store) left their results waiting
    here, up to the whole run's (at 20k students the parent's traced memory rose by 124 MB while mapping,
    measured). `meanwhile`: this process's own work, done once the workers are forked and hold the first
    `ahead_meanwhile` items (0: `ahead`), before the first result is yielded; the workers see nothing it does.
    `spill_to`: a folder where the workers write those first items' results while `meanwhile` runs, instead of
    sending them (at 1M students, with 64 chunks of 500 mapped students, about 3.5 MB each unpickled, waiting on
    disk the run's peak RSS fell from 2,716 to 2,485 MB, measured); each file is read and removed as its result is
    yielded. A worker that ends before the pool does (killed) raises WorkerLost here (`_outcome`)."""
    job_id = next(_job_ids)
    context = multiprocessing.get_context("fork")
    window = ahead or 2 * processes
    others = set(multiprocessing.active_children())
    with context.Pool(processes, initializer=_enter, initargs=(job_id, _Task(fn, job))) as pool:
        workers = [p for p in multiprocessing.active_children() if p not in others]  # all forked by now
        pending: deque[AsyncResult[Any]] = deque()
        rest = iter(items)
        if meanwhile is not None:
            for n, item in enumerate(itertools.islice(rest, ahead_meanwhile or window)):
                if spill_to is None:
                    pending.append(pool.apply_async(_run, ((job_id, item),)))
                else:
                    spilled = (job_id, item, spill_to / f"{job_id}-{n}.pickle")
                    pending.append(pool.apply_async(_run_spilled, (spilled,)))
            meanwhile()
        for item in rest:
            pending.append(pool.apply_async(_run, ((job_id, item),)))
            while len(pending) >= window:
                yield _taken(_outcome(pending.popleft(), workers))
        while pending:
            yield _taken(_outcome(pending.popleft(), workers))
