"""Multi-fidelity rungs: budgets, promotion on a front, survival by fidelity, a fake-metric search
with exactly the expected promotions, the predictor's part, and kill -9 during a rung."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from growrnn.errors import ArgumentError
from growrnn.evaluation.config import Budget
from growrnn.executors import Job, LocalExecutor, Outcome
from growrnn.genome.graph import Genome
from growrnn.search.config import PredictorConfig, RungConfig, SearchConfig, check_config, load_config
from growrnn.search.loop import SearchResult, run_search
from growrnn.search.rungs import promote, rung_budgets, rung_dir, rung_tiers, tiered_survival
from growrnn.search.storage import Archive, CandidateRow, RungRow
from tests.conftest import kill_9_when

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug" / "search.yaml"


def debug_config(**changes: object) -> SearchConfig:
    changes.setdefault("confirm", None)
    return dataclasses.replace(load_config(DEBUG), progress=False, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ the schedule
@pytest.mark.parametrize(("budget", "eta", "count", "expected"), [
    (Budget(steps=20, val_every=5), 2, 3, [{"steps": 5}, {"steps": 10}, {"steps": 20}]),
    (Budget(epochs=40), 3, 3, [{"epochs": 5}, {"epochs": 14}, {"epochs": 40}]),
    (Budget(epochs=40), 2, 1, [{"epochs": 40}]),
    (Budget(steps=100, epochs=9, val_every=10), 3, 2, [{"steps": 34, "epochs": 3}, {"steps": 100, "epochs": 9}]),
])
def test_rung_budgets(budget: Budget, eta: int, count: int, expected: list) -> None:
    budgets = rung_budgets(budget, RungConfig(eta, count))
    assert [{k: v for k, v in b.as_dict().items() if k != "val_every"} for b in budgets] == expected
    assert all(b.val_every == budget.val_every for b in budgets) and budgets[-1] == budget


@pytest.mark.parametrize(("budget", "rungs", "match"), [
    ({"steps": 4, "val_every": 1}, {"reduction_factor": 2, "count": 4},
     r"'rungs'.*budget.steps 4 splits into \[1, 1, 2, 4\]"),
    ({"seconds": 60}, {}, "'budget.seconds'.*null with rungs"),
    ({"steps": 20}, {}, "'budget.val_every'.*HINT: a rung that ends mid-epoch"),
    ({"steps": 20, "val_every": 5}, {"reduction_factor": 1}, "'rungs.reduction_factor'.*an int >= 2"),
    ({"steps": 20, "val_every": 5}, {"count": 0}, "'rungs.count'.*an int >= 1"),
])
def test_rung_config_mistakes_name_the_key(budget: dict, rungs: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        check_config(debug_config(budget=Budget(**budget), rungs=RungConfig(**rungs)))


INF = math.inf


@pytest.mark.parametrize(("F", "eta", "expected"), [
    ([[0.3], [0.1], [0.2], [0.4]], 2, [1, 2]),                                  # one objective: the best half
    ([[0.3], [0.1], [0.2], [0.4], [0.5]], 2, [1, 2, 0]),                        # ceil(5 / 2) = 3
    ([[0.3], [0.1], [0.2], [0.4], [0.5]], 3, [1, 2]),                           # ceil(5 / 3) = 2
    ([[0.1, 9], [0.2, 5], [0.3, 6], [0.9, 1], [INF, INF]], 2, [0, 3, 1]),       # the front, ends first
    ([[0.1, 9], [0.2, 5], [0.3, 6], [0.9, 1]], 4, [0]),                         # a tie of ends: lower index
    ([[INF, INF], [0.5, 1.0], [INF, INF], [INF, INF]], 2, [1]),                 # never a failed row
    ([[INF, INF], [INF, INF]], 2, []),
    ([[0.2, 1.0], [0.2, 1.0], [0.1, 2.0]], 2, [0, 2]),                           # duplicates: the first copy
])
def test_promotion_is_nsga_ii_survival_of_the_finite_rows(F: list, eta: int, expected: list) -> None:
    assert promote(np.array(F, dtype=float), eta).tolist() == expected


@pytest.mark.parametrize(("F", "tiers", "mu", "expected"), [
    ([[0.5], [0.1], [0.9]], [0, 1, 0], 2, [0, 2]),       # the better unpromoted row waits for places
    ([[0.5], [0.1], [0.9]], [0, 1, 0], 3, [0, 2, 1]),
    ([[0.5], [0.1], [0.2], [0.9]], [1, 2, 1, 0], 3, [3, 2, 0]),
    ([[0.5, 1], [0.1, 2]], [0, 0], 1, [0]),             # within a tier: plain NSGA-II survival
])
def test_tiered_survival(F: list, tiers: list, mu: int, expected: list) -> None:
    assert tiered_survival(np.array(F, dtype=float), np.array(tiers), mu).tolist() == expected


def test_tiers_put_failed_rows_last() -> None:
    values = [{}, {"rung": 2}, {"rung": 0}, {"rung": 1}, {"failed": True}]
    F = np.array([[0.1], [0.2], [0.3], [0.4], [INF]])
    assert rung_tiers(values, F, 3).tolist() == [0, 0, 2, 1, 3]


# ------------------------------------------------------------------------------------ a fake search
def fake_val(genome_json: str, steps: int) -> float:
    """A metric of the cell alone (its key) that improves with the budget: the ranking within a
    rung is the ranking of the keys."""
    return int(Genome.from_json(genome_json).key[:8], 16) / 16**8 + 1.0 / steps


class FakeExecutor(LocalExecutor):
    """Inline, without training: each job's result is :func:`fake_val` on its budget, with a curve
    on the ``val_every`` cadence, constant parameters (so one front is the ranking by val) and its
    rung checkpoint written empty where the run would write one."""

    def __init__(self) -> None:
        super().__init__(workers=0)
        self.payloads: list[dict[str, Any]] = []

    def run(self, jobs: Sequence[Job]) -> Iterator[Outcome]:  # type: ignore[override]
        for job in jobs:
            p = job.args[0]
            self.payloads.append(p)
            steps, every = p["budget"]["steps"], p["budget"]["val_every"]
            start = 0
            if p.get("resume_from"):
                start = int(Path(p["resume_from"]).read_text())
            if p.get("checkpoint_to"):
                Path(p["checkpoint_to"]).parent.mkdir(parents=True, exist_ok=True)
                Path(p["checkpoint_to"]).write_text(str(steps))
            curve = [{"step": s, "epoch": 0, "val": fake_val(p["genome_json"], s), "train_loss": 0.0}
                     for s in range(start + every, steps + 1, every)]
            val = fake_val(p["genome_json"], steps)
            metrics = {"val": val, "test": None, "params": 100, "direction": "min", "diverged": False,
                       "steps": steps, "inherited": 1, "stopped_early": False, "train_steps_spent": steps - start}
            yield Outcome(job.key, "ok", value={"metrics": metrics, "curve": curve, "seconds": 0.0,
                                                "objectives": {"val": val, "params": 100.0, "macs": 1.0,
                                                               "weighted_nodes": 1.0}})


def _fake_search(tmp_path: Path, **changes: object) -> tuple[Path, FakeExecutor]:
    db = tmp_path / "fake.db"
    executor = FakeExecutor()
    run_search(debug_config(**changes), db, executor=executor)
    return db, executor


def _base(row: CandidateRow) -> float:
    return int(row.key[:8], 16) / 16**8


def test_a_fake_search_promotes_exactly_the_best_of_each_rung(tmp_path: Path) -> None:
    db, executor = _fake_search(tmp_path, generations=3)
    with Archive.open(db, read_only=True) as archive:
        for gen in (1, 2, 3):
            rows = {r.id: r for r in archive.rows(generation=gen)}
            runs = archive.rungs(list(rows))
            cohorts = [[r.candidate for r in runs if r.rung == k] for k in range(3)]
            # each rung keeps ceil(n / 2) of its cohort: those whose cell is best (one front: params are equal)
            for k in (1, 2):
                ranked = sorted(cohorts[k - 1], key=lambda i: _base(rows[i]))
                assert sorted(cohorts[k]) == sorted(ranked[: math.ceil(len(ranked) / 2)]), (gen, k)
            trained = [r for r in rows.values() if "reused_from" not in (r.metrics or {})]
            assert sorted(cohorts[0]) == sorted(r.id for r in trained) and len(cohorts[2]) >= 1
            by = {(r.candidate, r.rung): r for r in runs}
            for r in runs:  # stored: the score ranked on (the observed val here), the decision, the steps
                assert r.status == "done" and r.steps == {0: 5, 1: 5, 2: 10}[r.rung]
                assert r.score == (None if r.rung == 2 else pytest.approx(fake_val(rows[r.candidate].genome_json,
                                                                                   5 * 2**r.rung)))
                assert r.promoted == (None if r.rung == 2 else (r.candidate, r.rung + 1) in by)
            for c in cohorts[0]:  # each candidate: its last rung's result, marked, and every step it trained
                m, last = rows[c].metrics or {}, max(k for k in range(3) if c in cohorts[k])
                assert (m["rung"], m["unpromoted"], m["train_steps_spent"]) == (last, last < 2, 5 * 2**last)
                assert rows[c].objectives["val"] == pytest.approx(fake_val(rows[c].genome_json, 5 * 2**last))
                assert [p["step"] for p in rows[c].curve or []] == list(range(5, 5 * 2**last + 1, 5))
        # survival by fidelity: a full-budget candidate is never displaced by an unpromoted one
        for g in archive.generations():
            population = [archive.get(i) for i in g.population]
            assert all(not (r.metrics or {}).get("unpromoted") for r in population), g.gen
        steps = [g.stats["train_steps"] for g in archive.generations()]
    assert steps[0] == 4 * 20 and all(s < 4 * 20 for s in steps[1:]), "rungs spend fewer steps"
    # each later rung went on from the rung before's checkpoint, never from a parent's weights
    resumed = [p for p in executor.payloads if p.get("resume_from")]
    assert resumed and all(p["parent"] is None and p["predictor"] is None for p in resumed)
    assert [p.name for p in rung_dir(db).glob("*")] == ["archive.txt"], "the saved generation's checkpoints are deleted"


def test_the_predictor_ranks_a_rung_once_it_is_trained(tmp_path: Path) -> None:
    from growrnn.search.predictor import CurvePredictor, EarlyStopRule

    db, _ = _fake_search(tmp_path, generations=1, predictor=PredictorConfig(k=1, min_train=2, epochs=20))
    with Archive.open(db, read_only=True) as archive:
        state = archive.generations()[0].state
        rule = EarlyStopRule(CurvePredictor.from_state(state["predictor"]), "min", 0.0, 2)
        runs: list[RungRow] = [r for r in archive.rungs([r.id for r in archive.rows(generation=1)]) if r.rung == 0]
    assert state["predictor"]["n_train"] == 4, "trained on generation 0's full curves"
    predicted = [rule.predict_final([p["val"] for p in r.curve or []]) for r in runs]
    assert [r.score for r in runs] == pytest.approx(predicted), "ranked on the predicted final val"
    order = sorted(range(len(runs)), key=lambda i: predicted[i])
    assert {runs[i].candidate for i in order[: math.ceil(len(runs) / 2)]} == {r.candidate for r in runs if r.promoted}


# ------------------------------------------------------------------------------------ kill -9
@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SearchResult]:
    """The debug search (rungs on), uninterrupted and inline."""
    db = tmp_path_factory.mktemp("rungs") / "search.db"
    return db, run_search(debug_config(), db)


def _state(db: Path) -> tuple[dict, dict]:
    with Archive.open(db, read_only=True) as archive:
        return ({(r.candidate, r.rung): r for r in archive.rungs()},
                {r.id: r for r in archive.rows() if r.status == "done"})


def test_the_debug_search_trains_in_rungs(reference: tuple[Path, SearchResult]) -> None:
    runs, done = _state(reference[0])
    assert {r.rung for r in runs.values()} == {0, 1, 2} and all(r.status == "done" for r in runs.values())
    assert any(m.metrics.get("unpromoted") for m in done.values())
    full = [m for m in done.values() if m.generation >= 1 and (m.metrics or {}).get("rung") == 2]
    assert full and all(m.metrics["steps"] == 20 and m.metrics["train_steps_spent"] == 20 for m in full)


@pytest.mark.slow
def test_kill_9_during_a_rung_then_resume_repeats_nothing(reference: tuple[Path, SearchResult],
                                                          tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    cmd = [sys.executable, "-m", "growrnn.cli", "search", "--config", str(DEBUG), "--db", str(db),
           "--progress", "false", "--confirm", "null"]
    # a rung past the first done, in a generation not yet saved
    kill_9_when(cmd, db, "SELECT COUNT(*) FROM rungs WHERE rung >= 1 AND status = 'done' AND candidate IN "
                "(SELECT id FROM candidates WHERE generation > (SELECT COALESCE(MAX(gen), 0) FROM generations))", 1,
                tmp_path / "search.log", REPO)
    runs_before, done_before = _state(db)
    runs_before = {k: r for k, r in runs_before.items() if r.status == "done"}
    assert any(k[1] >= 1 for k in runs_before)
    from growrnn.commands.search import main
    assert main(["--config", str(DEBUG), "--db", str(db), "--progress", "false", "--confirm", "null"]) == 0
    runs_after, done_after = _state(db)
    for k, r in runs_before.items():  # a rung run that had finished is not trained again
        after = runs_after[k] if r.promoted is not None else dataclasses.replace(runs_after[k], score=None,
                                                                                 promoted=None)
        assert after == r  # (a cohort that had not been decided is decided after the resume)
    for i, row in done_before.items():
        assert (done_after[i].started, done_after[i].finished, done_after[i].metrics) == \
            (row.started, row.finished, row.metrics)
    ref_runs, ref_done = _state(reference[0])
    assert sorted(runs_after) == sorted(ref_runs), "the same rungs, the same promotions"
    assert [(r.promoted, r.score, r.objectives) for _, r in sorted(runs_after.items())] == \
        [(r.promoted, r.score, r.objectives) for _, r in sorted(ref_runs.items())]
    with Archive.open(db, read_only=True) as a, Archive.open(reference[0], read_only=True) as b:
        last_a, last_b = a.last_generation(), b.last_generation()
        assert last_a is not None and last_b is not None and last_a.population == last_b.population
        assert [a.get(i).objectives for i in last_a.population] == [b.get(i).objectives for i in last_b.population]


class Killed(BaseException):
    """Stands for a kill: nothing after it runs, not even the executor's bookkeeping."""


