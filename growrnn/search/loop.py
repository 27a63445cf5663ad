"""The generation loop: a (mu + lambda) NSGA-II search over cell genomes, resumable after a crash.

One generation ``g`` goes: **plan** the offspring (``g = 0``: the ``initial`` cells and mutants of
them; ``g >= 1``: binary tournaments on the population's ranks and crowding, then
:func:`~growrnn.search.variation.operators.vary`), **record** them in the archive as ``pending`` rows,
**evaluate** the pending rows through the executor, **select** the next population from parents
plus offspring (:func:`~growrnn.search.selection.survive`), and **save** the generation: its
population, the RNG states, the predictor and the novelty archive, and the TensorBoard stats.

**Why a killed search reaches the same final population.** Everything random comes from
generators whose states are saved with each generation, and each candidate's training seed is a
function of the search seed and the candidate's place (generation, slot). Offspring are written
as ``pending`` rows *before* any is evaluated, so a resumed search re-plans generation ``g`` from
the state saved with ``g - 1``, finds the rows it planned (and checks them), and evaluates only
what is not ``done``. Evaluation is deterministic (one torch thread, ``evaluate`` seeds
everything, no wall-clock budget), and outcomes are read back in candidate-id order, whichever
executor finished them first.

**Deduplication.** A planned child whose canonical key already has a ``done`` row is recorded as
done with that row's results (``metrics["reused_from"]``), and of several new rows with one key in
a generation only the first is trained. Selection sees each cell once: of the pool's candidates
with one key, only the first with results competes (:func:`~growrnn.search.selection.distinct`),
so the population holds distinct cells; it holds fewer than ``population`` while the pool has
fewer distinct cells (generation 0 under tight limits), and never shrinks, since the parents are
part of the next pool.

**Rungs.** With ``rungs:`` set, generations >= 1 evaluate their children in rungs of growing
budget and promote the best part of each (:mod:`growrnn.search.rungs`); survival then ranks by
fidelity first.

**Confirmation.** When the last generation is saved, the final front and the seeded baselines are
retrained from scratch on ``confirm.seeds`` seeds (:mod:`growrnn.search.confirm`), resumable the
same way; inheritance only speeds the search up, what it hands out is confirmed.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from growrnn.errors import SearchError, VariationError, format_message
from growrnn.evaluation.config import load_cell
from growrnn.executors import Executor, Job, make_executor
from growrnn.genome.graph import Genome
from growrnn.search import selection
from growrnn.search.config import NEUTRAL, SearchConfig, check_config, config_to_dict
from growrnn.search.selection import objective_matrix
from growrnn.search.species import initial_species, population_niches, select_in_niches, species_stats
from growrnn.search.storage import Archive, CandidateRow, decode_state, encode_state
from growrnn.search.variation.operators import CROSSOVERS, vary

__all__ = ["SearchResult", "run_search", "candidate_seed", "prune_weights", "search_executor", "tensorboard_dir",
           "weights_dir"]
log = logging.getLogger(__name__)

#: Tournaments tried for one offspring slot before it is left empty (variation can fail).
PLAN_TRIES = 5


@dataclass(frozen=True)
class SearchResult:
    """The end of :func:`run_search`: the final ``population`` (candidate ids, best first), the
    last generation saved, where the archive and TensorBoard logs are, and the confirmation's
    report (:func:`growrnn.search.confirm.summary`; ``None`` with ``confirm: null``)."""

    population: tuple[int, ...]
    generation: int
    db: Path
    tensorboard: Path
    confirmation: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Plan:
    genome: Genome
    operator: str
    parents: tuple[int, ...] = ()
    parent_slots: tuple[int, ...] = ()  # generation 0: parents named by slot (their ids come later)


def candidate_seed(search_seed: int, generation: int, slot: int) -> int:
    """The training seed of the candidate in ``slot`` of ``generation`` (< 2**31)."""
    return int(np.random.SeedSequence([search_seed, generation, slot]).generate_state(1)[0]) % 2**31


def tensorboard_dir(config: SearchConfig, db: Path) -> Path:
    """``config.tensorboard``, or the database path without its suffix plus ``_tb``."""
    return Path(config.tensorboard) if config.tensorboard else Path(f"{db.with_suffix('')}_tb")


def weights_dir(db: Path) -> Path:
    """Where candidates' trained weights go (for their children): the database path without its
    suffix plus ``_weights`` (one folder per search, marked as its archive's: see
    :meth:`~growrnn.search.storage.Archive.claim`)."""
    return Path(f"{db.with_suffix('')}_weights")


def run_search(config: SearchConfig, db: str | Path, *, executor: Executor | None = None) -> SearchResult:
    """Run (or resume) the search described by ``config``, stored in the SQLite file ``db``.

    An existing ``db`` is resumed: its stored config must equal ``config`` except in keys that do
    not change results (``generations``, ``workers``, ``executor``, ...; else
    :class:`~growrnn.errors.SearchError`), interrupted evaluations go back to pending, and the
    search goes on from the last saved generation, re-evaluating nothing that finished.
    ``executor`` overrides the one the config names (the caller then closes it).
    """
    check_config(config)
    db = Path(db)
    with Archive.open(db, config_to_dict(config), neutral=NEUTRAL) as archive:
        archive.reset_running()
        owned = executor is None
        ex = executor if executor is not None else search_executor(config)
        try:
            return _Search(config, db, archive, ex).run()
        finally:
            if owned:
                ex.close()


def search_executor(config: SearchConfig) -> Executor:
    """The executor ``config`` names (``local`` with ``workers``, or ``ray``); the caller closes it."""
    if config.executor == "ray":
        num_cpus = config.workers if config.address is None and config.workers > 0 else None
        return make_executor("ray", address=config.address, num_cpus=num_cpus)
    return make_executor("local", workers=config.workers)


class _Search:
    def __init__(self, config: SearchConfig, db: Path, archive: Archive, executor: Executor):
        self.config, self.db, self.archive, self.executor = config, db, archive, executor
        self.tb = tensorboard_dir(config, db)
        self.weights = weights_dir(db) if config.inherit else None
        self.behaviours: dict[str, np.ndarray] = {}
        self.profiles: dict[str, Counter[str]] = {}  # canonical key -> structure profile (speciation)

    # ------------------------------------------------------------------------------- driver
    def run(self) -> SearchResult:
        last = self.archive.last_generation()
        if last is None:
            self._claim_folders()
            gen, state = 0, self._initial_state()
        else:
            gen, state = last.gen + 1, decode_state(last.state)
            self._check_weights(last.population)
            self._claim_folders()  # before anything in them is pruned
            # a crash may have come between the save and the pruning
            prune_weights(self.weights, self.archive, last.gen, last.population)
            log.info("resuming %s after generation %d", self.db, last.gen)
        population = tuple(last.population) if last is not None else ()
        while gen <= self.config.generations:
            population, state = self._generation(gen, state)
            gen += 1
        confirmation = None
        if self.config.confirm is not None:  # what a user receives is retrained from scratch
            from growrnn.search.confirm import run_confirmation

            confirmation = run_confirmation(self.config, self.archive, self.executor, tensorboard=self.tb)
        return SearchResult(population, gen - 1, self.db, self.tb, confirmation)

    def _claim_folders(self) -> None:
        """Mark the side folders this search writes (weights, rung checkpoints) as its archive's,
        or refuse another archive's (:meth:`~growrnn.search.storage.Archive.claim`)."""
        if self.weights is not None:
            self.archive.claim(self.weights)
        if self.config.rungs is not None:
            from growrnn.search.rungs import rung_dir
            self.archive.claim(rung_dir(self.db))

    def _check_weights(self, population: Sequence[int]) -> None:
        """Refuse to resume a search with inheritance whose saved population lost its weights
        (``<db>_weights/`` deleted or not copied along): its children would train from scratch,
        silently making another search than the one the archive records."""
        if self.weights is None:
            return
        rows = [self.archive.get(i) for i in population]
        missing = [r.id for r in rows if r.status == "done" and not (r.metrics or {}).get("diverged")
                   and not (self.weights / f"{r.id}.pt").is_file()]
        if missing:
            shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
            raise SearchError(format_message(
                f"cannot resume {self.db}: the weights of {len(missing)} of the population's candidates "
                f"({shown}) are missing from {self.weights}",
                hint=f"children inherit them (inherit: true), so without them the search would go on "
                     f"differently; copy the {self.weights.name}/ folder back beside the database, or start "
                     "a new search with another --db"))

    def _initial_state(self) -> dict[str, Any]:
        seed = self.config.seed
        state: dict[str, Any] = {"rng": random.Random(seed), "np_rng": np.random.default_rng(seed),
                                 "population": [], "F": [], "direction": None, "predictor": None,
                                 "threshold": None, "novelty": None, "ref": None}
        if self.config.novelty is not None:
            from growrnn.search.novelty import NoveltyArchive

            n = self.config.novelty
            state["novelty"] = NoveltyArchive(n.k, n.add_threshold, n.max_size, seed).state_dict()
        if self.config.speciation is not None:  # absent when off: the state stays as it was
            state["species"] = initial_species(self.config.speciation)
        return state

    def _generation(self, gen: int, state: dict[str, Any]) -> tuple[tuple[int, ...], dict[str, Any]]:
        plans = self._plan(gen, state)  # advances state["rng"] and state["np_rng"]
        rows = self._record(gen, plans)
        self._evaluate(gen, rows, state)
        pool = sorted(set(state["population"]) | {r.id for r in rows})
        population, F = self._select(gen, pool, state)
        new_state = self._next_state(state, population, F)
        from growrnn.search import report

        # one hypervolume reference for the whole search: generation 0's, kept in the state
        stats = report.log_generation(self.tb, self.archive, gen, list(population), list(self.config.objectives),
                                      direction=new_state["direction"] or "min", ref=state.get("ref"),
                                      scalars=species_stats(new_state.get("species")))
        new_state["ref"] = stats.get("ref")
        # optimizer steps trained this generation (rungs spend fewer): what a measurement compares
        finished = [self.archive.get(r.id).metrics or {} for r in rows]
        stats["train_steps"] = sum(int(m.get("train_steps_spent") or 0) for m in finished if "reused_from" not in m)
        self.archive.save_generation(gen, population, encode_state(new_state), stats)
        prune_weights(self.weights, self.archive, gen, population)
        if self.config.rungs is not None:
            from growrnn.search.rungs import prune_rung_checkpoints, rung_dir

            prune_rung_checkpoints(rung_dir(self.db), self.archive, gen)
        counts = self.archive.counts()
        log.info("generation %d/%d saved: %d candidates done, %d failed so far", gen, self.config.generations,
                 counts["done"], counts["failed"])
        return population, new_state

    # ------------------------------------------------------------------------------- planning
    def _plan(self, gen: int, state: dict[str, Any]) -> list[_Plan]:
        cfg, rng = self.config, state["rng"]
        if gen == 0:
            seeds = [load_cell(c, f"initial[{i}]") for i, c in enumerate(cfg.initial)]
            plans = [_Plan(g, "init") for g in seeds]
            for i in range(cfg.population - len(seeds)):
                slot = i % len(seeds)
                try:
                    child, name = vary([seeds[slot]], rng, cfg.limits, cfg.operators, 0.0)
                except VariationError as err:
                    log.warning("generation 0: no mutant of initial[%d] (%s)", slot, err)
                    continue
                plans.append(_Plan(child, name, parent_slots=(slot,)))
            return plans
        ids = list(state["population"])
        genomes = [Genome.from_json(self.archive.get(i).genome_json) for i in ids]
        F = np.asarray(state["F"], dtype=float).reshape(len(ids), -1)
        ranks = selection.nondominated_ranks(F)
        crowding = selection.crowding_distances(F, ranks)
        if state.get("species") is not None:  # speciation: parents compete within their species
            ranks, crowding = selection.niche_ranks(F, population_niches(state["species"], ids))
        plans = []
        for slot in range(cfg.offspring):
            for _ in range(PLAN_TRIES):
                a, b = (int(i) for i in selection.tournament(ranks, crowding, 2, state["np_rng"]))
                try:
                    child, name = vary([genomes[a], genomes[b]], rng, cfg.limits, cfg.operators, cfg.p_crossover)
                except VariationError:
                    continue
                plans.append(_Plan(child, name, (ids[a], ids[b]) if name in CROSSOVERS else (ids[a],)))
                break
            else:
                log.warning("generation %d: offspring slot %d left empty (variation kept failing)", gen, slot)
        return plans

    def _record(self, gen: int, plans: list[_Plan]) -> list[CandidateRow]:
        """The generation's rows: those a previous run already wrote (checked against the plan),
        then the rest, added as pending."""
        rows = self.archive.rows(generation=gen)
        if len(rows) > len(plans):
            raise self._mismatch(gen, f"it holds {len(rows)} candidates, the plan {len(plans)}")
        for slot, plan in enumerate(plans):
            parents = plan.parents or tuple(rows[s].id for s in plan.parent_slots)
            if slot < len(rows):
                row = rows[slot]
                # JSON, not text: the node ids (what children inherit through) must match too
                if (row.genome_json, row.operator, row.parents) != (plan.genome.to_json(), plan.operator, parents):
                    raise self._mismatch(gen, f"candidate {row.id} differs from the plan's slot {slot}")
                continue
            i = self.archive.add(plan.genome.to_json(), plan.genome.to_text(), plan.genome.key, parents,
                                 plan.operator, seed=candidate_seed(self.config.seed, gen, slot), generation=gen)
            rows.append(self.archive.get(i))
        return rows

    def _mismatch(self, gen: int, what: str) -> SearchError:
        return SearchError(format_message(
            f"generation {gen} in {self.archive.path} is not what this search makes ({what})",
            hint="the archive was written by another growrnn version or another config; resume it with "
                 "those, or start a new database"))

    # ------------------------------------------------------------------------------- evaluation
    def _evaluate(self, gen: int, rows: list[CandidateRow], state: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        from growrnn.search.job import run_candidate

        archive, cfg = self.archive, self.config
        if cfg.rungs is not None and gen >= 1:  # multi-fidelity: successive halving of the children
            from growrnn.search.rungs import evaluate_in_rungs

            return evaluate_in_rungs(self, gen, rows, state)
        first: dict[str, CandidateRow] = {}  # key -> the row of this batch that trains
        trains, copies = self._triage(rows, first)
        jobs = [Job(str(row.id), run_candidate, (self._payload(row, state),), timeout_s=cfg.timeout_s,
                    retries=cfg.retries) for row in trains]
        bar = tqdm(total=len(rows), initial=len(rows) - len(jobs) - len(copies), desc=f"generation {gen}",
                   unit="cell", disable=not cfg.progress, leave=False)
        try:
            for job in jobs:
                archive.mark_running(int(job.key))
            for outcome in self.executor.run(jobs):
                i = int(outcome.key)
                if outcome.ok:
                    value = outcome.value
                    archive.finish(i, value["metrics"], value["curve"], value["objectives"], value["seconds"])
                else:
                    log.warning("candidate %d %s after %d attempt(s): %s", i, outcome.status, outcome.attempts,
                                outcome.reason)
                    archive.fail(i, f"{outcome.status} after {outcome.attempts} attempt(s): {outcome.error}")
                bar.update()
            for row in copies:
                source = archive.get(first[row.key].id)
                if source.status == "done":
                    self._reuse(row, source)
                else:
                    archive.fail(row.id, f"duplicate of candidate {source.id}, which failed")
                bar.update()
        finally:
            bar.close()

    def _triage(self, rows: list[CandidateRow], first: dict[str, CandidateRow]
                ) -> tuple[list[CandidateRow], list[CandidateRow]]:
        """Sort the pending ``rows`` (in order): one whose cell the archive has done already is
        recorded done now; the first of a key not in ``first`` trains (and enters ``first``); a
        later one of the same key is a copy, to take the trained one's results. Returns (the rows
        that train, the copies)."""
        trains, copies = [], []
        for row in rows:
            if row.status != "pending":
                continue
            done = self.archive.find_done(row.key, self._reusable)
            if done is not None:
                self._reuse(row, done)
            elif row.key in first:
                copies.append(row)
            else:
                first[row.key] = row
                trains.append(row)
        return trains, copies

    def _reusable(self, source: CandidateRow) -> bool:
        """Whether a new candidate may take ``source``'s results (the same cell, done): always
        without inheritance; with it, only while ``source``'s weights are still saved (a candidate
        that left the population had them deleted), so the new one's children have weights to
        inherit -- else the cell trains again -- or where it diverged (it saved none to miss)."""
        return self.weights is None or bool((source.metrics or {}).get("diverged")) \
            or (self.weights / f"{source.id}.pt").is_file()

    def _reuse(self, row: CandidateRow, source: CandidateRow) -> None:
        """Record ``row`` as done with ``source``'s results (same canonical key), and give it a
        copy of ``source``'s weights so that its children can inherit them."""
        assert source.metrics is not None and source.curve is not None and source.objectives is not None
        if self.weights is not None and (self.weights / f"{source.id}.pt").is_file():
            shutil.copyfile(self.weights / f"{source.id}.pt", self.weights / f"{row.id}.pt")
        metrics = {**source.metrics, "reused_from": source.metrics.get("reused_from", source.id)}
        self.archive.finish(row.id, metrics, source.curve, source.objectives, 0.0)

    def _payload(self, row: CandidateRow, state: dict[str, Any]) -> dict[str, Any]:
        from growrnn.search.job import base_payload

        cfg = self.config
        payload = base_payload(cfg, row.genome_json, row.seed)
        if self.weights is not None:
            payload["weights_out"] = str(self.weights / f"{row.id}.pt")
        if self.weights is not None and row.parents:
            # inherit only across generations: within one, the parent may not have finished yet, and
            # whether it had would depend on the executor's timing
            parent = self.archive.get(row.parents[0])
            path = self.weights / f"{parent.id}.pt"
            if parent.status == "done" and parent.generation < row.generation and path.is_file():
                payload["parent"] = {"path": str(path), "genome_json": parent.genome_json}
        if cfg.predictor is not None and state.get("predictor") is not None:
            payload["predictor"] = {"state": state["predictor"], "threshold": state["threshold"],
                                    "margin": cfg.predictor.margin, "min_train": cfg.predictor.min_train,
                                    "direction": state["direction"]}
        return payload

    # ------------------------------------------------------------------------------- selection
    def _select(self, gen: int, pool: list[int], state: dict[str, Any]) -> tuple[tuple[int, ...], np.ndarray]:
        """The survivors of parents plus offspring (best first) and their rows of ``F``: one
        candidate per canonical key, so fewer than ``population`` while the pool holds fewer
        distinct cells."""
        rows = [self.archive.get(i) for i in pool]
        if state.get("direction") is None:  # the task's, recorded by any finished candidate
            state["direction"] = next((r.metrics["direction"] for r in rows if r.metrics is not None), None)
        F = objective_matrix([r.values for r in rows], self.config.objectives, {"val": state["direction"] or "min"})
        # each cell once: copies of one canonical key (a reused child, its parent) would crowd a front
        cells = selection.distinct([r.key for r in rows], F)
        pool, rows, F = [pool[k] for k in cells], [rows[k] for k in cells], F[cells]
        if self.config.novelty is not None:
            from growrnn.search.novelty import novelty_column

            column, state["novelty"] = novelty_column(rows, gen, F, self.config.novelty, self.config.seed,
                                                      state["novelty"], self.behaviours)
            F = np.hstack([F, column[:, None]])
        if self.config.speciation is not None:
            keep, state["species"] = select_in_niches(rows, F, self.config.population, self.config.speciation,
                                                      state["species"], gen, self.archive.get, self.profiles)
        elif self.config.rungs is not None:  # a full-budget candidate is never displaced by an unpromoted one
            from growrnn.search.rungs import rung_tiers, tiered_survival

            tiers = rung_tiers([r.values for r in rows], F, self.config.rungs.count)
            keep = tiered_survival(F, tiers, self.config.population)
        else:
            keep = selection.survive(F, self.config.population)
        return tuple(pool[k] for k in keep), F[keep]

    def _next_state(self, state: dict[str, Any], population: tuple[int, ...], F: np.ndarray) -> dict[str, Any]:
        new = {**state, "population": list(population), "F": F.tolist()}
        if self.config.predictor is not None:
            from growrnn.search.predictor import fit_predictor

            new["predictor"], new["threshold"] = fit_predictor(
                self.archive, self.config.predictor, self.config.seed, population, F, len(self.config.objectives),
                new["direction"] or "min")
        return new


def prune_weights(folder: Path | None, archive: Archive, gen: int, population: Sequence[int]) -> None:
    """After generation ``gen`` is saved, delete the weights of candidates outside its population:
    in (mu + lambda) a candidate that left the population never returns, so only the
    population's weights can be inherited (the disk holds about mu files). The weights of the
    next generation's candidates that a killed run had finished stay. Called while no evaluation
    is in flight, so leftover temporary files are a killed worker's."""
    if folder is None or not folder.is_dir():
        return
    keep = {f"{i}.pt" for i in population} | {f"{r.id}.pt" for r in archive.rows(generation=gen + 1)}
    for path in [*folder.glob("*.pt"), *folder.glob("*.tmp")]:
        if path.name not in keep:
            path.unlink(missing_ok=True)

