"""The end of `growrnn fit`: a summary that teaches (units, added/deleted, the final metric
against the task's floor, where TensorBoard finds the run), hp_metric = the final model's metric,
and a diverged run is an error unless allowed."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from growrnn.cli import main

DEBUG = Path(__file__).resolve().parents[2] / "configs" / "debug"
DIVERGES = "h' = relu(affine(x) + 1e200 * affine(h) * affine(h))"  # overflows to inf, then NaN


def _fit(tmp_path: Path, config: str, *options: str) -> int:
    return main(["fit", "--config", str(DEBUG / config), "--trainer.logger.init_args.save_dir", str(tmp_path),
                 "--trainer.default_root_dir", str(tmp_path), *options])


def _scalars(tmp_path: Path, tag: str) -> list[tuple[int, float]]:
    (run,) = {p.parent for p in tmp_path.rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(run))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_a_growing_fit_ends_with_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fit(tmp_path, "grow_miconi_hard.yaml") == 0
    out = capsys.readouterr().out
    units = _scalars(tmp_path, "structure/units/layer0")[-1][1]
    added = _scalars(tmp_path, "structure/added")[-1][1]
    assert "growrnn fit done: miconi_hard, 6 steps" in out
    assert f"units: layer 0: {units:.0f} (+{added:.0f} -0); {added:.0f} added, 0 deleted in all\n" in out
    final = _scalars(tmp_path, "val/nats_per_40")[-1][1]
    assert f"val/nats_per_40: {final:.4g} (the task's floor: 8.959)" in out
    assert f"tensorboard --logdir {tmp_path}" in out


def test_a_paired_fit_says_what_its_trials_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the paired signal the summary counts the trials (one TensorBoard point each) and the
    share of the steps a copy trained beside the network: here trials of 2 steps, held off for
    the first 4 steps (the validation loss still falls), then back to back with one wait."""
    assert _fit(tmp_path, "grow_flipflop.yaml") == 0
    out = capsys.readouterr().out
    moved = _scalars(tmp_path, "structure/trial/moved")
    assert 0 < len(moved) and f"paired trials: {len(moved)}; a copy trained beside the network on " in out
    assert "deleted in all, counting the units each trial took on probation" in out
    share = int(out.split("beside the network on ")[1].split("%")[0])
    assert 0 < share <= 100 * 2 * len(moved) / 12  # 12 steps, at most 2 a trial


def test_hp_metric_is_the_final_models_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # validation every 3 steps of 4: the summary validates the final model once more
    assert _fit(tmp_path, "copy.yaml", "--trainer.val_check_interval", "3") == 0
    hp, val = _scalars(tmp_path, "hp_metric"), _scalars(tmp_path, "val/nll")
    assert hp[-1] == val[-1] and hp[-1][0] == 4 and hp[-1][1] != -1.0
    out = capsys.readouterr().out
    assert f"val/nll: {val[-1][1]:.4g}" in out and "units: 8 (fixed size)" in out


@pytest.mark.parametrize(("options", "code"), [([], 1), (["--allow_divergence", "true"], 0)])
def test_a_diverged_fit_exits_non_zero_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      options: list[str], code: int) -> None:
    assert _fit(tmp_path, "copy.yaml", "--model.cell", DIVERGES, *options) == code
    captured = capsys.readouterr()
    assert "DIVERGED" in captured.out
    assert ("the run diverged" in captured.err and "--allow_divergence true" in captured.err) == (code == 1)


@pytest.mark.parametrize("lr", [".nan", "-0.1", ".inf"])
def test_a_bad_lr_is_an_argument_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], lr: str) -> None:
    assert _fit(tmp_path, "copy.yaml", "--model.lr", lr) == 2
    assert "invalid argument 'lr'. Allowed: a finite number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("validated_at, validated_sizes, stale", [
    (12, [8], False),   # validated at the last step, as it ends
    (9, [8], True),     # validated before the last step
    (12, [11], True),   # validated at the last step, then a trial decided as training ended folded 3 units
    (None, None, True),  # never validated
])
def test_the_summary_validates_a_model_its_last_validation_did_not_see(validated_at, validated_sizes,
                                                                       stale: bool) -> None:
    from types import SimpleNamespace

    from growrnn.training.callbacks import CellLogger
    from growrnn.training.summary import _stale
    cell = CellLogger()
    cell.validated_at, cell.validated_sizes = validated_at, validated_sizes
    trainer = SimpleNamespace(interrupted=False, fast_dev_run=False, limit_val_batches=1.0, callbacks=[cell],
                              global_step=12)
    assert _stale(trainer, SimpleNamespace(hidden_sizes=lambda: [8])) is stale


@pytest.mark.parametrize(("added", "deleted", "line"), [
    ([3, 1], [2, 0], "  units: layer 0: 5 (+3 -2), layer 1: 2 (+1 -0); 4 added, 2 deleted in all"),
    ([], [], "  units: layer 0: 5, layer 1: 2 (added and deleted not known here: under ddp_spawn or ddp_fork"),
    (None, None, "  units: 5, 2 (fixed size)"),
])
def test_the_summarys_units_line(added, deleted, line: str) -> None:
    """The units per layer with what was added and deleted; under ddp_spawn or ddp_fork the main
    process's controller never ran (empty counts): the units, and why the counts are missing."""
    from growrnn.training.summary import FitSummary
    summary = FitSummary(task="t", metric="nll", value=1.0, step=3, floor=None, units=[5, 2], added=added,
                         deleted=deleted, log_dir=None, diverged=False)
    assert summary.text().splitlines()[1].startswith(line)
