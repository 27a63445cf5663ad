"""Confirmation: the debug search confirms its front and baselines from scratch in seconds, one
run is deterministic given its seed, kill -9 during confirmation then resume repeats nothing,
export and the report rank by the confirmed metric, and the archive table behaves."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from growrnn.errors import ArgumentError, SearchError
from growrnn.genome.library import library_cell
from growrnn.search.config import ConfirmConfig, SearchConfig, load_config
from growrnn.search.confirm import confirm_search, confirm_seed, confirmed_cells, summary
from growrnn.search.export import export_front
from growrnn.search.job import base_payload, run_candidate
from growrnn.search.loop import SearchResult, run_search
from growrnn.search.report import confirmation_markdown
from growrnn.search.storage import Archive, ConfirmationRow
from tests.conftest import kill_9_when

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug" / "search.yaml"


def debug_config(**changes: object) -> SearchConfig:
    return dataclasses.replace(load_config(DEBUG), progress=False, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SearchResult]:
    """The debug search with its confirmation (on in configs/debug/search.yaml), uninterrupted."""
    db = tmp_path_factory.mktemp("confirmed") / "search.db"
    return db, run_search(debug_config(), db)


def _runs(db: Path) -> dict[tuple[str, int], ConfirmationRow]:
    with Archive.open(db, read_only=True) as archive:
        return {(r.key, r.seed_index): r for r in archive.confirmations()}


# ------------------------------------------------------------------------------------ the search
def test_the_debug_search_confirms_its_front_and_baselines(confirmed: tuple[Path, SearchResult]) -> None:
    db, result = confirmed
    config = debug_config()
    assert config.confirm == ConfirmConfig(seeds=3)
    report = result.confirmation
    assert report is not None
    with Archive.open(db, read_only=True) as archive:
        assert archive.confirmation_report() == report
        last = archive.last_generation()
        assert last is not None and report["generation"] == last.gen == config.generations
        assert last.stats["front"], "the generation's front"
        front_keys = {archive.get(i).key for i in last.stats["front"]}
        init_keys = {r.key for r in archive.rows(generation=0) if r.operator == "init"}
        runs = archive.confirmations()
    assert {library_cell(n).key for n in config.initial} == init_keys
    cells = {c["key"]: c for c in report["cells"]}
    assert set(cells) == front_keys | init_keys, "the final front and the seeded baselines, one row per cell"
    assert all(("front" in c["roles"]) == (k in front_keys) and ("baseline" in c["roles"]) == (k in init_keys)
               for k, c in cells.items())
    # every cell: seeds 0, 1, 2, the same three training seeds for all, every run done from scratch
    assert sorted((r.key, r.seed_index) for r in runs) == sorted((k, i) for k in cells for i in range(3))
    assert {(r.seed_index, r.seed) for r in runs} == {(i, confirm_seed(config.seed, i)) for i in range(3)}
    assert all(r.status == "done" and r.attempts == 1 for r in runs)
    assert all(r.metrics["inherited"] == 0 and not r.metrics["stopped_early"] for r in runs)  # type: ignore[index]
    # ranked by the confirmed mean, with its spread and the search's score beside it
    means = [c["val_mean"] for c in report["cells"]]
    assert means == sorted(means) and all(c["done"] == 3 and c["val_std"] >= 0 for c in report["cells"])
    assert all(c["search_val"] is not None for c in report["cells"])
    assert report["compared"] == len(cells) and -1.0 <= report["spearman"] <= 1.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(result.tensorboard), size_guidance={"tensors": 0, "images": 0}).Reload()
    assert [e.value for e in events.Scalars("search/confirmed_spearman")] == [pytest.approx(report["spearman"])]
    assert "search/confirmed/text_summary" in events.Tags()["tensors"]
    assert "search/confirmed_pareto" in events.Tags()["images"]


def test_one_confirmation_run_is_deterministic_given_its_seed(confirmed: tuple[Path, SearchResult]) -> None:
    db, _ = confirmed
    config = debug_config()
    with Archive.open(db, read_only=True) as archive:
        run = archive.confirmations(status="done")[0]
        genome_json = archive.get(run.candidate).genome_json
    again = run_candidate(base_payload(config, genome_json, run.seed))
    assert (again["metrics"]["val"], again["metrics"]["test"], again["curve"]) == \
        (run.metrics["val"], run.metrics["test"], run.curve)  # type: ignore[index]
    other = run_candidate(base_payload(config, genome_json, confirm_seed(config.seed, 7)))
    assert other["metrics"]["val"] != run.metrics["val"], "another seed, another run"  # type: ignore[index]


def test_resuming_a_confirmed_search_trains_nothing(confirmed: tuple[Path, SearchResult]) -> None:
    db, result = confirmed
    before = _runs(db)
    assert run_search(debug_config(), db).confirmation == result.confirmation
    assert _runs(db) == before


def test_more_seeds_later_trains_only_the_new_ones(confirmed: tuple[Path, SearchResult], tmp_path: Path) -> None:
    db = tmp_path / "more.db"
    shutil.copyfile(confirmed[0], db)
    before = _runs(db)
    report = confirm_search(debug_config(confirm=ConfirmConfig(seeds=4)), db)
    after = _runs(db)
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == sorted((key, 3) for key, _ in before if _ == 0)
    assert report["seeds"] == 4 and all(c["done"] == 4 for c in report["cells"])


# ------------------------------------------------------------------------------------ kill -9
def _unconfirmed_copy(source: Path, db: Path) -> None:
    """A copy of a finished search whose confirmation never ran."""
    shutil.copyfile(source, db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM confirmations")
        conn.execute("DELETE FROM meta WHERE key = 'confirmation'")


@pytest.mark.slow
def test_kill_9_during_confirmation_then_resume_repeats_nothing(confirmed: tuple[Path, SearchResult],
                                                                 tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    _unconfirmed_copy(confirmed[0], db)
    cmd = [sys.executable, "-m", "growrnn.cli", "search", "confirm", "--db", str(db), "--progress", "false"]
    kill_9_when(cmd, db, "SELECT COUNT(*) FROM confirmations WHERE status = 'done'", 2, tmp_path / "confirm.log",
                REPO)
    before = {k: r for k, r in _runs(db).items() if r.status == "done"}
    assert 2 <= len(before) < len(_runs(confirmed[0])), "the kill came after the confirmation had finished"
    from growrnn.commands.search import main
    assert main(["confirm", "--db", str(db), "--progress", "false"]) == 0
    after = _runs(db)
    for k, row in before.items():  # finished before the kill: not trained again
        assert after[k] == row
    assert all(r.status == "done" and r.attempts <= 2 for r in after.values())
    reference = _runs(confirmed[0])
    def results(runs: dict) -> dict:  # what a run computes (metrics also hold its wall times)
        return {k: (r.seed, r.metrics["val"], r.metrics["test"], r.curve, r.objectives) for k, r in runs.items()}

    assert results(after) == results(reference), "the uninterrupted confirmation's results"
    with Archive.open(db, read_only=True) as a, Archive.open(confirmed[0], read_only=True) as b:
        assert a.confirmation_report() == b.confirmation_report()


# ------------------------------------------------------------------------------------ ranking
# name -> (search val, confirmed vals); search order r0 < r1 < r2, confirmed order r2 < lstm < r0 < r1
CELLS = {"r0": (0.10, [0.40, 0.50]), "r1": (0.20, [0.60, 0.70, 0.80]), "r2": (0.30, [0.20, 0.30]),
         "lstm": (0.35, [0.32, 0.36])}


def _built(tmp_path: Path, direction: str) -> Path:
    """A hand-made archive: r0, r1, r2 on the last front (params fall as val rises), the LSTM a
    baseline out of the population, confirmations with the values of CELLS."""
    import random

    from growrnn.genome.generate import random_genome

    sign = 1.0 if direction == "min" else -1.0
    rng = random.Random(3)
    db = tmp_path / f"{direction}.db"
    with Archive.open(db, {"seed": 0, "task": "adding"}) as archive:
        ids = {}
        for k, (name, (val, vals)) in enumerate(CELLS.items()):
            g = library_cell(name) if name == "lstm" else random_genome(rng)
            i = archive.add(g.to_json(), g.to_text(), g.key, [], "init" if name == "lstm" else "mutate", 0,
                            0 if name == "lstm" else 1)
            params = 1000 - 100 * k if name != "lstm" else 2000
            archive.finish(i, {"val": sign * val, "test": sign * val, "direction": direction}, [],
                           {"val": sign * val, "params": params}, 0.1)
            for s, v in enumerate(vals):
                archive.add_confirmation(i, s, confirm_seed(0, s))
                archive.mark_confirming(g.key, s)
                archive.finish_confirmation(g.key, s, {"val": sign * v, "test": sign * (v + 0.01)}, [],
                                            {"val": sign * v, "params": params}, 0.1)
            ids[name] = i
        archive.save_generation(1, [ids["r0"], ids["r1"], ids["r2"]], {"direction": direction}, {})
    return db


@pytest.mark.parametrize("direction", ["min", "max"])
def test_export_ranks_by_the_confirmed_metric(tmp_path: Path, direction: str) -> None:
    db = _built(tmp_path, direction)
    sign = 1.0 if direction == "min" else -1.0
    paths = export_front(db, tmp_path / "out")
    assert [p.name for p in paths][-2:] == ["front.csv", "confirmed.csv"]
    with (tmp_path / "out" / "front.csv").open() as fh:
        front = list(csv.DictReader(fh))
    names = {1: "r0", 2: "r1", 3: "r2", 4: "lstm"}  # ids in the order _built adds them
    assert [names[int(r["id"])] for r in front] == ["r2", "r0", "r1"], "by confirmed val; the search had r0, r1, r2"
    r2 = front[0]
    assert (float(r2["confirmed_val"]), float(r2["confirmed_val_std"]), float(r2["val"])) == \
        pytest.approx((sign * 0.25, math.sqrt(0.005), sign * 0.30))
    assert float(r2["confirmed_test"]) == pytest.approx(sign * 0.26) and r2["confirmed_runs"] == "2"
    # confirmed, r2 (0.25 at 800 parameters) dominates r0 (0.45 at 1000) and r1 (0.70 at 900)
    assert [r["confirmed_front"] for r in front] == ["True", "False", "False"]
    with (tmp_path / "out" / "confirmed.csv").open() as fh:
        listing = list(csv.DictReader(fh))
    assert [(r["rank"], names[int(r["id"])], r["role"]) for r in listing] == \
        [("1", "r2", "front"), ("2", "lstm", "baseline"), ("3", "r0", "front"), ("4", "r1", "front")]
    # the cell file a user receives carries its confirmed figures in its header
    header = (tmp_path / "out" / "cell_3.txt").read_text().splitlines()
    assert f"# confirmed from scratch (2 seeds, no inheritance): val={sign * 0.25:.6g} +- 0.071, " \
           f"test={sign * 0.26:.6g} +- 0.071" in header


def test_export_command_lists_a_cell_confirmed_once_or_diverged(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from growrnn.cli import main

    db = _built(tmp_path, "min")
    with closing(sqlite3.connect(db)) as conn, conn:  # r2: one seed left (no spread); r0 diverged in one
        conn.execute("DELETE FROM confirmations WHERE candidate = 3 AND seed_index = 1")
        where = "WHERE candidate = 1 AND seed_index = 0"
        objectives = json.loads(conn.execute(f"SELECT objectives FROM confirmations {where}").fetchone()[0])
        conn.execute(f"UPDATE confirmations SET objectives = ? {where}", (json.dumps({**objectives, "val": math.inf}),))
    assert main(["search", "export", "--db", str(db), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.endswith("cell_3.txt: confirmed val 0.2 (1 seeds), search val 0.3, 800 parameters")
               for line in lines), lines
    assert any("cell_1.txt: confirmed val inf (2 seeds)" in line for line in lines), lines


def test_unconfirmed_cells_rank_after_confirmed_ones_by_the_search_score(tmp_path: Path) -> None:
    db = _built(tmp_path, "min")
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM confirmations WHERE candidate = 1")  # r0: no confirmation
    with Archive.open(db, read_only=True) as archive:
        cells = confirmed_cells(archive, ["val", "params"])
    assert [c.candidate.id for c in cells] == [3, 4, 2, 1]
    assert math.isnan(cells[-1].val_mean) and cells[-1].search_val == 0.10
    report = summary(cells, 1, 2)
    assert report["compared"] == 3 and report["spearman"] == pytest.approx(-0.5)
    text = confirmation_markdown(report)
    assert "| 1 | 3 | front | 0.25 ± 0.07071 | 0.3 |" in text and "| 4 | 1 | front | - | 0.1 |" in text


def test_confirm_needs_a_saved_generation(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    config = debug_config()
    with Archive.open(db, json.loads(json.dumps(dataclasses.asdict(config)))):
        pass
    with pytest.raises(SearchError, match="no saved generation to confirm.*HINT"):
        confirm_search(config, db)
    with pytest.raises(SearchError, match="no search archive at .*HINT"):
        confirm_search(config, tmp_path / "missing.db")


@pytest.mark.parametrize(("seeds", "match"), [(0, "'confirm.seeds'.*an int >= 1.*Received: 0"),
                                              (1.5, "'confirm.seeds'")])
def test_bad_seed_counts_are_errors(seeds: object, match: str) -> None:
    from growrnn.search.config import check_config
    with pytest.raises(ArgumentError, match=match):
        check_config(debug_config(confirm=ConfirmConfig(seeds=seeds)))  # type: ignore[arg-type]
