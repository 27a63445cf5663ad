"""Executors: run jobs in parallel and report each one as an :class:`Outcome`.

The search loop, the comparison and ``growrnn grow seeds`` hand an executor a batch of
:class:`Job` s (a top-level function and its arguments) and read outcomes back in completion
order. A job never makes ``run`` raise: a job
that raises is ``"failed"`` (with the traceback text), a worker process that dies is
``"crashed"``, a job past its ``timeout_s`` is ``"timeout"``; each is retried up to
``Job.retries`` times and ``Outcome.attempts`` counts the tries. A Ctrl-C is not a job's
outcome: ``run`` raises ``KeyboardInterrupt`` (inline jobs included, whatever the job made of the
interrupt) and the job it stopped is not reported. Executors inject no randomness
and outcomes are keyed, so a caller that sorts by key gets the same table from every executor.

Back ends: :class:`LocalExecutor` (persistent worker processes on this machine, or inline with
``workers=0``) and :class:`RayExecutor` (Ray tasks on a local Ray or a cluster; needs
``pip install 'growrnn[ray]'``, imported only when one is built). Workers start with the "spawn"
method, which re-imports the caller's main module, so scripts must guard their entry point::

    if __name__ == "__main__":
        with make_executor("local", workers=4) as ex:
            for outcome in ex.run([Job("a", train_one, args=(genome_text,), timeout_s=600, retries=1)]):
                ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from growrnn.errors import ArgumentError
from growrnn.executors.base import Executor, Job, Outcome, Status, limit_threads, torch_threads
from growrnn.executors.local import PARENT_ENV, LocalExecutor, die_with_parent, die_with_parent_from_env
from growrnn.executors.ray import RayExecutor

__all__ = ["Job", "Outcome", "Status", "Executor", "LocalExecutor", "RayExecutor", "make_executor", "limit_threads",
           "torch_threads", "die_with_parent", "die_with_parent_from_env", "PARENT_ENV"]

_EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(name: Literal["local", "ray"], **kwargs: Any) -> Executor:
    """Build an executor by name: ``"local"`` → :class:`LocalExecutor`, ``"ray"`` →
    :class:`RayExecutor`; ``kwargs`` go to its constructor.

    Examples:
        >>> with make_executor("local", workers=0) as ex:
        ...     [o.value for o in ex.run([Job("one", abs, args=(-1,))])]
        [1]
    """
    if name not in _EXECUTORS:
        raise ArgumentError("name", allowed=", ".join(repr(k) for k in _EXECUTORS), received=name,
                            hint="use 'local' on one machine, 'ray' for a Ray cluster")
    return _EXECUTORS[name](**kwargs)
