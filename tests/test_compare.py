"""`growrnn compare`: the debug comparison runs end to end and resumes without redoing finished
runs, search archives expand into one entry per front cell, every shipped comparison config
loads, and config mistakes are errors that name the key and the allowed values."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

import growrnn as gr
from growrnn.cli import main
from growrnn.compare.config import FAMILIES, CompareConfig, load_config
from growrnn.compare.entries import resolve_entries
from growrnn.compare.runner import run_comparison
from growrnn.errors import ArgumentError

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "configs" / "debug" / "compare.yaml"
SHIPPED = sorted((REPO / "configs" / "compare").glob("*.yaml"))
FAMILY_TABLES = [p for p in SHIPPED if p.stem != "ptb_evolved"]  # issue [E]'s tables: every family, 3 sizes


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*.json"))}


def test_debug_comparison_writes_its_report_and_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    caplog.set_level(logging.INFO, logger="growrnn.compare")
    assert main(["compare", "--config", str(DEBUG), "--out", str(out)]) == 0
    # 2 entries x 2 tuning runs and seed 1 trained; each seed 0 is its entry's best tuning run
    assert "6 runs trained, 0 finished before, 2 the best tuning run's." in capsys.readouterr().out
    with (out / "results.csv").open(newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"lstm_8", "elman_grown"}
    assert {r["family"] for r in rows.values()} == {"baseline", "grown"}
    assert all(r["n_seeds"] == "2" and r["metric"] == "mse" and float(r["mean"]) > 0 for r in rows.values())
    assert rows["lstm_8"]["final_units"] == "8" and rows["lstm_8"]["setting"].startswith("lr=")
    # a grown entry reports the parameters of its final size: an Elman layer of H units on the adding
    # task (2 inputs, 1 output) has H*H + 5*H + 1 of them, encoder-free
    grown = [json.loads((out / "runs" / "elman_grown" / f"seed{s}.json").read_text()) for s in (0, 1)]
    sizes = [g["hidden_sizes"][0] for g in grown]
    assert all(h > 2 for h in sizes), "the debug controller adds units"
    assert int(rows["elman_grown"]["params"]) == round(sum(h * h + 5 * h + 1 for h in sizes) / 2)
    # what growth did, per seed in its record and as a mean in the table (Miconi's signal: no trials)
    added = [sum(g["result"]["growth"]["added"]) for g in grown]
    deleted = [sum(g["result"]["growth"]["deleted"]) for g in grown]
    assert [2 + a - d for a, d in zip(added, deleted, strict=True)] == sizes
    assert rows["elman_grown"]["growth"] == f"+{sum(added) / 2:g} -{sum(deleted) / 2:g}"  # two seeds: halves
    assert rows["lstm_8"]["growth"] == "-"
    md = (out / "results.md").read_text()
    assert md.count("\n| baseline |") == 1 and md.count("\n| grown |") == 1 and " ± " in md
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("lstm_8", "elman_grown"):
        for run in ("seed0", "seed1", "tune0", "tune1"):
            assert list((out / "tb" / name / run).glob("events.out.tfevents.*")), f"{name}/{run} logged nothing"
    assert list((out / "tb" / "_comparison").glob("events.out.tfevents.*"))

    before = _mtimes(out)
    assert len(before) == 8  # 2 entries x (2 tuning runs + 2 seeds)
    caplog.clear()
    assert main(["compare", "--config", str(DEBUG), "--out", str(out)]) == 0
    assert _mtimes(out) == before, "a rerun trains nothing"
    assert caplog.text.count("finished before, skipped") == 8

    (out / "runs" / "lstm_8" / "seed1.json").unlink()  # as if interrupted during that run
    caplog.clear()
    assert main(["compare", "--config", str(DEBUG), "--out", str(out)]) == 0
    after = _mtimes(out)
    assert set(after) == set(before)
    assert [k for k in after if after[k] != before[k]] == ["runs/lstm_8/seed1.json"]
    assert "[1/1] lstm_8/seed1" in caplog.text

    # runs made with another budget are not mixed into one table, nor silently thrown away
    with pytest.raises(ArgumentError,
                       match=r"tune0.json was made with other budget \(steps 6, now 7\).*HINT: use a new --out"):
        run_comparison(load_config(DEBUG, ["--budget.steps", "7"]), out)

    # a damaged run record is named, with how to redo that run
    record = out / "runs" / "lstm_8" / "seed1.json"
    good = record.read_text()
    for damaged, match in ((good[: len(good) // 2], "is not valid JSON .*a truncated write"),
                           ("[1, 2]", "holds a list, not a run record"),
                           (json.dumps({k: v for k, v in json.loads(good).items() if k != "result"}), "lacks result"),
                           (json.dumps({**json.loads(good), "result": {"val": 1.0}}), "lacks result.metric"),
                           (b"\xff\xfe\x00", "cannot be read")):
        record.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
        with pytest.raises(ArgumentError, match=f"'--out'.*seed1.json, which {match}.*HINT: delete .*seed1.json"):
            run_comparison(load_config(DEBUG), out, dry_run=True)
    record.write_text(good)


def _outcome(record: dict[str, Any]) -> str:
    """What a run found (not how long it took), as JSON text (a diverged run's NaN compares equal)."""
    result = {k: v for k, v in record["result"].items() if k not in ("wall_time", "train_seconds")}
    return json.dumps({"result": result, "hidden_sizes": record["hidden_sizes"], "train_steps": record["train_steps"]},
                      sort_keys=True)


@pytest.mark.parametrize(("budget", "every", "resumed"), [
    ("{steps: 6, val_every: 3}", "{steps: 2}", 2),  # the debug budget, cut between validations
    ("{steps: 6}", "{steps: 4}", 1),  # validated at epochs' ends (2 batches each), cut mid-epoch
    ("{epochs: 3}", None, 2),  # by default a part per epoch
    ("{epochs: 4, steps: 3}", None, 2),  # the steps cap comes in the second part: the last goes over it
])
def test_a_run_in_parts_goes_on_from_its_checkpoint_to_the_uninterrupted_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: str, every: str | None, resumed: int) -> None:
    import growrnn.evaluation

    args = ["--tuning", "{}", "--seeds", "[0]", "--model.lr", "0.03", "--budget", budget]
    whole = run_comparison(load_config(DEBUG, [*args, "--checkpoint_every", "{}"]), tmp_path / "whole")
    config = load_config(DEBUG, [*args, *(["--checkpoint_every", every] if every else [])])
    calls: list[dict[str, Any]] = []
    killed: set[str] = set()
    evaluate = growrnn.evaluation.evaluate

    def cut(*a: Any, **kw: Any) -> Any:  # the first comparison is killed in each run's second part
        calls.append({"budget": a[2], "resume_from": kw["resume_from"]})
        if kw["resume_from"] is not None and kw["logger"].name not in killed:
            killed.add(kw["logger"].name)
            raise RuntimeError("killed")
        return evaluate(*a, **kw)

    monkeypatch.setattr(growrnn.evaluation, "evaluate", cut)
    out = tmp_path / "parts"
    first = run_comparison(config, out)
    assert sorted(first.failed) == ["elman_grown/seed0", "lstm_8/seed0"]
    assert sorted(p.name for p in (out / "runs" / "lstm_8" / "seed0.parts").iterdir()) == ["part0.ckpt",
                                                                                          "progress.json"]
    tried = {name: set((out / "tb" / name / "seed0").glob("events.out.tfevents.*"))
             for name in ("lstm_8", "elman_grown")}
    calls.clear()
    second = run_comparison(config, out)
    assert sorted(second.trained) == ["elman_grown/seed0", "lstm_8/seed0"]
    assert len(calls) == 2 * resumed and all(c["resume_from"] is not None for c in calls), "each went on"
    for name in ("lstm_8", "elman_grown"):
        assert _outcome(second.records[name][0]) == _outcome(whole.records[name][0]), name
        assert not (out / "runs" / name / "seed0.parts").exists(), "the finished run's checkpoint is gone"
        events = set((out / "tb" / name / "seed0").glob("events.out.tfevents.*"))
        assert tried[name] and tried[name] < events, "the killed try's events stay: the run went on from them"
    assert whole.records["elman_grown"][0]["hidden_sizes"] != [2], "the grown layer grew across parts"
    left = out / "runs" / "lstm_8" / "seed0.parts"  # as if killed between the record and the cleanup
    left.mkdir()
    (left / "part1.ckpt").write_bytes(b"stale")
    assert run_comparison(config, out).skipped == ["lstm_8/seed0", "elman_grown/seed0"] and not left.exists()


