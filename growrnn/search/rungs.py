"""Multi-fidelity evaluation: each generation's children train in rungs of growing budget, and
only the best part of each rung goes on (synchronous successive halving inside the NSGA-II loop).

**Rungs.** With ``rungs: {reduction_factor: eta, count: K}`` rung ``k`` (``0 .. K-1``) trains a
candidate up to ``eta ** -(K-1-k)`` of the search's budget (steps and epochs scaled, rounded up;
:func:`rung_budgets`): with ``eta = 2, K = 3`` a quarter, a half, all of it. Every child of a
generation starts in rung 0; of the ``n`` that finish a rung, the best ``ceil(n / eta)``
(:func:`promote`) go on to the next **from where they stopped**: the rung's run writes a
Lightning checkpoint (weights, optimizer, scheduler, growth controller, step and epoch, the
carried state mid-epoch) and the next rung resumes it with ``evaluate(resume_from=...)``, so a
promoted candidate's full-budget result is the one an uninterrupted full-budget run with its
seed would have reached (the test suite checks the curves are identical). A rung's training
therefore costs only the steps between two rungs: with ``eta = 2, K = 3`` and 20 children,
``20/4 + 10/4 + 5/2 = 10`` budgets instead of 20 (half); with ``eta = 3``, about 5.8 (71 %
saved). Generation 0 (the ``initial`` cells, i.e. the baselines, and their mutants) trains on
the full budget: the baselines are what the front is compared with, and their full curves are
the predictor's first training data.

**Promotion on a front.** "The top fraction" of a multi-objective cohort is what NSGA-II itself
would keep of it: the rung's candidates are ranked by non-dominated front over the search's
objectives, then by crowding distance, then by id (:func:`~growrnn.search.selection.survive`),
and the first ``ceil(n / eta)`` go on. Ranking on the metric alone would spend the full budget
on the largest cells and starve the small end of the front, which the search exists to find;
the crowding cut keeps the promoted part spread along the front. The cohort is ranked among
itself (same budget, same fidelity), not against the population, whose members trained on the
full budget. The ``val`` a candidate is ranked on is the learning-curve predictor's predicted
final value when the predictor is on, trained (``predictor.min_train`` curves) and the rung's
curve has its ``k`` points; before that, the observed ``val`` at the rung. The score, its kind
and every decision are stored (the ``rungs`` table), and failed or diverged runs are never
promoted.

**Unpromoted candidates** keep their low-fidelity result, marked with its rung
(``metrics["rung"]``, ``"unpromoted"``, ``"rung_score"``), and the observed ``val`` at that rung
as their objective. Selection treats them honestly by fidelity first (:func:`tiered_survival`):
a candidate that trained on the whole budget is never displaced by one that did not; the
unpromoted fill the population only when fewer than ``population`` full-budget candidates are
left (ranked by rung reached, then NSGA-II among themselves). The predictor never trains on
their partial curves. A child whose canonical key has already been evaluated reuses that result,
rung included.

**Resume.** Planning a rung's runs and recording the previous rung's promotions are one SQLite
transaction; a run goes ``pending -> running -> done``; checkpoints are written atomically before
the run is recorded as done; so a ``kill -9`` in the middle of a rung resumes with the same
cohort, the same decisions and nothing repeated that had finished.

**Why not Optuna's pruners (or Ray Tune's ASHA).** They implement the same schedule for
single-objective studies only (Optuna: "pruners module is expected to be used only for
single-objective optimization"; ``Trial.report`` is refused in multi-objective studies), they
decide asynchronously from whichever trials have reported, so the decisions depend on worker
timing (this search promises the same population from every executor and after a resume), and
they keep their own trial store beside the archive, which a kill -9 resume would have to keep
consistent with it. The schedule itself is a few lines (:func:`rung_budgets`, :func:`promote`);
the part worth a library, multi-objective ranking, already comes from pymoo.

The training steps each rung spent are stored with it (``rungs.steps``) and summed per candidate
(``metrics["train_steps_spent"]``), so a run can be compared with a full-budget search.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from growrnn.errors import ArgumentError, SearchError, format_message
from growrnn.evaluation.config import Budget, joined_curve
from growrnn.executors import Executor, Job
from growrnn.search import selection
from growrnn.search.storage import Archive, CandidateRow, RungRow

__all__ = ["evaluate_in_rungs", "promote", "prune_rung_checkpoints", "rung_budgets", "rung_dir", "rung_tiers",
           "tiered_survival"]
log = logging.getLogger(__name__)


def rung_budgets(budget: Budget, rungs: Any) -> list[Budget]:
    """The cumulative budget of each rung (``rungs``: a :class:`~growrnn.search.config.RungConfig`):
    ``steps`` and ``epochs`` times ``reduction_factor ** -(count - 1 - k)``, rounded up, the last
    one ``budget`` itself; ``val_every`` unchanged. :class:`ArgumentError` for a ``seconds``
    budget (a rung of wall time would make the search depend on the machine), a ``steps`` budget
    without ``val_every``, or one too small to split into strictly growing rungs."""
    eta, count = int(rungs.reduction_factor), int(rungs.count)
    if budget.steps is not None and budget.val_every is None and count > 1:
        raise ArgumentError("budget.val_every", allowed="a number of steps with rungs and a steps budget",
                            received=None, hint="a rung that ends mid-epoch would add a validation point the "
                            "uninterrupted run does not have; e.g. budget: {steps: 500, val_every: 50}, or a "
                            "budget in epochs")
    if budget.seconds is not None:
        raise ArgumentError("budget.seconds", allowed="null with rungs (rungs split steps or epochs)",
                            received=budget.seconds, hint="give the budget in steps or epochs")
    out = []
    for k in range(count):
        fraction = float(eta) ** -(count - 1 - k)
        scaled = {name: (value if k == count - 1 else max(1, math.ceil(value * fraction)))
                  for name in ("steps", "epochs") if (value := getattr(budget, name)) is not None}
        out.append(dataclasses.replace(budget, **scaled))
    for name in ("steps", "epochs"):
        values = [getattr(b, name) for b in out]
        if values[0] is not None and any(a >= b for a, b in zip(values, values[1:], strict=False)):
            raise ArgumentError("rungs", allowed=f"rungs whose budget.{name} grows strictly",
                                received=f"budget.{name} {getattr(budget, name)} splits into {values}",
                                hint="use fewer rungs, a smaller reduction_factor or a larger budget")
    return out


def promote(F: np.ndarray, reduction_factor: int) -> np.ndarray:
    """Rows of a rung's cohort that go on to the next rung, best first, shape ``(k,)`` int.

    ``F`` ``(n, m)`` is the cohort's minimised objective matrix (``val`` being the score ranked
    on; see :func:`~growrnn.search.selection.objective_matrix`). ``k = ceil(n / reduction_factor)``
    of the finite rows, ranked by non-dominated front, then crowding distance, then index
    (:func:`~growrnn.search.selection.survive`); rows with a non-finite value (failed or
    diverged) never go on.

    >>> F = np.array([[0.1, 9.0], [0.2, 5.0], [0.3, 6.0], [0.9, 1.0], [np.inf, np.inf]])
    >>> promote(F, 2).tolist()  # 3 of 5: the front (0, 1, 3) by crowding, never the failed row
    [0, 3, 1]
    """
    F = np.asarray(F, dtype=float)
    if F.ndim != 2:
        raise ArgumentError("F", allowed="a 2-D array (candidates, objectives)", received=f"shape {F.shape}")
    eta = int(reduction_factor)
    if eta < 2:
        raise ArgumentError("reduction_factor", allowed="an int >= 2", received=reduction_factor)
    finite = np.flatnonzero(np.isfinite(F).all(axis=1))
    k = min(math.ceil(len(F) / eta), len(finite))
    return finite[selection.survive(F[finite], k)].astype(int) if k else np.zeros(0, dtype=int)


def rung_tiers(values: Sequence[dict[str, Any]], F: np.ndarray, count: int) -> np.ndarray:
    """The fidelity tier of each candidate for :func:`tiered_survival`, shape ``(n,)`` int: 0 for
    one that trained on the whole budget (no ``rung`` in its metrics, or the top rung), ``t`` for
    one that stopped ``t`` rungs short, and ``count`` (last) for a row with a non-finite objective
    (failed or diverged), which must not displace an unpromoted but valid candidate."""
    F = np.asarray(F, dtype=float)
    tiers = np.array([count - 1 - int(v.get("rung", count - 1)) for v in values], dtype=int)
    return np.where(np.isfinite(F).all(axis=1), tiers, count) if len(tiers) else tiers


def tiered_survival(F: np.ndarray, tiers: np.ndarray, mu: int) -> np.ndarray:
    """(mu + lambda) survival by fidelity first: the rows of tier 0 by NSGA-II survival among
    themselves (:func:`~growrnn.search.selection.survive`), then, while places are left, those of
    tier 1, and so on. Indices into ``F`` ``(n, m)``, best first, shape ``(min(mu, n),)``.

    >>> F = np.array([[0.5, 1.0], [0.1, 1.0], [0.9, 1.0]])
    >>> tiered_survival(F, np.array([0, 1, 0]), 2).tolist()  # row 1 is better, but unpromoted
    [0, 2]
    """
    F, tiers = np.asarray(F, dtype=float), np.asarray(tiers, dtype=int)
    if tiers.shape != (len(F),):
        raise ArgumentError("tiers", allowed=f"shape ({len(F)},), one tier per row of F", received=tiers.shape)
    out: list[int] = []
    for tier in np.unique(tiers):
        left = int(mu) - len(out)
        if left <= 0:
            break
        rows = np.flatnonzero(tiers == tier)
        out.extend(int(i) for i in rows[selection.survive(F[rows], left)])
    return np.array(out, dtype=int)


def rung_dir(db: Path) -> Path:
    """Where rung checkpoints go: the database path without its suffix plus ``_rungs``."""
    return Path(f"{db.with_suffix('')}_rungs")


def _checkpoint(folder: Path, candidate: int, rung: int) -> Path:
    return folder / f"{candidate}.r{rung}.ckpt"


def prune_rung_checkpoints(folder: Path, archive: Archive, gen: int) -> None:
    """After generation ``gen`` is saved, delete the rung checkpoints of its candidates (and of
    earlier ones, and a killed worker's temporary files): only a generation still being
    evaluated needs them. Called while no evaluation is in flight."""
    if not folder.is_dir():
        return
    keep = {f"{r.id}" for r in archive.rows(generation=gen + 1)}
    for path in [*folder.glob("*.ckpt"), *folder.glob("*.tmp")]:
        if path.suffix == ".tmp" or path.name.split(".", 1)[0] not in keep:
            path.unlink(missing_ok=True)


class _Search(Protocol):
    """What :func:`evaluate_in_rungs` uses of the generation loop."""

    archive: Archive
    executor: Executor
    config: Any
    db: Path

    def _payload(self, row: CandidateRow, state: dict[str, Any]) -> dict[str, Any]: ...

    def _reuse(self, row: CandidateRow, source: CandidateRow) -> None: ...

    def _triage(self, rows: list[CandidateRow], first: dict[str, CandidateRow]
                ) -> tuple[list[CandidateRow], list[CandidateRow]]: ...


def evaluate_in_rungs(search: _Search, gen: int, rows: list[CandidateRow], state: dict[str, Any]) -> None:
    """Evaluate generation ``gen``'s pending ``rows`` in rungs (see the module docstring), finishing
    every candidate in the archive; what the loop's ``_evaluate`` does without rungs."""
    archive, cfg = search.archive, search.config
    budgets = rung_budgets(cfg.budget, cfg.rungs)
    top = len(budgets) - 1
    planned = {r.candidate for r in archive.rungs([r.id for r in rows], rung=0)}
    first: dict[str, CandidateRow] = {}  # key -> the row that trains: those planned before a resume first
    for row in rows:
        if row.id in planned:
            first.setdefault(row.key, row)
    trains, copies = search._triage([r for r in rows if r.id not in planned], first)
    new = [r.id for r in trains]
    if new:
        archive.add_rungs(new, 0)
    by_id = {r.id: r for r in rows}
    cohort = sorted(planned | set(new))
    folder = rung_dir(search.db)
    predict = _predictor(cfg, state)
    for rung in range(top + 1):
        if not cohort:
            break
        _train_rung(search, gen, rung, cohort, by_id, budgets, folder, state)
        runs = {r.candidate: r for r in archive.rungs(cohort, rung=rung)}
        if rung == top:
            promoted: list[int] = []
        elif any(runs[c].promoted is None for c in cohort):
            promoted = _decide(archive, cfg, gen, rung, cohort, runs, predict, state)
        else:  # decided before a crash: read back, never recomputed
            promoted = [c for c in cohort if runs[c].promoted]
        for c in cohort:
            if c not in promoted:
                _finish(archive, c, rung, top, budgets, cfg.budget.val_every)
        cohort = sorted(promoted)
    for row in copies:
        source = archive.get(first[row.key].id)
        if source.status == "done":
            search._reuse(row, source)
        else:
            archive.fail(row.id, f"duplicate of candidate {source.id}, which failed")


def _predictor(cfg: Any, state: dict[str, Any]) -> Any:
    """The rule that predicts a final ``val`` from a rung's curve, or ``None`` (no predictor, or
    none fitted yet)."""
    if cfg.predictor is None or state.get("predictor") is None:
        return None
    from growrnn.search.predictor import CurvePredictor, EarlyStopRule

    return EarlyStopRule(CurvePredictor.from_state(state["predictor"]), state.get("direction") or "min",
                         float(cfg.predictor.margin), int(cfg.predictor.min_train))


def _train_rung(search: _Search, gen: int, rung: int, cohort: list[int], by_id: dict[int, CandidateRow],
                budgets: list[Budget], folder: Path, state: dict[str, Any]) -> None:
    """Train the pending runs of ``rung`` of the ``cohort`` through the executor and record them."""
    from tqdm.auto import tqdm

    from growrnn.search.job import run_candidate

    archive, cfg = search.archive, search.config
    runs = {r.candidate: r for r in archive.rungs(cohort, rung=rung)}
    pending = [c for c in cohort if runs[c].status == "pending"]
    jobs = []
    for c in pending:
        row = by_id[c]
        payload = search._payload(row, state)
        payload.update(budget=budgets[rung].as_dict(), predictor=None,  # the rung cut is the early stop
                       checkpoint_to=str(_checkpoint(folder, c, rung)) if rung < len(budgets) - 1 else None)
        if rung > 0:
            resume = _checkpoint(folder, c, rung - 1)
            if not resume.is_file():
                raise SearchError(format_message(
                    f"cannot go on with rung {rung} of candidate {c}: its rung {rung - 1} checkpoint {resume} is "
                    "missing", hint=f"the {folder.name}/ folder beside the database holds the rungs of the "
                    "generation in progress; copy it back, or start the search again with a new --db"))
            payload.update(resume_from=str(resume), parent=None)  # the checkpoint carries the weights on
        jobs.append(Job(str(c), run_candidate, (payload,), timeout_s=cfg.timeout_s, retries=cfg.retries))
    bar = tqdm(total=len(cohort), initial=len(cohort) - len(jobs), desc=f"generation {gen} rung {rung}",
               unit="cell", disable=not cfg.progress, leave=False)
    try:
        for c in pending:
            if archive.get(c).status == "pending":  # its first rung (or a resumed one)
                archive.mark_running(c)
            archive.mark_rung_running(c, rung)
        for outcome in search.executor.run(jobs):
            c = int(outcome.key)
            if outcome.ok:
                value = outcome.value
                archive.finish_rung(c, rung, value["metrics"], value["curve"], value["objectives"], value["seconds"],
                                    steps=int(value["metrics"].get("train_steps_spent", 0)))
            else:
                log.warning("candidate %d, rung %d: %s after %d attempt(s): %s", c, rung, outcome.status,
                            outcome.attempts, outcome.reason)
                archive.fail_rung(c, rung, f"{outcome.status} after {outcome.attempts} attempt(s): {outcome.error}")
            bar.update()
    finally:
        bar.close()


def _curve(runs: Sequence[RungRow], top: int, val_every: int | None) -> list[dict[str, Any]]:
    """A candidate's learning curve over its rung ``runs`` (each records its own points), as the
    uninterrupted run has it (:func:`~growrnn.evaluation.config.joined_curve`): the last rung's
    end is kept only when it is the ``top`` one, the budget's end."""
    return joined_curve([r.curve or [] for r in runs], val_every, last_whole=bool(runs) and runs[-1].rung == top)


def _decide(archive: Archive, cfg: Any, gen: int, rung: int, cohort: list[int], runs: dict[int, RungRow],
            predict: Any, state: dict[str, Any]) -> list[int]:
    """Rank the finished rung, store every member's score and decision and plan the next rung for
    the promoted, in one transaction; returns the promoted ids."""
    direction = state.get("direction") or "min"
    values, scores, predicted_n = [], [], 0
    for c in cohort:
        run = runs[c]
        score = None
        if run.status == "done" and not (run.metrics or {}).get("diverged"):
            score = float((run.objectives or {}).get("val", math.nan))
            if predict is not None:
                curve = _curve([r for r in archive.rungs([c]) if r.rung <= rung], -1, cfg.budget.val_every)
                predicted = predict.predict_final([float(p["val"]) for p in curve])
                score = predicted if predicted is not None else score
                predicted_n += predicted is not None
        scores.append(score)
        values.append({**run.values, "val": score} if score is not None else {"failed": True})
    F = selection.objective_matrix(values, list(cfg.objectives), {"val": direction})
    promoted = [cohort[i] for i in promote(F, cfg.rungs.reduction_factor)]
    decided = [(c, rung, s, c in promoted) for c, s in zip(cohort, scores, strict=True)]
    archive.add_rungs(promoted, rung + 1, decided)
    log.info("generation %d, rung %d: %d of %d go on (%s)", gen, rung, len(promoted), len(cohort),
             f"predicted final val for {predicted_n}, observed val for the rest" if predicted_n else "observed val")
    return promoted


def _finish(archive: Archive, candidate: int, rung: int, top: int, budgets: list[Budget],
            val_every: int | None) -> None:
    """Record the candidate's result as of its last rung ``rung`` (unless already recorded): that
    rung's metrics and objectives, the whole curve, the steps and seconds of all its rungs, and
    its fidelity (``rung``, ``unpromoted``, ``rung_budget``, ``rung_score``)."""
    if archive.get(candidate).status in ("done", "failed"):
        return
    runs = [r for r in archive.rungs([candidate]) if r.rung <= rung]
    last = runs[-1]
    if last.status != "done":
        archive.fail(candidate, f"rung {rung}: {last.error}")
        return
    assert last.metrics is not None and last.objectives is not None
    metrics = {**last.metrics, "rung": rung, "rungs": top + 1, "unpromoted": rung < top,
               "rung_budget": budgets[rung].as_dict(), "rung_score": last.score,
               "inherited": (runs[0].metrics or {}).get("inherited", 0),
               "train_steps_spent": sum(int(r.steps or 0) for r in runs)}
    curve = _curve(runs, top if rung == top else -1, val_every)
    archive.finish(candidate, metrics, curve, last.objectives, sum(float(r.seconds or 0.0) for r in runs))
