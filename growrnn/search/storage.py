"""The search archive: one SQLite file per search holding every candidate, its lineage, its
results and each generation's population and RNG state, so a killed search resumes where it was.

The file runs in WAL mode and every write is its own committed transaction (``synchronous=FULL``),
so a ``kill -9`` (or a power cut) loses at most the evaluations in flight; after a crash call
:meth:`Archive.reset_running` to put them back to ``pending``.

**One writer.** Only the search's main process writes: executors' workers return results to it
and it calls :meth:`Archive.finish`. A writable :class:`Archive` holds an exclusive lock on
``<db>.lock`` (an OS file lock, released when the process ends, even by ``kill -9``), so a second
search on the same file is refused instead of corrupting the first one's rows. An
:class:`Archive` is also bound to the thread that opened it (sqlite3's check) and must not be used
in a forked child. Other processes may open the file to read while the search runs
(``read_only=True``, as ``growrnn search export`` does; WAL lets readers and the writer proceed
together); WAL needs a local file system, not NFS.

Nothing is written to a file before it is known to be a growrnn archive (or a new, empty file):
an unrelated SQLite database is refused untouched. A damaged archive (a dropped table, a row that
does not decode) raises :class:`~growrnn.errors.SearchError` naming the file and the row.

**Confirmation.** The ``confirmations`` table holds the from-scratch retraining of the cells a
search hands out (:mod:`growrnn.search.confirm`): one row per (cell key, seed index), going
``pending`` -> ``running`` -> ``done``/``failed`` like a candidate, so a killed confirmation
resumes the same way. An archive written before that table existed (schema 1) gets it when it is
next opened to write; opened read-only it simply has no confirmations.

**Rungs.** With multi-fidelity evaluation (:mod:`growrnn.search.rungs`) each candidate of a
generation trains in rungs of growing budget; the ``rungs`` table holds one row per (candidate,
rung) with its status, results, the training steps it spent, the score it was ranked on and the
promotion decision, so a search killed in the middle of a rung resumes exactly.

A generation's state holds RNGs; :func:`encode_state` turns them into JSON values exactly and
:func:`decode_state` rebuilds them, so a restored generator continues where it was.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "search.db"
>>> with Archive.open(path, {"seed": 0, "task": "adding"}) as db:
...     i = db.add("{}", "h' = tanh(affine(x) + affine(h))", "k1", [], "init", seed=0, generation=0)
...     db.mark_running(i)
...     db.finish(i, {"val": 0.5}, [{"step": 10, "val": 0.5}], {"val": 0.5, "params": 12}, seconds=1.5)
...     db.find_done("k1").metrics
{'val': 0.5}
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from growrnn.errors import ArgumentError, SearchError, check_choice, check_int, format_message

__all__ = ["SCHEMA_VERSION", "STATUSES", "Archive", "CandidateRow", "ConfirmationRow", "GenerationRow", "RungRow",
           "decode_state", "encode_state"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
FORMAT = "growrnn-search"
STATUSES = ("pending", "running", "done", "failed")
#: The tables every archive has (from schema 1 on); later ones come from :data:`_MIGRATIONS`.
TABLES = ("meta", "candidates", "generations")
#: the file that names the archive a side folder (weights, rung checkpoints) belongs to
ARCHIVE_MARK = "archive.txt"
DAMAGED_HINT = "the archive was edited or damaged; restore a copy, or start the search again with a new --db"

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE candidates (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, genome_json TEXT NOT NULL, genome_text TEXT NOT NULL,
    parents TEXT NOT NULL, operator TEXT NOT NULL, seed INTEGER NOT NULL, generation INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN {STATUSES}), metrics TEXT, curve TEXT, objectives TEXT,
    error TEXT, attempts INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL, seconds REAL);
CREATE INDEX candidates_by_key ON candidates (key, status);
CREATE INDEX candidates_by_status ON candidates (status, generation);
CREATE TABLE generations (
    gen INTEGER PRIMARY KEY, population TEXT NOT NULL, state TEXT NOT NULL, stats TEXT NOT NULL,
    created REAL NOT NULL);
"""

_CONFIRMATIONS = f"""
CREATE TABLE confirmations (
    key TEXT NOT NULL, seed_index INTEGER NOT NULL, candidate INTEGER NOT NULL REFERENCES candidates (id),
    seed INTEGER NOT NULL, status TEXT NOT NULL CHECK (status IN {STATUSES}), metrics TEXT, curve TEXT,
    objectives TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL, seconds REAL,
    PRIMARY KEY (key, seed_index));
"""

_RUNGS = f"""
CREATE TABLE rungs (
    candidate INTEGER NOT NULL REFERENCES candidates (id), rung INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN {STATUSES}), metrics TEXT, curve TEXT, objectives TEXT, error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL, seconds REAL, steps INTEGER, score REAL,
    promoted INTEGER, PRIMARY KEY (candidate, rung));
"""