@pytest.mark.parametrize(("lr", "every"), [(1e3, 3), (1e8, 4), (1e3, 6)])
def test_a_run_in_parts_diverges_where_the_uninterrupted_one_does(tmp_path: Path, lr: float, every: int) -> None:
    from growrnn.compare.runner import run_one, run_parts

    budget = {"steps": 12, "val_every": 4}
    settings = {"task": "adding", "task_options": {"length": 10, "n_train": 32, "n_eval": 16, "batch_size": 8},
                "model": {"hidden_size": 8, "optimizer": "sgd", "lr": lr}, "trainer": {"log_every_n_steps": 1},
                "budget": budget, "seed": 0, "cell": "lstm", "grow": None}
    whole = run_one({"settings": settings, "tb": [str(tmp_path / "tb"), "whole", "seed0"]})
    parts = run_parts(budget, {"steps": every})
    split = run_one({"settings": settings, "tb": [str(tmp_path / "tb"), "parts", "seed0"], "parts": parts,
                     "progress": str(tmp_path / "seed0.parts" / "progress.json")})
    assert whole["result"]["diverged"] and whole["result"]["steps"] < 12, "the case diverges"
    assert _outcome(split) == _outcome(whole)


@pytest.mark.parametrize(("budget", "every", "match"), [
    ({"steps": 6}, {"epochs": 1}, "'checkpoint_every'.*Allowed: \\{steps: k\\} \\(the budget's units\\)"),
    ({"epochs": 2, "steps": 6}, {"epochs": 1, "steps": 2}, "'checkpoint_every'.*\\{epochs: k\\} or \\{steps: k\\}"),
    ({"seconds": 5}, {"steps": 2}, "'checkpoint_every'.*a seconds budget trains in one piece"),
    ({"epochs": 2}, {"epochs": 0}, "'checkpoint_every.epochs'.*an int >= 1"),
    ({"epochs": 2}, {}, None),
])
def test_checkpoint_every_is_in_the_budgets_units(tmp_path: Path, budget: dict[str, Any], every: dict[str, Any],
                                                   match: str | None) -> None:
    config = yaml.safe_load(DEBUG.read_text())
    config.update(budget=budget, checkpoint_every=every)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    if match is None:
        assert load_config(path).checkpoint_every == {}
        return
    with pytest.raises(ArgumentError, match=match):
        load_config(path)


