"""Executors with real processes: one batch of jobs that succeed, raise, kill their worker, run
past their timeout, or succeed on a retry, run once per executor; each row of the table is then
checked against that executor's outcomes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from growrnn.errors import ArgumentError, ExecutorError
from growrnn.executors import Executor, Job, LocalExecutor, Outcome, RayExecutor, make_executor
from tests.conftest import assert_ends_with_its_starter, need_ray

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- job functions (top level: picklable)
def double(x: int) -> int:
    return 2 * x


def boom(message: str) -> None:
    raise ValueError(message)


def die(code: int) -> None:
    os._exit(code)


def leave(code: int) -> None:  # a job that calls sys.exit has failed; its worker (or caller) lives on
    sys.exit(code)


def kill_self() -> None:  # what an OOM kill looks like
    os.kill(os.getpid(), signal.SIGKILL)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def flaky(marker: str) -> str:
    """Fails on the first try, succeeds on the second (the marker file remembers)."""
    if Path(marker).exists():
        return "second try"
    Path(marker).write_text("tried")
    raise RuntimeError("first try fails")


def threads() -> tuple[int, str]:
    import torch
    return torch.get_num_threads(), os.environ["OMP_NUM_THREADS"]


def pid() -> int:
    return os.getpid()


def set_threads(n: int) -> int:
    import torch
    torch.set_num_threads(n)
    return torch.get_num_threads()


# ------------------------------------------------------------------------------------------ the table
class Row(NamedTuple):
    job: Callable[[Path], Job]
    status: str
    attempts: int
    expect: dict[str, Any]  # executor kind -> the value (status "ok") or a fragment of the error
    inline: bool = True     # safe to run in the test process


ROWS = {
    "ok": Row(lambda tmp: Job("ok", double, (21,)), "ok", 1, {"local": 42, "inline": 42, "ray": 42}),
    "kwargs": Row(lambda tmp: Job("kwargs", double, kwargs={"x": 5}), "ok", 1, {"local": 10, "inline": 10, "ray": 10}),
    "failed": Row(lambda tmp: Job("failed", boom, ("bad input",), retries=1), "failed", 2,
                  dict.fromkeys(("local", "inline", "ray"), "ValueError: bad input")),
    "flaky": Row(lambda tmp: Job("flaky", flaky, (str(tmp / "flaky"),), retries=2), "ok", 2,
                 dict.fromkeys(("local", "inline", "ray"), "second try")),
    "exit": Row(lambda tmp: Job("exit", leave, (3,)), "failed", 1,
                dict.fromkeys(("local", "inline", "ray"), "SystemExit: 3")),
    "crashed": Row(lambda tmp: Job("crashed", die, (3,), retries=1), "crashed", 2,
                   {"local": "exited with code 3", "ray": "WorkerCrashedError"}, inline=False),
    "killed": Row(lambda tmp: Job("killed", kill_self), "crashed", 1,
                  {"local": "killed by SIGKILL", "ray": "WorkerCrashedError"}, inline=False),
    "timeout": Row(lambda tmp: Job("timeout", nap, (60,), timeout_s=1.0), "timeout", 1,
                   dict.fromkeys(("local", "ray"), "timeout_s=1.0"), inline=False),
    "threads": Row(lambda tmp: Job("threads", threads), "ok", 1, {"local": (2, "2"), "ray": (1, "1")}, inline=False),
    "late": Row(lambda tmp: Job("late", nap, (0.01,)), "ok", 1, {"local": 0.01, "inline": 0.01, "ray": 0.01}),
}


def run_table(executor: Executor, tmp: Path, inline_only: bool = False) -> dict[str, Outcome]:
    jobs = [row.job(tmp) for row in ROWS.values() if row.inline or not inline_only]
    outcomes = {}
    for outcome in executor.run(jobs):
        assert outcome.key not in outcomes, "one outcome per job"
        outcomes[outcome.key] = outcome
    assert sorted(outcomes) == sorted(j.key for j in jobs)
    return outcomes


def check_row(outcomes: dict[str, Outcome], key: str, kind: str) -> None:
    row, outcome = ROWS[key], outcomes[key]
    assert (outcome.status, outcome.attempts) == (row.status, row.attempts), outcome.error
    assert outcome.seconds >= 0
    if row.status == "ok":
        assert outcome.value == row.expect[kind] and outcome.error is None
    else:
        assert outcome.value is None and outcome.error is not None and row.expect[kind] in outcome.error


# ------------------------------------------------------------------------------------- LocalExecutor
@pytest.fixture(scope="module")
def pool() -> Iterator[LocalExecutor]:
    # preload=(): workers replaced after a crash start in a blink; the jobs import torch themselves,
    # after the worker set the thread environment (the "threads" row checks that path).
    with LocalExecutor(workers=2, threads_per_worker=2, preload=()) as executor:
        yield executor


@pytest.fixture(scope="module")
def local_outcomes(pool: LocalExecutor, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    start = time.monotonic()
    outcomes = run_table(pool, tmp_path_factory.mktemp("local"))
    assert time.monotonic() - start < 30, "the timed-out job must not hold the batch up"
    return outcomes


@pytest.mark.parametrize("key", list(ROWS))
def test_local_executor_reports_each_outcome(local_outcomes: dict[str, Outcome], key: str) -> None:
    check_row(local_outcomes, key, "local")


def test_local_pool_is_reused_across_runs(pool: LocalExecutor, local_outcomes: dict[str, Outcome]) -> None:
    live = {w.process.pid for w in pool._pool}
    first = {o.value for o in pool.run([Job(f"p{i}", pid) for i in range(4)])}
    second = {o.value for o in pool.run([Job(f"q{i}", pid) for i in range(4)])}
    assert first <= live and second <= live and len(pool._pool) == 2


def test_local_stopping_early_cancels_the_rest(pool: LocalExecutor, local_outcomes: dict[str, Outcome]) -> None:
    outcomes = pool.run([Job("quick", nap, (0.01,)), Job("slow", nap, (60,))])
    assert next(outcomes).key == "quick"
    outcomes.close()  # the slow job's worker is killed, so its reply cannot leak into the next run
    start = time.monotonic()
    assert [(o.key, o.value) for o in pool.run([Job("next", double, (4,))])] == [("next", 8)]
    assert time.monotonic() - start < 10


def test_local_worker_preloads_torch_and_resets_its_threads() -> None:
    with LocalExecutor(workers=1, threads_per_worker=2) as executor:  # default preload: torch
        jobs = [Job("a", set_threads, (3,)), Job("b", threads)]
        assert [(o.key, o.value) for o in executor.run(jobs)] == [("a", 3), ("b", (2, "2"))]


def test_local_unpicklable_jobs_fail_without_retry_and_the_batch_goes_on(pool: LocalExecutor) -> None:
    jobs = [Job("lambda", lambda: 1, retries=2), Job("arg", double, (lambda: 1,)), Job("fine", double, (2,))]
    outcomes = {o.key: o for o in pool.run(jobs)}
    assert outcomes["fine"].value == 4
    for key in ("lambda", "arg"):
        assert (outcomes[key].status, outcomes[key].attempts) == ("failed", 1)
        assert "did not pickle" in (outcomes[key].error or "") and "top-level" in (outcomes[key].error or "")


@pytest.mark.parametrize("key", [k for k, row in ROWS.items() if row.inline])
def test_inline_executor_runs_in_process(tmp_path: Path, key: str) -> None:
    with make_executor("local", workers=0) as executor:
        assert isinstance(executor, LocalExecutor) and isinstance(executor, Executor)
        check_row(run_table(executor, tmp_path, inline_only=True), key, "inline")


def ctrl_c() -> None:
    """What a Ctrl-C does to the process that runs the job inline."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)  # the handler raises KeyboardInterrupt here, at once
    raise AssertionError("SIGINT did not interrupt the job")


