"""The search archive: round trips, config checks on reopen, exact RNG states, crash safety."""

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from growrnn.errors import ArgumentError, SearchError
from growrnn.search.config import NEUTRAL
from growrnn.search.storage import Archive, CandidateRow, decode_state, encode_state

CONFIG = {"seed": 0, "task": "adding", "model": {"hidden_size": 8}, "workers": 2}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path):
    with Archive.open(tmp_path / "search.db", CONFIG) as archive:
        yield archive


def _add(db: Archive, key: str = "k", parents: tuple = (), generation: int = 0) -> int:
    return db.add('{"nodes": []}', "h' = tanh(affine(x))", key, list(parents), "init", seed=3, generation=generation)


def test_candidate_round_trip(db: Archive) -> None:
    a = _add(db, "ka")
    b = db.add("{}", "text", "kb", [a], "mutate:add_node", seed=5, generation=1)
    row = db.get(b)
    assert isinstance(row, CandidateRow)
    assert (row.id, row.key, row.parents, row.operator, row.seed, row.generation, row.status, row.attempts) == \
        (b, "kb", (a,), "mutate:add_node", 5, 1, "pending", 0)
    assert row.metrics is None and row.started is None and db.find_done("kb") is None
    db.mark_running(b)
    curve = [{"step": 10, "val": 0.5, "train_loss": float("nan")}]
    db.finish(b, {"val": 0.25, "params": 12}, curve, {"val": -0.25, "params": 12.0, "latency": math.inf}, seconds=1.5)
    done = db.find_done("kb")
    assert done is not None and done.status == "done" and done.attempts == 1 and done.seconds == 1.5
    assert done.metrics == {"val": 0.25, "params": 12} and done.objectives["latency"] == math.inf
    assert math.isnan(done.curve[0]["train_loss"]) and done.curve[0]["step"] == 10
    assert done.finished >= done.started
    assert [r.id for r in db.rows()] == [a, b] and [r.id for r in db.rows("done")] == [b]
    assert [r.id for r in db.pending()] == [a] and db.pending(generation=1) == []
    assert db.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 0}


def test_fail_and_retry(db: Archive) -> None:
    i = _add(db)
    db.mark_running(i)
    db.fail(i, "CUDA out of memory", status="pending")
    assert (db.get(i).status, db.get(i).error) == ("pending", "CUDA out of memory")
    db.mark_running(i)
    db.fail(i, "again")
    row = db.get(i)
    assert (row.status, row.error, row.attempts) == ("failed", "again", 2) and row.finished is not None


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda db, i: db.finish(99, {}, [], {}, 1.0), ArgumentError, "'id'.*Received: 99"),
    (lambda db, i: (db.mark_running(i), db.mark_running(i)), SearchError, "candidate 1 is 'running'.*Allowed: pending"),
    (lambda db, i: (db.finish(i, {}, [], {}, 1.0), db.fail(i, "x")), SearchError, "candidate 1 is 'done'"),
    (lambda db, i: db.fail(i, "x", status="done"), ArgumentError, "'status'.*Allowed: failed, pending.*HINT"),
    (lambda db, i: _add(db, parents=(i, 7)), ArgumentError, r"'parents'.*Received: \[7\]"),
    (lambda db, i: db.add("{}", "t", "", [], "init", 0, 0), ArgumentError, "'key'"),
    (lambda db, i: db.add("{}", "t", "k", [], "init", 0, -1), ArgumentError, "generation"),
    (lambda db, i: db.finish(i, {"f": object()}, [], {}, 1.0), ArgumentError, "'metrics'.*HINT"),
    (lambda db, i: db.rows("lost"), ArgumentError, "'status'.*pending, running, done, failed"),
    (lambda db, i: db.save_generation(0, [i], {"rng": random.Random(0)}, {}), ArgumentError,
     "'state'.*HINT: encode RNGs.*encode_state"),
    (lambda db, i: db.save_generation(0, [i, 5], {}, {}), ArgumentError, "'population'"),
])
def test_errors(db: Archive, call, error: type, match: str) -> None:
    i = _add(db)
    with pytest.raises(error, match=match):
        call(db, i)