def _archive(path: Path) -> list[int]:
    """A finished one-generation search archive: an Elman cell (small, worse) and a GRU (bigger,
    better) are both on the front; an LSTM (bigger and worse than the GRU) is not."""
    from growrnn.search.storage import Archive

    ids = []
    with Archive.open(path, {"seed": 0, "task": "adding"}) as db:
        for name, val, params in (("elman", 0.30, 25.0), ("gru", 0.10, 60.0), ("lstm", 0.20, 80.0)):
            g = gr.genome.library_cell(name)
            i = db.add(g.to_json(), g.to_text(), g.key, [], "initial", 0, 0)
            db.finish(i, {"direction": "min", "val": val}, [], {"val": val, "params": params}, 1.0)
            ids.append(i)
        db.save_generation(0, ids, {}, {})
    return ids


def test_search_archive_expands_into_its_front_cells(tmp_path: Path) -> None:
    db = tmp_path / "search.db"
    elman, gru, _ = _archive(db)
    genome_file = tmp_path / "mine.txt"
    genome_file.write_text(gr.genome.library_cell("mgu").to_text())
    base = yaml.safe_load(DEBUG.read_text())
    base["entries"] = [{"name": "evo", "family": "evolved", "search_db": str(db), "hidden_size": 8},
                       {"name": "evo_grown", "family": "evolved_grown", "search_db": str(db), "hidden_size": [2],
                        "grow": {}},
                       {"name": "file", "family": "evolved", "cell": str(genome_file), "hidden_size": 8}]
    path = tmp_path / "evo.yaml"
    path.write_text(yaml.safe_dump(base))
    config = load_config(path)
    entries = resolve_entries(config, tmp_path / "out")
    assert [e.name for e in entries] == [f"evo_{gru}", f"evo_{elman}", f"evo_grown_{gru}", f"evo_grown_{elman}",
                                         "file"]
    assert [e.family for e in entries] == ["evolved"] * 2 + ["evolved_grown"] * 2 + ["evolved"]
    assert gr.parse(entries[0].cell) == gr.genome.library_cell("gru")
    assert entries[-1].label == str(genome_file) and entries[2].grow == {}
    assert (tmp_path / "out" / "cells" / "evo" / f"cell_{gru}.txt").is_file()
    top = {**base, "entries": [{**base["entries"][0], "top": 1}]}  # the best on validation only: the GRU
    (tmp_path / "top.yaml").write_text(yaml.safe_dump(top))
    assert [e.name for e in resolve_entries(load_config(tmp_path / "top.yaml"), tmp_path / "out")] == [f"evo_{gru}"]
    db.unlink()  # a resumed comparison reads its exported cells, whatever became of the search
    assert resolve_entries(config, tmp_path / "out") == entries