def ctrl_c_then_exit() -> None:
    """What Lightning's Trainer does with a Ctrl-C: it shuts down and calls sys.exit(1)."""
    try:
        ctrl_c()
    except KeyboardInterrupt:
        sys.exit(1)


def ctrl_c_swallowed() -> str:
    """A Ctrl-C that something in the job drops (one raised inside a __del__ is only printed)."""
    try:
        ctrl_c()
    except KeyboardInterrupt:
        pass
    return "finished anyway"


RAN: list[str] = []


def record(key: str) -> str:
    RAN.append(key)
    return key


@pytest.mark.usefixtures("ctrl_c_reaches_python")
@pytest.mark.parametrize("job", [ctrl_c, ctrl_c_then_exit, ctrl_c_swallowed])
def test_inline_ctrl_c_stops_the_run_however_the_job_ends(job: Callable[[], object]) -> None:
    """A user's Ctrl-C during an inline job stops the run and reports no outcome for that job, so
    a search does not store the interrupted candidate as failed (nor retry it); a job that calls
    sys.exit of its own accord stays a failed job (the "exit" row)."""
    RAN.clear()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []
    with LocalExecutor(workers=0) as executor, pytest.raises(KeyboardInterrupt):
        for outcome in executor.run([Job("first", record, ("first",)), Job("ctrl-c", job, retries=1),
                                     Job("after", record, ("after",))]):
            seen.append(outcome.key)
    assert seen == ["first"] and RAN == ["first"], "no outcome for the interrupted job, and nothing after it"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "Ctrl-C works again afterwards"


