"""Shared parts of the executors: the job and outcome records, retries, thread limits, the base
class. Import the public ones from :mod:`growrnn.executors`."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import traceback
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from growrnn.errors import ArgumentError, ExecutorError, check_int

logger = logging.getLogger(__name__)

Status = Literal["ok", "failed", "timeout", "crashed"]
#: Thread-pool sizes read by OpenMP / MKL / OpenBLAS when they load, so set before torch or numpy is imported.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PICKLE_HINT = "job functions must be top-level (module-level) functions, and their arguments and results picklable"


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(*args, **kwargs)`` under ``key`` (unique within a batch).

    ``fn`` must be a top-level function of an importable module (workers import it by name).
    ``timeout_s`` bounds one attempt's wall time; ``retries`` is how many more attempts a job
    that fails, crashes or times out gets."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    retries: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ArgumentError("key", allowed="a non-empty string", received=self.key)
        if not callable(self.fn):
            raise ArgumentError("fn", allowed="a callable (a top-level function)", received=self.fn)
        t = self.timeout_s
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf):
            raise ArgumentError("timeout_s", allowed="None or a positive finite number of seconds", received=t)
        check_int("retries", self.retries, 0)


@dataclass
class Outcome:
    """How a job ended. ``value`` is the function's return value when ``status == "ok"``;
    ``error`` is the traceback or the reason otherwise. ``seconds`` is the wall time of all
    attempts together, as seen by the caller."""

    key: str
    status: Status
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reason(self) -> str:
        """Why the job did not end ok, in one line (a traceback's last: the exception and its message)."""
        lines = [line for line in (self.error or "").splitlines() if line.strip()]
        return lines[-1].strip() if lines else "no error recorded"


@runtime_checkable
class Executor(Protocol):
    """Runs jobs and yields an :class:`Outcome` per job, in completion order."""

    def run(self, jobs: Sequence[Job]) -> Iterator[Outcome]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass
class Attempt:
    job: Job
    attempt: int = 1
    spent: float = 0.0


def settle(t: Attempt, status: Status, payload: Any, seconds: float, queue: deque[Attempt]) -> Outcome | None:
    """Turn one attempt's result into an Outcome, or queue the next attempt if retries remain."""
    t.spent += seconds
    if status != "ok" and t.attempt <= t.job.retries:
        logger.info("job %r: attempt %d %s; retrying", t.job.key, t.attempt, status)
        queue.append(Attempt(t.job, t.attempt + 1, t.spent))
        return None
    if status in ("crashed", "timeout"):
        logger.warning("job %r %s after %d attempt(s): %s", t.job.key, status, t.attempt, payload)
    if status == "ok":
        return Outcome(t.job.key, "ok", payload, None, t.spent, t.attempt)
    return Outcome(t.job.key, status, None, str(payload), t.spent, t.attempt)


def call_job(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Status, Any]:
    """``("ok", value)``, or ``("failed", traceback text)`` if ``fn`` raised."""
    try:
        return "ok", fn(*args, **kwargs)
    except (Exception, SystemExit):  # SystemExit too: a job calling sys.exit() failed, the worker lives on
        return "failed", traceback.format_exc()


def limit_threads(threads: int, preload: Sequence[str] = ()) -> None:
    """Cap this (worker) process's thread pools at ``threads``, importing ``preload`` after the
    environment is set so that OpenMP/MKL/OpenBLAS read it when they load."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    for module in preload:
        __import__(module)
    if "torch" in sys.modules:  # a previous job may have changed it; cheap to set every time
        torch = sys.modules["torch"]
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with torch using ``threads`` threads, then restore the previous count: work in
    one process (an inline job, the search's predictor fits) on as many threads as a worker, so
    that its floating-point results do not depend on the machine's core count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(check_int("threads", threads, 1))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_E = TypeVar("_E", bound="BaseExecutor")


class BaseExecutor:
    """Shared plumbing: job checks, the closed/running guards, the context manager."""

    def __init__(self) -> None:
        self._closed, self._running = False, False

    def run(self, jobs: Sequence[Job]) -> Generator[Outcome, None, None]:
        """Start ``jobs`` and yield one :class:`Outcome` per job as each completes. Closing the
        generator early (``.close()``, or dropping it) cancels the jobs still running."""
        if self._closed:
            raise ExecutorError(f"{type(self).__name__} is closed; create a new executor to run more jobs")
        jobs = list(jobs)
        keys = [j.key for j in jobs if isinstance(j, Job)]
        if len(keys) != len(jobs):
            raise ArgumentError("jobs", allowed="a sequence of Job", received=[type(j).__name__ for j in jobs])
        if len(set(keys)) != len(keys):
            dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
            raise ArgumentError("jobs", allowed="unique keys", received=f"duplicated keys {dupes}",
                                hint="outcomes are matched to jobs by key")
        return self._guarded(jobs)

    def _guarded(self, jobs: list[Job]) -> Generator[Outcome, None, None]:
        if self._running:
            raise ExecutorError(f"{type(self).__name__}.run is already in progress; finish it before starting another")
        self._running = True
        try:
            yield from self._run(jobs)
        finally:
            self._running = False

    def _run(self, jobs: list[Job]) -> Iterator[Outcome]:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