@pytest.mark.parametrize("path", [DEBUG, *FAMILY_TABLES], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_compare_config_loads(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, CompareConfig) and {e.family for e in config.entries} <= set(FAMILIES)
    if path == DEBUG:
        return
    assert len(config.seeds) >= 3
    sizes: dict[str, set[Any]] = {}
    for e in config.entries:
        if e.family == "baseline":
            sizes.setdefault(str(e.cell), set()).add(e.hidden_size)
    assert {cell for cell, s in sizes.items() if len(s) >= 3} == {"lstm", "gru", "elman"}
    grown = {e.cell for e in config.entries if e.family == "grown"}
    assert grown == ({"elman", "lstm"} if config.task == "miconi_hard" else {"lstm", "gru"})


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "compare" / "transfer").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_transfer_configs_run_cells_of_another_task_at_the_lstms_parameters(path: Path) -> None:
    config = load_config(path)
    evolved = [e for e in config.entries if e.family == "evolved"]
    assert len(config.seeds) >= 3 and evolved and {e.match_params for e in evolved} == {"lstm_64"}
    assert all(f"configs/cells/{config.task}/" not in str(e.cell) for e in evolved), "cells of another task"


def test_the_ptb_retraining_is_zaremba_small_at_the_lstms_parameters() -> None:
    config = load_config(REPO / "configs/compare/ptb_evolved.yaml")
    recipe = yaml.safe_load((REPO / "configs/ptb.yaml").read_text())
    assert config.task == "ptb" and len(config.seeds) >= 3 and config.budget.epochs == recipe["trainer"]["max_epochs"]
    assert config.model == {k: v for k, v in recipe["model"].items() if k not in ("cell", "hidden_size", "seed")}
    assert config.task_options == recipe["data"]["options"]
    assert config.trainer["gradient_clip_val"] == recipe["trainer"]["gradient_clip_val"]
    lstm, *evolved = config.entries
    assert (lstm.name, lstm.cell, lstm.hidden_size) == ("lstm_200", "lstm", recipe["model"]["hidden_size"])
    assert len(evolved) == 2 and {e.match_params for e in evolved} == {"lstm_200"}
    assert all(str(e.cell).startswith("configs/cells/ptb/confirmed/") and (REPO / str(e.cell)).is_file()
               for e in evolved)


def test_shipped_configs_are_their_tasks() -> None:
    assert [load_config(p).task for p in FAMILY_TABLES] == ["jsb", "miconi_hard", "ptb"]
    miconi = load_config(REPO / "configs/compare/miconi_hard.yaml")
    grow = yaml.safe_load((REPO / "configs/grow/miconi_hard.yaml").read_text())
    controller = grow["trainer"]["callbacks"][1]["init_args"]
    assert miconi.entries[-1].grow == {k: v for k, v in controller.items() if k != "seed"}
    assert miconi.budget.epochs == grow["trainer"]["max_epochs"]
    assert miconi.task_options["train_windows"] == grow["data"]["options"]["train_windows"]


