"""The process-pool executor (see :mod:`growrnn.executors`)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.util  # imported before our atexit hook so ours runs first (atexit is LIFO)
import os
import pickle
import signal
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from growrnn.errors import ExecutorError, check_int, format_message
from growrnn.executors.base import (
    PICKLE_HINT,
    THREAD_ENV,
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

_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _child_env(threads: int) -> Iterator[None]:
    """Set the thread variables in our environment while a child starts: "spawn" runs the caller's
    main module (often ``import torch, numpy``) in the child before our worker code, and the
    child copies the environment at exec time."""
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in THREAD_ENV}
        os.environ.update({name: str(threads) for name in THREAD_ENV})
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


#: the environment variable through which a job hands the command line it starts its own pid:
#: that child ends as soon as the job's process is gone (see :func:`die_with_parent`)
PARENT_ENV = "GROWRNN_PARENT"


def die_with_parent(parent: int | None = None, every: float = 0.5) -> None:
    """End this process as soon as its parent is gone. A busy worker does not read its pipe, and a
    parent killed by a signal (SIGTERM, SIGKILL: no atexit hook runs) cannot stop it, so without
    this it would train on, unseen, as an orphan. ``parent``: None in a pool worker (a daemon thread
    waits on the parent's sentinel, readable once the parent has exited); the pid of the process
    that started this one otherwise (a command line a job runs, e.g. ``growrnn grow seeds``'s
    ``growrnn fit``: the thread checks every ``every`` seconds that this process's parent is still
    that one -- an orphan is adopted by another)."""
    if parent is None:
        process = multiprocessing.parent_process()
        if process is None:  # pragma: no cover - a worker always has a parent
            return

        def watch() -> None:
            wait([process.sentinel])
            os._exit(1)
    else:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(every)
            os._exit(1)

    threading.Thread(target=watch, name="growrnn-parent-watch", daemon=True).start()


def die_with_parent_from_env() -> None:
    """:func:`die_with_parent` for a command line whose starter put its pid in :data:`PARENT_ENV`;
    the variable is removed, so that processes this one starts do not watch the wrong parent."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is not None and parent.isdigit():
        die_with_parent(int(parent))


def _worker_main(conn: Connection, threads: int, preload: tuple[str, ...]) -> None:
    """A persistent worker: receive pickled (fn, args, kwargs), send back (status, payload)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    die_with_parent()
    limit_threads(threads, preload)
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        if not data:
            return  # the parent asked us to stop
        try:
            fn, args, kwargs = pickle.loads(data)
            limit_threads(threads)
            reply = call_job(fn, args, kwargs)
        except Exception:  # the job did not unpickle here (e.g. its module is not importable)
            reply = ("failed", traceback.format_exc() + f"HINT: {PICKLE_HINT}")
        try:
            out = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            out = pickle.dumps(("failed", "the result did not pickle:\n" + traceback.format_exc()))
        try:
            conn.send_bytes(out)
        except OSError:
            return


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[threading.Event]:
    """Run the body with a SIGINT handler that sets the returned event before it raises
    ``KeyboardInterrupt`` as Python's own does; the handler is restored afterwards.

    An inline job runs in the caller's process, and what it calls may not let a Ctrl-C through:
    Lightning's ``Trainer`` turns ``KeyboardInterrupt`` into ``sys.exit(1)`` (which reads as a job
    that failed: a job that calls ``sys.exit`` itself *has* failed), and one raised inside a
    ``__del__`` is printed and dropped. The event tells the two apart, however the job ended.
    Only in the main thread and while Python's default handler is in place: a caller that set its
    own handler, or ignores SIGINT, keeps its choice."""
    noted = threading.Event()
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield noted
        return

    def handler(signum: int, frame: Any) -> None:
        noted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield noted
    finally:  # also undoes a job's own change (Lightning ignores SIGINT while it shuts down)
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _Worker:
    def __init__(self, ctx: Any, threads: int, preload: tuple[str, ...]):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, threads, preload), name="growrnn-executor")
        with _child_env(threads):
            self.process.start()
        child.close()  # so a dead worker reads as EOF here
        self.ready = False
        self.task: Attempt | None = None
        self.started = 0.0
        self.deadline: float | None = None

    def death(self) -> str:
        self.process.join(timeout=1)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return f"worker process {self.process.pid} {how}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


def _stop_workers(pool: list[_Worker]) -> None:
    for w in pool:
        if w.ready and w.task is None and w.process.is_alive():
            with contextlib.suppress(OSError):
                w.conn.send_bytes(b"")
        else:
            w.process.kill()
    for w in pool:
        w.process.join(timeout=2)
        w.kill()
    pool.clear()


#: Pool finalizers, run at exit: multiprocessing joins non-daemon children at exit, and an idle
#: worker would wait forever for its next job. (Workers are not daemons so jobs may start processes.)
_FINALIZERS: set[Any] = set()


@atexit.register
def _stop_all() -> None:
    for fin in list(_FINALIZERS):
        fin()


class LocalExecutor(BaseExecutor):
    """A pool of ``workers`` persistent processes (spawned once, so torch is imported once per
    worker), each limited to ``threads_per_worker`` threads (OMP/MKL/OpenBLAS environment and
    ``torch.set_num_threads``) and importing ``preload`` at start-up.

    A worker that dies is replaced and the other jobs go on; a job past its timeout has its
    worker killed and replaced. A worker ends when the process that started it does, even one
    killed by a signal, so stopping a search or a comparison with ``kill`` leaves nothing training
    behind. ``workers=0`` runs jobs inline in the calling process, one after
    the other, for debugging: ``timeout_s`` is *not* enforced there, a crash takes the caller with
    it, and the caller's thread settings are left alone. A Ctrl-C (SIGINT) during an inline job
    raises ``KeyboardInterrupt`` from ``run`` and that job gets no outcome, even when the job
    turned the interrupt into something else (Lightning's ``Trainer`` exits with ``sys.exit(1)``);
    with workers, the caller gets the ``KeyboardInterrupt`` (workers ignore SIGINT) and the busy
    workers are stopped.
    """

    def __init__(self, workers: int = 2, threads_per_worker: int = 1, *, preload: Sequence[str] = ("torch",)):
        super().__init__()
        self.workers = check_int("workers", workers, 0)
        self.threads_per_worker = check_int("threads_per_worker", threads_per_worker, 1)
        self.preload = tuple(preload)
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _stop_workers, self._pool)
        _FINALIZERS.add(self._finalizer)
        self._fill()  # start now: the workers import torch while the caller prepares its jobs

    def _fill(self) -> None:
        for w in [w for w in self._pool if w.task is None and not w.process.is_alive()]:
            w.kill()
            self._pool.remove(w)
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._ctx, self.threads_per_worker, self.preload))

    def _replace(self, w: _Worker) -> Attempt | None:
        """Kill ``w``, start a worker in its place, and return the attempt it was running."""
        t, w.task = w.task, None
        w.kill()
        self._pool.remove(w)
        self._fill()
        return t

    def _run(self, jobs: list[Job]) -> Iterator[Outcome]:
        queue = deque(Attempt(j) for j in jobs)
        if self.workers == 0:
            yield from self._run_inline(queue)
            return
        self._fill()
        try:
            while True:
                if self._closed:
                    raise ExecutorError("LocalExecutor was closed while its run() was still being read")
                for w in [w for w in self._pool if w.ready and w.task is None]:
                    while queue and w.task is None and w in self._pool:  # a job that does not pickle frees w again
                        yield from self._dispatch(w, queue)
                watched = [w for w in self._pool if w.task is not None or not w.ready]
                if not queue and not any(w.task for w in watched):
                    return
                deadlines = [w.deadline for w in watched if w.deadline is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready = set(wait([w.conn for w in watched] + [w.process.sentinel for w in watched], timeout))
                for w in watched:
                    if w.conn in ready or w.process.sentinel in ready:
                        yield from self._receive(w, queue)
                now = time.monotonic()
                for w in [w for w in self._pool if w.deadline is not None and now >= w.deadline]:
                    t = self._replace(w)
                    if t is not None and (out := settle(t, "timeout", f"no result within timeout_s={t.job.timeout_s}",
                                                         now - w.started, queue)):
                        yield out
        finally:  # the caller stopped early: kill busy workers so no stale reply reaches the next run
            for w in [w for w in self._pool if w.task is not None]:
                self._replace(w)

    def _dispatch(self, w: _Worker, queue: deque[Attempt]) -> Iterator[Outcome]:
        t = queue.popleft()
        try:
            data = pickle.dumps((t.job.fn, t.job.args, dict(t.job.kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # retrying cannot help: report it at once
            yield Outcome(t.job.key, "failed", error=f"the job did not pickle: {exc!r}. HINT: {PICKLE_HINT}",
                          seconds=t.spent, attempts=t.attempt)
            return
        try:
            w.conn.send_bytes(data)
        except OSError:  # the idle worker died meanwhile: not the job's fault
            queue.appendleft(t)
            self._replace(w)
            return
        w.task, w.started = t, time.monotonic()
        w.deadline = w.started + t.job.timeout_s if t.job.timeout_s is not None else None

    def _receive(self, w: _Worker, queue: deque[Attempt]) -> Iterator[Outcome]:
        try:
            message = pickle.loads(w.conn.recv_bytes()) if w.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is not None and not w.ready:
            w.ready = True
            return
        if message is None:  # the worker died
            reason = w.death()
            t = self._replace(w)
            if t is None:
                raise ExecutorError(format_message(
                    f"an executor worker failed to start ({reason})",
                    hint="scripts must guard their entry point with `if __name__ == '__main__':`, and the "
                         f"preload modules {list(self.preload)} must import"))
            status: Status = "crashed"
            payload: Any = reason
        else:
            t, w.task, w.deadline = w.task, None, None
            status, payload = message
        if t is not None and (out := settle(t, status, payload, time.monotonic() - w.started, queue)):
            yield out

    def _run_inline(self, queue: deque[Attempt]) -> Iterator[Outcome]:
        if any(t.job.timeout_s for t in queue):
            logger.warning("LocalExecutor(workers=0) runs jobs inline and does not enforce timeout_s")
        while queue:
            t = queue.popleft()
            start = time.monotonic()
            with _noting_interrupts() as interrupted:
                status, payload = call_job(t.job.fn, t.job.args, t.job.kwargs)
            if interrupted.is_set():  # the user's Ctrl-C, not the job's failure: stop, report nothing
                raise KeyboardInterrupt(f"interrupted while job {t.job.key!r} ran inline")
            if out := settle(t, status, payload, time.monotonic() - start, queue):
                yield out

    def close(self) -> None:
        """Stop the workers (idle ones finish cleanly, busy ones are killed). Idempotent."""
        super().close()
        self._finalizer()
        _FINALIZERS.discard(self._finalizer)
