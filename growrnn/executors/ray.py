"""The Ray executor (see :mod:`growrnn.executors`). Ray is imported only when one is built."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from growrnn.errors import ArgumentError, check_int
from growrnn.executors.base import (
    PICKLE_HINT,
    Attempt,
    BaseExecutor,
    Job,
    Outcome,
    Status,
    call_job,
    limit_threads,
    settle,
)

logger = logging.getLogger(__name__)


def _ray_task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], threads: int,
              preload: tuple[str, ...]) -> tuple[Status, Any]:
    limit_threads(threads, preload)
    return call_job(fn, args, kwargs)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("RayExecutor needs the 'ray' package, which is not installed. "
                          "HINT: pip install 'growrnn[ray]'") from exc
    return ray


class RayExecutor(BaseExecutor):
    """Runs each job as a Ray task asking for ``threads_per_worker`` CPUs, with Ray's own retries
    off (``max_retries=0``) so that retries are this executor's and are counted.

    ``address=None`` starts a private local Ray with ``num_cpus`` CPUs (shut down by
    :meth:`close`); ``"auto"`` or ``"HOST:PORT"`` joins a running cluster, whose nodes must have
    growrnn and the jobs' modules installed. If Ray is already initialised in this process it is
    used as it is (and left running). At most as many jobs as the cluster has CPU slots are in
    flight, and a job's timeout counts from its submission (Ray worker start-up included, so
    leave slack); a timed-out job is cancelled with ``ray.cancel(force=True)``, which kills its
    worker. ``init_kwargs`` go to ``ray.init`` (e.g. ``runtime_env``), over the defaults
    ``include_dashboard=False, log_to_driver=False``.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, threads_per_worker: int = 1, *,
                 preload: Sequence[str] = ("torch",), init_kwargs: Mapping[str, Any] | None = None):
        super().__init__()
        if num_cpus is not None:
            check_int("num_cpus", num_cpus, 1)
            if address is not None:
                raise ArgumentError("num_cpus", allowed="None when joining a cluster (address given)",
                                    received=num_cpus, hint="the cluster's nodes declare their own CPUs")
        self.threads_per_worker = check_int("threads_per_worker", threads_per_worker, 1)
        self.preload = tuple(preload)
        self._ray = ray = _import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            ray.init(address=address, num_cpus=num_cpus, **kwargs)
            cpus = ray.cluster_resources().get("CPU", 0)
            if cpus < threads_per_worker:  # no task could ever be scheduled: fail now, not hang
                ray.shutdown()
                raise ArgumentError("threads_per_worker", allowed=f"at most the {cpus:g} CPUs Ray has",
                                    received=threads_per_worker, hint="raise num_cpus or lower threads_per_worker")
        else:
            logger.info("RayExecutor uses the Ray already initialised in this process")
        self._remote = ray.remote(_ray_task).options(num_cpus=threads_per_worker, max_retries=0)
        exc = ray.exceptions
        self._crash_errors = tuple(getattr(exc, name) for name in (
            "WorkerCrashedError", "OutOfMemoryError", "NodeDiedError", "ObjectLostError", "RaySystemError",
            "LocalRayletDiedError") if hasattr(exc, name))

    def _slots(self) -> int:
        cpus = self._ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.threads_per_worker))

    def _collect(self, ref: Any) -> tuple[Status, Any]:
        try:
            status, payload = self._ray.get(ref)
            return status, payload
        except self._crash_errors as exc:
            return "crashed", f"{type(exc).__name__}: {exc}"
        except self._ray.exceptions.RayError as exc:  # RayTaskError and the rest: the task itself failed
            return "failed", f"{type(exc).__name__}: {exc}"

    def _run(self, jobs: list[Job]) -> Iterator[Outcome]:
        ray, queue = self._ray, deque(Attempt(j) for j in jobs)
        slots = self._slots()
        flight: dict[Any, tuple[Attempt, float]] = {}
        try:
            while queue or flight:
                while queue and len(flight) < slots:
                    t = queue.popleft()
                    try:
                        ref = self._remote.remote(t.job.fn, t.job.args, dict(t.job.kwargs), self.threads_per_worker,
                                                  self.preload)
                    except Exception as exc:  # did not serialize: retrying cannot help
                        yield Outcome(t.job.key, "failed", error=f"the job could not be submitted: {exc!r}. "
                                      f"HINT: {PICKLE_HINT}", seconds=t.spent, attempts=t.attempt)
                        continue
                    flight[ref] = (t, time.monotonic())
                if not flight:
                    continue
                deadlines = [s + t.job.timeout_s for t, s in flight.values() if t.job.timeout_s]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                done, _ = ray.wait(list(flight), num_returns=1, timeout=timeout)
                for ref in done:
                    t, start = flight.pop(ref)
                    status, payload = self._collect(ref)
                    out = settle(t, status, payload, time.monotonic() - start, queue)
                    if out:
                        yield out
                now = time.monotonic()
                for ref, (t, start) in list(flight.items()):
                    if t.job.timeout_s and now - start >= t.job.timeout_s:
                        ray.cancel(ref, force=True)
                        del flight[ref]
                        out = settle(t, "timeout", f"no result within timeout_s={t.job.timeout_s}", now - start,
                                      queue)
                        if out:
                            yield out
        finally:  # the caller stopped early: cancel what is still running
            for ref in flight:
                with contextlib.suppress(Exception):  # Ray may be shut down already
                    ray.cancel(ref, force=True)

    def close(self) -> None:
        """Shut down the local Ray this executor started (a joined cluster is left alone)."""
        if not self._closed and self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        super().close()