def _edit(config: dict[str, Any], where: str, value: Any) -> None:
    """Set a dotted key (``entries.1.grow``) in a loaded YAML; ``...`` deletes it."""
    *parents, last = where.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(("where", "value", "match"), [
    ("bogus", 1, "bogus"),
    ("budget", {"val_every": 3}, "'budget'.*at least one of steps, epochs, seconds"),
    ("budget", {"steps": 0}, "'budget.steps'.*an int >= 1"),
    ("budget", {"epochs": -3}, "'budget.epochs'.*Received: -3"),
    ("budget.stepz", 3, "stepz"),
    ("entries.0.famly", "grown", "famly"),
    ("entries.0.family", "evolvd", "'entries\\[0\\].family'.*Allowed: baseline, grown, evolved, evolved_grown"),
    ("entries.0.cell", "lsmt", "'entries\\[0\\].cell'.*a library cell"),
    ("entries.0.name", "a/b", "'entries\\[0\\].name'"),
    ("entries.1.name", "lstm_8", "'entries\\[1\\].name'.*no other entry"),
    ("entries.0.grow", {}, "'entries\\[0\\].grow'.*only with family grown"),
    ("entries.1.grow", ..., "'entries\\[1\\].grow'.*StructureController options"),
    ("entries.1.grow", {"max_unit": 3}, "'entries\\[1\\].grow.max_unit'"),
    ("entries.1.grow", {"seed": 3}, "'entries\\[1\\].grow.seed'.*the comparison sets"),
    # the options' values hold together, checked once at load: an option the signal does not read
    ("entries.1.grow", {"signal": "paired", "init_std": 5.0}, "'entries\\[1\\].grow.init_std'.*signal paired"),
    ("entries.1.grow", {"paired_steps": 0}, "'entries\\[1\\].grow.paired_steps'.*Allowed: an int >= 1.*Received: 0"),
    # the model the controller must grow, checked at load, not in every job
    ("entries.1.grow", {"signal": "l0_gate"}, "'entries\\[1\\].model.unit_gates'.*true with signal: l0_gate"),
    ("entries.1.grow", {"signal": "paired", "max_units": 1},
     "'entries\\[1\\].model.hidden_size\\[0\\]'.*max_units \\(1\\)"),
    ("model", {"unit_gates": True}, "'entries\\[0\\].model.unit_gates'.*false for family baseline.*grown entry"),
    ("trainer", {"limit_val_batches": 0}, "'trainer.limit_val_batches'.*scores every run on its validation"),
    ("entries.1.model", {"hidden_size": 3}, "'entries\\[1\\].model.hidden_size'"),
    ("entries.0.search_db", "x.db", "'entries\\[0\\].search_db'.*only with family evolved"),
    ("entries.0.top", 2, "'entries\\[0\\].top'.*only with a search_db"),
    ("entries.0.family", "evolved", None),  # an evolved entry with a cell is fine
    ("entries.0.hidden_size", 0, "'entries\\[0\\].hidden_size'"),
    ("entries.0.hidden_size", ..., "'entries\\[0\\].hidden_size'.*Received: nothing.*HINT: add hidden_size"),
    ("model", {"hiden_size": 8}, "'model.hiden_size'"),
    ("model", {"cell": "gru"}, "'model.cell'.*the comparison sets"),
    ("model", {"num_layers": 2}, "'entries\\[1\\].hidden_size'.*a list of 2 sizes"),
    ("trainer", {"max_epochs": 3}, "'trainer.max_epochs'.*the comparison sets"),
    ("task_options", {"seed": 1}, "'task_options.seed'"),
    ("tuning", {"lr": []}, "'tuning.lr'.*non-empty list"),
    ("tuning", {"hidden_size": [4, 8]}, "'tuning.hidden_size'"),
    ("seeds", [0, 0], "'seeds'.*distinct"),
    ("seeds", [0, -1], "'seeds\\[1\\]'"),
    ("task", "nosuchtask", "'task'"),
    # values are typed against the signature they go to, as `growrnn fit` types them
    ("model", {"lr": "abc"}, "'model.lr'.*Allowed: a value of type float.*Received: abc"),
    ("trainer", {"gradient_clip_val": [1]}, "'trainer.gradient_clip_val'.*Received: \\[1\\]"),
    ("task_options", {"length": "ten"}, "'task_options.length'.*int.*Received: ten"),
    ("entries.1.grow", {"max_units": "many"}, "'entries\\[1\\].grow.max_units'.*int.*Received: many"),
    ("entries.1.model", {"l1": "x"}, "'entries\\[1\\].model.l1'.*float.*Received: x"),
    ("tuning", {"lr": [0.01, "fast"]}, "'tuning.lr\\[1\\]'.*float.*Received: fast"),
    ("model", {"lr": 0.01, "fast_path": "auto", "eps": None}, None),  # valid values of float, bool | str, None
    ("model", {"lr": "3e-3"}, None),  # YAML 1.1 reads 3e-3 as a string: it goes on as the float
    # an optimizer's decay rate against the optimizer each entry runs with (shared, its own or tuned)
    ("model", {"alpha": 0.999}, "'entries\\[0\\]: alpha'.*under optimizer 'adam'.*HINT: set optimizer: rmsprop"),
    ("model", {"alpha": 0.999, "optimizer": "rmsprop"}, None),
    ("entries.0.model", {"betas": [0.9, 0.99], "optimizer": "sgd"}, "'entries\\[0\\]: betas'.*under optimizer 'sgd'"),
    ("tuning", {"optimizer": ["rmsprop", "adam"], "alpha": [0.999]}, "'entries\\[0\\]: alpha'.*tuning setting"),
])
def test_config_mistakes_name_the_key(tmp_path: Path, where: str, value: Any, match: str | None) -> None:
    config = yaml.safe_load(DEBUG.read_text())
    _edit(config, where, value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    if match is None:
        loaded = load_config(path)
        assert isinstance(loaded, CompareConfig)
        assert all(not isinstance(v, str) for k, v in loaded.model.items() if k == "lr")
        return
    with pytest.raises(ArgumentError, match=match):
        load_config(path)


@pytest.mark.parametrize(("entry", "match"), [
    ({"match_params": "lstm_8"}, None),
    ({"match_params": "nobody"}, "'entries\\[2\\].match_params'.*a fixed-size entry with one cell: lstm_8"),
    ({"match_params": "elman_grown"}, "'entries\\[2\\].match_params'.*Received: elman_grown"),
    ({"match_params": "lstm_8", "hidden_size": 8}, "'entries\\[2\\].hidden_size'.*no size with match_params"),
    ({"match_params": "lstm_8", "family": "grown", "grow": {}}, "'entries\\[2\\].match_params'.*not grown"),
])
def test_an_entry_takes_another_entrys_parameter_count(tmp_path: Path, entry: dict[str, Any],
                                                       match: str | None) -> None:
    from growrnn.compare.entries import resolve_entries
    from growrnn.task import get_task
    from growrnn.training.model import SequenceModel

    config = yaml.safe_load(DEBUG.read_text())
    config["entries"].append({"name": "elman_eq", "family": "baseline", "cell": "elman", **entry})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    if match is not None:
        with pytest.raises(ArgumentError, match=match):
            load_config(path)
        return
    size = next(e.hidden_size for e in resolve_entries(load_config(path), tmp_path) if e.name == "elman_eq")
    spec = get_task("adding", **config["task_options"]).spec

    def params(cell: str, h: int) -> int:
        return SequenceModel(spec, cell=cell, hidden_size=h).complexity()["params"]

    wanted = params("lstm", 8)
    assert size > 8  # an Elman unit has a quarter of an LSTM unit's weights
    assert all(abs(params("elman", size) - wanted) <= abs(params("elman", h) - wanted) for h in (size - 1, size + 1))


def test_evolved_entries_need_a_cell_or_an_archive(tmp_path: Path) -> None:
    config = yaml.safe_load(DEBUG.read_text())
    config["entries"] = [{"name": "evo", "family": "evolved", "hidden_size": 8}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArgumentError, match="'entries\\[0\\].cell/search_db'.*exactly one"):
        load_config(path)
    config["entries"][0]["search_db"] = str(tmp_path / "none.db")
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArgumentError, match="'entries\\[0\\].search_db'.*existing search archive.*HINT: run growrnn"):
        load_config(path)


