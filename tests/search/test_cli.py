"""`growrnn search` and `growrnn search export`: every search config loads, the debug search runs
and resumes from its database alone, exported cells load in GenomeRNN and train in `growrnn fit`,
and config mistakes are errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import growrnn as gr
from growrnn.cli import main
from growrnn.errors import ArgumentError
from growrnn.search.config import SearchConfig, load_config
from growrnn.search.storage import Archive

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug" / "search.yaml"
CONFIGS = [DEBUG, REPO / "configs" / "debug" / "search_species.yaml",
           *sorted((REPO / "configs" / "search").glob("*.yaml"))]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_search_config_loads(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, SearchConfig) and config.population >= len(config.initial)


def test_shipped_searches_are_the_issues_sizes() -> None:
    jsb, ptb = load_config(REPO / "configs/search/jsb.yaml"), load_config(REPO / "configs/search/ptb_moe.yaml")
    assert jsb.task == "jsb" and jsb.population >= 20 and jsb.generations >= 10
    assert (ptb.population, ptb.generations, ptb.model["hidden_size"], ptb.model["lr"], ptb.model["dropout"],
            ptb.model["plateau_factor"], ptb.trainer["gradient_clip_val"]) == (100, 25, 650, 20.0, 0.5, 4.0, 0.25)


def test_debug_search_runs_resumes_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "x.db"
    assert main(["search", "--config", str(DEBUG), "--db", str(db), "--progress", "false"]) == 0
    assert "search done: generation 2" in capsys.readouterr().out
    # resume from the database alone (its stored config), one generation further
    assert main(["search", "--db", str(db), "--generations", "3", "--progress", "false"]) == 0
    with Archive.open(db) as archive:
        assert [g.gen for g in archive.generations()] == [0, 1, 2, 3]
    out = tmp_path / "front"
    assert main(["search", "export", "--db", str(db), "--front", "--out", str(out)]) == 0
    texts, jsons = sorted(out.glob("*.txt")), sorted(out.glob("*.json"))
    assert texts and len(texts) == len(jsons)
    x = torch.randn(2, 5, 3)
    for text, js in zip(texts, jsons, strict=True):
        from_text, from_json = gr.parse(text.read_text()), gr.Genome.from_json(js.read_text())
        assert from_text == from_json
        out_text, _ = gr.GenomeRNN(from_text, 3, 4, generator=torch.Generator().manual_seed(0))(x)
        out_json, _ = gr.GenomeRNN(from_json, 3, 4, generator=torch.Generator().manual_seed(0))(x)
        torch.testing.assert_close(out_text, out_json)
    for cell in (texts[0], jsons[0]):
        assert main(["fit", "--config", str(REPO / "configs/debug/adding.yaml"), "--model.cell", str(cell),
                     "--trainer.fast_dev_run", "true", "--trainer.logger.init_args.save_dir", str(tmp_path),
                     "--trainer.default_root_dir", str(tmp_path)]) == 0
    everything = tmp_path / "all"
    assert main(["search", "export", "--db", str(db), "--out", str(everything)]) == 0
    assert len(list(everything.glob("*.txt"))) == 4, "without --front: the whole last population"
    # export only reads: it works while a search holds the archive, and changes no byte of it
    before = db.read_bytes()
    with Archive.open(db) as running:  # a writer, as a running search is
        assert main(["search", "export", "--db", str(db), "--out", str(tmp_path / "during")]) == 0
        assert main(["search", "--db", str(db), "--generations", "4", "--progress", "false"]) == 2
        assert "in use by another search" in capsys.readouterr().err
        assert not running.read_only
    assert db.read_bytes() == before


def test_a_single_objective_is_a_search(tmp_path: Path) -> None:
    """One objective is allowed (search.md: a plain (mu + lambda) search on it); its front is
    the best cell."""
    from growrnn.search.report import first_front

    path = tmp_path / "one.yaml"
    path.write_text(DEBUG.read_text() + "objectives: [val]\n")
    assert load_config(path).objectives == ["val"]
    rows = [{"val": 0.3, "params": 5}, {"val": 0.1, "params": 50}, {"val": 0.2, "params": 1}]
    assert first_front(rows, ["val"]) == [1]


@pytest.mark.parametrize(("yaml", "match"), [
    ("bogus: 1\n", "bogus"),
    ("budget: {steps: 5, epoch: 2}\n", "epoch"),
    ("objectives: [val, accuracy]\n", "'objectives'.*Received: \\['val', 'accuracy'\\]"),
    ("model: {hiden_size: 8}\n", "'model.hiden_size'"),
    ("model: {cell: gru}\n", "'model.cell'.*the search sets"),
    ("trainer: {max_epochs: 3}\n", "'trainer.max_epochs'.*the search sets"),
    ("grow: {max_units: 20}\n", "'model.hidden_size'.*a list of start sizes"),
    ("initial: [lstm, gru, elman, mgu, indrnn]\n", "'initial'.*1 to population \\(4\\)"),
    ("initial: [lsmt]\n", "'initial\\[0\\]'.*a library cell"),
    ("operators: [flip]\n", "'operators'"),
    ("task: nosuchtask\n", "'task'"),
    ("budget: {val_every: 5}\n", "'budget'.*at least one of steps, epochs, seconds"),
    ("budget: {steps: 0}\n", "'budget.steps'.*an int >= 1.*trains nothing"),
    ("budget: {steps: -3}\n", "'budget.steps'.*Received: -3"),
    ("budget: {seconds: .nan}\n", "'budget.seconds'"),
    ("address: auto\n", "'address'.*executor: ray"),
    # values are typed against the signature they go to, as `growrnn fit` types them
    ("model: {lr: abc}\n", "'model.lr'.*Allowed: a value of type float.*Received: abc"),
    ("model: {alpha: 0.999}\n", "'model.alpha'.*under optimizer 'adam'"),  # the search's model is whole: adam
    ("model: {hidden_size: big}\n", "'model.hidden_size'.*int \\| list\\[int\\].*Received: big"),
    ("trainer: {gradient_clip_val: [1]}\n", "'trainer.gradient_clip_val'.*Received: \\[1\\]"),
    ("task_options: {length: ten}\n", "'task_options.length'.*int.*Received: ten"),
    ("model: {hidden_size: [8]}\ngrow: {max_units: many}\n", "'grow.max_units'.*int.*Received: many"),
    ("model: {hidden_size: [8]}\ngrow: {paired_steps: 0}\n", "'grow.paired_steps'.*an int >= 1.*Received: 0"),
    ("model: {hidden_size: [8]}\ngrow: {seed: 3}\n", "'grow.seed'.*the search sets"),
    # the model the controller must grow, checked at load, not in every candidate
    ("model: {hidden_size: [8]}\ngrow: {signal: l0_gate}\n", "'model.unit_gates'.*true with signal: l0_gate"),
    ("model: {hidden_size: [8], unit_gates: true}\ngrow: {}\n", "'model.unit_gates'.*false with signal paired"),
    ("model: {hidden_size: [200]}\ngrow: {}\n", r"'model.hidden_size\[0\]'.*max_units \(100\)"),
    ("model: {hidden_size: [0]}\ngrow: {}\n", "'model.hidden_size'.*an int >= 1.*Received: 0"),
    ("model: {hidden_size: []}\ngrow: {}\n", "'model.hidden_size'.*non-empty list"),
    ("model: {hidden_size: [-3]}\n", "'model.hidden_size'.*Received: -3"),
    ("trainer: {limit_val_batches: 0}\n", "'trainer.limit_val_batches'.*the search scores every run"),
    ("trainer: {limit_train_batches: 0}\n", "'trainer.limit_train_batches'.*the search trains every run"),
    ("trainer: {accumulate_grad_batches: 0}\n", "'trainer.accumulate_grad_batches'.*an int >= 1"),
    # model values checked at load, not by failing every candidate twice
    ("model: {optimizer: foo}\n", "'model.optimizer'.*Allowed: sgd, adam.*Received: foo"),
    ("model: {lr: -1}\n", "'model.lr'.*a finite number >= 0.*Received: -1"),
    ("model: {dropout: 2}\n", r"'model.dropout'.*\[0, 1\).*Received: 2"),
    ("model: {plateau_factor: 0.5}\n", "'model.plateau_factor'.*>= 1"),
    ("model: {patience: -1}\n", "'model.patience'.*an int >= 0"),
    ("predictor: {hidden_size: 0}\n", "'predictor.hidden_size'.*an int >= 1"),
    ("predictor: {epochs: 0}\n", "'predictor.epochs'.*an int >= 1"),
    ("novelty: {hidden_size: 0}\n", "'novelty.hidden_size'.*an int >= 1"),
    ("novelty: {steps: 0}\n", "'novelty.steps'.*an int >= 1"),
    ("novelty: {max_size: 0}\n", "'novelty.max_size'.*an int >= 1"),
    ("novelty: {add_threshold: .inf}\n", "'novelty.add_threshold'.*null or a finite number"),
    ("speciation: {treshold: 0.3}\n", "treshold"),
    ("speciation: {threshold: 0}\n", r"'speciation.threshold'.*\(0, 1\].*Received: 0.*HINT: genome distances"),
    ("speciation: {threshold: 1.5}\n", r"'speciation.threshold'.*Received: 1.5"),
    ("speciation: {threshold_step: 0}\n", r"'speciation.threshold_step'.*\(0, 1\]"),
    ("speciation: {elites: 0}\n", r"'speciation.elites'.*an int >= 1.*Received: 0"),
    ("speciation: {threshold_rule: bisect}\n", r"'speciation.threshold_rule'.*Allowed: step, solve.*Received: bisect"),
    ("speciation: {target_species: 5}\n", r"'speciation.target_species'.*null or an int in \[1, 4\].*Received: 5"),
    ("speciation: {target_species: 0}\n", r"'speciation.target_species'.*Received: 0"),
])
def test_config_mistakes_name_the_key(tmp_path: Path, yaml: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(DEBUG.read_text() + yaml)  # a repeated key: the later one wins
    with pytest.raises(ArgumentError, match=match):
        load_config(path)


def test_a_quoted_number_goes_on_as_the_number(tmp_path: Path) -> None:
    """YAML 1.1 reads ``3e-3`` as a string; the check types it as ``growrnn fit`` does, and the
    candidates get the float (they refused the string)."""
    path = tmp_path / "quoted.yaml"
    path.write_text(DEBUG.read_text() + "model: {hidden_size: 8, lr: 3e-3}\ntask_options: {length: '12'}\n")
    config = load_config(path)
    assert config.model["lr"] == 0.003 and config.task_options["length"] == 12


@pytest.mark.parametrize(("args", "match"), [
    (["--db", "{db}"], "'--config'.*required unless --db names an existing search"),
    (["--config", str(DEBUG), "--db", "{db}", "--populaton", "3"], "populaton"),
])
def test_command_line_mistakes_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          match: str) -> None:
    import re
    args = [a.format(db=tmp_path / "none.db") for a in args]
    assert main(["search", *args]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("command", [["search"], ["search", "confirm"]])
def test_help_marks_task_required_only_for_a_new_search(capsys: pytest.CaptureFixture[str],
                                                        command: list[str]) -> None:
    """``growrnn search --db PATH`` alone resumes, so the help must not say --task is required."""
    import re

    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "[--task TASK]" in out and "--db DB" in out and "Resume: growrnn search --db PATH" in out
    task = re.search(r"--task TASK\s+(.*?)\n  --", out, re.S)
    assert task and "required for a new search" in task.group(1) and "(required" not in task.group(1)
    assert "generations, " in out, "the keys a resume may change"


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(("command", "target"), [
    (["search"], "growrnn.search.loop.run_search"),
    (["search", "confirm"], "growrnn.search.confirm.confirm_search"),
])
def test_ctrl_c_says_how_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, command: list[str], target: str) -> None:
    """Ctrl-C ends the command with a two-line message naming the command that resumes it (and the
    status a shell gives a command stopped by Ctrl-C), not a traceback."""
    from growrnn.search.config import config_to_dict

    db = tmp_path / "my search.db"
    with Archive.open(db, config_to_dict(load_config(DEBUG))):  # an existing search, as confirm needs
        pass
    monkeypatch.setattr(target, interrupt)
    assert main([*command, "--db", str(db)]) == 130
    err = capsys.readouterr().err
    assert f"Resume with: growrnn {' '.join(command)} --db '{db}'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 2, err


def test_package_names_are_lazy_and_complete() -> None:
    import subprocess
    import sys

    import growrnn.search as search
    code = "import sys, growrnn.search; sys.exit(sum(m in sys.modules for m in ('torch', 'numpy', 'lightning')))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
    assert set(search.__all__) == set(search._LAZY)
    assert all(getattr(search, name) is not None for name in search.__all__)