@pytest.mark.usefixtures("ctrl_c_reaches_python")
def test_local_ctrl_c_stops_the_run_and_the_busy_workers(pool: LocalExecutor,
                                                          local_outcomes: dict[str, Outcome]) -> None:
    """With workers, Ctrl-C reaches the caller (workers ignore SIGINT): the run stops at once and
    the worker that was busy is stopped, not left training."""
    before = {w.process for w in pool._pool}
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        outcomes = pool.run([Job("slow", nap, (60,))])
        timer.start()
        next(outcomes)
    timer.join()
    stopped = before - {w.process for w in pool._pool}
    assert time.monotonic() - start < 30 and len(stopped) == 1 and not any(p.is_alive() for p in stopped)
    assert [(o.key, o.value) for o in pool.run([Job("next", double, (4,))])] == [("next", 8)]


SCRIPT = """
from growrnn.executors import Job, LocalExecutor
{guard}
    ex = LocalExecutor(workers=1, preload=())
    print([o.value for o in ex.run([Job("a", abs, (-3,))])])
"""


@pytest.mark.parametrize(("guard", "returncode", "output"), [
    ("if __name__ == '__main__':", 0, "[3]"),  # and no close(): the process still exits
    ("if True:", 1, "if __name__ == '__main__':"),  # no guard: a clear error, not a hang
])
def test_local_scripts_exit_cleanly(tmp_path: Path, guard: str, returncode: int, output: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT).format(guard=guard))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == returncode and output in proc.stdout + proc.stderr, proc.stderr[-2000:]


