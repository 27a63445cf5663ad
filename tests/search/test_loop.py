"""The search loop: a tiny end-to-end search, resume after kill -9, the same population from every
executor, deduplication, failures, and the job's inheritance, predictor and growth hooks."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from growrnn.errors import SearchError
from growrnn.executors import Job, LocalExecutor, Outcome
from growrnn.genome import Genome, library_cell, parse
from growrnn.search import job as job_module
from growrnn.search.config import NoveltyConfig, PredictorConfig, SearchConfig, load_config
from growrnn.search.job import inherit_into, run_candidate, save_weights
from growrnn.search.loop import SearchResult, candidate_seed, run_search, weights_dir
from growrnn.search.storage import Archive, CandidateRow
from growrnn.search.variation.morphisms import add_connection
from growrnn.search.variation.operators import Limits
from tests.conftest import kill_9_when, need_ray

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug" / "search.yaml"
TASK = {"task": "adding", "task_options": {"length": 20, "n_train": 64, "n_eval": 16, "batch_size": 16},
        "trainer": {"gradient_clip_val": 1.0}, "budget": {"steps": 20, "val_every": 5}, "test": False,
        "objectives": ["val", "params"], "threads": 1, "weights_out": None, "parent": None, "grow": None,
        "predictor": None}


def debug_config(**changes: object) -> SearchConfig:
    """The debug search without its confirmation (tests/search/test_confirm.py tests that)."""
    changes.setdefault("confirm", None)
    return dataclasses.replace(load_config(DEBUG), progress=False, **changes)  # type: ignore[arg-type]


def population_keys(db: Path) -> list[str]:
    with Archive.open(db) as archive:
        last = archive.last_generation()
        assert last is not None
        return [archive.get(i).key for i in last.population]


def final_values(db: Path) -> list[tuple[int, str, dict[str, float] | None]]:
    with Archive.open(db) as archive:
        last = archive.last_generation()
        assert last is not None
        return [(r.id, r.key, r.objectives) for r in (archive.get(i) for i in last.population)]


def assert_same_population(db: Path, reference: Path) -> None:
    """The same final population (ids and keys) with the same objectives up to float32 rounding:
    a worker process may sum in another order than the main one (seen: one candidate in four runs
    one float32 step apart)."""
    got, want = final_values(db), final_values(reference)
    assert [(i, k) for i, k, _ in got] == [(i, k) for i, k, _ in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        assert g == (None if w is None else pytest.approx(w, rel=1e-6))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SearchResult]:
    """The debug search, uninterrupted and inline: what every other run must reproduce."""
    db = tmp_path_factory.mktemp("reference") / "search.db"
    return db, run_search(debug_config(), db)


# ------------------------------------------------------------------------------------ end to end
def test_search_saves_generations_stats_and_a_front(reference: tuple[Path, SearchResult]) -> None:
    db, result = reference
    config = debug_config()
    with Archive.open(db) as archive:
        generations = archive.generations()
        rows = archive.rows()
        assert [g.gen for g in generations] == list(range(config.generations + 1))
        assert result.population == generations[-1].population and len(result.population) == config.population
        for g in generations:
            assert g.stats["hypervolume"] > 0 and g.stats["front_size"] >= 1
            assert set(g.stats["front"]) <= set(g.population)
            assert len(g.state["F"]) == config.population
        # hypervolume against one reference point never falls in (mu + lambda): the parents stay
        volumes = [g.stats["hypervolume"] for g in generations]
        assert volumes == sorted(volumes)
    assert {r.status for r in rows} == {"done"}
    assert len(rows) == config.population + config.generations * config.offspring
    trained = [r.key for r in rows if "reused_from" not in (r.metrics or {})]
    assert len(trained) == len(set(trained)), "a canonical key was trained twice"
    assert list(result.tensorboard.glob("events.out.tfevents.*"))


def test_rows_carry_lineage_seeds_and_inherited_weights(reference: tuple[Path, SearchResult]) -> None:
    db, _ = reference
    with Archive.open(db) as archive:
        rows = archive.rows()
        by_id = {r.id: r for r in rows}
        for gen in range(3):
            for slot, row in enumerate(archive.rows(generation=gen)):
                assert row.seed == candidate_seed(0, gen, slot)
    children = [r for r in rows if r.generation > 0]
    assert all(r.parents and all(by_id[p].generation < r.generation for p in r.parents) for r in children)
    trained = [r for r in children if "reused_from" not in (r.metrics or {})]
    # a mutant keeps most of its parent's call sites; a crossover graft may replace all of them
    mutants = [r for r in trained if "crossover" not in (r.operator or "")]
    assert mutants and all((r.metrics or {})["inherited"] > 0 for r in mutants), "children start from parents"
    for r in rows:
        source = (r.metrics or {}).get("reused_from")
        if source is not None:
            assert by_id[source].key == r.key and by_id[source].objectives == r.objectives
    assert sorted(p.name for p in weights_dir(db).glob("*.pt")) == sorted(f"{i}.pt" for i in reference[1].population)


def test_resuming_a_finished_search_evaluates_nothing(reference: tuple[Path, SearchResult]) -> None:
    db, result = reference
    before = final_values(db)
    with Archive.open(db) as archive:
        rows = archive.rows()
    again = run_search(debug_config(), db)
    assert again.population == result.population and final_values(db) == before
    with Archive.open(db) as archive:
        assert archive.rows() == rows


@pytest.mark.parametrize(("change", "match"), [
    ({"seed": 1}, "keys seed differ"),
    ({"population": 5}, "keys population differ"),
    ({"model": {"hidden_size": 9, "optimizer": "adam", "lr": 0.01}}, r"keys model\.hidden_size differ"),
])
def test_resume_with_another_config_is_a_search_error(reference: tuple[Path, SearchResult], change: dict,
                                                       match: str) -> None:
    with pytest.raises(SearchError, match=match):
        run_search(debug_config(**change), reference[0])


def test_the_population_holds_each_cell_once(tmp_path: Path) -> None:
    """With tight limits the children keep repeating a few cells (reused, not retrained); the
    population still holds distinct cells, not copies of one that crowd out the rest."""
    db = tmp_path / "tight.db"
    result = run_search(debug_config(limits=Limits(max_nodes=2)), db)
    with Archive.open(db) as archive:
        assert any("reused_from" in (r.metrics or {}) for r in archive.rows()), "the search repeated cells"
        for g in archive.generations():
            keys = [archive.get(i).key for i in g.population]
            assert len(keys) == len(set(keys)), f"generation {g.gen}: population {g.population} repeats a cell"
    assert len(result.population) == 4


def test_fewer_distinct_cells_than_population_make_a_smaller_population(tmp_path: Path) -> None:
    """Generation 0 seeded with one cell twice holds three distinct cells for a population of
    four: the population is those three (no copy fills the place), and it fills up as children
    bring new cells; it never shrinks."""
    db = tmp_path / "short.db"
    run_search(debug_config(initial=["gru", "gru"], generations=1), db)
    with Archive.open(db) as archive:
        sizes = [len(g.population) for g in archive.generations()]
        assert all(len(g.state["F"]) == len(g.population) for g in archive.generations())
        assert archive.get(2).metrics["reused_from"] == 1
    assert sizes == [3, 4]


@pytest.mark.parametrize(("kept", "diverged", "source"), [
    ({1, 2}, False, 1),      # the first trained copy
    ({2}, False, 2),         # the first left the population (its weights deleted): the one kept
    (set(), False, None),    # none kept: the cell trains again
    (set(), True, 1),        # a diverged copy saved no weights to miss
])
def test_a_repeated_cell_takes_the_results_of_a_copy_whose_weights_are_kept(
        tmp_path: Path, kept: set[int], diverged: bool, source: int | None) -> None:
    """With inheritance a new candidate of a cell the archive has trained takes the results (and
    a copy of the weights) of a trained copy whose weights are still saved; one that left the
    population had them deleted, and reused without them it would leave its children nothing to
    inherit (and a resume would refuse the archive for the missing file)."""
    from growrnn.search.loop import _Search
    db = tmp_path / "s.db"
    config = debug_config(inherit=True)
    gru = library_cell("gru")
    with Archive.open(db, {"seed": 0}) as archive:
        for _ in range(2):
            i = archive.add(gru.to_json(), gru.to_text(), gru.key, [], "initial", 0, 0)
            archive.finish(i, {"val": 1.0, "diverged": diverged}, [{"step": 1, "val": 1.0}], {"val": 1.0}, 0.0)
        new = archive.get(archive.add(gru.to_json(), gru.to_text(), gru.key, [1], "mutate", 0, 1))
        search = _Search(config, db, archive, executor=None)  # type: ignore[arg-type]
        search.weights.mkdir()
        for i in kept:
            (search.weights / f"{i}.pt").write_bytes(b"weights")
        trains, copies = search._triage([new], {})
        row = archive.get(new.id)
        if source is None:
            assert trains == [new] and row.status == "pending"
        else:
            assert trains == [] and row.status == "done" and row.metrics["reused_from"] == source
            assert (search.weights / f"{new.id}.pt").is_file() is (not diverged)


# ------------------------------------------------------------------------------------ resume
def _done_rows(db: Path) -> dict[int, CandidateRow]:
    with Archive.open(db) as archive:
        return {r.id: r for r in archive.rows("done")}


@pytest.mark.slow
def test_kill_9_then_resume_reaches_the_uninterrupted_population(reference: tuple[Path, SearchResult],
                                                                  tmp_path: Path) -> None:
    kill_9_and_resume(DEBUG, tmp_path, reference[0])


def kill_9_and_resume(config: Path, tmp_path: Path, reference: Path) -> Path:
    """Run ``growrnn search --config config`` in a process, ``kill -9`` it once a candidate of
    generation 1 is done, resume it, and check that it evaluated nothing twice and ended with the
    population of the uninterrupted archive ``reference``. Returns the resumed archive."""
    db = tmp_path / "killed.db"
    cmd = [sys.executable, "-m", "growrnn.cli", "search", "--config", str(config), "--db", str(db),
           "--progress", "false", "--confirm", "null"]
    kill_9_when(cmd, db, "SELECT COUNT(*) FROM candidates WHERE status = 'done' AND generation >= 1", 1,
                tmp_path / "search.log", REPO)
    before = _done_rows(db)
    with Archive.open(db) as archive:
        last = archive.last_generation()
        assert last is not None and last.gen < 2, "the kill came after the search had finished"
        assert any(r.generation >= 1 for r in before.values())
    from growrnn.commands.search import main
    assert main(["--config", str(config), "--db", str(db), "--progress", "false", "--confirm", "null"]) == 0
    after = _done_rows(db)
    for i, row in before.items():  # finished before the kill: not evaluated again
        assert (after[i].started, after[i].finished, after[i].attempts, after[i].metrics) == \
            (row.started, row.finished, row.attempts, row.metrics)
    assert population_keys(db) == population_keys(reference)
    assert_same_population(db, reference)  # trained in another process
    return db


class CtrlCKeeper(job_module._Keeper):
    """The job's callback, plus a Ctrl-C (SIGINT to this process) at the third training step of
    the ``at``-th training run of the search: inside Lightning's ``fit``, which turns it into
    ``sys.exit(1)``."""

    at, runs = 0, 0

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            type(self).runs += 1

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if type(self).runs == self.at and trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.usefixtures("ctrl_c_reaches_python")
@pytest.mark.parametrize("at", [2, 6])  # in generation 0; in generation 1, in its rungs
def test_ctrl_c_inline_stops_and_resume_reaches_the_uninterrupted_population(
        reference: tuple[Path, SearchResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    """Ctrl-C during an inline candidate (workers: 0) stops the search; the candidate is neither
    stored as failed nor retrained behind the user's back (retries: 1), and running the search
    again reaches the uninterrupted population."""
    db = tmp_path / "ctrl_c.db"
    monkeypatch.setattr(CtrlCKeeper, "at", at)
    monkeypatch.setattr(CtrlCKeeper, "runs", 0)
    monkeypatch.setattr(job_module, "_Keeper", CtrlCKeeper)
    with pytest.raises(KeyboardInterrupt):
        run_search(debug_config(retries=1), db)
    assert CtrlCKeeper.runs == at, "nothing trained after the interrupted candidate"
    with Archive.open(db) as archive:
        assert archive.counts()["failed"] == 0 and archive.rows("running"), "stopped, not failed"
    monkeypatch.undo()
    assert run_search(debug_config(retries=1), db).population == reference[1].population
    assert_same_population(db, reference[0])


# ------------------------------------------------------------------------------------ executors
@pytest.mark.slow
def test_process_pool_gives_the_inline_population(reference: tuple[Path, SearchResult], tmp_path: Path) -> None:
    db = tmp_path / "pool.db"
    run_search(debug_config(workers=2), db)
    assert_same_population(db, reference[0])


@pytest.mark.slow
def test_ray_gives_the_inline_population(reference: tuple[Path, SearchResult], tmp_path: Path) -> None:
    need_ray()
    import ray

    db = tmp_path / "ray.db"
    run_search(debug_config(executor="ray", workers=2), db)
    assert not ray.is_initialized(), "the search shuts down the Ray it started"
    assert_same_population(db, reference[0])


class FailingExecutor(LocalExecutor):
    """Inline, except that the jobs named in ``fail`` fail (as a crashed worker would)."""

    def __init__(self, fail: set[str]):
        super().__init__(workers=0)
        self.fail = fail

    def run(self, jobs: Sequence[Job]) -> Iterator[Outcome]:  # type: ignore[override]
        for job in jobs:
            if job.key in self.fail:
                yield Outcome(job.key, "crashed", error="worker process 1 was killed by SIGKILL", attempts=2)
            else:
                yield from super().run([job])


def test_a_failed_candidate_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "failing.db"
    with FailingExecutor({"2", "6"}) as executor:
        result = run_search(debug_config(generations=1), db, executor=executor)
    with Archive.open(db) as archive:
        assert [(r.id, r.status) for r in archive.rows("failed")] == [(2, "failed"), (6, "failed")]
        assert "crashed after 2 attempt(s)" in str(archive.get(2).error)
        assert archive.last_generation() is not None
    assert 2 not in result.population and 6 not in result.population, "failed rows are worst in every objective"


def test_novelty_and_predictor_state_travel_with_the_generations(tmp_path: Path) -> None:
    db = tmp_path / "extras.db"
    config = debug_config(generations=1, novelty=NoveltyConfig(k=2, steps=5), predictor=PredictorConfig(k=2,
                                                                                                         min_train=2))
    run_search(config, db)
    with Archive.open(db) as archive:
        state = archive.generations()[0].state
        assert state["predictor"]["n_train"] == 4 and math.isfinite(state["threshold"])
        assert len(state["novelty"]["entries"]) == 4
        assert all(len(row) == 3 for row in archive.generations()[1].state["F"]), "val, params, -novelty"
        assert all("stopped_early" in (r.metrics or {}) for r in archive.rows(generation=1))


# ------------------------------------------------------------------------------------ the job
def test_diverging_candidate_is_a_bad_fitness_not_a_crash() -> None:
    out = run_candidate({**TASK, "genome_json": library_cell("elman").to_json(), "seed": 0,
                         "model": {"hidden_size": 8, "optimizer": "sgd", "lr": 1e12}, "trainer": {}})
    assert out["metrics"]["diverged"] and out["objectives"]["val"] == math.inf


def test_predictor_stops_a_hopeless_candidate() -> None:
    from growrnn.search.predictor import CurvePredictor
    predictor = CurvePredictor(k=1, epochs=5).fit([[1.0, 0.5], [2.0, 1.0], [3.0, 1.5]], [0.5, 1.0, 1.5])
    spec = {"state": predictor.state_dict(), "threshold": -1e9, "margin": 0.0, "min_train": 2, "direction": "min"}
    out = run_candidate({**TASK, "genome_json": library_cell("gru").to_json(), "seed": 0,
                         "model": {"hidden_size": 8}, "predictor": spec})
    m = out["metrics"]
    assert m["stopped_early"] and m["steps"] == 5, "stopped at the first validation"
    assert out["objectives"]["val"] == m["predicted"] and len(out["curve"]) == 1


@pytest.mark.parametrize("grow", [
    {"signal": "outgoing_l1", "p_spontaneous": 1.0, "p_delete": 0.0, "max_units": 12},
    {"max_units": 12, "paired_steps": 4, "paired_targets": 0, "paired_margin": 0.0},  # the default signal, paired
])
def test_growth_makes_params_the_grown_count(tmp_path: Path, grow: dict) -> None:
    from growrnn.task import get_task
    from growrnn.training.model import SequenceModel
    payload = {**TASK, "genome_json": library_cell("gru").to_json(), "seed": 0, "grow": grow,
               "model": {"hidden_size": [4]}, "weights_out": str(tmp_path / "parent.pt")}
    out = run_candidate(payload)
    (size,) = out["metrics"]["hidden_sizes"]
    spec = get_task("adding", **TASK["task_options"]).spec  # type: ignore[arg-type]
    grown = SequenceModel(spec, cell="gru", hidden_size=[size])
    assert size > 4 and out["objectives"]["params"] == sum(p.numel() for p in grown.parameters())
    # a child starts at the parent's grown width, with its weights
    child = run_candidate({**payload, "weights_out": None,
                           "parent": {"path": str(tmp_path / "parent.pt"), "genome_json": payload["genome_json"]}})
    assert child["metrics"]["inherited"] == 6
    if "signal" in grow:  # Miconi's signal with P_spontaneous 1 only adds; paired trials may shrink it
        assert child["metrics"]["hidden_sizes"][0] >= size


def test_inherited_child_of_a_function_preserving_morphism_computes_the_parent(tmp_path: Path) -> None:
    from growrnn.task import get_task
    from growrnn.training.model import SequenceModel
    spec = get_task("adding", **TASK["task_options"]).spec  # type: ignore[arg-type]
    parent_genome = library_cell("gru")
    # JSON round trip: the ids a search stores
    child_genome = Genome.from_json(add_connection(parent_genome, random.Random(0), Limits()).to_json())
    parent = SequenceModel(spec, cell=parent_genome.to_text(), hidden_size=6, seed=1)
    save_weights(tmp_path / "p.pt", parent, parent_genome.to_json())
    child = SequenceModel(spec, cell=child_genome, hidden_size=6, seed=2)  # the genome as it is: ids and all
    assert inherit_into(child, tmp_path / "p.pt", parent_genome) == 6
    x = torch.randn(3, 7, spec.input_size, generator=torch.Generator().manual_seed(0))
    parent.eval()
    child.eval()
    torch.testing.assert_close(child(x)[0], parent(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("stored", "inherited"), [
    ("r = sigmoid(affine(h) + affine(x))\nz = sigmoid(affine(h) + affine(x))\n"
     "n = tanh(r * affine(h) + affine(x))\nh' = z * h + (1 - z) * n\n", 6),  # the GRU, written otherwise
    ("h' = tanh(affine(x) + linear(h))\n", 0),  # another cell: the child trains from scratch
])
def test_a_parent_that_reused_an_equivalent_cells_weights_passes_them_on(tmp_path: Path, stored: str,
                                                                          inherited: int) -> None:
    """A duplicate's weights file holds the cell it copied: written otherwise, the same cell."""
    from growrnn.task import get_task
    from growrnn.training.model import SequenceModel
    spec = get_task("adding", **TASK["task_options"]).spec  # type: ignore[arg-type]
    parent_genome, stored_genome = library_cell("gru"), parse(stored)
    child_genome = Genome.from_json(add_connection(parent_genome, random.Random(0), Limits()).to_json())
    trained = SequenceModel(spec, cell=stored_genome, hidden_size=6, seed=1)
    save_weights(tmp_path / "p.pt", trained, stored_genome.to_json())
    child = SequenceModel(spec, cell=child_genome, hidden_size=6, seed=2)
    assert inherit_into(child, tmp_path / "p.pt", parent_genome) == inherited
    if inherited:  # the child computes what the trained equivalent cell computes
        x = torch.randn(3, 7, spec.input_size, generator=torch.Generator().manual_seed(0))
        trained.eval()
        child.eval()
        torch.testing.assert_close(child(x)[0], trained(x)[0], rtol=1e-5, atol=1e-6)


def test_resuming_without_the_weights_folder_is_refused(reference: tuple[Path, SearchResult], tmp_path: Path) -> None:
    """Without ``<db>_weights/`` the children would train from scratch: another search than the
    archive records, so the resume is refused and names the folder."""
    db = tmp_path / "moved.db"
    shutil.copyfile(reference[0], db)  # the database copied along, its weights folder not
    with pytest.raises(SearchError, match=r"cannot resume .*moved.db: the weights of \d+ of the population's "
                       r"candidates .* are missing from .*moved_weights.*HINT: .*copy the moved_weights/ folder"):
        run_search(debug_config(generations=3), db)
    shutil.copytree(weights_dir(reference[0]), weights_dir(db))
    assert run_search(debug_config(generations=3), db).generation == 3  # with the folder back it goes on
