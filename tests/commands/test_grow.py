"""growrnn grow seeds|plot: one config over seeds, median and interquartile curves."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from growrnn.cli import main
from growrnn.commands.grow import load_curves, seed_config
from tests.conftest import assert_ends_with_its_starter

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


# ---------------------------------------------------------------- reruns, curves and the summary's end
SEED_CONFIG = {"model": {"cell": "lstm", "hidden_size": [4]}, "trainer": {"max_steps": 3, "callbacks": [
    {"class_path": "growrnn.training.growth.StructureController", "init_args": {"signal": "paired", "max_units": 16}}]}}


def _write_run(folder: Path, units: list[float], walltime: float | None = None,
               steps: list[int] | None = None) -> None:
    """A run's event file as training writes it: the units at steps 1..N, the train loss at 0..N-1."""
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(folder)) as writer:
        for i, (step, u) in enumerate(zip(steps or range(1, len(units) + 1), units, strict=True)):
            writer.add_scalar("structure/units/layer0", u, step, walltime=None if walltime is None else walltime + i)
            writer.add_scalar("train/loss", 1.0 / step, step - 1, walltime=None if walltime is None else walltime + i)


def _fake_fit(monkeypatch: pytest.MonkeyPatch, units: list[float]) -> list[list[str]]:
    """Stand in for the ``growrnn fit`` subprocess: write ``units`` into the run's TensorBoard folder."""
    import growrnn.commands.grow as grow
    calls: list[list[str]] = []

    def fit(cmd: list[str], log_path: str, env: dict[str, str]) -> int:
        logger = yaml.safe_load(Path(cmd[cmd.index("--config") + 1]).read_text())["trainer"]["logger"]["init_args"]
        _write_run(Path(logger["save_dir"]) / logger["name"], units)
        calls.append(cmd)
        return 0

    monkeypatch.setattr(grow, "fit_once", fit)
    return calls


def test_a_seed_that_did_not_finish_starts_again_from_an_empty_folder(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from growrnn.commands.grow import run_seeds
    config, out = tmp_path / "c.yaml", tmp_path / "out"
    config.write_text(yaml.safe_dump(SEED_CONFIG))
    _write_run(out / "tb" / "seed0", [9, 9, 9, 9, 9])  # an attempt killed before done.txt
    calls = _fake_fit(monkeypatch, [1, 2, 3])
    assert run_seeds(config, [0], out, 1, []) == [out / "tb" / "seed0"]
    assert len(calls) == 1 and len(list((out / "tb" / "seed0").glob("events.out.tfevents*"))) == 1
    assert load_curves(out / "tb" / "seed0")["layer0"].tolist() == [[1, 1], [2, 2], [3, 3]]


@pytest.mark.parametrize(("attempts", "expected"), [
    ([([9, 9, 9, 9], 100.0, None), ([1, 2], 200.0, None)], [[1, 1], [2, 2], [3, 9], [4, 9]]),  # the latest per step
    ([([1, 2], 200.0, None), ([9, 9, 9, 9], 100.0, None)], [[1, 1], [2, 2], [3, 9], [4, 9]]),  # by wall time
    ([([3, 1, 2], 100.0, [3, 1, 2])], [[1, 1], [2, 2], [3, 3]]),  # sorted by step
])
def test_the_curves_hold_one_point_per_step_the_latest_by_wall_time(tmp_path: Path, attempts: list,
                                                                    expected: list) -> None:
    for units, walltime, steps in attempts:
        _write_run(tmp_path, units, walltime, steps=steps)
    curves = load_curves(tmp_path)
    assert curves["layer0"].tolist() == expected
    assert curves["loss"][:, 0].tolist() == sorted(set(curves["loss"][:, 0].tolist()))


@pytest.mark.parametrize(("change", "extra", "match"), [
    ({}, [], None),  # the same config: skipped, and said so
    ({"max_units": 6}, [], r"seed 0 finished with trainer\.callbacks\.0\.init_args\.max_units 16, now 6\."),
    ({}, ["--trainer.max_steps", "5"], r"seed 0 finished with arguments \[\], now \['--trainer\.max_steps', '5'\]"),
], ids=["same", "other config", "other arguments"])
def test_a_finished_seed_is_skipped_and_refused_if_it_ran_with_another_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, change: dict,
        extra: list[str], match: str | None) -> None:
    from growrnn.commands.grow import run_seeds
    from growrnn.errors import ArgumentError
    config, out = tmp_path / "c.yaml", tmp_path / "out"
    config.write_text(yaml.safe_dump(SEED_CONFIG))
    calls = _fake_fit(monkeypatch, [1, 2, 3])
    run_seeds(config, [0], out, 1, [])
    ran = (out / "configs" / "seed0.yaml").read_text()
    changed = yaml.safe_load(yaml.safe_dump(SEED_CONFIG))
    changed["trainer"]["callbacks"][0]["init_args"].update(change)
    config.write_text(yaml.safe_dump(changed))
    caplog.set_level("INFO", logger="growrnn.commands.grow")
    if match is None:
        assert run_seeds(config, [0], out, 1, extra) == [out / "tb" / "seed0"]
        assert "seeds [0] finished already" in caplog.text
    else:
        with pytest.raises(ArgumentError, match=match) as err:
            run_seeds(config, [0], out, 1, extra)
        assert "invalid argument '--out'" in str(err.value) and "HINT: use a new --out folder" in str(err.value)
    assert len(calls) == 1 and (out / "configs" / "seed0.yaml").read_text() == ran  # kept: that run's config