ORPHAN_SCRIPT = """
import os, sys, time
from growrnn.executors import Job, LocalExecutor

def hold(path):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(120)

if __name__ == '__main__':
    list(LocalExecutor(workers=1, preload=()).run([Job("a", hold, (sys.argv[1],))]))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_local_busy_worker_dies_with_its_parent(tmp_path: Path, sig: signal.Signals) -> None:
    """A parent killed by a signal runs no exit hook; its busy worker must not train on as an orphan."""
    script, marker = tmp_path / "script.py", tmp_path / "worker.pid"
    script.write_text(textwrap.dedent(ORPHAN_SCRIPT))
    parent = subprocess.Popen([sys.executable, str(script), str(marker)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert_ends_with_its_starter(parent, marker, sig, "worker")


# ----------------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize(("build", "match"), [
    (lambda: Job("", double), "'key'"),
    (lambda: Job("k", 3), "'fn'"),  # type: ignore[arg-type]
    (lambda: Job("k", double, timeout_s=0), "'timeout_s'"),
    (lambda: Job("k", double, timeout_s=float("inf")), "'timeout_s'"),
    (lambda: Job("k", double, retries=-1), "'retries'"),
    (lambda: LocalExecutor(workers=-1), "'workers'"),
    (lambda: LocalExecutor(workers=0, threads_per_worker=0), "'threads_per_worker'"),
    (lambda: make_executor("dask"), "'name'.*Allowed: 'local', 'ray'.*Received: dask"),  # type: ignore[arg-type]
    (lambda: RayExecutor(address="auto", num_cpus=2), "'num_cpus'"),
    (lambda: LocalExecutor(workers=0).run([Job("a", double), Job("a", pid)]), "duplicated keys \\['a'\\]"),
    (lambda: LocalExecutor(workers=0).run(["a"]), "'jobs'"),  # type: ignore[list-item]
])
def test_bad_arguments_are_named(build: Callable[[], object], match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        build()


def test_closed_executor_refuses_jobs() -> None:
    executor = LocalExecutor(workers=0)
    executor.close()
    with pytest.raises(ExecutorError, match="closed"):
        executor.run([Job("a", double, (1,))])


def test_local_closing_while_reading_is_an_error() -> None:
    executor = LocalExecutor(workers=1, preload=())
    outcomes = executor.run([Job("a", nap, (0.01,)), Job("b", nap, (0.01,))])
    assert next(outcomes).key == "a"
    executor.close()
    with pytest.raises(ExecutorError, match="closed while its run"):
        next(outcomes)


def test_local_worker_that_cannot_start_is_an_error() -> None:
    with LocalExecutor(workers=1, preload=("growrnn_no_such_module",)) as executor:
        with pytest.raises(ExecutorError, match="failed to start.*growrnn_no_such_module"):
            list(executor.run([Job("a", double, (1,))]))


def test_import_leaves_ray_out_and_missing_ray_gives_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, growrnn.executors; sys.exit(int('ray' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'growrnn\[ray\]'"):
        RayExecutor()


# --------------------------------------------------------------------------------------- RayExecutor
@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    """One local Ray for the module: starting Ray takes seconds. Missing ray fails in CI, skips
    elsewhere. (Ray workers get the driver's sys.path, so they import this module by name.)"""
    need_ray()
    import ray

    with RayExecutor(num_cpus=2) as executor:
        yield executor
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_outcomes(ray_executor: RayExecutor, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    return run_table(ray_executor, tmp_path_factory.mktemp("ray"))


@pytest.mark.slow
@pytest.mark.parametrize("key", list(ROWS))
def test_ray_executor_reports_each_outcome(ray_outcomes: dict[str, Outcome], key: str) -> None:
    check_row(ray_outcomes, key, "ray")


@pytest.mark.slow
def test_ray_stopping_early_cancels_the_rest(ray_executor: RayExecutor, ray_outcomes: dict[str, Outcome]) -> None:
    outcomes = ray_executor.run([Job("quick", nap, (0.01,)), Job("slow", nap, (60,))])
    assert next(outcomes).key == "quick"
    outcomes.close()
    start = time.monotonic()
    assert [(o.key, o.value) for o in ray_executor.run([Job("next", double, (4,))])] == [("next", 8)]
    # the slow job naps 60 s: a next run that waited for it takes that long; one that cancelled it
    # takes seconds (22.6 s once on a machine shared with two training jobs, so the bar is not tight)
    assert time.monotonic() - start < 45


@pytest.mark.parametrize("error, reason", [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad width\n\n", "ValueError: bad width"),
    ("timed out after 5 s", "timed out after 5 s"), (None, "no error recorded"), ("", "no error recorded")])
def test_a_failed_jobs_reason_is_its_errors_last_line(error: str | None, reason: str) -> None:
    """What the search logs for a failed candidate: the exception and its message, not a traceback."""
    assert Outcome("k", "crashed", error=error).reason == reason