#: schema version -> (the statements that bring an archive of the version before up to it, the
#: tables they add). A writable open upgrades an older archive; nothing is ever dropped.
_MIGRATIONS: dict[int, tuple[str, tuple[str, ...]]] = {2: (_CONFIRMATIONS, ("confirmations",)),
                                                        3: (_RUNGS, ("rungs",))}


class _Outcome:
    """What a row of trained results (a candidate, a confirmation run, a rung) shares: its figures."""

    status: str
    metrics: dict[str, Any] | None
    objectives: dict[str, float] | None

    @property
    def values(self) -> dict[str, Any]:
        """Its figures in one dict, as :func:`~growrnn.search.selection.objective_matrix` reads
        them: ``metrics`` overlaid with ``objectives`` (the objectives win; ``diverged`` comes
        from the metrics); a row that is not done (or has no objectives) is
        ``{"failed": True}``, worst in every objective."""
        if self.status != "done" or self.objectives is None:
            return {"failed": True}
        return {**(self.metrics or {}), **self.objectives}


@dataclass(frozen=True)
class CandidateRow(_Outcome):
    """One candidate. ``metrics``/``curve``/``objectives`` are ``None`` until it is done;
    ``started``/``finished`` are Unix times; ``seconds`` is the evaluation's own duration."""

    id: int
    key: str
    genome_json: str
    genome_text: str
    parents: tuple[int, ...]
    operator: str
    seed: int
    generation: int
    status: str
    metrics: dict[str, Any] | None
    curve: list[dict[str, Any]] | None
    objectives: dict[str, float] | None
    error: str | None
    attempts: int
    started: float | None
    finished: float | None
    seconds: float | None


@dataclass(frozen=True)
class ConfirmationRow(_Outcome):
    """One from-scratch retraining of a cell (:mod:`growrnn.search.confirm`): the cell's canonical
    ``key``, which of its seeds (``seed_index``, and the training ``seed`` it stands for), the
    ``candidate`` whose genome was trained, and the same status and result fields as a
    :class:`CandidateRow`."""

    key: str
    seed_index: int
    candidate: int
    seed: int
    status: str
    metrics: dict[str, Any] | None
    curve: list[dict[str, Any]] | None
    objectives: dict[str, float] | None
    error: str | None
    attempts: int
    started: float | None
    finished: float | None
    seconds: float | None


@dataclass(frozen=True)
class RungRow(_Outcome):
    """One rung of one candidate (:mod:`growrnn.search.rungs`): the same status and result fields
    as a :class:`CandidateRow` for that rung's training alone, the optimizer ``steps`` it spent,
    the ``score`` it was ranked on for promotion (its ``val``, or the predicted final ``val``) and
    the decision: ``promoted`` is ``None`` until the rung's cohort is decided."""

    candidate: int
    rung: int
    status: str
    metrics: dict[str, Any] | None
    curve: list[dict[str, Any]] | None
    objectives: dict[str, float] | None
    error: str | None
    attempts: int
    started: float | None
    finished: float | None
    seconds: float | None
    steps: int | None
    score: float | None
    promoted: bool | None


@dataclass(frozen=True)
class GenerationRow:
    """A saved generation: its population (candidate ids), the loop's opaque ``state`` and
    ``stats``, both as they were saved (JSON values), and when it was saved (Unix time)."""

    gen: int
    population: tuple[int, ...]
    state: Any
    stats: dict[str, Any]
    created: float