def test_command_line_mistakes_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--config", str(DEBUG)]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err
    assert main(["compare", "--config", str(DEBUG), "--out", str(tmp_path), "--workrs", "2"]) == 2
    assert "workrs" in capsys.readouterr().err
    for config in (["--config", str(tmp_path / "nope.yaml")], [f"--config={tmp_path / 'nope.yaml'}"]):
        assert main(["compare", *config, "--out", str(tmp_path / "o")]) == 2
        assert f"invalid argument '--config'. Allowed: an existing YAML file. Received: {tmp_path / 'nope.yaml'}" \
            in capsys.readouterr().err
    # 2 entries x 2 tuning settings, then seed 1 of each: seed 0 is the best tuning run, not trained again
    assert main(["compare", "--config", str(DEBUG), "--out", str(tmp_path / "dry"), "--dry-run"]) == 0
    assert "dry run: 2 entries, 0 runs finished, 6 to train" in capsys.readouterr().out
    assert not (tmp_path / "dry").exists()  # a dry run makes nothing
    (tmp_path / "file").write_text("")
    assert main(["compare", "--config", str(DEBUG), "--out", str(tmp_path / "file")]) == 2
    assert "invalid argument '--out'. Allowed: a folder (made if missing)" in capsys.readouterr().err


def test_package_names_resolve_lazily() -> None:
    import growrnn.compare as gc
    from growrnn.compare.report import write_report

    assert gc.write_report is write_report and gc.load_config is load_config
    assert all(getattr(gc, name) is not None for name in gc.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gc.nope  # noqa: B018


@pytest.mark.parametrize("added, deleted, shares, text", [
    ([[2], [1]], [[0], [0]], [None, None], "+1.5 -0"),  # a mean over seeds keeps its half
    ([[87], [87]], [[58], [58]], [0.62, 0.62], "+87 -58; trials 62%"),
    ([[3, 1], [2, 2]], [[1, 0], [0, 1]], [None, None], "+4 -1"),  # over the layers
])
def test_the_growth_column_is_the_mean_over_seeds(added: list, deleted: list, shares: list, text: str) -> None:
    from growrnn.compare.report import _growth
    records = [{"added": a, "deleted": d, "trial_share": s} for a, d, s in zip(added, deleted, shares, strict=True)]
    assert _growth(records) == text


def test_a_rows_sizes_are_those_of_the_seeds_its_score_is_of() -> None:
    """A grown entry's parameters, final units and growth are the means over the seeds that did not
    diverge, as its score is (every seed's where all diverged)."""
    from types import SimpleNamespace

    from growrnn.compare.report import summarise

    def record(params: int, units: int, diverged: bool) -> dict:
        return {"result": {"test": 1.0, "val": 1.0, "diverged": diverged, "metric": "nll", "direction": "min",
                           "params": params, "macs_per_step": params, "growth": {"added": [units], "deleted": [0]}},
                "hidden_sizes": [units], "setting": {}}

    entry = SimpleNamespace(family="grown", name="g", label="lstm")
    rows = summarise(SimpleNamespace(entries=[entry], records={"g": [record(100, 4, False), record(300, 8, False),
                                                                      record(9000, 90, True)]}))
    assert (rows[0]["params"], rows[0]["final_units"], rows[0]["growth"], rows[0]["n_diverged"]) == \
        (200, "6.0", "+6 -0", 1)
    rows = summarise(SimpleNamespace(entries=[entry], records={"g": [record(9000, 90, True)]}))
    assert (rows[0]["params"], rows[0]["final_units"]) == (9000, "90")
