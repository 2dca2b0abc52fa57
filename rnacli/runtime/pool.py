"""Independent jobs (training runs of a sweep or a benchmark grid) on N worker processes.

Each worker is a fresh `spawn` process (no forked torch state) at `threads_per_job(N)` torch
threads, so N runs share the machine's cores instead of each taking all of them: on 2 cores two
one-thread runs finish more work than one two-thread run (benchmarks/jobs.py). A worker keeps
its imports between jobs, and a job's output goes to its own log file. A job that fails is
reported with its name and log while the others run on; the caller gets every failure at the end.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnacli.errors import RnacliError


@dataclass(frozen=True)
class Job:
    """`fn(*args)` (importable, picklable) in a worker; `name` says which run it is (a run
    folder) when it fails; a worker writes its output to `log`."""

    name: str
    fn: Callable[..., Any]
    args: tuple = field(default=())
    log: Path | None = None


Done = Callable[[Job, Any, BaseException | None], None]  # (job, its result, its error)


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_job(processes: int) -> int:
    """Torch threads for each of `processes` workers: the cores shared out, at least one."""
    return max(1, cores() // processes)


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["RNACLI_QUIET"] = "1"  # no live progress bars from N processes on one terminal


def _call(job: Job) -> Any:
    """Run `job` with its stdout and stderr in its log; a failure's traceback goes there too."""
    if job.log is None:
        return job.fn(*job.args)
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(job.log, "a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        try:
            return job.fn(*job.args)
        except BaseException:
            traceback.print_exc(file=log)
            raise


def run_jobs(jobs: list[Job], processes: int, done: Done | None = None) -> list[str]:
    """Run every job, `processes` at a time (at most one worker per job, each at
    `threads_per_job(workers)` threads); call `done(job, result, error)` as each ends
    (in this process, in the order they end). Returns one line per failed job: its name,
    the error and, from a worker, its log. With `processes` = 1 the jobs run here, one after
    the other, and only an RnacliError counts as a failure (a bug's traceback shows)."""
    failures: list[str] = []

    def finish(job: Job, result: Any, error: BaseException | None) -> None:
        if error is not None:
            where = f" (log: {job.log})" if job.log and processes > 1 else ""
            failures.append(f"{job.name}: {_message(error)}{where}")
        if done is not None:
            done(job, result, error)

    if processes <= 1:
        for job in jobs:
            try:
                result = job.fn(*job.args)
            except RnacliError as e:
                finish(job, None, e)
            else:
                finish(job, result, None)
        return failures
    workers = max(1, min(processes, len(jobs)))  # fewer jobs than processes: more threads
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(threads_per_job(workers),),
    ) as pool:
        futures = {pool.submit(_call, job): job for job in jobs}
        for future in as_completed(futures):
            error = future.exception()
            finish(futures[future], None if error else future.result(), error)
    return failures


def _message(error: BaseException) -> str:
    """An RnacliError's own line; any other error with its type (a bug, a crashed worker)."""
    if isinstance(error, RnacliError):
        return str(error)
    return f"{type(error).__name__}: {error}"