def _dumps(value: Any, argument: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ArgumentError(argument, allowed="JSON values (dict, list, str, int, float, bool, None)",
                            received=f"{type(value).__name__} ({err})",
                            hint="encode RNGs and arrays with growrnn.search.storage.encode_state") from None


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _is_int(value: object, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


class Archive:
    """A search's SQLite archive; make one with :meth:`Archive.open`. Use as a context manager or
    call :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, config: dict[str, Any], lock: IO[bytes] | None = None,
                 read_only: bool = False):
        self._conn, self.path, self.config, self._lock, self.read_only = conn, path, config, lock, read_only
        self._tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, config: Mapping[str, Any] | None = None, *,
             neutral: Collection[str] | None = None, timeout: float = 30.0, read_only: bool = False) -> Archive:
        """Create the archive at ``path`` or reopen it.

        Args:
            path: the database file (parent folders are created).
            config: the search's config (JSON values). Stored on creation; on reopen it must equal
                the stored one except in ``neutral`` keys, else :class:`SearchError` names the keys
                that differ. ``None`` opens an existing archive with its stored config.
            neutral: dotted config keys (a prefix covers its sub-keys) allowed to differ on reopen
                (the stored config is then updated to ``config``); ``None``: the keys a
                :class:`~growrnn.search.config.SearchConfig` marks as free to change on resume
                (:data:`growrnn.search.config.NEUTRAL`).
            timeout: seconds to wait for a lock held by another connection.
            read_only: open an existing archive to read only (no lock, nothing written; the search
                may be running). Writing through it raises :class:`SearchError`.
        """
        path = Path(path)
        if neutral is None:
            from growrnn.search.config import NEUTRAL as neutral
        if (config is None or read_only) and not path.is_file():
            raise ArgumentError("path", allowed="an existing archive when config is None or read_only is set",
                                received=str(path), hint="pass the search config to create a new archive")
        text = _dumps(dict(config), "config") if config is not None else None
        lock, conn = None, None
        if not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = _lock(path)
            except OSError as e:  # a parent that is a file, a folder that cannot be written
                raise ArgumentError("path", allowed="a database file in a folder that can be made and written",
                                    received=str(path), hint=f"{e.strerror or e}; the search's --db names "
                                                             "that file") from None
        try:
            if read_only:
                conn = _connect_read_only(path, timeout)
            else:
                conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
            # read first: an unrelated file is refused before anything (WAL mode included) is written
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            created = not tables and text is not None and not read_only
            if created:
                conn.execute("PRAGMA journal_mode=WAL")
                cls._create(conn, text, config)
                log.info("created search archive %s", path)
                tables = set(TABLES)
            stored = cls._check(conn, path, tables, None if read_only else text, neutral)
            if not read_only:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                cls._migrate(conn, path, announce=not created)
        except sqlite3.DatabaseError as err:
            if conn is not None:
                conn.close()
            _unlock(lock)
            raise SearchError(format_message(f"{path} is not a readable SQLite database ({err})",
                                             hint="pass the path of a growrnn search archive or a new file")) from err
        except BaseException:
            if conn is not None:
                conn.close()
            _unlock(lock)
            raise
        return cls(conn, path, stored, lock, read_only)

    @staticmethod
    def _create(conn: sqlite3.Connection, text: str, config: Mapping[str, Any] | None) -> None:
        meta = {"format": FORMAT, "schema_version": "1", "config": text,
                "seed": json.dumps((config or {}).get("seed")), "created": datetime.now(timezone.utc).isoformat()}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _migrate(conn: sqlite3.Connection, path: Path, announce: bool = True) -> None:
        """Bring a writable archive up to :data:`SCHEMA_VERSION`, one version per transaction
        (a new archive is created at schema 1 and comes up the same way, without a log line per
        version unless ``announce``)."""
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        for target in range(int(version) + 1, SCHEMA_VERSION + 1):
            statements, _ = _MIGRATIONS[target]
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(target),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if announce:
                log.info("archive %s: schema %d -> %d", path, target - 1, target)

    @staticmethod
    def _check(conn: sqlite3.Connection, path: Path, tables: set[str], text: str | None,
               neutral: Collection[str]) -> dict[str, Any]:
        meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("format") != FORMAT:
            raise SearchError(format_message(f"{path} is not a growrnn search archive",
                                             hint="choose a new path for the search's database"))
        version = meta.get("schema_version")
        known = [str(v) for v in range(1, SCHEMA_VERSION + 1)]
        if version not in known:
            raise SearchError(format_message(f"{path} has archive schema {version}", allowed=", ".join(known),
                                             hint="open it with the growrnn that made it"))
        expected = [*TABLES, *(t for v in range(2, int(version) + 1) for t in _MIGRATIONS[v][1])]
        missing = [t for t in expected if t not in tables]
        if missing:
            raise SearchError(format_message(f"the archive {path} has lost its table(s) {', '.join(missing)}",
                                             hint=DAMAGED_HINT))
        try:
            stored = json.loads(meta["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise SearchError(format_message(f"the archive {path} holds no readable config ({err!r})",
                                             hint=DAMAGED_HINT)) from None
        if text is None:
            return stored
        given = json.loads(text)
        old, new = _flatten(stored), _flatten(given)
        # a key the stored config lacks is a feature added to growrnn since, which that search had
        # off: it matches a given None (the off value of every optional feature)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k, ...) != new.get(k, ...)
                         and not (k not in old and new[k] is None))
        differ = [k for k in changed if not any(k == n or k.startswith(n + ".") for n in neutral)]
        if differ:
            what = "; ".join(f"{k}: stored {old.get(k, '<missing>')!r}, given {new.get(k, '<missing>')!r}"
                             for k in differ)
            raise SearchError(format_message(
                f"the archive {path} belongs to a search with another config (keys {', '.join(differ)} differ)",
                received=what, hint="resume with the stored config (Archive.open(path) reads it) or give a new "
                f"path; only {', '.join(sorted(neutral))} may change on resume"))
        if changed:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                             [(text, "config"), (json.dumps(given.get("seed")), "seed")])
            conn.execute("COMMIT")
            log.info("archive %s: config keys %s changed on resume", path, ", ".join(changed))
        return given

    # ---- candidates ----------------------------------------------------------------------------
    def add(self, genome_json: str, genome_text: str, key: str, parents: Sequence[int], operator: str,
            seed: int, generation: int) -> int:
        """Record a new ``pending`` candidate and return its id. ``parents`` are ids already in
        the archive (empty for an initial genome); ``operator`` names how it was made."""
        self._writable()
        for name, value in (("genome_json", genome_json), ("genome_text", genome_text), ("key", key),
                            ("operator", operator)):
            if not isinstance(value, str) or not value:
                raise ArgumentError(name, allowed="a non-empty str", received=value)
        if not _is_int(seed, -(2**63)) or not _is_int(generation):
            raise ArgumentError("seed/generation", allowed="an int seed and an int generation >= 0",
                                received=(seed, generation))
        ids = list(parents)
        self._check_ids(ids, "parents")
        cur = self._conn.execute(
            "INSERT INTO candidates (key, genome_json, genome_text, parents, operator, seed, generation, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
            (key, genome_json, genome_text, json.dumps(ids), operator, seed, generation))
        assert cur.lastrowid is not None  # an INSERT always sets it
        return cur.lastrowid

    def get(self, id: int) -> CandidateRow:
        """The candidate with this id (:class:`ArgumentError` if there is none)."""
        row = self._conn.execute("SELECT * FROM candidates WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise ArgumentError("id", allowed="the id of a candidate in this archive", received=id,
                                hint="ids come from Archive.add")
        return self._row(row)

    def find_done(self, key: str, usable: Callable[[CandidateRow], bool] | None = None) -> CandidateRow | None:
        """The first finished candidate with this canonical key (the first for which ``usable``
        holds, when given), or ``None`` (the search's cache)."""
        for row in self._conn.execute("SELECT * FROM candidates WHERE key = ? AND status = 'done' ORDER BY id",
                                      (key,)):
            candidate = self._row(row)
            if usable is None or usable(candidate):
                return candidate
        return None

    def rows(self, status: str | None = None, generation: int | None = None) -> list[CandidateRow]:
        """Candidates (optionally of one status and/or generation), by id."""
        if status is not None and status not in STATUSES:
            raise ArgumentError("status", allowed=", ".join(STATUSES), received=status)
        sql, args = "SELECT * FROM candidates WHERE (? IS NULL OR status = ?) AND (? IS NULL OR generation = ?)", \
            (status, status, generation, generation)
        return [self._row(r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    def pending(self, generation: int | None = None) -> list[CandidateRow]:
        """Candidates waiting for evaluation (optionally of one generation), by id."""
        return self.rows("pending", generation)

    def counts(self) -> dict[str, int]:
        """Number of candidates per status (every status present, 0 if none)."""
        found = dict(self._conn.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status"))
        return {s: int(found.get(s, 0)) for s in STATUSES}

    def mark_running(self, id: int) -> None:
        """``pending`` → ``running``: count an attempt and stamp ``started``."""
        self._writable()
        self._move(id, ("pending",), "status = 'running', attempts = attempts + 1, started = ?", (time.time(),))

    def finish(self, id: int, metrics: Mapping[str, Any], curve: Sequence[Mapping[str, Any]],
               objectives: Mapping[str, float], seconds: float) -> None:
        """``pending``/``running`` → ``done`` with its results: ``metrics`` (e.g. ``Result.as_dict()``),
        the learning ``curve`` (one dict per validation), the ``objectives`` by name, and the
        evaluation's duration in ``seconds``. NaN and inf are stored as such."""
        self._writable()
        values = (_dumps(dict(metrics), "metrics"), _dumps([dict(p) for p in curve], "curve"),
                  _dumps(dict(objectives), "objectives"), float(seconds), time.time())
        self._move(id, ("pending", "running"),
                   "status = 'done', metrics = ?, curve = ?, objectives = ?, seconds = ?, finished = ?, error = NULL",
                   values)

    def fail(self, id: int, error: str, status: str = "failed") -> None:
        """``pending``/``running`` → ``failed`` (or back to ``pending`` to retry), recording ``error``."""
        self._writable()
        check_choice("status", status, ("failed", "pending"), hint="pending puts the job back to be run again")
        self._move(id, ("pending", "running"), "status = ?, error = ?, finished = ?",
                   (status, str(error), time.time() if status == "failed" else None))

    def reset_running(self) -> list[int]:
        """After a crash: every ``running`` candidate (and confirmation run) back to ``pending``;
        returns the candidates' ids."""
        self._writable()
        with self._transaction():
            ids = [r[0] for r in self._conn.execute("SELECT id FROM candidates WHERE status = 'running' ORDER BY id")]
            self._conn.execute("UPDATE candidates SET status = 'pending', started = NULL WHERE status = 'running'")
            side = sum(self._conn.execute(f"UPDATE {table} SET status = 'pending', started = NULL "
                                          "WHERE status = 'running'").rowcount for table in ("confirmations", "rungs"))
        if ids or side:
            log.info("archive %s: %d interrupted evaluations and %d rung or confirmation runs back to pending",
                     self.path, len(ids), side)
        return ids

    # ---- rungs ---------------------------------------------------------------------------------
    def add_rungs(self, candidates: Sequence[int], rung: int,
                  decided: Sequence[tuple[int, int, float | None, bool]] = ()) -> None:
        """In one transaction: record the ``decided`` promotions (``(candidate, rung, score,
        promoted)`` of rows already done) and plan rung ``rung`` of ``candidates`` as ``pending``
        rows (a row that exists is left as it is). One transaction, so that a crash never leaves a
        decision without the next rung's rows or the other way round."""
        self._writable()
        check_int("rung", rung, 0)
        ids = list(candidates)
        self._check_ids(ids, "candidates")
        with self._transaction():
            for candidate, r, score, promoted in decided:
                cur = self._conn.execute("UPDATE rungs SET score = ?, promoted = ? WHERE candidate = ? AND rung = ? "
                                         "AND status IN ('done', 'failed')",
                                         (None if score is None else float(score), int(bool(promoted)), candidate, r))
                if cur.rowcount != 1:
                    raise ArgumentError("decided", allowed="finished rungs of this archive", received=(candidate, r),
                                        hint="decide a rung's promotions once all its runs are done or failed")
            self._conn.executemany("INSERT OR IGNORE INTO rungs (candidate, rung, status) VALUES (?, ?, 'pending')",
                                   [(i, rung) for i in ids])

    def rungs(self, candidates: Sequence[int] | None = None, rung: int | None = None) -> list[RungRow]:
        """Rung rows (of some candidates and/or one rung), by candidate then rung; empty for an
        archive opened read-only before it had the table."""
        if "rungs" not in self._tables:
            return []
        sql, args = "SELECT * FROM rungs WHERE (? IS NULL OR rung = ?)", [rung, rung]
        if candidates is not None:
            ids = [int(i) for i in candidates]
            if not ids:
                return []
            sql += f" AND candidate IN ({','.join('?' * len(ids))})"
            args += ids
        return [self._rung(r) for r in self._conn.execute(sql + " ORDER BY candidate, rung", args)]

    def mark_rung_running(self, candidate: int, rung: int) -> None:
        """A rung run ``pending`` → ``running`` (an attempt counted, ``started`` stamped)."""
        self._writable()
        self._move_side("rungs", {"candidate": candidate, "rung": rung}, ("pending",),
                        "status = 'running', attempts = attempts + 1, started = ?", (time.time(),))

    def finish_rung(self, candidate: int, rung: int, metrics: Mapping[str, Any], curve: Sequence[Mapping[str, Any]],
                    objectives: Mapping[str, float], seconds: float, steps: int) -> None:
        """A rung run → ``done`` with its results and the optimizer ``steps`` it trained."""
        self._writable()
        values = (_dumps(dict(metrics), "metrics"), _dumps([dict(p) for p in curve], "curve"),
                  _dumps(dict(objectives), "objectives"), float(seconds), time.time(), int(steps))
        self._move_side("rungs", {"candidate": candidate, "rung": rung}, ("pending", "running"),
                        "status = 'done', metrics = ?, curve = ?, objectives = ?, seconds = ?, finished = ?, "
                        "steps = ?, error = NULL", values)

    def fail_rung(self, candidate: int, rung: int, error: str) -> None:
        """A rung run → ``failed``, recording ``error``."""
        self._writable()
        self._move_side("rungs", {"candidate": candidate, "rung": rung}, ("pending", "running"),
                        "status = 'failed', error = ?, finished = ?", (str(error), time.time()))

    # ---- confirmations -------------------------------------------------------------------------
    def add_confirmation(self, candidate: int, seed_index: int, seed: int) -> bool:
        """Plan the from-scratch run ``seed_index`` (with training ``seed``) of ``candidate``'s cell
        as a ``pending`` row, unless its cell (canonical key) already has that run; returns whether
        a row was added."""
        self._writable()
        if not _is_int(seed_index) or not _is_int(seed):
            raise ArgumentError("seed_index/seed", allowed="ints >= 0", received=(seed_index, seed))
        key = self.get(candidate).key  # an ArgumentError for an unknown id
        cur = self._conn.execute("INSERT OR IGNORE INTO confirmations (key, seed_index, candidate, seed, status) "
                                 "VALUES (?, ?, ?, ?, 'pending')", (key, seed_index, candidate, seed))
        return cur.rowcount == 1

    def confirmations(self, key: str | None = None, status: str | None = None) -> list[ConfirmationRow]:
        """Confirmation runs (optionally of one cell key and/or status), by key then seed index;
        empty for an archive opened read-only before it had the table."""
        if status is not None and status not in STATUSES:
            raise ArgumentError("status", allowed=", ".join(STATUSES), received=status)
        if "confirmations" not in self._tables:
            return []
        sql = "SELECT * FROM confirmations WHERE (? IS NULL OR key = ?) AND (? IS NULL OR status = ?)"
        rows = self._conn.execute(sql + " ORDER BY key, seed_index", (key, key, status, status))
        return [self._confirmation(r) for r in rows]

    def mark_confirming(self, key: str, seed_index: int) -> None:
        """A confirmation run ``pending`` → ``running`` (an attempt counted, ``started`` stamped)."""
        self._writable()
        self._move_side("confirmations", {"key": key, "seed_index": seed_index}, ("pending",),
                        "status = 'running', attempts = attempts + 1, started = ?", (time.time(),))

    def finish_confirmation(self, key: str, seed_index: int, metrics: Mapping[str, Any],
                            curve: Sequence[Mapping[str, Any]], objectives: Mapping[str, float],
                            seconds: float) -> None:
        """A confirmation run → ``done`` with its results (as :meth:`finish`)."""
        self._writable()
        values = (_dumps(dict(metrics), "metrics"), _dumps([dict(p) for p in curve], "curve"),
                  _dumps(dict(objectives), "objectives"), float(seconds), time.time())
        self._move_side("confirmations", {"key": key, "seed_index": seed_index}, ("pending", "running"),
                        "status = 'done', metrics = ?, curve = ?, objectives = ?, seconds = ?, finished = ?, "
                        "error = NULL", values)

    def fail_confirmation(self, key: str, seed_index: int, error: str) -> None:
        """A confirmation run → ``failed``, recording ``error``."""
        self._writable()
        self._move_side("confirmations", {"key": key, "seed_index": seed_index}, ("pending", "running"),
                        "status = 'failed', error = ?, finished = ?", (str(error), time.time()))

    def save_confirmation_report(self, report: Mapping[str, Any]) -> None:
        """Store the latest confirmation's summary (JSON values), replacing the previous one."""
        self._writable()
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('confirmation', ?)",
                           (_dumps(dict(report), "report"),))

    def confirmation_report(self) -> dict[str, Any] | None:
        """The summary :meth:`save_confirmation_report` stored last, or ``None``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'confirmation'").fetchone()
        if row is None:
            return None
        with self._decoding("the confirmation report"):
            return dict(json.loads(row[0]))

    # ---- generations ---------------------------------------------------------------------------
    def save_generation(self, gen: int, population: Sequence[int], state: Any, stats: Mapping[str, Any]) -> None:
        """Record generation ``gen`` (replacing an earlier save of it): the ids of its population,
        the loop's ``state`` (JSON values; see :func:`encode_state`) and ``stats``."""
        self._writable()
        check_int("gen", gen, 0)
        ids = list(population)
        self._check_ids(ids, "population")
        self._conn.execute("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)",
                           (gen, json.dumps(ids), _dumps(state, "state"), _dumps(dict(stats), "stats"), time.time()))

    @property
    def identity(self) -> str:
        """What tells this archive from every other: the time it was created (to the microsecond;
        a copy of the file is the same archive)."""
        (value,) = self._conn.execute("SELECT value FROM meta WHERE key = 'created'").fetchone()
        return str(value)

    def claim(self, folder: Path) -> None:
        """Mark ``folder`` (a side folder named after the database: weights, rung checkpoints) as
        this archive's, or refuse it if it is another's: ``a.db`` and ``a.sqlite`` name the same
        folders, and two searches writing there would overwrite and prune each other's files. A
        folder without a mark (new, or of an older growrnn) is marked."""
        mark = folder / ARCHIVE_MARK
        if mark.is_file():
            theirs = mark.read_text().strip()
            if theirs != self.identity:
                raise SearchError(format_message(
                    f"{folder} belongs to another search archive (created {theirs}) than {self.path} "
                    f"(created {self.identity})",
                    hint="two databases whose names differ only in their suffix (a.db, a.sqlite) share their "
                         "side folders; give this search a database of another name, or move the other "
                         "search's folders away"))
            return
        folder.mkdir(parents=True, exist_ok=True)
        mark.write_text(self.identity + "\n")

    def last_generation(self) -> GenerationRow | None:
        """The saved generation with the highest number, or ``None`` before the first save."""
        row = self._conn.execute("SELECT * FROM generations ORDER BY gen DESC LIMIT 1").fetchone()
        return None if row is None else self._generation(row)

    def generations(self) -> list[GenerationRow]:
        """Every saved generation, in order."""
        return [self._generation(r) for r in self._conn.execute("SELECT * FROM generations ORDER BY gen")]

    # ---- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection and release the lock (idempotent)."""
        self._conn.close()
        _unlock(self._lock)
        self._lock = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- helpers -------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.read_only:
            raise SearchError(format_message(f"the archive {self.path} was opened read-only",
                                             hint="open it with Archive.open(path) to write"))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _check_ids(self, ids: list[int], argument: str) -> None:
        if not all(_is_int(i, 1) for i in ids):
            raise ArgumentError(argument, allowed="a list of candidate ids (ints)", received=ids)
        if ids:
            marks = ",".join("?" * len(set(ids)))
            found = {r[0] for r in self._conn.execute(f"SELECT id FROM candidates WHERE id IN ({marks})",
                                                      sorted(set(ids)))}
            missing = sorted(set(ids) - found)
            if missing:
                raise ArgumentError(argument, allowed="ids of candidates already in this archive", received=missing,
                                    hint="add a candidate before naming it")

    def _move(self, id: int, sources: tuple[str, ...], assignments: str, values: tuple[Any, ...]) -> None:
        marks = ",".join("?" * len(sources))
        cur = self._conn.execute(f"UPDATE candidates SET {assignments} WHERE id = ? AND status IN ({marks})",
                                 (*values, id, *sources))
        if cur.rowcount == 0:
            status = self.get(id).status  # raises ArgumentError for an unknown id
            raise SearchError(format_message(f"candidate {id} is '{status}'", allowed=" or ".join(sources),
                                             hint="each candidate goes pending -> running -> done/failed once; "
                                             "after a crash call reset_running()"))

    def _move_side(self, table: str, where: Mapping[str, Any], sources: tuple[str, ...], assignments: str,
                   values: tuple[Any, ...]) -> None:
        """``_move`` for the side tables (confirmations, rungs): the row named by ``where``."""
        marks = ",".join("?" * len(sources))
        match = " AND ".join(f"{k} = ?" for k in where)
        cur = self._conn.execute(f"UPDATE {table} SET {assignments} WHERE {match} AND status IN ({marks})",
                                 (*values, *where.values(), *sources))
        if cur.rowcount == 0:
            found = self._conn.execute(f"SELECT status FROM {table} WHERE {match}", tuple(where.values())).fetchone()
            what = ", ".join(f"{k} {v}" for k, v in where.items())
            if found is None:
                planner = "add_confirmation" if table == "confirmations" else "add_rungs"
                raise ArgumentError("/".join(where), allowed=f"a row of the {table} table", received=what,
                                    hint=f"plan it first (Archive.{planner})")
            raise SearchError(format_message(f"the {table} row ({what}) is '{found[0]}'", allowed=" or ".join(sources),
                                             hint="each run goes pending -> running -> done/failed once; after a "
                                             "crash call reset_running()"))

    def _rung(self, r: tuple[Any, ...]) -> RungRow:
        with self._decoding(f"rung {r[1]} of candidate {r[0]}"):
            return RungRow(candidate=r[0], rung=r[1], status=r[2], metrics=_loads(r[3]), curve=_loads(r[4]),
                           objectives=_loads(r[5]), error=r[6], attempts=r[7], started=r[8], finished=r[9],
                           seconds=r[10], steps=r[11], score=r[12], promoted=None if r[13] is None else bool(r[13]))

    def _confirmation(self, r: tuple[Any, ...]) -> ConfirmationRow:
        with self._decoding(f"confirmation run {r[1]} of cell {r[0]}"):
            return ConfirmationRow(key=r[0], seed_index=r[1], candidate=r[2], seed=r[3], status=r[4],
                                   metrics=_loads(r[5]), curve=_loads(r[6]), objectives=_loads(r[7]), error=r[8],
                                   attempts=r[9], started=r[10], finished=r[11], seconds=r[12])

    def _row(self, r: tuple[Any, ...]) -> CandidateRow:
        with self._decoding(f"candidate {r[0]}"):
            return CandidateRow(id=r[0], key=r[1], genome_json=r[2], genome_text=r[3],
                                parents=tuple(json.loads(r[4])), operator=r[5], seed=r[6], generation=r[7],
                                status=r[8], metrics=_loads(r[9]), curve=_loads(r[10]), objectives=_loads(r[11]),
                                error=r[12], attempts=r[13], started=r[14], finished=r[15], seconds=r[16])

    def _generation(self, r: tuple[Any, ...]) -> GenerationRow:
        with self._decoding(f"generation {r[0]}"):
            return GenerationRow(gen=r[0], population=tuple(json.loads(r[1])), state=json.loads(r[2]),
                                 stats=json.loads(r[3]), created=r[4])

    @contextmanager
    def _decoding(self, what: str) -> Iterator[None]:
        try:
            yield
        except (TypeError, ValueError, IndexError) as err:
            raise SearchError(format_message(f"the archive {self.path} holds a broken row: {what} does not "
                                             f"decode ({type(err).__name__}: {err})", hint=DAMAGED_HINT)) from None


def _lock(path: Path) -> IO[bytes] | None:
    """Take the exclusive lock ``<db>.lock`` of a writable archive (None where the OS has no
    ``fcntl``); a second writer gets :class:`SearchError` at once instead of waiting."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one search per file is then up to the user
        return None
    lock_path = path.with_name(path.name + ".lock")
    handle = open(lock_path, "a+b")  # noqa: SIM115 - held open for the archive's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "another process"
        handle.close()
        raise SearchError(format_message(
            f"the archive {path} is in use by another search ({holder})",
            hint="wait for it to finish, or give this search its own --db; growrnn search export and "
                 "Archive.open(path, read_only=True) can read it while it runs")) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}".encode())
    handle.flush()
    return handle


def _unlock(handle: IO[bytes] | None) -> None:
    if handle is not None and not handle.closed:
        handle.close()  # closing the file releases its flock


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that cannot write. SQLite reads a WAL archive read-only through its ``-shm``
    file, which it cannot create in a read-only folder; with no ``-wal`` file beside the archive
    (no search running, none crashed) every row is in the main file, which is then read as
    immutable."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        conn.execute("SELECT name FROM sqlite_master LIMIT 1")
    except sqlite3.OperationalError:
        if Path(f"{path}-wal").exists():
            raise
        conn.close()
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout, isolation_level=None)
    return conn


# ------------------------------------------------------------------------------------ RNG states
# Exact JSON round trips of RNG states, for the saved generations: random.Random.getstate() is a
# tuple (JSON has none) and numpy bit generators hold uint32/uint64 arrays and 128-bit ints.
_TAGS = ("__random__", "__numpy_generator__", "__ndarray__", "__bytes__")


def encode_state(value: Any, _where: str = "state") -> Any:
    """``value`` as JSON values, exactly: ``random.Random`` and ``numpy.random.Generator`` objects
    (their full state), numpy arrays and scalars, ``bytes`` (e.g. a ``torch.Generator`` state as
    ``bytes(t.numpy())``), nested in dicts with str keys, lists and tuples (which become lists),
    and JSON scalars. Anything else is an :class:`ArgumentError` naming where it was.

    >>> import json, random
    >>> rng = random.Random(1)
    >>> copy = decode_state(json.loads(json.dumps(encode_state({"rng": rng}))))["rng"]
    >>> copy.random() == rng.random()
    True
    """
    if isinstance(value, random.Random):
        version, internal, gauss_next = value.getstate()
        return {"__random__": [version, list(internal), gauss_next]}
    if isinstance(value, np.random.Generator):
        return {"__numpy_generator__": encode_state(value.bit_generator.state, _where)}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode_state(v, f"{_where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k in _TAGS:
                raise ArgumentError(f"{_where} key", allowed=f"str keys other than {', '.join(_TAGS)}", received=k)
            out[k] = encode_state(v, f"{_where}[{k!r}]")
        return out
    raise ArgumentError(_where, allowed="random.Random, numpy Generator/array/scalar, bytes, dict, list, tuple, "
                        "str, int, float, bool, None", received=type(value).__name__,
                        hint="store a torch.Generator as bytes(gen.get_state().numpy())")


def decode_state(value: Any) -> Any:
    """Invert :func:`encode_state`: tagged dicts become new ``random.Random`` /
    ``numpy.random.Generator`` objects (same bit generator, same state), arrays and bytes."""
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__random__" in value:
        version, internal, gauss_next = value["__random__"]
        rng = random.Random()
        rng.setstate((version, tuple(internal), gauss_next))
        return rng
    if "__numpy_generator__" in value:
        state = decode_state(value["__numpy_generator__"])
        kind = getattr(np.random, str(state.get("bit_generator")), None)
        if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
            raise ArgumentError("state", allowed="a numpy bit generator name (PCG64, MT19937, ...)",
                                received=state.get("bit_generator"))
        bit_generator = kind()
        bit_generator.state = state
        return np.random.Generator(bit_generator)
    if "__ndarray__" in value:
        return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    return {k: decode_state(v) for k, v in value.items()}
