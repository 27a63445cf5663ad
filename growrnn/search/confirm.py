"""Confirmation: the cells a search hands out, retrained from scratch on several seeds.

**Why.** With weight inheritance a child starts from its parent's trained weights, so a search's
score ranks *lineages* (a cell plus what its ancestors already learnt), not cells: on the JSB
search the favourite (cell 199, test 8.387 in the search) scored 8.879 retrained from scratch,
behind smaller cells, because inheritance had given children a median 0.2 nats. Inheritance
stays as a speed-up of the search; what a user receives is confirmed.

**What.** :func:`run_confirmation` (called by :func:`~growrnn.search.loop.run_search` when the
last generation ends, and by :func:`confirm_search` / ``growrnn search confirm --db`` on demand)
takes the *targets*: the first Pareto front of the last saved generation's population (over the
search's objectives, as :func:`~growrnn.search.export.export_front` takes it) and the seeded
baselines (generation 0's ``init`` candidates: the config's ``initial`` cells). Each target cell
(one per canonical key) is trained ``confirm.seeds`` times from fresh weights -- no parent, no
early stop -- on the candidates' budget, task, model, trainer and growth options, through the
same job (:func:`~growrnn.search.job.run_candidate`) and the same executors as the candidates.

**Seeds.** Run ``k`` of every cell trains with :func:`confirm_seed` ``(search seed, k)``: the
same seeds for every cell (common random numbers: the same data order for all of them), so the
differences between cells are less the seeds' and more the cells'. One run is deterministic
given its seed, as a candidate's evaluation is (one torch thread, ``evaluate`` seeds everything).

**Resume.** The runs are written to the archive's ``confirmations`` table as ``pending`` rows,
keyed by (cell key, seed index), before any trains; a run interrupted by ``kill -9`` goes back to
``pending`` when the archive is reopened (:meth:`~growrnn.search.storage.Archive.reset_running`)
and only runs that are not ``done`` are trained, so resuming repeats nothing already stored.
Raising ``confirm.seeds`` later adds only the new seeds; a cell already confirmed for an earlier
front is not trained again.

**Report.** :func:`confirmed_cells` ranks the targets by the mean of the confirmed ``val`` (best
first), with its standard deviation, the confirmed test metric, and the search's own score beside
it; :func:`run_confirmation` stores that table with the Spearman rank correlation between the
search's score and the confirmed mean (over the cells with both finite) in the archive
(:meth:`~growrnn.search.storage.Archive.confirmation_report`), logs it, and writes it to
TensorBoard (:func:`~growrnn.search.report.log_confirmation`).

>>> confirm_seed(0, 0) == confirm_seed(0, 0) != confirm_seed(0, 1)
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from growrnn.errors import SearchError, format_message
from growrnn.executors import Executor, Job
from growrnn.search.report import first_front
from growrnn.search.selection import spearman
from growrnn.search.storage import Archive, CandidateRow, ConfirmationRow

__all__ = ["ROLES", "ConfirmedCell", "confirm_search", "confirm_seed", "confirmation_targets", "confirmed_cells",
           "rank_cells", "run_confirmation", "summary"]
log = logging.getLogger(__name__)

#: What a confirmed cell is to the search: on the last generation's first front, a seeded baseline.
ROLES = ("front", "baseline")
#: Mixed into confirmation seeds so that they differ from every candidate's training seed.
_TAG = 0x636F6E66  # "conf"


def confirm_seed(search_seed: int, index: int) -> int:
    """The training seed of confirmation run ``index`` of every cell (< 2**31)."""
    return int(np.random.SeedSequence([search_seed, _TAG, index]).generate_state(1)[0]) % 2**31


def _direction(archive: Archive) -> str:
    """The task metric's direction, as the search recorded it (its state, else a candidate's metrics)."""
    last = archive.last_generation()
    found = (last.state or {}).get("direction") if last is not None and isinstance(last.state, dict) else None
    if found is None:
        found = next((r.metrics["direction"] for r in archive.rows("done") if (r.metrics or {}).get("direction")),
                     "min")
    return str(found)


def confirmation_targets(archive: Archive, objectives: Sequence[str],
                         direction: str | None = None) -> list[tuple[CandidateRow, tuple[str, ...]]]:
    """The cells to confirm, one per canonical key, with their :data:`ROLES`: the first front of
    the last saved generation (over ``objectives``, best ``val`` first), then generation 0's
    ``init`` candidates (the seeded baselines). :class:`SearchError` before any generation is saved."""
    last = archive.last_generation()
    if last is None:
        raise SearchError(format_message(f"the archive {archive.path} has no saved generation to confirm",
                                         hint="let the search finish generation 0 (or resume it) first"))
    sense = direction or _direction(archive)
    done = [r for r in (archive.get(i) for i in last.population) if r.status == "done" and r.objectives is not None]
    front = [done[i] for i in first_front(done, list(objectives), sense)] if done else []
    baselines = [r for r in archive.rows(generation=0) if r.operator == "init"]
    out: dict[str, tuple[CandidateRow, list[str]]] = {}
    for role, rows in (("front", front), ("baseline", baselines)):
        for row in rows:
            entry = out.setdefault(row.key, (row, []))
            if role not in entry[1]:
                entry[1].append(role)
    return [(row, tuple(roles)) for row, roles in out.values()]


@dataclass(frozen=True)
class ConfirmedCell:
    """One target cell with its confirmation runs.

    ``candidate`` is the search's row (its ``objectives["val"]`` is the search's score), ``roles``
    from :data:`ROLES`, ``runs`` every stored run of the cell (by seed index; pending and failed
    ones included), ``direction`` the task metric's. A diverged run counts as the worst value."""

    candidate: CandidateRow
    roles: tuple[str, ...]
    runs: tuple[ConfirmationRow, ...]
    direction: str

    def _figures(self, name: str) -> list[float]:
        """``name`` of each finished run that recorded it (a diverged run: the worst value)."""
        worst = math.inf if self.direction == "min" else -math.inf
        out = []
        for run in self.runs:
            values = run.values
            if run.status != "done" or values.get(name) is None:
                continue
            value = float(values[name])
            out.append(worst if values.get("diverged") or not math.isfinite(value) else value)
        return out

    @property
    def vals(self) -> list[float]:
        """The confirmed ``val`` of each finished run (the candidates' ``val`` objective)."""
        return self._figures("val")

    @property
    def tests(self) -> list[float]:
        """The test metric of each finished run that measured one."""
        return self._figures("test")

    @property
    def val_mean(self) -> float:
        """Mean confirmed ``val`` (NaN before any run finished)."""
        return _mean(self.vals)

    @property
    def val_std(self) -> float:
        """Sample standard deviation of the confirmed ``val`` (0 for one run, NaN for none)."""
        return _std(self.vals)

    @property
    def test_mean(self) -> float:
        return _mean(self.tests)

    @property
    def test_std(self) -> float:
        return _std(self.tests)

    @property
    def search_val(self) -> float:
        """The search's score of the cell (its candidate's ``val`` objective; NaN if it failed)."""
        value = (self.candidate.objectives or {}).get("val")
        return float(value) if value is not None and self.candidate.status == "done" else math.nan

    @property
    def done(self) -> int:
        return sum(r.status == "done" for r in self.runs)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        """JSON values: ``id``, ``key``, ``roles``, ``val_mean``, ``val_std``, ``test_mean``,
        ``test_std``, ``search_val``, ``search_test``, ``params``, ``done``, ``failed``
        (non-finite numbers as ``None``)."""
        values = self.candidate.values
        return {"id": self.candidate.id, "key": self.candidate.key, "roles": list(self.roles),
                "val_mean": _json(self.val_mean), "val_std": _json(self.val_std), "test_mean": _json(self.test_mean),
                "test_std": _json(self.test_std), "search_val": _json(self.search_val),
                "search_test": _json(values.get("test")), "params": _json(self._params()), "done": self.done,
                "failed": self.failed}

    def _params(self) -> float:
        """Parameters as confirmed (growth may change them), else the search's count."""
        counts = [float(r.objectives["params"]) for r in self.runs if r.status == "done" and r.objectives]
        if counts:
            return _mean(counts)
        value = self.candidate.values.get("params")
        return float(value) if value is not None else math.nan


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _std(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    if not all(math.isfinite(v) for v in values):
        return math.nan
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _json(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rank_key(cell: ConfirmedCell) -> tuple[int, float, int]:
    """Best confirmed mean first (in the task's direction); unconfirmed cells last, by search score."""
    sign = 1.0 if cell.direction == "min" else -1.0
    mean = cell.val_mean
    if math.isnan(mean):
        score = cell.search_val
        return 2, sign * score if math.isfinite(score) else math.inf, cell.candidate.id
    return (0 if math.isfinite(mean) else 1), sign * mean if math.isfinite(mean) else 0.0, cell.candidate.id


def rank_cells(cells: Sequence[ConfirmedCell]) -> list[ConfirmedCell]:
    """``cells`` best first: by confirmed mean ``val`` in the task's direction; cells whose every
    run diverged next; cells without a finished run last, by the search's score; ties by id."""
    return sorted(cells, key=_rank_key)


def confirmed_cells(archive: Archive, objectives: Sequence[str], direction: str | None = None,
                    seeds: int | None = None) -> list[ConfirmedCell]:
    """The :func:`confirmation_targets` with their runs (the first ``seeds`` of each; ``None``:
    all stored), ranked: best confirmed mean ``val`` first, cells whose every run diverged next,
    cells with no finished run last (by the search's score)."""
    sense = direction or _direction(archive)
    cells = [ConfirmedCell(row, roles, tuple(r for r in archive.confirmations(key=row.key)
                                             if seeds is None or r.seed_index < seeds), sense)
             for row, roles in confirmation_targets(archive, objectives, sense)]
    return rank_cells(cells)


def summary(cells: Sequence[ConfirmedCell], generation: int, seeds: int) -> dict[str, Any]:
    """The stored report: the ranked table, the Spearman correlation of the search's score with the
    confirmed mean over the cells with both finite (``None`` below two), and run counts."""
    rho = spearman([c.search_val for c in cells], [c.val_mean for c in cells])
    compared = sum(math.isfinite(c.search_val) and math.isfinite(c.val_mean) for c in cells)
    return {"generation": generation, "seeds": seeds, "direction": cells[0].direction if cells else "min",
            "spearman": _json(rho), "compared": compared, "cells": [c.as_dict() for c in cells],
            "done": sum(c.done for c in cells), "failed": sum(c.failed for c in cells)}


def run_confirmation(config: Any, archive: Archive, executor: Executor, *,
                     tensorboard: Path | None = None) -> dict[str, Any]:
    """Confirm the targets of the last saved generation with ``config.confirm.seeds`` seeds
    (``config``: the search's :class:`~growrnn.search.config.SearchConfig`; a ``confirm`` of
    ``None`` uses :class:`~growrnn.search.config.ConfirmConfig`'s defaults), store the runs and the
    report in ``archive`` and return the report (see :func:`summary`). Runs already ``done`` are
    not trained again; call :meth:`Archive.reset_running` first after a crash."""
    from tqdm.auto import tqdm

    from growrnn.search.config import ConfirmConfig
    from growrnn.search.job import base_payload, run_candidate

    seeds = (config.confirm or ConfirmConfig()).seeds
    direction = _direction(archive)
    targets = confirmation_targets(archive, config.objectives, direction)
    for row, _ in targets:  # every run is written before any trains
        for k in range(seeds):
            archive.add_confirmation(row.id, k, confirm_seed(config.seed, k))
    keys = {row.key for row, _ in targets}
    runs = [r for r in archive.confirmations() if r.key in keys and r.seed_index < seeds]
    todo = [r for r in runs if r.status == "pending"]
    by_job: dict[str, ConfirmationRow] = {}
    jobs = []
    for run in todo:
        genome_json = archive.get(run.candidate).genome_json
        name = f"{run.key}#{run.seed_index}"
        by_job[name] = run
        jobs.append(Job(name, run_candidate, (base_payload(config, genome_json, run.seed),),
                        timeout_s=config.timeout_s, retries=config.retries))
    log.info("confirmation: %d cells x %d seeds, %d runs to train", len(targets), seeds, len(jobs))
    bar = tqdm(total=len(runs), initial=len(runs) - len(jobs), desc="confirmation", unit="run",
               disable=not getattr(config, "progress", False), leave=False)
    try:
        for job in jobs:
            archive.mark_confirming(by_job[job.key].key, by_job[job.key].seed_index)
        for outcome in executor.run(jobs):
            run = by_job[outcome.key]
            if outcome.ok:
                value = outcome.value
                archive.finish_confirmation(run.key, run.seed_index, value["metrics"], value["curve"],
                                            value["objectives"], value["seconds"])
            else:
                log.warning("confirmation run %d of candidate %d %s after %d attempt(s): %s", run.seed_index,
                            run.candidate, outcome.status, outcome.attempts, outcome.reason)
                archive.fail_confirmation(run.key, run.seed_index,
                                          f"{outcome.status} after {outcome.attempts} attempt(s): {outcome.error}")
            bar.update()
    finally:
        bar.close()
    cells = confirmed_cells(archive, config.objectives, direction, seeds)
    last = archive.last_generation()
    assert last is not None  # confirmation_targets checked it
    report = summary(cells, last.gen, seeds)
    archive.save_confirmation_report(report)
    if tensorboard is not None:
        from growrnn.search.report import log_confirmation

        log_confirmation(tensorboard, report, last.gen)
    best = cells[0] if cells else None
    log.info("confirmation of generation %d: %d cells x %d seeds (%d failed runs); best %s; Spearman rho(search "
             "score, confirmed mean) = %s over %d cells", last.gen, len(cells), seeds, report["failed"],
             f"cell {best.candidate.id} val {best.val_mean:.4g} +- {best.val_std:.2g}" if best else "none",
             "n/a" if report["spearman"] is None else f"{report['spearman']:.3f}", report["compared"])
    return report


def confirm_search(config: Any, db: str | Path, *, executor: Executor | None = None) -> dict[str, Any]:
    """Confirm (or finish confirming) the search stored in ``db`` now, whatever its
    ``confirm`` key says (``None`` takes the default seeds): open the archive with ``config`` (it
    must be the stored config up to the keys that may change on resume, see
    :func:`~growrnn.search.loop.run_search`), put interrupted runs back to pending, and
    :func:`run_confirmation`. ``executor`` overrides the one the config names (the caller then
    closes it). Returns the report."""
    from growrnn.search.config import NEUTRAL, check_config, config_to_dict
    from growrnn.search.loop import search_executor, tensorboard_dir

    check_config(config)
    db = Path(db)
    if not db.is_file():
        raise SearchError(format_message(f"no search archive at {db}",
                                         hint="run the search first: growrnn search --config FILE --db PATH"))
    with Archive.open(db, config_to_dict(config), neutral=NEUTRAL) as archive:
        archive.reset_running()
        owned = executor is None
        ex = executor if executor is not None else search_executor(config)
        try:
            return run_confirmation(config, archive, ex, tensorboard=tensorboard_dir(config, db))
        finally:
            if owned:
                ex.close()