@pytest.mark.parametrize(("finals", "expected"), [
    ([[3, 10, 15], [3, 4, 5]], ["2", "layer0", "7.5", "10", "12.5"]),  # a trial decided at the last step counts
    ([[3, 10, 15], [3, 4]], ["2", "layer0", "6.75", "9.5", "12.25"]),  # a run that ended early holds its width
])
def test_the_summary_ends_at_each_runs_last_units(tmp_path: Path, finals: list, expected: list) -> None:
    from growrnn.commands.grow import summarise, write_summary
    runs = [tmp_path / f"seed{i}" for i in range(len(finals))]
    for run, units in zip(runs, finals, strict=True):
        _write_run(run, units)
    s = summarise(runs, points=7, smooth=1)
    assert s["steps"][-1] == 3 and s["layer0"][1].tolist()[-1] == float(expected[3])
    write_summary({"g": s}, tmp_path / "summary.csv")
    assert ",".join(["g", *expected]) in (tmp_path / "summary.csv").read_text().splitlines()


@pytest.mark.parametrize("callback", [
    {"class_path": "growrnn.training.growth.StructureController", "init_args": {"signal": "ablation"}},
    {"class_path": "growrnn.training.growth.StructureController"},
])
def test_a_single_callback_mapping_gets_the_seed(tmp_path: Path, callback: dict) -> None:
    c = seed_config({"trainer": {"callbacks": callback}}, 3, tmp_path / "seed3")
    assert c["trainer"]["callbacks"]["init_args"]["seed"] == 3


# A job that runs one seed's ``growrnn fit`` command line (fit_once), inline or on a pool worker;
# the command line is the CLI's entry point with a command that holds: it writes its pid and waits
STARTER = """
import sys
from growrnn.commands.grow import fit_once
from growrnn.executors import Job, LocalExecutor

HOLD = "import os, sys, time; import growrnn.cli as c; " \\
       "c._main = lambda argv: (open(sys.argv[1], 'w').write(str(os.getpid())), time.sleep(120), 0)[2]; c.main([])"
if __name__ == '__main__':
    cmd = [sys.executable, "-c", HOLD, sys.argv[1]]
    with LocalExecutor(workers=int(sys.argv[2]), preload=()) as ex:
        list(ex.run([Job("seed0", fit_once, (cmd, sys.argv[1] + ".log", dict(__import__("os").environ)))]))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("workers", [0, 1])  # the seed's job inline (--jobs 1) or on a pool worker
def test_a_seeds_fit_ends_with_the_command_that_started_it(tmp_path: Path, workers: int) -> None:
    """``growrnn grow seeds`` killed by a signal (no exit hook runs) leaves no ``growrnn fit``
    training on unseen: the fit ends once the process that started it is gone."""
    script, marker = tmp_path / "starter.py", tmp_path / "fit.pid"
    script.write_text(textwrap.dedent(STARTER))
    repo = str(Path(__file__).resolve().parents[2])
    starter = subprocess.Popen([sys.executable, str(script), str(marker), str(workers)], cwd=repo,
                               env={**os.environ, "PYTHONPATH": repo})
    assert_ends_with_its_starter(starter, marker, signal.SIGKILL, "fit")
