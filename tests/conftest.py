"""Shared fixtures: the real data folder (GROWRNN_DATA, set by CI to ../shared/data) and a small
generated aclImdb folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
if "GROWRNN_DATA" not in os.environ and SHARED.is_dir():
    os.environ["GROWRNN_DATA"] = str(SHARED)


#: Tasks whose data is read from GROWRNN_DATA (the others are generated).
DATA_TASKS = {"ptb", "wikitext2", "jsb", "nottingham", "piano_midi", "musedata"}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The staged benchmark data. Missing data fails the run in CI (CI=true) and skips the tests
    that need it elsewhere, so a newcomer without the data can still run the rest."""
    path = Path(os.environ.get("GROWRNN_DATA", SHARED))
    if not (path / "manifest.json").is_file():
        msg = (f"the benchmark data is not at {path}: set GROWRNN_DATA to a folder laid out like "
               "../shared/data (growrnn data download NAME fills one)")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def need_ray() -> None:
    """Skip (fail in CI) unless Ray is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        msg = "ray is not installed: pip install 'growrnn[ray]'"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def need_data(request: pytest.FixtureRequest, task: str) -> None:
    """Skip (fail in CI) unless the data of ``task`` is staged; generated tasks need nothing."""
    if task in DATA_TASKS:
        request.getfixturevalue("data_dir")


def config_task(config: Path) -> str:
    """The task a ``growrnn fit`` config trains on (``data.task``), whatever the file is called."""
    import yaml
    return str(yaml.safe_load(config.read_text())["data"]["task"])


@pytest.fixture(scope="session")
def manifest(data_dir: Path) -> dict:
    return json.loads((data_dir / "manifest.json").read_text())["datasets"]


REVIEWS = {
    "pos": ["A wonderful, moving film.<br /><br />Great acting!", "I loved it; the best movie this year.",
            "Brilliant and funny, a great story", "great fun, wonderful cast"],
    "neg": ["Awful. A waste of time.", "The worst film I have seen; boring plot.",
            "boring, dull and far too long", "terrible acting, awful script"],
}


@pytest.fixture
def imdb_dir(tmp_path: Path) -> Path:
    """A tiny folder with aclImdb's layout: {train,test}/{pos,neg}/<id>_<stars>.txt."""
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for label, texts in REVIEWS.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for k, text in enumerate(texts * (3 if split == "train" else 1)):
                (folder / f"{k}_{8 if label == 'pos' else 2}.txt").write_text(text)
    return root


def kill_9_when(cmd: list[str], db: Path, count_sql: str, at_least: int, log: Path, cwd: Path,
                timeout_s: float = 120.0) -> None:
    """Run ``cmd`` in a process (one torch thread, output to ``log``) and ``kill -9`` it as soon as
    ``count_sql`` (a ``SELECT COUNT(*)``) counts ``at_least`` rows in the SQLite file ``db``, read
    read-only as a second process may (WAL lets it read while the process writes). Fails if the
    process ended before it could be killed."""
    import signal
    import sqlite3
    import subprocess
    import time
    from contextlib import closing

    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if db.is_file():
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                    try:
                        (n,) = conn.execute(count_sql).fetchone()
                    except sqlite3.OperationalError:  # the schema is being created, or locked for a moment
                        n = 0
                if n >= at_least:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.01)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, log.read_text()


@pytest.fixture
def ctrl_c_reaches_python() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a terminal, for the test's duration: a process started
    in the background by a non-interactive shell (a CI script) inherits SIGINT ignored, and Python
    then leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone; reads /proc)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def assert_ends_with_its_starter(starter: subprocess.Popen, marker: Path, sig: signal.Signals, what: str) -> None:
    """Wait for the process ``starter`` runs to write its pid into ``marker``, kill ``starter``
    with ``sig`` (no exit hook runs under SIGKILL) and assert that ``what`` ends within 10 s;
    whatever is left is killed."""
    pid = None
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()):
            assert starter.poll() is None and time.monotonic() < deadline, f"the {what} never started"
            time.sleep(0.05)
        pid = int(marker.read_text())
        starter.send_signal(sig)
        starter.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), f"the {what} {pid} outlived the process that started it, killed by {sig.name}"
    finally:
        starter.kill()
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)
