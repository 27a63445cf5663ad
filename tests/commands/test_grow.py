"""growrnn grow seeds|plot: one config over seeds, median and interquartile curves."""

from pathlib import Path

import pytest
import yaml

from growrnn.cli import main
from growrnn.commands.grow import load_curves, seed_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "debug" / "grow_miconi_hard.yaml"


def test_seed_config_sets_every_seed_and_the_log_folder(tmp_path: Path) -> None:
    c = seed_config(yaml.safe_load(CONFIG.read_text()), 7, tmp_path / "tb" / "seed7")
    assert c["seed_everything"] == 7 and c["model"]["seed"] == 7 and c["data"]["options"]["seed"] == 7
    (controller,) = c["trainer"]["callbacks"]
    assert controller["init_args"]["seed"] == 7 and controller["init_args"]["p_add"] == 1.0
    assert c["trainer"]["logger"]["init_args"] == {"save_dir": str(tmp_path / "tb"), "name": "seed7", "version": ""}


@pytest.mark.slow
def test_seeds_run_plot_and_skip_finished_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seeds"
    assert main(["grow", "seeds", "--config", str(CONFIG), "--seeds", "0,1", "--jobs", "2", "--out", str(out)]) == 0
    assert (out / "growth.png").read_bytes()[:4] == b"\x89PNG"
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("group,runs,curve") and any(",2,layer0," in r for r in rows)
    before = (out / "tb" / "seed0" / "done.txt").stat().st_mtime
    assert main(["grow", "seeds", "--config", str(CONFIG), "--seeds", "0-1", "--out", str(out)]) == 0
    assert (out / "tb" / "seed0" / "done.txt").stat().st_mtime == before  # finished seeds are not rerun
    png = tmp_path / "both.png"
    assert main(["grow", "plot", f"a={out}/tb/seed0", f"b={out}/tb/seed*", "--out", str(png),
                 "--loss-range", "0,100"]) == 0
    assert png.exists() and png.with_suffix(".csv").read_text().count("\n") >= 4
    capsys.readouterr()
    bare = tmp_path / "bare"  # no suffix: the file written, and the path printed, is bare.png
    assert main(["grow", "plot", f"a={out}/tb/seed0", "--out", str(bare)]) == 0
    assert capsys.readouterr().out.strip() == str(bare.with_suffix(".png")) and bare.with_suffix(".csv").exists()
    assert main(["grow", "plot", f"a={tmp_path}/nothing*", "--out", str(png)]) == 2
    assert "invalid argument 'NAME=GLOB'" in (err := capsys.readouterr().err) and "HINT" in err


@pytest.mark.parametrize("task, has_seed", [("ptb", False), ("jsb", True), ("miconi_hard", True)])
def test_the_data_seed_is_set_only_for_tasks_that_take_one(tmp_path: Path, task: str, has_seed: bool) -> None:
    c = seed_config({"data": {"task": task, "options": {"batch_size": 4}}}, 5, tmp_path / "s5")
    assert ("seed" in c["data"]["options"]) == has_seed and c["data"]["options"]["batch_size"] == 4


@pytest.mark.parametrize(("seeds", "match"), [
    ("5-0", "the range '5-0' ends before it starts: write it as 0-5"),
    ("0,x", "expected seeds like 0-4 or 0,3,7"),
    ("-3", "expected seeds like 0-4"),
    ("0-2,2", "a seed is given twice"),
])
def test_bad_seeds_are_an_error_that_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: str,
                                              match: str) -> None:
    from growrnn.cli import main
    with pytest.raises(SystemExit) as done:
        main(["grow", "seeds", "--config", str(tmp_path / "c.yaml"), "--seeds", seeds, "--out", str(tmp_path)])
    assert done.value.code == 2
    assert match in capsys.readouterr().err


def test_an_out_that_is_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from growrnn.cli import main
    config, out = tmp_path / "c.yaml", tmp_path / "hard.png"
    config.write_text("seed_everything: 0\n")
    out.write_text("")
    assert main(["grow", "seeds", "--config", str(config), "--seeds", "0", "--out", str(out)]) == 2
    assert f"invalid argument '--out'. Allowed: a folder (made if missing). Received: {out}" in capsys.readouterr().err


@pytest.mark.parametrize(("tags", "units"), [
    ({"structure/units/layer0": [3, 5, 5, 4]}, [3, 5, 5, 4]),  # a signal without trials: the width
    ({"structure/units/layer0": [3, 5, 5, 4], "structure/held/layer0": [3, 3, 5, 4]}, [3, 3, 5, 4]),  # held
])
def test_the_curves_are_the_units_each_layer_holds(tmp_path: Path, tags: dict, units: list) -> None:
    """A paired run's width curve is the units its layers hold, not the network's width with a
    running trial's units on probation."""
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(tmp_path)) as writer:
        for tag, values in tags.items():
            for step, v in enumerate(values, start=1):
                writer.add_scalar(tag, v, step)
    curves = load_curves(tmp_path)
    assert curves["layer0"][:, 0].tolist() == [1, 2, 3, 4] and curves["layer0"][:, 1].tolist() == units
