"""`growrnn fit|validate|test --config`: every debug config runs, every full config parses, and
TensorBoard gets the metrics, the hparams metric, the equations and the cell's diagram."""

from pathlib import Path

import pytest
import torch

from growrnn.cli import main
from growrnn.training import SequenceModel
from growrnn.training.checkpoint import load_checkpoint
from tests.conftest import config_task, need_data

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# configs of `growrnn fit` (search and compare configs have their own commands and tests)
DEBUG = sorted(p for p in (CONFIGS / "debug").glob("*.yaml") if not p.stem.startswith(("search", "compare")))
FULL = sorted([*CONFIGS.glob("*.yaml"), *CONFIGS.glob("grow/*.yaml")])


def test_every_task_has_a_config_and_a_debug_config() -> None:
    from tasks import names
    assert set(names()) <= {p.stem for p in DEBUG}
    assert set(names()) <= {p.stem for p in FULL}


@pytest.mark.parametrize("config", DEBUG, ids=lambda p: p.stem)
def test_debug_config_fits(config: Path, tmp_path: Path, imdb_dir: Path, request: pytest.FixtureRequest) -> None:
    need_data(request, config_task(config))
    args = ["fit", "--config", str(config), "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.default_root_dir", str(tmp_path)]
    if config.stem == "imdb":
        args += ["--data.options.path", str(imdb_dir)]
    assert main(args) == 0
    saved = list(tmp_path.rglob("config.yaml"))
    assert saved, "LightningCLI saves the resolved config next to the logs"


def test_the_quickstart_grows_a_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README's first command, cut to 10 epochs of a smaller teacher set in batches of 8 (320
    steps of 400 targets: paired trials end every 100): the layer starts at four units, its width
    moves, and the run ends with its summary."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--data.options.n_train", "256",
                 "--data.options.batch_size", "8", "--trainer.log_every_n_steps", "4",
                 "--trainer.max_epochs", "10", "--trainer.logger.init_args.save_dir", str(tmp_path),
                 "--trainer.default_root_dir", str(tmp_path)]) == 0
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    units = [e.value for e in events.Scalars("structure/units/layer0")]
    assert units[0] == 5 and len(set(units)) > 2  # the first trial adds a unit after the first step
    assert "floor" in capsys.readouterr().out


def test_switching_the_progress_bar_off_drops_the_configs_bar(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The quickstart lists a throttled progress bar; `--trainer.enable_progress_bar false` wins."""
    assert main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--trainer.enable_progress_bar", "false",
                 "--data.options.n_train", "64", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
                 "--trainer.log_every_n_steps", "1",
                 "--trainer.logger.init_args.save_dir", str(tmp_path),
                 "--trainer.default_root_dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "growrnn fit done" in out.out and "units=" not in out.err + out.out


@pytest.mark.parametrize("config", FULL, ids=lambda p: p.parent.name + "/" + p.stem)
def test_full_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(config), "--print_config"])
    assert done.value.code == 0
    assert "model:" in capsys.readouterr().out


@pytest.mark.parametrize("init_args, message", [
    ("signal: paired, paired_hold: -1", "invalid argument 'paired_hold'. Allowed: a number in [0, 1). Received: -1.0"),
    ("signal: paired, paired_horizon: -1",
     "invalid argument 'paired_horizon'. Allowed: a finite number >= 0. Received: -1.0"),
    ("signal: paired, paired_horizon: 0.2, paired_horizon_cap: 0",
     "invalid argument 'paired_horizon_cap'. Allowed: a finite number > 0 (epochs), or None. Received: 0.0"),
    ("signal: paired, paired_reach: -0.1",
     "invalid argument 'paired_reach'. Allowed: a finite number >= 0. Received: -0.1"),
    ("signal: pared", "invalid argument 'signal'. Allowed: "),
])
def test_a_bad_growth_option_in_a_config_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           init_args: str, message: str) -> None:
    """A callback's options are checked while the config is parsed (jsonargparse builds it and
    wraps its error in one of its own, with a traceback): growrnn prints its own message, once."""
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "debug" / "grow_flipflop.yaml").read_text().replace("signal: paired", init_args))
    assert main(["fit", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("growrnn: error: " + message) and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "debug" / "copy.yaml").read_text().replace("hidden_size: 8", "hiden_size: 8"))
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(bad)])
    assert done.value.code != 0
    assert "hiden_size" in capsys.readouterr().err


def test_tensorboard_gets_metrics_equations_and_diagram(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert main(["fit", "--config", str(CONFIGS / "debug" / "anbncn.yaml"),
                 "--trainer.logger.init_args.save_dir", str(tmp_path)]) == 0
    (run,) = {p.parent for p in tmp_path.rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"val/accuracy", "train/loss", "hp_metric"} <= set(tags["scalars"])
    assert "cell/diagram" in tags["images"]
    assert "cell/equations/text_summary" in tags["tensors"]


def test_fit_then_test_from_the_best_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(CONFIGS / "debug" / "copy.yaml")
    ckpt = tmp_path / "ckpt"
    callback = ('[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": '
                f'{{"dirpath": "{ckpt}", "filename": "best", "monitor": "val/nll"}}}}]')
    common = ["--config", config, "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.callbacks", callback]
    assert main(["fit", *common]) == 0
    assert main(["test", *common, "--ckpt_path", str(ckpt / "best.ckpt")]) == 0
    out, err = capsys.readouterr()
    assert "test/nll" in out and "note" not in err
    # options the checkpoint replaces are named; another cell is refused (Lightning took the checkpoint's)
    assert main(["test", *common, "--ckpt_path", str(ckpt / "best.ckpt"), "--model.lr", "0.5"]) == 0
    assert "sets the model's options from the checkpoint: model.lr 0.5 -> 0.001" in capsys.readouterr().err
    assert main(["test", *common, "--ckpt_path", str(ckpt / "best.ckpt"), "--model.cell", "lstm"]) == 2
    assert "invalid argument 'model.cell'. Allowed: the cell of --ckpt_path" in capsys.readouterr().err
    # options nobody set are not 'given': a config without a cell (default lstm) tests the GRU's
    # checkpoint without a refusal or a note
    bare = tmp_path / "bare.yaml"
    bare.write_text(Path(config).read_text().replace("  cell: gru\n", ""))
    assert main(["test", "--config", str(bare), *common[2:], "--ckpt_path", str(ckpt / "best.ckpt")]) == 0
    assert "growrnn: " not in capsys.readouterr().err
    # the checkpoint the CLI wrote loads in Python too (it records LightningCLI's instantiator)
    model = SequenceModel.load_from_checkpoint(ckpt / "best.ckpt")
    state = load_checkpoint(ckpt / "best.ckpt", "checkpoint")["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_tasks_command_lists_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    from tasks import names
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name} " in out for name in names())
    assert "Penn Treebank" in out


@pytest.mark.parametrize("config", DEBUG, ids=lambda p: p.stem)
def test_debug_configs_name_their_task(config: Path) -> None:
    """need_data reads the task from the config, not its file name (grow_jsb_lstm trains jsb)."""
    from tasks import names
    assert config_task(config) in names()
    if config.stem.startswith("grow_"):
        assert config_task(config) != config.stem