def test_generations_round_trip(db: Archive) -> None:
    ids = [_add(db, f"k{j}") for j in range(3)]
    assert db.last_generation() is None and db.generations() == []
    rng, gen = random.Random(4), np.random.default_rng(5)
    db.save_generation(0, ids[:2], encode_state({"random": rng, "numpy": gen}), {"hypervolume": 1.5, "front_size": 2})
    db.save_generation(1, ids, {"note": "second"}, {"hypervolume": 2.0})
    db.save_generation(1, ids[1:], {"note": "replaced"}, {"hypervolume": 2.5})
    last = db.last_generation()
    assert last is not None and (last.gen, last.population, last.state, last.stats) == \
        (1, tuple(ids[1:]), {"note": "replaced"}, {"hypervolume": 2.5})
    first = db.generations()[0]
    state = decode_state(first.state)
    assert state["random"].random() == rng.random() and state["numpy"].random() == gen.random()
    assert [g.gen for g in db.generations()] == [0, 1]


def test_reopen_and_config_check(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "s.db"
    with Archive.open(path, CONFIG) as db:
        _add(db)
        assert db.config == CONFIG
        assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Archive.open(path, {**CONFIG, "workers": 8, "generations": 40}) as db:  # neutral keys may change
        assert db.config["workers"] == 8 and len(db.rows()) == 1
    with Archive.open(path) as db:  # no config: the stored one
        assert db.config["workers"] == 8
    bad = {**CONFIG, "seed": 1, "model": {"hidden_size": 16}}
    with pytest.raises(SearchError, match=r"keys model\.hidden_size, seed differ.*stored 8, given 16.*HINT: resume"):
        Archive.open(path, bad)
    with pytest.raises(SearchError, match="keys extra differ"):
        Archive.open(path, {**CONFIG, "extra": 1})
    with Archive.open(path, bad, neutral={*NEUTRAL, "seed", "model"}) as db:
        assert db.config == bad


@pytest.mark.parametrize(("given", "resumes"), [
    ({"speciation": None}, True),         # an option added after the archive was made, left off
    ({"speciation": {"threshold": 0.3}}, False),  # ... switched on: another search
    ({"extra": 0}, False),
])
def test_an_option_newer_than_the_archive_resumes_when_off(tmp_path: Path, given: dict, resumes: bool) -> None:
    path = tmp_path / "old.db"
    with Archive.open(path, CONFIG):
        pass
    if resumes:
        with Archive.open(path, {**CONFIG, **given}) as db:
            assert db.config == {**CONFIG, **given}
        with Archive.open(path) as db:
            assert db.config == CONFIG, "nothing changed, so nothing was rewritten"
    else:
        with pytest.raises(SearchError, match=f"keys {next(iter(given))}.* differ"):
            Archive.open(path, {**CONFIG, **given})


def test_open_rejects_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(SearchError, match="not a growrnn search archive.*HINT"):
        Archive.open(other, CONFIG)
    text = tmp_path / "notes.txt"
    text.write_text("not a database, just text that is long enough to be read as a header" * 10)
    with pytest.raises(SearchError, match="not a readable SQLite database"):
        Archive.open(text, CONFIG)
    with pytest.raises(ArgumentError, match="'path'.*existing archive"):
        Archive.open(tmp_path / "missing.db")
    with pytest.raises(ArgumentError, match="'config'"):
        Archive.open(tmp_path / "new.db", {"f": object()})


def test_reset_running(db: Archive) -> None:
    ids = [_add(db, f"k{j}") for j in range(4)]
    for i in ids[:3]:
        db.mark_running(i)
    db.finish(ids[0], {}, [], {}, 1.0)
    assert db.reset_running() == ids[1:3]
    assert [r.id for r in db.pending()] == ids[1:] and db.get(ids[1]).started is None
    assert db.reset_running() == []


@pytest.mark.parametrize("kind", ["PCG64", "MT19937", "SFC64", "Philox", "PCG64DXSM"])
def test_numpy_state_is_exact(kind: str) -> None:
    gen = np.random.Generator(getattr(np.random, kind)(11))
    gen.integers(0, 2**31, size=3, dtype=np.uint32)  # leaves a half-used 64-bit word (has_uint32)
    gen.normal(size=3)
    copy = decode_state(json.loads(json.dumps(encode_state(gen))))
    assert type(copy.bit_generator).__name__ == kind
    assert copy.integers(0, 2**31, size=5, dtype=np.uint32).tolist() == \
        gen.integers(0, 2**31, size=5, dtype=np.uint32).tolist()
    assert copy.random(5).tolist() == gen.random(5).tolist()


def test_random_state_is_exact() -> None:
    rng = random.Random(123)
    rng.gauss(0, 1)  # leaves gauss_next set
    copy = decode_state(json.loads(json.dumps(encode_state(rng))))
    assert copy.getstate() == rng.getstate()
    assert [copy.gauss(0, 1), copy.random(), copy.getrandbits(200)] == [rng.gauss(0, 1), rng.random(),
                                                                          rng.getrandbits(200)]


def test_state_values_round_trip() -> None:
    value = {"gen": 3, "arr": np.arange(6, dtype=np.uint64).reshape(2, 3), "blob": b"\x00\xff",
             "pair": (1, 2.5), "scalar": np.int64(7), "nested": [{"x": None, "ok": True}]}
    back = decode_state(json.loads(json.dumps(encode_state(value))))
    assert back["arr"].dtype == np.uint64 and back["arr"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert (back["blob"], back["pair"], back["scalar"], back["nested"]) == (b"\x00\xff", [1, 2.5], 7, value["nested"])


@pytest.mark.parametrize(("value", "match"), [
    ({"x": object()}, r"'state\['x'\]'.*Received: object"),
    ({"__random__": 1}, "'state key'.*Received: __random__"),
    ({1: 2}, "'state key'"),
])
def test_state_errors(value: object, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        encode_state(value)


KILLED = """
import os, signal, sys
from growrnn.search.storage import Archive
db = Archive.open(sys.argv[1], {"seed": 0})
for i in range(6):
    c = db.add("{}", "text", f"k{i}", [], "init", seed=i, generation=0)
    db.mark_running(c)
    if i == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    db.finish(c, {"val": i / 10}, [{"step": 1, "val": i / 10}], {"val": i / 10}, seconds=0.1)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    proc = subprocess.run([sys.executable, "-c", KILLED, str(path)], cwd=REPO, capture_output=True, timeout=60,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with Archive.open(path, {"seed": 0}) as db:
        assert db._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.counts() == {"pending": 0, "running": 1, "done": 4, "failed": 0}
        done = db.rows("done")
        assert [(r.key, r.metrics, r.curve, r.objectives) for r in done] == \
            [(f"k{i}", {"val": i / 10}, [{"step": 1, "val": i / 10}], {"val": i / 10}) for i in range(4)]
        assert db.reset_running() == [5]
        assert db.find_done("k3") is not None and db.find_done("k4") is None


def test_a_side_folder_is_one_archives(tmp_path: Path) -> None:
    """``a.db`` and ``a.sqlite`` name the same side folders (``a_weights/``): the first archive to
    use one marks it, the other is refused with its reason; a copy of the file is the same
    archive, and an unmarked folder (an older growrnn's) is adopted."""
    folder = tmp_path / "a_weights"
    with Archive.open(tmp_path / "a.db", {"seed": 0}) as a:
        a.claim(folder)
        a.claim(folder)  # again: its own
        mine = a.identity
    assert (folder / "archive.txt").read_text().strip() == mine
    shutil.copyfile(tmp_path / "a.db", tmp_path / "copy.db")
    with Archive.open(tmp_path / "copy.db") as copy:
        copy.claim(folder)
    with Archive.open(tmp_path / "a.sqlite", {"seed": 1}) as b:
        with pytest.raises(SearchError, match=r"a_weights belongs to another search archive .*a.sqlite.*HINT: two "
                                              r"databases whose names differ only in their suffix"):
            b.claim(folder)
        (folder / "archive.txt").unlink()
        b.claim(folder)
        assert (folder / "archive.txt").read_text().strip() == b.identity != mine


# ------------------------------------------------------------------------------------ hostile files
def test_a_database_path_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    """A parent that is a file (or a folder that cannot be written) is an ArgumentError naming
    the path, not a bare OS error from the folder or the lock file."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArgumentError, match=r"'path'.*Allowed: a database file in a folder.*file/s.db.*HINT"):
        Archive.open(tmp_path / "file" / "s.db", {"seed": 0})


def test_a_second_writer_is_refused_while_readers_may_read(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Archive.open(path, CONFIG) as first:
        _add(first)
        with pytest.raises(SearchError, match=f"in use by another search \\(pid {os.getpid()}\\).*HINT: wait"):
            Archive.open(path, CONFIG)
        with pytest.raises(SearchError, match="in use by another search"):
            Archive.open(path)
        with Archive.open(path, read_only=True) as reader:
            assert len(reader.rows()) == 1
        first.mark_running(1)  # the refused opens left the first writer's rows alone
    with Archive.open(path, CONFIG) as again:  # the lock went with the first writer
        assert again.get(1).status == "running"


SECOND_WRITER = """
import sys
from growrnn.errors import SearchError
from growrnn.search.storage import Archive
try:
    Archive.open(sys.argv[1], {"seed": 0})
except SearchError as err:
    print(err)
    sys.exit(3)
"""


def test_a_second_search_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Archive.open(path, {"seed": 0}):
        proc = subprocess.run([sys.executable, "-c", SECOND_WRITER, str(path)], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 3 and "in use by another search" in proc.stdout, proc.stderr


def test_an_unrelated_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    with conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(SearchError, match="not a growrnn search archive"):
        Archive.open(other, CONFIG)
    assert other.read_bytes() == before  # still in rollback-journal mode: not converted to WAL
    assert not Path(f"{other}-wal").exists()


def test_read_only_archive_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Archive.open(path, CONFIG) as db:
        _add(db)
    before = path.read_bytes()
    with Archive.open(path, read_only=True) as db:
        assert db.read_only and db.config == CONFIG and len(db.rows()) == 1
        with pytest.raises(SearchError, match="opened read-only"):
            _add(db)
        with pytest.raises(SearchError, match="opened read-only"):
            db.reset_running()
    assert path.read_bytes() == before
    with pytest.raises(ArgumentError, match="'path'.*existing archive"):
        Archive.open(tmp_path / "missing.db", read_only=True)


@pytest.mark.parametrize(("damage", "match"), [
    ("DROP TABLE generations", "lost its table\\(s\\) generations"),
    ("DROP TABLE candidates", "lost its table\\(s\\) candidates"),
    ("UPDATE meta SET value = '{broken' WHERE key = 'config'", "holds no readable config"),
])
def test_a_damaged_archive_is_a_clear_error(tmp_path: Path, damage: str, match: str) -> None:
    path = tmp_path / "s.db"
    with Archive.open(path, CONFIG) as db:
        _add(db)
    conn = sqlite3.connect(path)
    conn.execute(damage)
    conn.commit()
    conn.close()
    for kwargs in ({}, {"read_only": True}):
        with pytest.raises(SearchError, match=f"{match}.*HINT: the archive was edited or damaged"):
            Archive.open(path, **kwargs)


@pytest.mark.parametrize(("column", "value", "call"), [
    ("metrics", "{not json", lambda db: db.rows()),
    ("parents", "[1,", lambda db: db.get(1)),
    ("objectives", "nope", lambda db: db.find_done("k")),
])
def test_a_broken_row_is_a_clear_error(tmp_path: Path, column: str, value: str, call) -> None:  # noqa: ANN001
    path = tmp_path / "s.db"
    with Archive.open(path, CONFIG) as db:
        db.finish(_add(db), {"val": 1.0}, [], {"val": 1.0}, 1.0)
    conn = sqlite3.connect(path)
    conn.execute(f"UPDATE candidates SET {column} = ?", (value,))
    conn.commit()
    conn.close()
    with Archive.open(path) as db, pytest.raises(SearchError, match="broken row: candidate 1 does not decode"):
        call(db)


def test_a_broken_generation_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Archive.open(path, CONFIG) as db:
        db.save_generation(0, [_add(db)], {}, {})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE generations SET population = 'x'")
    conn.commit()
    conn.close()
    with Archive.open(path) as db, pytest.raises(SearchError, match="generation 0 does not decode"):
        db.last_generation()


def test_confirmation_rows_round_trip_and_move_once(db: Archive) -> None:
    i = _add(db, "kc")
    assert db.add_confirmation(i, 0, 11) and not db.add_confirmation(i, 0, 12), "one run per (cell, seed index)"
    assert db.add_confirmation(i, 1, 13)
    (first, second) = db.confirmations(key="kc")
    assert (first.key, first.seed_index, first.candidate, first.seed, first.status, first.attempts) == \
        ("kc", 0, i, 11, "pending", 0)
    db.mark_confirming("kc", 0)
    db.mark_confirming("kc", 1)
    assert db.reset_running() == [] and {r.status for r in db.confirmations()} == {"pending"}
    db.mark_confirming("kc", 0)
    db.finish_confirmation("kc", 0, {"val": 0.5}, [{"step": 1, "val": 0.5}], {"val": 0.5, "params": 3.0}, 2.0)
    db.fail_confirmation("kc", 1, "crashed")
    done, failed = db.confirmations(key="kc")
    assert (done.status, done.attempts, done.metrics, done.values, done.seconds) == \
        ("done", 2, {"val": 0.5}, {"val": 0.5, "params": 3.0}, 2.0)
    assert (failed.status, failed.error, failed.values) == ("failed", "crashed", {"failed": True})
    assert [r.seed_index for r in db.confirmations(status="done")] == [0] and db.confirmations(key="x") == []
    with pytest.raises(SearchError, match=r"confirmations row \(key kc, seed_index 0\) is 'done'.*Allowed: pending"):
        db.mark_confirming("kc", 0)
    with pytest.raises(ArgumentError, match="'key/seed_index'.*HINT: plan it"):
        db.finish_confirmation("kc", 5, {}, [], {}, 1.0)
    with pytest.raises(ArgumentError, match="'id'"):
        db.add_confirmation(99, 0, 1)
    assert db.confirmation_report() is None
    db.save_confirmation_report({"spearman": 0.5, "cells": []})
    assert db.confirmation_report() == {"spearman": 0.5, "cells": []}


def test_a_schema_1_archive_gains_the_confirmations_and_rungs_tables(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.db"
    with caplog.at_level("INFO", logger="growrnn.search.storage"), Archive.open(path, CONFIG) as db:
        _add(db)
    assert "created" in caplog.text and " -> " not in caplog.text  # a new archive is not "upgraded"
    with sqlite3.connect(path) as conn:  # what growrnn before confirmation wrote
        conn.execute("DROP TABLE confirmations")
        conn.execute("DROP TABLE rungs")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    with Archive.open(path, read_only=True) as db:  # read as it is: no confirmations or rungs yet
        assert db.confirmations() == [] and db.rungs() == [] and len(db.rows()) == 1
    with caplog.at_level("INFO", logger="growrnn.search.storage"), Archive.open(path, CONFIG) as db:  # upgraded
        assert db.add_confirmation(1, 0, 5) and len(db.confirmations()) == 1
        db.add_rungs([1], 0)
        assert [(r.candidate, r.rung, r.status) for r in db.rungs()] == [(1, 0, "pending")]
    assert "schema 1 -> 2" in caplog.text and "schema 2 -> 3" in caplog.text
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(SearchError, match="has archive schema 9.*Allowed: 1, 2, 3"):
        Archive.open(path, read_only=True)


def test_a_config_key_added_since_matches_its_off_value(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Archive.open(path, CONFIG):
        pass
    with Archive.open(path, {**CONFIG, "rungs": None}) as db:  # a feature the stored search had off
        assert db.config["rungs"] is None
    with pytest.raises(SearchError, match=r"keys later\.on differ"):
        Archive.open(path, {**CONFIG, "later": {"on": 1}})


def test_rung_rows_round_trip_with_their_decisions(db: Archive) -> None:
    a, b = _add(db, "ka"), _add(db, "kb")
    db.add_rungs([a, b], 0)
    db.add_rungs([a], 0)  # planned again (a resumed search): left as it is
    assert [(r.candidate, r.rung, r.status, r.promoted) for r in db.rungs()] == [(a, 0, "pending", None),
                                                                                (b, 0, "pending", None)]
    db.mark_rung_running(a, 0)
    db.mark_rung_running(b, 0)
    assert db.reset_running() == [] and {r.status for r in db.rungs()} == {"pending"}
    db.mark_rung_running(a, 0)
    db.finish_rung(a, 0, {"val": 0.4}, [{"step": 5, "val": 0.4}], {"val": 0.4, "params": 9.0}, 1.0, steps=5)
    with pytest.raises(ArgumentError, match="'decided'.*finished rungs.*HINT: decide"):
        db.add_rungs([a], 1, decided=[(a, 0, 0.4, True), (b, 0, 0.5, False)])  # b is not finished
    assert db.rungs(rung=1) == [] and db.rungs([a])[0].promoted is None, "nothing of a refused transaction stays"
    db.fail_rung(b, 0, "crashed")
    db.add_rungs([a], 1, decided=[(a, 0, 0.4, True), (b, 0, None, False)])
    (ra0, ra1), (rb0,) = db.rungs([a]), db.rungs([b])
    assert (ra0.status, ra0.steps, ra0.score, ra0.promoted, ra0.values) == ("done", 5, 0.4, True,
                                                                             {"val": 0.4, "params": 9.0})
    assert (ra1.rung, ra1.status, rb0.status, rb0.promoted, rb0.error) == (1, "pending", "failed", False, "crashed")
    assert [r.candidate for r in db.rungs(rung=0)] == [a, b] and db.rungs([]) == []
    with pytest.raises(SearchError, match=r"the rungs row \(candidate 1, rung 0\) is 'done'"):
        db.mark_rung_running(a, 0)
    with pytest.raises(ArgumentError, match="'candidate/rung'.*HINT: plan it first"):
        db.finish_rung(a, 7, {}, [], {}, 1.0, steps=1)