class KilledOnce(FakeExecutor):
    """:class:`FakeExecutor` killed as its first job that goes on from a rung checkpoint starts."""

    def run(self, jobs: Sequence[Job]) -> Iterator[Outcome]:  # type: ignore[override]
        for job in jobs:
            if job.args[0].get("resume_from") and not any(p.get("resume_from") for p in self.payloads):
                self.payloads.append(job.args[0])
                raise Killed
            yield from super().run([job])


def test_an_interrupted_rung_resumes_to_the_same_search_and_needs_its_checkpoints(tmp_path: Path) -> None:
    import shutil

    from growrnn.errors import SearchError
    config = debug_config(generations=2, inherit=False)  # the fake writes no weights
    reference, _ = _fake_search(tmp_path / "ref", generations=2, inherit=False)
    db = tmp_path / "killed.db"
    with pytest.raises(Killed):
        run_search(config, db, executor=KilledOnce())
    with Archive.open(db, read_only=True) as archive:
        assert archive.last_generation().gen == 0 and any(r.status == "running" for r in archive.rungs())
    saved = tmp_path / "saved_rungs"
    shutil.copytree(rung_dir(db), saved)
    shutil.rmtree(rung_dir(db))
    with pytest.raises(SearchError, match=r"cannot go on with rung 1 of candidate \d+: its rung 0 checkpoint .* is "
                       r"missing.*HINT: the killed_rungs/ folder"):
        run_search(config, db, executor=FakeExecutor())
    shutil.copytree(saved, rung_dir(db), dirs_exist_ok=True)  # the refused run left the folder, marked
    run_search(config, db, executor=FakeExecutor())
    with Archive.open(db, read_only=True) as a, Archive.open(reference, read_only=True) as b:
        def summary(archive: Archive) -> list:
            return [(r.candidate, r.rung, r.status, r.steps, r.score, r.promoted) for r in archive.rungs()]
        assert summary(a) == summary(b)
        assert [(r.id, r.objectives, (r.metrics or {}).get("rung")) for r in a.rows()] == \
            [(r.id, r.objectives, (r.metrics or {}).get("rung")) for r in b.rows()]
        assert a.last_generation().population == b.last_generation().population
        first_rung = [r for r in a.rungs() if r.rung == 0 and a.get(r.candidate).generation == 1]
        assert all(r.attempts == 1 for r in first_rung), "rung 0 of generation 1 had finished: not trained again"
