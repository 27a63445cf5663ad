"""The StructureController grows and shrinks layers during Lightning training, for any cell and
either signal, and a run resumed from a mid-epoch checkpoint continues exactly."""

import itertools
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

import tasks
from growrnn.errors import ArgumentError
from growrnn.growth.signals import Paired
from growrnn.training import SequenceModel, TaskData
from growrnn.training.callbacks import epoch_steps
from growrnn.training.growth import StructureController


def _model(start: Any = 2, cell: str = "elman", **kw: Any) -> SequenceModel:
    t = tasks.get("miconi_hard", train_windows=1, eval_windows=2)
    options = dict(optimizer="rmsprop", lr=0.01, loss_sum_over_time=True, max_update=0.01, l1=1e-4, init_range=0.017)
    return SequenceModel(t.spec, cell=cell, hidden_size=start, one_hot=True, **{**options, **kw})


def _trainer(tmp_path: Path, callbacks: list, **kw: Any) -> L.Trainer:
    options = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=str(tmp_path), limit_val_batches=0)
    return L.Trainer(callbacks=callbacks, **{**options, **kw})


def _fit(tmp_path: Path, controller: StructureController, steps: int, start: Any = 2, cell: str = "elman",
         **kw: Any) -> SequenceModel:
    model = _model(start, cell, **kw)
    _trainer(tmp_path, [controller]).fit(model, tasks.get("miconi_hard", train_windows=steps,
                                                          eval_windows=2).datamodule())
    return model


def test_units_are_added_when_none_is_spare(tmp_path: Path) -> None:
    grow = StructureController(signal="outgoing_l1", p_add=1.0, p_spontaneous=0.0, threshold=1e-9, max_units=6, seed=1)
    model = _fit(tmp_path, grow, steps=20)
    assert model.rnn.hidden_size == 5 and grow.added == [3]   # capped at max_units - 1, as the paper's code
    assert model.decoder.weight.shape == (4, 5) and model.rnn.weight_hh_l0.shape == (5, 5)


def test_sub_threshold_units_are_deleted(tmp_path: Path) -> None:
    shrink = StructureController(signal="outgoing_l1", threshold=1e9,
                                  reserve=1, p_delete=1.0, p_add=0.0, p_spontaneous=0.0, seed=0)
    model = _fit(tmp_path, shrink, steps=5, start=6)
    assert model.rnn.hidden_size == 1 and shrink.deleted == [5]


@pytest.mark.parametrize("cell", ["lstm", "gru", "dual_lstm"])
@pytest.mark.parametrize("signal", ["outgoing_l1", "multiplier"])
def test_every_layer_of_a_gated_stack_grows_on_its_own(tmp_path: Path, cell: str, signal: str) -> None:
    grow = StructureController(signal=signal, p_add=1.0, p_spontaneous=0.0, threshold=1e-9, max_units=5, seed=2,
                               **({"multiplier_floor": 0.0} if signal == "multiplier" else {}))
    model = _fit(tmp_path, grow, steps=6, start=[2, 3], cell=cell, unit_multipliers=signal == "multiplier")
    sizes = model.hidden_sizes()
    # a v2 unit starts at the threshold (deletable) and counts as the reserve until its multiplier rises
    assert sizes[0] in ((3, 4) if signal == "multiplier" else (4,)) and sizes[1] == 4
    assert grow.added == [sizes[0] - 2, 1] and grow.deleted == [0, 0]
    assert model.rnn.layers[1].input_size == sizes[0] and model.decoder.weight.shape[1] == 4
    out, state = model(torch.zeros(1, 3, dtype=torch.long))
    assert [s[0].shape[-1] for s in state] == sizes and torch.isfinite(out).all()


def test_the_multiplier_signal_scores_units_by_their_multipliers(tmp_path: Path) -> None:
    # a huge L1 pulls every multiplier to the floor (below threshold): all but the reserve go
    shrink = StructureController(signal="multiplier", p_delete=1.0, p_add=0.0, p_spontaneous=0.0,
                                 multiplier_l1=10.0, seed=0)
    model = _fit(tmp_path, shrink, steps=4, start=[5], unit_multipliers=True, optimizer="sgd", lr=1.0,
                 max_update=None)
    assert model.hidden_sizes() == [1] and torch.equal(model.rnn.multipliers[0].detach(), torch.tensor([0.025]))


@pytest.mark.parametrize("kwargs, model_kw, match", [
    ({"signal": "size"}, {}, "signal"),
    ({"signal": "multiplier"}, {}, "unit_multipliers"),
    ({"signal": "multiplier", "multiplier_floor": 0.1}, {"unit_multipliers": True}, "multiplier_floor"),
    ({}, {"num_layers": 2}, "hidden_size as a list"),
    # strings given from Python are named, not a TypeError from a range check
    ({"signal": "outgoing_l1", "init_std": "0.1"}, {}, "init_std"),
    ({"every_n_steps": "2"}, {}, "every_n_steps"),
    ({"reference_rows": "4"}, {}, "reference_rows"),
])
def test_bad_setups_are_named(tmp_path: Path, kwargs: dict, model_kw: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        _fit(tmp_path, StructureController(**kwargs), steps=2, start=2, **model_kw)


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_the_default_signal_is_paired_and_names_missing_validation_data(tmp_path: Path) -> None:
    grow = StructureController()
    assert grow.signal_name == "paired"
    data = tasks.get("miconi_hard", train_windows=4, eval_windows=2).datamodule()
    data.setup("fit")
    with pytest.raises(ArgumentError, match="no validation data.*signal: ablation"):
        _trainer(tmp_path, [grow]).fit(_model(), train_dataloaders=data.train_dataloader())

    class TrainOnly(L.LightningDataModule):  # a datamodule without validation data: the same refusal
        def train_dataloader(self) -> Any:
            return data.train_dataloader()

    with pytest.raises(ArgumentError, match="no validation data.*signal: ablation"):
        _trainer(tmp_path, [StructureController()]).fit(_model(), datamodule=TrainOnly())


@pytest.mark.parametrize("model_kw", [
    {},  # trials cross epochs: the copy starts its carried state afresh with the network's
    {"l1": 1e-3},  # Miconi's L1 decrement, on the copy's step too
    {"max_update": 1e-3},  # and his update clip
    {"schedule": "decay", "decay_start": 1, "decay": 0.5},  # an epoch's last step at that step's rate
])
def test_a_copy_that_changes_nothing_trains_as_the_network(tmp_path: Path, model_kw: dict) -> None:
    """A trial's copy trains as Lightning trains the network: a copy of a layer held at its one
    width (min_units = max_units) stays the network to the bit through every trial, across epoch
    starts, under the model's training rule and a schedule that changes the rate at an epoch's
    last step."""

    class Twin(L.Callback):
        def __init__(self) -> None:
            self.diffs: list[tuple[int, float]] = []

        def on_train_batch_end(self, trainer: L.Trainer, model: Any, *args: Any) -> None:
            if controller.trials.copies:  # type: ignore[union-attr]
                twin = dict(controller.trials.copies[0].model.named_parameters())  # type: ignore[union-attr]
                self.diffs.append((trainer.global_step, max(float((p - twin[n]).detach().abs().max())
                                                            for n, p in model.named_parameters())))

    controller = StructureController(signal="paired", lam=0.0, paired_targets=0, paired_horizon=0, paired_steps=5,
                                     paired_margin=0.0, min_units=3, max_units=3)
    twin = Twin()
    model = _model([3], "lstm", **{**SETTLING_MODEL, "optimizer": "rmsprop", **model_kw})
    _trainer(tmp_path, [controller, twin], max_epochs=3, limit_val_batches=None).fit(
        model, TaskData("miconi_switch", {"train_windows": 12, "eval_windows": 2}))
    steps = [s for s, _ in twin.diffs]
    assert 12 in steps and 13 in steps  # a trial ran across the first epoch's end
    assert all(d == 0.0 for _, d in twin.diffs), twin.diffs


def test_a_copy_steps_young_entries_with_the_networks_head_start(tmp_path: Path) -> None:
    """Under RMSprop a trial's copy steps young entries as the network does (Adam's head start):
    with every entry's count set back to zero after the first step (new tensors, as a resize
    writes them), a copy of a layer held at its one width stays the network to the bit."""
    from growrnn.growth.signals import FRESH_STEPS

    class Young(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, model: Any, *args: Any) -> None:
            if trainer.global_step == 1:  # before the controller's hook: the first trial copies them
                for state in trainer.optimizers[0].state.values():
                    for key in FRESH_STEPS:
                        state[key] = torch.zeros_like(state[key])

    class Twin(L.Callback):
        def __init__(self) -> None:
            self.diffs: list[float] = []

        def on_train_batch_end(self, trainer: L.Trainer, model: Any, *args: Any) -> None:
            if controller.trials.copies:  # type: ignore[union-attr]
                twin = dict(controller.trials.copies[0].model.named_parameters())  # type: ignore[union-attr]
                self.diffs.append(max(float((p - twin[n]).detach().abs().max()) for n, p in model.named_parameters()))

    controller = StructureController(signal="paired", lam=0.0, paired_targets=0, paired_horizon=0, paired_steps=5,
                                     paired_margin=0.0, min_units=3, max_units=3)
    twin = Twin()
    model = _model([3], "lstm", **{**SETTLING_MODEL, "optimizer": "rmsprop"})
    _trainer(tmp_path, [Young(), controller, twin], max_epochs=2, limit_val_batches=None).fit(
        model, TaskData("miconi_switch", {"train_windows": 12, "eval_windows": 2}))
    assert len(twin.diffs) >= 8 and all(d == 0.0 for d in twin.diffs), twin.diffs


@pytest.mark.parametrize(("optimizer", "signal", "given", "expected"), [
    ("rmsprop", "outgoing_l1", None, 0.01),   # Miconi's v3 code
    ("adam", "outgoing_l1", None, 0.0),       # 0.01 would throttle a new unit's updates: no growth
    ("adam", "outgoing_l1", 0.02, 0.02),      # a value given is kept
    ("rmsprop", "multiplier", None, 0.0),     # Miconi's v2 code
])
def test_new_units_second_moment_follows_the_optimizer(optimizer: str, signal: str, given: float | None,
                                                       expected: float) -> None:
    controller = StructureController(signal=signal, fresh_second_moment=given)
    model = _model([2], optimizer=optimizer, unit_multipliers=signal == "multiplier")
    controller.setup(None, model, "fit")  # type: ignore[arg-type]
    assert controller.fresh_second_moment == expected


def test_the_controller_state_round_trips() -> None:
    a = StructureController(signal="outgoing_l1", seed=3)
    a.rng.random()
    torch.randn(2, generator=a.gen)
    b = StructureController(signal="outgoing_l1", seed=99)
    b.load_state_dict(a.state_dict())
    assert a.rng.random() == b.rng.random()
    assert torch.equal(torch.randn(3, generator=a.gen), torch.randn(3, generator=b.gen))


def test_the_paired_trials_state_round_trips() -> None:
    """Every field a trial decision reads comes back from the controller's checkpoint state."""
    a = StructureController(signal="paired", paired_scale="start")
    assert a.trials is not None
    a.trials.layer, a.trials.fractions, a.trials.calm, a.trials.idle_until = 1, [0.5, 0.125], [2, 0], [70, 0]
    a.trials.held, a.trials.holding, a.trials.start_loss = 1.5, False, 2.25
    a.trials.until, a.trials.midway = 40, {2: 1.25, -2: 1.5}
    a.trials.decisions = [{"step": 5, "layer": 0, "width": 8, "losses": {"2": 1.0, "-2": 1.1}, "chosen": 2}]
    a.trials.born = [[0, 0, 5, 5], [0, 0, 0, 0, 5]]
    b = StructureController(signal="paired", paired_scale="start")
    b.load_state_dict(a.state_dict())
    fields = ("layer", "fractions", "calm", "idle_until", "held", "holding", "start_loss", "until", "midway",
              "decisions", "born")
    assert b.trials is not None and all(getattr(b.trials, f) == getattr(a.trials, f) for f in fields)


@pytest.mark.parametrize("layer, idle_until, due", [
    (0, [0, 0], 0), (0, [50, 0], 1), (1, [0, 50], 0), (1, [0, 0], 1), (0, [50, 50], None), (2, [0, 50, 50], 0),
    (0, [10, 50], 0),  # a wait that ended at this step
])
def test_a_settled_layer_waits_alone(layer: int, idle_until: list[int], due: int | None) -> None:
    """At step 10 the next trial is of the first layer from ``layer`` on, round the stack, that
    is not waiting after settling: a settled layer's wait does not hold the others' trials."""
    from growrnn.growth.signals import Paired
    from growrnn.training.paired import PairedTrials
    trials = PairedTrials(Paired(), layer=layer, idle_until=idle_until, calm=[0] * len(idle_until))
    assert trials._due(10) == due


def test_a_stack_wide_calm_wait_loads_as_one_per_layer() -> None:
    """A checkpoint of a version whose calm wait was one for the stack resumes with it for every layer."""
    a = StructureController(signal="paired")
    assert a.trials is not None
    a.trials.load_state_dict({"fractions": [0.25, 0.5], "calm": 3, "idle_until": 700, "start_loss": 2.0})
    assert (a.trials.calm, a.trials.idle_until) == ([3, 3], [700, 700])


class _Record(L.Callback):
    """Per-step loss and unit counts, to compare runs."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, list[int]]] = []
        self.controller: Any = None  # the run's StructureController, where a test keeps it here
        self.head_start = False  # whether the model's steps took a new unit's head start

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int) -> None:
        self.rows.append((trainer.global_step, float(outputs["loss"]), pl_module.hidden_sizes()))
        self.head_start = pl_module.head_start is not None


SETTLING = {"group_lasso": {"lam": 0.03, "relative": False, "dead_steps": 3},
            "l0_gate": {"lam": 0.5, "dead_steps": 2},
            "ablation": {"lam": 0.005, "trial_steps": 4, "ablation_every": 3, "ablation_rate": 1.0,
                         "ablation_baseline": "regress"},
            "paired": {"lam": 0.0, "paired_steps": 7, "paired_targets": 0, "paired_horizon": 0, "paired_fraction": 0.5,
                       "paired_margin": 0.0, "paired_charge": "unit"}}  # the mechanics with a plain verdict
# (trials of paired_steps: 7 windows of 40 characters, not lengthened with the run; the default recipe below)
SETTLING_MODEL = {"optimizer": "adam", "lr": 0.01, "l1": 0.0, "max_update": None, "init_range": None}


@pytest.mark.parametrize("start, cell, signal, extra", [
    (1, "elman", "outgoing_l1", {}), ([2, 1], "gru", "multiplier", {}), ([3, 2], "lstm", "group_lasso", {}),
    ([3], "gru", "l0_gate", {}), ([2, 3], "gru", "ablation", {}),
    ([3], "lstm", "ablation", {"ablation_held_out": True, "ablation_retrial": 2.0}),  # their state resumes too
    ([2, 3], "lstm", "paired", {}),  # checkpointed mid-trial (trials end at steps 7, 14, ..., 35): copies resume
    ([3], "gru", "paired", {"lam": 0.01, "paired_scale": "start"}),  # the loss before training resumes too
    ([3], "lstm", "paired", {"lam": 0.01, "paired_scale": "gain"}),
    ([3], "lstm", "paired", {"lam": 0.01, "paired_floor": 0.5, "paired_hold": 0.01}),  # and the floor's, the hold's
    ([3], "gru", "paired", {"lam": 0.01, "paired_margin": 1.0}),
    ([3], "lstm", "paired", {"lam": 0.0, "paired_margin": None, "paired_charge": "row"}),  # the default recipe
    ([3], "gru", "paired", {"paired_targets": 400}),  # trials of 10 steps (40 targets a step): the count resumes
    ([3], "lstm", "paired", {"paired_settle": "cycle"}),
    ([3], "lstm", "paired", {"paired_mature": 1}),  # the units' steps of birth resume too
    ([3], "gru", "paired", {"paired_homing": True, "paired_mature": 1}),  # and the layers' first turns
    ([3], "lstm", "paired", {"lam": 0.01, "paired_move": "slope"}),  # a slope trial's gain, from its record
    ([3], "lstm", "paired", {"paired_horizon": 0.3}),  # a trial's length from the step it started at
    # the reach past the cap (15 steps at lr 0.01, the cap 3): the starting rate is read again at resume
    ([3], "lstm", "paired", {"paired_horizon": 0.3, "paired_horizon_cap": 0.05, "paired_reach": 0.15}),
])
def test_a_run_resumed_mid_epoch_continues_exactly(tmp_path: Path, start: Any, cell: str, signal: str,
                                                   extra: dict) -> None:
    whole, resumed, _ = _resumed_rows(tmp_path, start, cell, signal, extra, at=30)
    assert len(whole) == 60 and [r[0] for r in resumed] == list(range(31, 61))
    assert resumed == whole[30:]
    assert len({tuple(r[2]) for r in whole}) > 2  # the structure did change along the way


@pytest.mark.parametrize("at", [40, 45])
def test_an_extended_trial_resumes_exactly(tmp_path: Path, at: int) -> None:
    """The trial started at step 36 is judged half-way through its length at step 40 and extended
    at step 43 (to 50): a checkpoint at 40 holds the half-way losses, one at 45 the new end."""
    whole, resumed, decisions = _resumed_rows(tmp_path, [3], "lstm", "paired", {"paired_extend": 4}, at=at)
    assert len(whole) == 60 and resumed == whole[at:]
    assert any(d["started"] == 36 and d["step"] == 50 for d in decisions)  # the extension the test is about


def _resumed_rows(tmp_path: Path, start: Any, cell: str, signal: str, extra: dict,
                  at: int) -> tuple[list, list, list]:
    """The rows of a 60-step run, and of the same run resumed from its checkpoint at step ``at``,
    and the whole run's paired decisions (none for the other signals)."""
    def run(ckpt: str | None, callbacks: list) -> _Record:
        record = _Record()
        rule = {**SETTLING.get(signal, {"threshold": 0.05, "p_add": 0.5, "p_delete": 0.5}), **extra}
        controller = record.controller = StructureController(signal=signal, seed=7, **rule)
        model = _model(start, cell, unit_multipliers=signal == "multiplier", unit_gates=signal == "l0_gate",
                       dropout=0.1 if cell == "gru" else 0.0, output_prior=signal == "ablation",
                       **(SETTLING_MODEL if signal in SETTLING else {}))
        data = TaskData("miconi_switch", {"train_windows": 60, "eval_windows": 3})
        trainer = _trainer(tmp_path, [controller, record, *callbacks], enable_checkpointing=bool(callbacks),
                           limit_val_batches=None, val_check_interval=25)
        trainer.fit(model, data, ckpt_path=ckpt)
        return record

    def saver(name: str) -> L.Callback:
        return L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / name, every_n_train_steps=at, save_top_k=-1,
                                                   filename="{step}")
    whole = run(None, [saver("a")])
    ckpt = tmp_path / "mid.ckpt"
    (tmp_path / "a" / f"step={at}.ckpt").rename(ckpt)
    shutil.rmtree(tmp_path / "a")  # the resumed run writes its own checkpoints there
    resumed = run(str(ckpt), [saver("a")])
    trials = whole.controller.trials
    return whole.rows, resumed.rows, [] if trials is None else trials.decisions


def test_tensorboard_gets_units_every_step_histograms_and_a_layout(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    grow = StructureController(signal="outgoing_l1", p_add=1.0, p_spontaneous=0.0, threshold=1e-9, max_units=4,
                               histogram_every_n_steps=2)
    model = _model([2, 1])
    logger = TensorBoardLogger(str(tmp_path), name="tb", version="")
    _trainer(tmp_path, [grow], logger=logger, log_every_n_steps=3).fit(
        model, tasks.get("miconi_hard", train_windows=7, eval_windows=2).datamodule())
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    units = events.Scalars("structure/units/layer0")
    assert [e.step for e in units] == list(range(1, 8)) and units[-1].value == 3
    assert "structure/units/layer1" in events.Tags()["scalars"] and "structure/added" in events.Tags()["scalars"]
    assert {"structure/scores/layer0", "structure/scores/layer1"} <= set(events.Tags()["histograms"])
    layout = [e for e in (tmp_path / "tb").glob("events.out.tfevents.*")]
    assert layout and b"custom_scalars" in b"".join(p.read_bytes() for p in layout)


def test_tensorboard_gets_the_paired_trials(tmp_path: Path) -> None:
    """Each paired trial's two validation losses and its move go to TensorBoard at its step (trials
    start after the first step and end 3 steps later, layers taking turns); a
    second layer's under its own names."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    grow = StructureController(signal="paired", lam=0.0, paired_targets=0, paired_steps=3)
    logger = TensorBoardLogger(str(tmp_path), name="tb", version="")
    data = tasks.get("miconi_hard", train_windows=12, eval_windows=2).datamodule()
    trainer = _trainer(tmp_path, [grow], logger=logger, log_every_n_steps=3)
    model = _model([2, 2], "lstm", **SETTLING_MODEL)
    trainer.fit(model, data)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    moved = events.Scalars("structure/trial/moved")
    assert [e.step for e in moved] == [4, 10] and [e.value for e in moved] == [d["chosen"] for d in
                                                                               grow.trials.decisions[::2]]  # type: ignore[union-attr]
    assert {"structure/trial/val_loss_fewer/layer1", "structure/trial/val_loss_more/layer1"} <= set(
        events.Tags()["scalars"])
    # the units a layer holds: its start moved by every trial of it decided by then -- the
    # logged units less those a running trial added on probation
    units = {e.step: e.value for e in events.Scalars("structure/units/layer0")}
    held = {e.step: e.value for e in events.Scalars("structure/held/layer0")}
    decided = [(d["step"], d["width"] + d["chosen"]) for d in grow.trials.decisions if d["layer"] == 0]  # type: ignore[union-attr]
    assert held == {s: ([2] + [w for at, w in decided if at <= s])[-1] for s in units}
    assert all(held[s] <= units[s] for s in units) and any(held[s] < units[s] for s in units)
    # the progress bar shows the units held, at the last step (logged then, whatever
    # log_every_n_steps: the trial running there was decided first)
    assert trainer.progress_bar_metrics["units0"] == held[12] == model.hidden_sizes()[0]
    assert trainer.progress_bar_metrics["units1"] == events.Scalars("structure/held/layer1")[-1].value \
        == model.hidden_sizes()[1]
    assert [d["step"] for d in grow.trials.decisions][-1] == 12  # type: ignore[union-attr]


def test_a_checkpoint_from_before_the_held_units_still_loads() -> None:
    """Unit counts waiting to be logged were saved without the units held before 2026-12-03: they
    load, and log none."""
    state = StructureController(signal="paired").state_dict()
    state["pending"] = [(3, [4]), (4, [5], [4])]
    controller = StructureController(signal="paired")
    controller.load_state_dict(state)
    assert controller._pending == [(3, [4], None), (4, [5], [4])]


@pytest.mark.parametrize("ckpt_name", ["epoch=0-step=8.ckpt", "epoch=1-step=12.ckpt"])
def test_resume_on_a_shuffled_task_with_dropout_over_epochs(tmp_path: Path, ckpt_name: str) -> None:
    """An epoch-end checkpoint, and one in the middle of a later epoch of a shuffled task."""
    def run(ckpt: str | None, callbacks: list) -> _Record:
        record = _Record()
        controller = StructureController(signal="outgoing_l1", threshold=0.05, p_add=0.5, p_delete=0.5, seed=3)
        t = tasks.get("copy", delay=3, n_train=64, n_eval=8, batch_size=8)
        model = SequenceModel(t.spec, cell="lstm", hidden_size=[3, 2], dropout=0.3, optimizer="adam", l1=1e-3)
        data = TaskData("copy", {"delay": 3, "n_train": 64, "n_eval": 8, "batch_size": 8})
        trainer = _trainer(tmp_path, [controller, record, *callbacks], max_epochs=3, enable_checkpointing=True,
                           limit_val_batches=None)
        trainer.fit(model, data, ckpt_path=ckpt)
        return record

    def saver() -> L.Callback:
        return L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "a", every_n_train_steps=4, save_top_k=-1,
                                                   filename="{epoch}-{step}")
    whole = run(None, [saver()])
    ckpt = tmp_path / "mid.ckpt"
    (tmp_path / "a" / ckpt_name).rename(ckpt)
    shutil.rmtree(tmp_path / "a")
    resumed = run(str(ckpt), [saver()])
    start = int(ckpt_name.split("step=")[1].split(".")[0])
    assert len(whole.rows) == 24 and resumed.rows == whole.rows[start:]


@pytest.mark.parametrize("signal, model_kw, message", [
    ("outgoing_l1", {"l1": 0.0}, "without an L1 decrement"),
    ("multiplier", {"unit_multipliers": True, "loss_sum_over_time": False}, "averaged over time steps"),
])
def test_setups_that_cannot_work_as_the_paper_are_warned(tmp_path: Path, signal: str, model_kw: dict, message: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    _fit(tmp_path, StructureController(signal=signal), steps=2, start=[2], **model_kw)
    assert message in caplog.text


def test_load_from_checkpoint_rebuilds_a_grown_stack(tmp_path: Path) -> None:
    grow = StructureController(signal="outgoing_l1", p_add=1.0, p_spontaneous=0.0, threshold=1e-9, max_units=5, seed=4)
    model = _model([2, 1], cell="gru")
    trainer = _trainer(tmp_path, [grow])
    trainer.fit(model, tasks.get("miconi_hard", train_windows=4, eval_windows=2).datamodule())
    trainer.save_checkpoint(tmp_path / "grown.ckpt")
    loaded = SequenceModel.load_from_checkpoint(tmp_path / "grown.ckpt")
    assert loaded.hidden_sizes() == model.hidden_sizes() == [4, 4]
    x = torch.randint(0, 4, (2, 6))
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x)[0], model(x)[0])


def test_a_gated_run_ends_with_its_gates_folded_and_the_same_outputs(tmp_path: Path) -> None:
    controller = StructureController(signal="l0_gate", lam=0.5, dead_steps=2, seed=1)
    model = _model([3], "gru", unit_gates=True, **SETTLING_MODEL)
    data = TaskData("miconi_hard", {"train_windows": 20, "eval_windows": 2})
    trainer = _trainer(tmp_path, [controller], enable_checkpointing=False)
    seen: dict[str, Any] = {}
    x = torch.randint(0, 4, (2, 6), generator=torch.Generator().manual_seed(0))

    class Before(L.Callback):
        def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
            pl_module.eval()
            seen["device"] = pl_module.device  # compared on the device it trained on (a GPU's fit ends on the CPU)
            seen["out"] = pl_module(x.to(pl_module.device))[0]
    trainer.callbacks.append(Before())
    trainer.fit(model, data)
    assert model.rnn.gates is None and model.hparams["unit_gates"] is False
    model.to(seen["device"]).eval()
    torch.testing.assert_close(model(x.to(seen["device"]))[0], seen["out"])


@pytest.mark.parametrize("keep", [False, True])
def test_a_paired_trial_keeps_the_best_copy_and_becomes_it(tmp_path: Path, keep: bool) -> None:
    """With no charge per unit, each trial keeps whichever of the network and its copies has the
    lowest validation loss, recorded with the losses it saw; bracketing (``keep`` false) compares
    the network with units added against a copy with as many removed and never keeps the width.
    The network ends at the last decision's width (a trial running when training ends is decided).
    A trial that ends where the next starts resizes the layer twice in one step: both are counted.
    Each decision records the step its trial started at (the last one is cut short by the end)."""
    controller = StructureController(signal="paired", lam=0.0, paired_targets=0,
                                     paired_horizon=0, paired_steps=5, paired_keep=keep, paired_margin=0.0,
                                     seed=1)
    model = _model([4], "lstm", output_prior=True, **SETTLING_MODEL)
    data = TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3})
    _trainer(tmp_path, [controller], limit_val_batches=None).fit(model, data)
    decisions = controller.trials.decisions  # type: ignore[union-attr]
    assert len(decisions) == 8  # trials end at steps 5, 10, ..., 35, and the one running at the end at 40
    width = 4
    for d in decisions:
        losses = {int(k): v for k, v in d["losses"].items()}
        assert d["width"] == width and (0 in losses) == keep and len(losses) in (2, 3)
        assert d["chosen"] == min(losses, key=lambda k: (losses[k], k != max(losses) if not keep else k != 0))
        assert 0 < d["step"] - d["started"] <= 5 and (d is decisions[0] or d["started"] >= decisions[0]["step"])
        width += d["chosen"]
    assert model.hidden_sizes() == [width] and not controller.trials.copies  # type: ignore[union-attr]
    assert sum(controller.added) - sum(controller.deleted) == width - 4
    assert any(d["chosen"] for d in decisions) and not any("se" in d for d in decisions)  # no margin: no errors


@pytest.mark.parametrize(("mature", "shrinks", "trials"), [(0, True, 5), (100, False, 3)])
def test_a_trial_folds_only_mature_units(tmp_path: Path, mature: int, shrinks: bool, trials: int) -> None:
    """With ``paired_mature``, a trial's fold takes only units that have trained that many
    trials' steps: with 100 trials' steps no unit ever matures in this run, no fold happens, and
    the layer never shrinks (without it, the same run does); the steps of birth follow every resize.
    A trial that could fold no unit kept the layer's width: no move, so the layer waits as a
    settled one (5 and 3 trials in the run, not 8)."""
    controller = StructureController(signal="paired", lam=0.05, paired_targets=0,
                                     paired_steps=5, paired_mature=mature, seed=1)
    model = _model([4], "lstm", output_prior=True, **SETTLING_MODEL)
    data = TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3})
    _trainer(tmp_path, [controller], limit_val_batches=None).fit(model, data)
    record = controller.trials
    assert record is not None and len(record.decisions) == trials
    assert any(d["chosen"] < 0 for d in record.decisions) == shrinks
    assert len(record.born[0]) == model.hidden_sizes()[0]
    assert set(record.born[0]) <= {0} | {d["started"] for d in record.decisions if d["chosen"] > 0}


def test_a_trial_that_cannot_move_the_layer_counts_as_settled(tmp_path: Path) -> None:
    """A layer at ``min_units`` whose trials keep it there (no unit to fold, the wider side not
    worth its charge) moved nothing: it waits 1, 3, 7 ... trials' steps between trials as a
    settled layer does, instead of running a copy beside the network on every step."""
    controller = StructureController(signal="paired", lam=1.0, paired_targets=0, paired_horizon=0, paired_steps=5,
                                     paired_margin=0.0, seed=0)
    model = _model([1], "lstm", output_prior=True, **SETTLING_MODEL)
    data = TaskData("miconi_switch", {"train_windows": 60, "eval_windows": 3})
    _trainer(tmp_path, [controller], limit_val_batches=None).fit(model, data)
    decisions = controller.trials.decisions  # type: ignore[union-attr]
    assert len(decisions) >= 3 and all(d["chosen"] == 0 for d in decisions) and model.hidden_sizes() == [1]
    waits = [b["started"] - a["step"] for a, b in zip(decisions, decisions[1:], strict=False)]
    assert waits[:2] == [5, 15]  # 1, then 3 trials' steps


def test_a_kept_layer_with_no_side_to_try_waits(tmp_path: Path) -> None:
    """With ``paired_keep``, a layer at ``max_units`` whose units are all too young to fold
    (``paired_mature``) has no copy to train: no trial, and it waits as a settled layer does (the
    other layer's turn comes next), instead of starting an empty trial again at every step."""
    controller = StructureController(signal="paired", lam=0.0, paired_keep=True, paired_mature=1, paired_steps=5,
                                     paired_targets=0, paired_horizon=0, paired_margin=0.0, max_units=4)
    model = _model([4, 4], "lstm", **SETTLING_MODEL)
    _trainer(tmp_path, [controller], max_steps=3, limit_val_batches=None).fit(
        model, TaskData("miconi_switch", {"train_windows": 12, "eval_windows": 2}))
    trials = controller.trials
    assert trials is not None and trials.started is None and not trials.copies
    assert (trials.calm, trials.idle_until) == ([1, 1], [1 + 5, 2 + 5])  # each tried once, at steps 1 and 2


def test_a_gated_stack_validates_and_tests_after_its_gates_are_folded(tmp_path: Path) -> None:
    """l0_gate folds its gates into the weights at the end of fit; a validate or test after it
    (growrnn fit's summary, the evaluator, a user's script) is not refused for the missing gates."""
    controller = StructureController(signal="l0_gate")
    model = _model([3], "lstm", unit_gates=True, **SETTLING_MODEL)
    trainer = _trainer(tmp_path, [controller], max_steps=3, limit_val_batches=None)
    data = TaskData("miconi_hard", {"train_windows": 6, "eval_windows": 2})
    trainer.fit(model, data)
    assert model.rnn.gates is None  # folded
    assert trainer.validate(model, data, verbose=False) and trainer.test(model, data, verbose=False)


@pytest.mark.parametrize("model_kw, ctrl, match", [
    ({"hidden_size": [16]}, {"max_units": 8}, r"model.hidden_size\[0\].*max_units \(8\).*Received: 16"),
    ({"hidden_size": [4]}, {"min_units": 6}, r"model.hidden_size\[0\].*min_units \(6\).*Received: 4"),
    ({"hidden_size": [128]}, {}, r"max_units \(100\).*Received: 128"),  # the default bound, said
    ({"unit_multipliers": True}, {}, r"model.unit_multipliers.*false with signal paired"),
    ({"unit_multipliers": True}, {"signal": "group_lasso"}, r"model.unit_multipliers.*signal multiplier only"),
    ({"unit_gates": True}, {"signal": "ablation"}, r"model.unit_gates.*l0_gate only"),
])
def test_a_model_the_controller_cannot_grow_is_refused_at_setup(tmp_path: Path, model_kw: dict, ctrl: dict,
                                                                match: str) -> None:
    """A layer started outside [min_units, max_units], or a stack with unit multipliers or gates
    under a signal that does not read them (a new unit's scale would start closed, and the unit
    never learn), is an error before training, not a layer that silently cannot move or grow."""
    kw = {"hidden_size": [4], **model_kw}
    model = _model(kw.pop("hidden_size"), "lstm", **{**SETTLING_MODEL, **kw})
    controller = StructureController(**{"signal": "paired", **ctrl})
    with pytest.raises(ArgumentError, match=match):
        _trainer(tmp_path, [controller], max_steps=1).fit(model, TaskData("miconi_hard", {"train_windows": 2,
                                                                                           "eval_windows": 2}))


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_a_checkpoint_wider_than_the_resumed_bounds_is_refused(tmp_path: Path) -> None:
    """Setup sees the config's start; a checkpoint restored after it may hold a layer the resumed
    controller's bounds do not allow (max_units lowered for the resume): that is an error naming
    the layer and the checkpoint's width, not a layer silently held above its ceiling."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(width: int, ceiling: int, ckpt: Path | None = None) -> None:
        model = _model([width], "lstm", **SETTLING_MODEL)
        trainer = _trainer(tmp_path, [StructureController(signal="paired", max_units=ceiling),
                                      ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)],
                           max_steps=2 if ckpt is None else 4, enable_checkpointing=True)
        trainer.fit(model, TaskData("miconi_hard", {"train_windows": 2, "eval_windows": 2}), ckpt_path=ckpt,
                    weights_only=True)

    fit(8, 16)
    refusal = r"model.hidden_size\[0\].*max_units \(6\).*checkpoint's layer 0 holds \d+ units"
    with pytest.raises(ArgumentError, match=refusal):
        fit(4, 6, tmp_path / "ck" / "last.ckpt")


@pytest.mark.parametrize("kwargs, match", [
    ({"signal": "paired", "init_std": 5.0}, r"'init_std'.*unset with signal paired"),
    ({"signal": "paired", "every_n_steps": 7}, r"'every_n_steps'.*unset with signal paired"),
    ({"signal": "paired", "dead_steps": 5}, r"'dead_steps'.*read by signal group_lasso, l0_gate, ablation"),
    ({"signal": "paired", "fresh_second_moment": 1.0}, "fresh_second_moment"),
    ({"signal": "ablation", "paired_steps": 50}, r"'paired_steps'.*read by signal paired"),
    ({"signal": "outgoing_l1", "lam": 1e-3}, r"'lam'.*unset with signal outgoing_l1"),
    ({"signal": "group_lasso", "multiplier_floor": 0.0}, r"'multiplier_floor'.*read by signal multiplier"),
    ({"signal": "paired", "paired_keep": "no"}, r"'paired_keep'.*true or false"),
    ({"signal": "paired", "relative": "yes"}, r"'relative'.*true or false"),
    ({"signal": "paired", "lam": math.inf}, r"'lam'.*finite"),
    ({"signal": "group_lasso", "init_std": math.inf}, r"'init_std'.*a finite number >= 0.*Received: inf"),
    ({"signal": "group_lasso", "reserve": 1.5}, r"'reserve'.*an int >= 0"),
    ({"signal": "paired", "max_units": 3.5}, r"'max_units'.*an int >= 1"),
    ({"signal": "ablation", "dead_steps": 2.5}, r"'dead_steps'.*an int >= 1"),
    ({"signal": "ablation", "ablation_every": 0}, r"'ablation_every'.*an int >= 1.*HINT"),
    ({"signal": "ablation", "ablation_rate": 0.0}, r"'ablation_rate'"),
    ({"signal": "ablation", "ablation_bound": 0.0}, r"'ablation_bound'.*a number > 0, or null"),
    ({"signal": "ablation", "ablation_bound": "1"}, r"'ablation_bound'.*Received: '1'"),
    ({"signal": "paired", "ablation_bound": None}, r"'ablation_bound'.*read by signal ablation"),
    ({"signal": "paired", "seed": "a"}, r"'seed'.*int >= 0"),
    ({"signal": "paired", "histogram_every_n_steps": -5}, "histogram_every_n_steps"),
    ({"signal": None}, r"'signal'.*Received: None"),
])
def test_an_option_the_signal_does_not_read_or_a_bad_value_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        StructureController(**kwargs)


def test_every_controller_option_says_which_signals_read_it() -> None:
    """A new option must be placed: in SIGNAL_OPTIONS (some signals), under its signal's prefix,
    or among the options every signal takes -- and only the signals named there exist."""
    import inspect

    from growrnn.training.growth import EVERY_SIGNAL, SIGNAL_OPTIONS, SIGNALS
    names = [n for n in inspect.signature(StructureController.__init__).parameters if n != "self"]
    prefixed = [n for n in names if n.startswith(("multiplier_", "ablation_", "paired_"))]
    assert sorted(names) == sorted([*SIGNAL_OPTIONS, *prefixed, *EVERY_SIGNAL])
    assert {s for readers in SIGNAL_OPTIONS.values() for s in readers} == set(SIGNALS)


@pytest.mark.parametrize("kwargs", [
    {"signal": "paired", "reserve": 1, "threshold": 0.05, "seed": 3},  # the defaults, given: accepted
    {"signal": "outgoing_l1", "decide_at_limit": False, "max_units": 8},  # every signal's options
    {"signal": "paired", "lam": None, "paired_horizon_cap": None},
])
def test_options_at_their_defaults_or_read_by_every_signal_are_accepted(kwargs: dict) -> None:
    assert StructureController(**kwargs).signal_name == kwargs["signal"]


@pytest.mark.parametrize("losses, bar, gain, width, expected", [
    ({-4: 2.0, 4: 1.0}, 0.0625, 0.25, 32, (4, 1.0)),        # 2 x the charge: the whole reach, up to the sides
    ({-4: 2.0, 4: 1.5}, 0.0625, 0.25, 32, (0, 0.0)),        # a unit worth its charge: no move
    ({-4: 2.0, 4: 1.75}, 0.0625, 0.25, 32, (-4, -0.5)),     # worth half its charge: half the reach
    ({-4: 2.0, 4: 1.75}, 0.0625, 0.0625, 32, (-1, -0.5)),   # a smaller gain, a smaller move
    ({-4: 2.0, 4: math.inf}, 0.0625, 0.25, 32, (-4, -1.0)),  # the wider side diverged
    ({-4: math.inf, 4: 2.0}, 0.0625, 0.25, 32, (4, 1.0)),   # the narrower one did
    ({-4: math.inf, 4: math.inf}, 0.0625, 0.25, 32, (0, 0.0)),
    ({-4: 2.0, 4: 1.9}, 0.0, 0.25, 32, (4, 1.0)),           # no charge: the sign of the gain
    ({0: 2.0, 3: 2.0}, 0.0625, 0.25, 32, (0, -1.0)),        # at the size floor: no narrower side to go to
])
def test_a_slope_trial_moves_by_what_it_measured(losses: dict, bar: float, gain: float, width: int,
                                                 expected: tuple) -> None:
    from growrnn.training.paired import slope_move
    assert slope_move(losses, bar, gain, width) == expected


def test_a_slope_run_follows_its_record(tmp_path: Path) -> None:
    """With ``paired_move`` slope every trial moves the layer by :func:`slope_move` of what it
    judged, at the gain its layer's turns so far leave (Kesten's rule), to widths between the
    sides' (made by folding the network's surplus or adding fresh units to the copy), and the
    network ends at the width its record adds up to."""
    from growrnn.training.paired import slope_move
    controller = StructureController(signal="paired", lam=0.01, paired_targets=0, paired_steps=5, paired_fraction=0.5,
                                     paired_move="slope", paired_charge="unit", seed=1)
    model = _model([4], "lstm", output_prior=True, **SETTLING_MODEL)
    data = TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3})
    _trainer(tmp_path, [controller], limit_val_batches=None).fit(model, data)
    decisions = controller.trials.decisions  # type: ignore[union-attr]
    width, signs = 4, []
    for d in decisions:
        losses = {int(k): v for k, v in d["losses"].items()}
        turns = sum(a != b for a, b in itertools.pairwise(signs))
        assert d["width"] == width and d["gain"] == pytest.approx(0.5 / (1 + turns))
        assert (d["chosen"], d["slope"]) == slope_move(losses, d["bar"], d["gain"], width)
        signs += [math.copysign(1, d["slope"])] if d["slope"] else []
        width += d["chosen"]
    assert model.hidden_sizes() == [width] and sum(controller.added) - sum(controller.deleted) == width - 4
    assert any(min(int(k) for k in d["losses"]) < d["chosen"] < max(int(k) for k in d["losses"]) and d["chosen"]
               for d in decisions)  # a move between the sides


def test_a_trial_that_trained_no_step_is_dropped() -> None:
    """A trial started on the last step of training has trained nothing when training ends: it
    decides nothing, and the unit the network took for it (untrained, zero outgoing weights) goes,
    so the network is as it was before the trial, to the bit."""
    from growrnn.growth.signals import Paired
    from growrnn.training.paired import PairedTrials
    model = _model([4], "lstm", **SETTLING_MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = next(iter(tasks.get("miconi_switch", train_windows=2, eval_windows=1).datamodule().train_dataloader()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    resizes: list[tuple[int, int, int]] = []
    trials = PairedTrials(Paired(steps=5, lam=0.0))
    trials.fractions = [0.25]
    trials.signal.check(model.rnn, {})  # as the controller does when training starts
    record = lambda k, units, old: resizes.append((k, int(units.index.numel()), old))  # noqa: E731
    trials._start(model, batch, optimizer, 7, record)
    assert model.hidden_sizes() == [5] and trials.trained_steps(7) == 0
    trials.finish(None, model, optimizer, 7, record)
    assert resizes == [(0, 5, 4), (0, 4, 5)] and not trials.decisions and not trials.copies
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)


@pytest.mark.parametrize("limits, steps", [
    ({"max_steps": 12, "val_check_interval": 4}, 5),  # the trial started at 11 is cut short
    ({"max_epochs": 2, "limit_train_batches": 6}, 5),
    ({"max_steps": 12, "val_check_interval": 4}, 11),  # the trial started at 1 is due at 12, the next not started
])
def test_the_trial_running_at_the_last_step_is_decided_before_the_last_validation(tmp_path: Path, limits: dict,
                                                                                  steps: int) -> None:
    """A trial still running at the last step the trainer's limits foresee (``max_steps``; the last
    batch of the last epoch) is decided at that step: the last validation and the checkpoint
    written after it (``last.ckpt``) hold the network training ends with, no trial on the way,
    and none starts there."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    controller = StructureController(signal="paired", lam=0.0, paired_targets=0, paired_steps=steps,
                                     paired_margin=0.0, seed=1)
    model = _model([4], "lstm", output_prior=True, **SETTLING_MODEL)
    seen: list[tuple[list[int], bool]] = []

    class Validated(L.Callback):
        def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
            seen.append((pl_module.hidden_sizes(), bool(controller.trials.copies)))  # type: ignore[union-attr]
    saved = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    options = {"max_epochs": None, "enable_checkpointing": True, "limit_val_batches": None, **limits}
    _trainer(tmp_path, [controller, Validated(), saved], **options).fit(
        model, TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3}))
    decisions = controller.trials.decisions  # type: ignore[union-attr]
    assert decisions[-1]["step"] == 12 and 0 < 12 - decisions[-1]["started"] <= steps
    assert seen[-1] == (model.hidden_sizes(), False)
    last = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12 and last["state_dict"]["decoder.weight"].shape[1] == model.hidden_sizes()[0]
    # no trial started at the last step: each trial's units (its d, the network's while it ran) are
    # all the units added (one started there would add d more, dropped at once)
    assert sum(controller.added) == sum(abs(d["chosen"]) for d in decisions)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.parametrize("decide", [True, False])
def test_a_longer_run_resumed_from_a_finished_one(tmp_path: Path, decide: bool) -> None:
    """A run of 12 steps resumed from its ``last.ckpt`` to 20 steps: with ``decide_at_limit``
    false the trial running at step 12 was left running in the checkpoint and the longer run
    goes on as one uninterrupted 20-step run, to the bit; with the default the trial was decided
    at step 12 (a decision the uninterrupted run does not take there)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(steps: int, folder: str, ckpt: Path | None = None) -> tuple[SequenceModel, StructureController]:
        controller = StructureController(signal="paired", lam=0.0, paired_targets=0, paired_steps=5,
                                         paired_margin=0.0, seed=1, decide_at_limit=decide)
        model = _model([4], "lstm", output_prior=True, **SETTLING_MODEL)
        saved = ModelCheckpoint(dirpath=tmp_path / folder, save_last=True)
        trainer = _trainer(tmp_path, [controller, saved], max_epochs=None, max_steps=steps, val_check_interval=4,
                           enable_checkpointing=True, limit_val_batches=None)
        trainer.fit(model, TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3}), ckpt_path=ckpt,
                    weights_only=True)
        return model, controller

    whole, whole_ctrl = fit(20, "whole")
    fit(12, "part")
    resumed, resumed_ctrl = fit(20, "part", tmp_path / "part" / "last.ckpt")
    same = [(d["step"], d["chosen"]) for d in resumed_ctrl.trials.decisions] == \
        [(d["step"], d["chosen"]) for d in whole_ctrl.trials.decisions]  # type: ignore[union-attr]
    same = same and all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(),
                                                          strict=True))
    assert same is not decide
    assert any(d["step"] == 12 for d in resumed_ctrl.trials.decisions) is decide  # type: ignore[union-attr]


@pytest.mark.parametrize("losses, midway, mine, bar, turns", [
    ({2: 1.00, -2: 1.02}, {2: 1.10, -2: 1.10}, 2, 0.0, False),  # the wider side wins and pulls away
    ({2: 1.02, -2: 1.00}, {2: 1.10, -2: 1.06}, 2, 0.0, True),  # the narrower wins, the wider catches up
    ({2: 1.02, -2: 1.00}, {2: 1.04, -2: 1.02}, 2, 0.0, False),  # both improve alike: the verdict stands
    ({2: 1.00, -2: 1.02}, {2: 1.00, -2: 1.10}, 2, 0.0, True),  # the wider wins, the narrower catches up
    ({2: 1.00, -2: 1.02}, {2: 1.10, -2: 1.15}, 2, 0.01, False),  # the charge: 4 units at 0.01 decide it
    ({0: 1.00, 2: 1.01, -2: 1.02}, {0: 1.00, 2: 1.05, -2: 1.02}, 0, 0.0, True),  # keep: the copy with more overtakes
    ({2: 1.02, -2: 1.00}, {2: 1.10}, 2, 0.0, False),  # a side not judged midway: no projection
    ({2: 1.02, -2: 1.00}, {2: math.inf, -2: 1.06}, 2, 0.0, False),  # diverged midway: no projection
    ({2: math.inf, -2: 1.00}, {2: 1.10, -2: 1.06}, 2, 0.0, False),
])
def test_a_trial_goes_on_while_its_verdict_is_turning(losses: dict, midway: dict, mine: int, bar: float,
                                                       turns: bool) -> None:
    """With ``paired_extend``, a trial is not decided while its verdict on the sides' losses would
    turn if each side went on improving as it did over the last half trial, for one trial more;
    a loss that is not finite turns nothing."""
    from growrnn.training.paired import turning
    assert turning(losses, midway, mine, 10, bar) is turns


@pytest.mark.parametrize("losses, mine, bar, tolerance, expected", [
    ({2: 1.00, -2: 1.03}, 2, 0.0, None, 2),  # no tolerance: the lower loss
    ({2: 1.00, -2: 1.03}, 2, 0.0, {(-2, 2): 0.05}, -2),  # the wider side's lead is within the tolerance
    ({2: 1.00, -2: 1.03}, 2, 0.0, {(-2, 2): 0.02}, 2),  # beyond it
    ({2: 1.00, -2: 1.03}, 2, 0.003, {(-2, 2): 0.02}, -2),  # ... but within, once 4 units at 0.003 are charged
    ({2: 1.03, -2: 1.00}, 2, 0.0, {(-2, 2): 0.05}, -2),  # the narrower is best anyway
    ({2: 1.00, -2: 1.03}, 2, 0.0, {(-2, 2): 0.0}, 2),  # a tolerance of 0 is no tolerance
    ({2: 1.00, -2: 1.00}, 2, 0.0, {(-2, 2): 0.0}, -2),  # ... but a tie goes to the narrower side
    ({2: 1.00, -2: 1.00}, 2, 0.0, None, 2),  # without a margin, to the network
    ({0: 1.00, 2: 1.00, -2: 1.01}, 0, 0.0, None, 0),  # keep: a tie goes to the network (0)
    ({0: 1.00, 2: 0.98, -2: 1.01}, 0, 0.0, {(-2, 0): 0.02, (-2, 2): 0.02, (0, 2): 0.05}, 0),  # narrowest within
    ({0: 1.00, 2: 0.98, -2: 1.01}, 0, 0.0, {(-2, 0): 0.05, (-2, 2): 0.04, (0, 2): 0.05}, -2),
    ({2: 1.00, -2: math.inf}, 2, 0.0, {(-2, 2): math.nan}, 2),  # a diverged side is never within
])
def test_the_margin_keeps_the_narrowest_side_within_its_tolerance(losses: dict, mine: int, bar: float,
                                                                   tolerance: dict | None, expected: int) -> None:
    """With a tolerance per pair of sides (``paired_margin`` standard errors of their difference),
    a trial goes on with the narrowest side whose charged loss (``bar`` per unit) is within it of
    the best side's: the one-standard-error rule; without one, the lowest charged loss (a tie: the
    network, ``mine``)."""
    from growrnn.training.paired import chosen
    assert chosen(losses, mine, 10, bar, tolerance) == expected


@pytest.mark.parametrize("fraction, moved, by_margin, homing, expected", [
    (0.1, True, False, False, 0.2),  # a move the way of the last doubles the step
    (0.2, True, False, False, 0.25),  # up to the largest
    (0.1, True, True, False, 0.1),  # a move the margin made keeps it
    (0.1, True, False, True, 0.1),  # so does every move of a homing layer (paired_homing, after a turn)
    (0.1, False, False, False, 0.05),  # a turn halves it
    (0.1, False, False, True, 0.05),  # homing or not
    (0.04, False, False, False, 0.025),  # down to one unit of the 40
])
def test_a_layers_step_after_a_trial(fraction: float, moved: bool, by_margin: bool, homing: bool,
                                     expected: float) -> None:
    from growrnn.training.paired import next_step
    assert next_step(fraction, moved, by_margin, homing, 0.25, 40) == pytest.approx(expected)


def test_a_tolerance_turns_the_projection_too() -> None:
    """The extension's projection is judged by the same rule: the wider side, 0.01 behind at the
    end and gaining 0.02 a half trial, leads by 0.03 projected -- a turn without a tolerance, none
    with a tolerance of 0.05 (the narrower side stays within it)."""
    from growrnn.training.paired import turning
    losses, midway = {2: 1.01, -2: 1.00}, {2: 1.03, -2: 1.00}
    assert turning(losses, midway, 2, 10, 0.0) and not turning(losses, midway, 2, 10, 0.0, tolerance={(-2, 2): 0.05})


def test_the_standard_error_of_a_difference_is_the_ratio_estimators() -> None:
    """Two networks' summed losses on three batches of 2, 3 and 5 targets: the difference per
    target is 0.1 and the standard error that of the residuals about it, batch by batch,
    sqrt(3 / 2 * sum(e ** 2)) / 10 (closed form); one batch, or networks alike, give 0."""
    from growrnn.training.paired import difference_se
    n = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)
    a = torch.tensor([2.4, 3.0, 5.6], dtype=torch.float64)
    b = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)
    e = [0.4 - 0.2, 0.0 - 0.3, 0.6 - 0.5]  # each batch's difference less 0.1 of its targets
    assert math.isclose(difference_se((a, n), (b, n)), math.sqrt(1.5 * sum(v * v for v in e)) / 10, rel_tol=1e-12)
    assert difference_se((a, n), (a, n)) == 0.0 and difference_se((a[:1], n[:1]), (b[:1], n[:1])) == 0.0
    zero = lambda t, v: torch.cat([t[:1], torch.tensor([v], dtype=torch.float64), t[1:]])  # noqa: E731
    assert difference_se((zero(a, 0.0), zero(n, 0.0)), (zero(b, 0.0), zero(n, 0.0))) == difference_se((a, n), (b, n))
    assert math.isnan(difference_se((a + torch.tensor([math.inf, 0, 0]), n), (b, n)))  # diverged: never within
    with pytest.raises(ValueError, match="same validation batches"):
        difference_se((a, n), (b, n + 1))


def test_a_margin_trial_records_its_errors_and_follows_the_rule(tmp_path: Path) -> None:
    """With ``paired_margin``, every decision records the standard error of its sides' difference,
    each the one the judged parts give, and goes to the narrower side whenever the wider one's
    charged lead is within ``margin`` of them; the model's judged loss is its parts' pooled loss."""
    controller = StructureController(signal="paired", lam=0.0, paired_targets=0,
                                     paired_steps=5, paired_margin=2.0, seed=1)
    model = _model([16], "lstm", output_prior=True, **SETTLING_MODEL)
    data = TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3})
    _trainer(tmp_path, [controller], limit_val_batches=None).fit(model, data)
    trials = controller.trials
    assert trials is not None and len(trials._batches or []) >= 2
    from growrnn.training.model import pooled_loss
    sums, counts = model.judged_parts(trials._batches)
    assert sums.shape == counts.shape == (len(trials._batches),)
    assert model.judged_loss(trials._batches) == pooled_loss(sums, counts)
    assert math.isclose(pooled_loss(sums, counts), float(sums.sum() / counts.sum()), rel_tol=1e-12)
    narrower = 0
    for d in trials.decisions:
        losses = {int(k): v for k, v in d["losses"].items()}
        (pair, se), = d["se"].items()
        assert pair == f"{min(losses)}:{max(losses)}" and se > 0
        lead = losses[min(losses)] - losses[max(losses)]
        assert d["chosen"] == (min(losses) if lead <= 2.0 * se else max(losses))
        assert d.get("by_margin", False) == (0 < lead <= 2.0 * se)
        narrower += 0 < lead <= 2.0 * se
    assert narrower  # the margin decided some trial
    f, last = 0.25, None  # the step's share of the layer, as the decisions replay it
    for d in trials.decisions:
        assert abs(d["chosen"]) == max(1, round(f * d["width"]))
        moved = last is None or (last > 0) == (d["chosen"] > 0)
        if moved and not d.get("by_margin"):  # a move the margin made keeps the step
            f = min(2 * f, 0.25)
        elif not moved:
            f = max(f / 2, 1 / d["width"])
        last = d["chosen"]


def test_a_margin_needs_two_validation_batches(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The standard error is estimated across the judged validation batches: with one, a margin
    given is refused at the first judgement, naming the option; the default margin yields (a
    warning says so) and the trials judge the losses alone."""
    data = TaskData("miconi_switch", {"train_windows": 20, "eval_windows": 3})
    controller = StructureController(signal="paired", paired_targets=0, paired_steps=5, paired_margin=1.0)
    with pytest.raises(ArgumentError, match="paired_margin"):
        _trainer(tmp_path, [controller], limit_val_batches=1).fit(_model([3], "lstm", **SETTLING_MODEL), data)
    controller = StructureController(signal="paired", paired_targets=0, paired_steps=5)
    with caplog.at_level(logging.WARNING, logger="growrnn.training.paired"):
        _trainer(tmp_path, [controller], limit_val_batches=1).fit(_model([3], "lstm", **SETTLING_MODEL), data)
    assert "default paired_margin" in caplog.text
    assert controller.trials is not None and controller.trials.decisions
    assert all(se == 0 for d in controller.trials.decisions for se in d.get("se", {}).values())


@pytest.mark.parametrize("mode, best, bad, after", [
    ("min", 1.0, 3, math.inf), ("max", 1.0, 3, -math.inf), ("min", math.inf, 0, math.inf),
])
def test_a_restart_starts_the_plateau_count_over(mode: str, best: float, bad: int, after: float) -> None:
    """``restart_plateaus`` resets every ``ReduceLROnPlateau``'s reference and count (the next
    validation is its new best) and leaves other schedules alone; the schedule then cuts the rate
    as before, after ``patience`` epochs without improvement on its new reference."""
    from types import SimpleNamespace

    from growrnn.training.growth import restart_plateaus
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=1)
    other = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    plateau.best, plateau.num_bad_epochs = best, bad
    restart_plateaus(SimpleNamespace(lr_scheduler_configs=[SimpleNamespace(scheduler=other),
                                                           SimpleNamespace(scheduler=plateau)]))
    assert (plateau.best, plateau.num_bad_epochs, other.last_epoch) == (after, 0, 0)
    sign = 1.0 if mode == "min" else -1.0
    for value, lr in ((5.0, 1.0), (6.0, 1.0), (6.0, 0.5)):  # 5 is the new best; two epochs without improvement
        plateau.step(sign * value)
        assert opt.param_groups[0]["lr"] == lr
    restart_plateaus(SimpleNamespace())  # a trainer without schedules: nothing to do


@pytest.mark.parametrize("restart", [True, False])
def test_a_trial_resize_is_not_a_plateau(tmp_path: Path, restart: bool) -> None:
    """Under a ``plateau`` schedule with no patience, an epoch in which the paired trials resized
    the layer never cuts the learning rate with ``paired_restart`` (the default); without it the
    same run cuts it at the end of such an epoch (the fold's damage taken for a plateau)."""
    controller = StructureController(signal="paired", lam=0.0, paired_targets=0, paired_horizon=0, paired_steps=5,
                                     paired_restart=restart, paired_margin=0.0, seed=1)
    epochs: list[tuple[bool, float]] = []  # per epoch: whether the trials resized a layer, the rate it trained at

    class Epochs(L.Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
            self.moves = (sum(controller.added), sum(controller.deleted))

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
            moved = (sum(controller.added), sum(controller.deleted)) != self.moves
            epochs.append((moved, float(trainer.optimizers[0].param_groups[0]["lr"])))

    model = _model([8], "lstm", schedule="plateau", patience=0, plateau_factor=2.0, **SETTLING_MODEL)
    data = TaskData("miconi_switch", {"train_windows": 5, "eval_windows": 2})
    _trainer(tmp_path, [controller, Epochs()], max_epochs=16, limit_val_batches=None).fit(model, data)
    cut_after_a_move = [moved and nxt < lr for (moved, lr), (_, nxt) in zip(epochs[:-1], epochs[1:], strict=True)]
    assert any(moved for moved, _ in epochs) and any(cut_after_a_move) != restart
    assert epochs[-1][1] < epochs[0][1] or restart  # without the restart the rate does fall


@pytest.mark.parametrize("moves, expected", [
    ([5, -2, -1, -2], True),  # PTB's cycle: back where it began
    ([-1, 2, -1, -1], True),  # the JSB GRU's: one unit off, within the largest step
    ([-64, -48, -36, 20], False),  # a layer coming down, one step back: not round a width
    ([2, 4, 8, -4], False),  # growing
    ([-1, -1, -1, -1], False),  # one way only
    ([5, -2, -1], False),  # too few trials to tell
    ([1, -3, -3, 1], False),  # both ways, but 4 down: more than the largest step
    ([9, 9, 1, -1, 1, -1], True),  # only the last four count ...
    ([1, -1, 1, -1, -3, -3], False),  # ... both ways
])
def test_a_layer_going_round_a_width_is_cycling(moves: list[int], expected: bool) -> None:
    from growrnn.training.paired import cycling
    assert cycling(moves) == expected


@pytest.mark.parametrize("settle", ["turn", "cycle"])
def test_a_cycling_layer_waits_with_settle_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 settle: str) -> None:
    """Trials scripted to go up once and down twice, round and round: with ``paired_settle``
    ``cycle`` each trial whose last four went both ways and came back within a step counts as
    settled, and the next trial starts 1, 3, 7 or 15 trials' steps later, as the decisions replay
    it; with ``turn`` only a one-unit turn does. The scripted run does wait where ``turn`` would not."""
    from growrnn.training.paired import MAX_CALM, PairedTrials, cycling
    real, script = PairedTrials._sides, iter([True, False, False] * 100)

    def scripted(self: PairedTrials, trainer: Any, model: Any, errors: bool = True) -> tuple[dict, dict]:
        losses, se = real(self, trainer, model, errors)
        up = next(script)
        return {max(losses): 1.0 if up else 2.0, min(losses): 2.0 if up else 1.0}, se

    monkeypatch.setattr(PairedTrials, "_sides", scripted)
    steps = 5
    controller = StructureController(signal="paired", lam=0.0, paired_targets=0,
                                     paired_horizon=0, paired_steps=steps, paired_settle=settle, seed=1)
    data = TaskData("miconi_switch", {"train_windows": 400, "eval_windows": 3})
    _trainer(tmp_path, [controller], limit_val_batches=None).fit(_model([16], "lstm", **SETTLING_MODEL), data)
    decisions = controller.trials.decisions
    assert len(decisions) >= 8
    f, last, calm, waited_for_a_cycle = 0.25, None, 0, False  # the step's share and the calm, replayed
    for i, (d, following) in enumerate(zip(decisions, decisions[1:] + [None], strict=True)):
        moved = last is None or (last > 0) == (d["chosen"] > 0)
        smallest = max(abs(int(x)) for x in d["losses"]) <= 1  # its sides one unit from its start
        f = min(2 * f, 0.25) if moved else max(f / 2, 1 / d["width"])
        round_ = cycling([x["chosen"] for x in decisions[:i + 1]])
        calm = calm + 1 if (smallest and not moved) or (settle == "cycle" and round_) else 0
        waited_for_a_cycle |= calm > 0 and not (smallest and not moved)
        if following is not None:
            assert following["started"] == d["step"] + steps * (2 ** min(calm, MAX_CALM) - 1)
        last = d["chosen"]
    assert waited_for_a_cycle == (settle == "cycle")


def test_the_projection_spans_one_trial_length() -> None:
    """Judged 3 steps before the end of a 7-step trial, each side's trend is carried 7 steps on:
    the wider side, 0.021 behind and gaining 0.01 in 3 steps, overtakes in 7 (0.0233), not in 6."""
    from growrnn.training.paired import turning
    losses, midway = {2: 1.021, -2: 1.00}, {2: 1.031, -2: 1.00}
    assert turning(losses, midway, 2, 10, 0.0, ahead=7 / 3) and not turning(losses, midway, 2, 10, 0.0, ahead=2.0)


def test_extended_trials_are_decided_when_they_stop_turning(tmp_path: Path) -> None:
    """Every decided trial lasted a whole number of trial lengths, at most ``paired_extend``, and
    one cut short by that limit is the only kind decided while its verdict still turns; some
    trials of the run were extended."""
    from growrnn.training.paired import turning
    controller = StructureController(signal="paired", lam=0.0, paired_targets=0,
                                     paired_horizon=0, paired_steps=6, paired_extend=3, seed=1)
    midway: list[tuple[int, int]] = []  # (step, the step the running trial is due at) at each midway judgement

    class Midway(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
            trials = controller.trials
            if trials is not None and trials.midway is not None and (not midway or midway[-1][1] != trials._due_end()):
                midway.append((trainer.global_step, trials._due_end()))
    data = TaskData("miconi_switch", {"train_windows": 80, "eval_windows": 3})
    _trainer(tmp_path, [controller, Midway()], limit_val_batches=None).fit(_model([4], "lstm", **SETTLING_MODEL),
                                                                           data)
    assert midway and all(due - step == 3 for step, due in midway)  # half-way through the last 6 steps
    decisions = controller.trials.decisions  # type: ignore[union-attr]
    lengths = [d["step"] - d["started"] for d in decisions[:-1]]  # the last is cut by the end of training
    assert set(lengths) <= {6, 12, 18} and any(n > 6 for n in lengths)
    for d, n in zip(decisions[:-1], lengths, strict=True):
        losses, midway = ({int(k): v for k, v in d[key].items()} for key in ("losses", "midway"))
        mine = max(losses)  # bracketing: the network is the side with units added
        assert n == 18 or not turning(losses, midway, mine, d["width"] + mine, d["bar"])


@pytest.mark.parametrize("hold, first", [(0.0, 6), (0.999, 15)])
def test_paired_trials_hold_until_learning_slows(tmp_path: Path, hold: float, first: int) -> None:
    """Without ``hold`` the first trial starts after the first step (decided 5 steps later); with
    it, the validation loss is judged every 5 steps and trials start once it improved by less than
    ``hold`` of itself (0.999: at the second judgement, step 10)."""
    controller = StructureController(signal="paired", lam=0.0, paired_targets=0, paired_steps=5, paired_hold=hold)
    data = TaskData("miconi_switch", {"train_windows": 20, "eval_windows": 3})
    _trainer(tmp_path, [controller]).fit(_model([3], "lstm", **SETTLING_MODEL), data)
    assert controller.trials.decisions[0]["step"] == first  # type: ignore[union-attr]


@pytest.mark.parametrize("scale, floor", [("start", 0.0), ("loss", 0.9), ("gain", 0.0)])
def test_paired_lam_can_be_a_share_of_the_loss_before_training(tmp_path: Path, scale: str, floor: float) -> None:
    """With ``paired_scale`` start, the charge per unit is ``lam`` times the validation loss judged
    after the first step, the same for every trial of the run; with a ``paired_floor``, ``lam``
    times the network's validation loss at the trial's end but at least the floor's share of that
    first loss; with ``gain``, ``lam`` times how far the network's validation loss has come down
    from that first loss. Each decision is the side with the
    lowest validation loss plus that charge per unit of the width it would leave."""
    controller = StructureController(signal="paired", lam=0.02, paired_targets=0, paired_steps=5, paired_scale=scale,
                                     paired_floor=floor, paired_margin=0.0, paired_charge="unit")
    seen: list[float] = []

    class First(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
            if trainer.global_step == 1:
                seen.append(pl_module.judged_loss(controller.trials._batches))  # type: ignore[union-attr]
    data = TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3})
    _trainer(tmp_path, [controller, First()]).fit(_model([4], "lstm", **SETTLING_MODEL), data)
    trials = controller.trials
    # judged before the first trial's units came in (zero outgoing weights: the same function, to rounding)
    assert trials is not None and trials.start_loss is not None
    assert math.isclose(trials.start_loss, seen[0], rel_tol=1e-6)
    floored = 0
    for d in trials.decisions:
        losses = {int(k): v for k, v in d["losses"].items()}
        mine = losses[max(losses)]  # bracketing: the network is the side with units added
        of = {"start": trials.start_loss, "loss": mine, "gain": max(trials.start_loss - mine, 0.0)}[scale]
        bar = 0.02 * (max(of, floor * trials.start_loss) if scale == "loss" else of)  # the floor: loss only
        assert math.isclose(d["bar"], bar, rel_tol=1e-9)  # the charge is recorded with the decision
        floored += scale == "loss" and of < floor * trials.start_loss
        assert d["chosen"] == min(losses, key=lambda k: losses[k] + bar * (d["width"] + k))
    assert any(d["chosen"] < 0 for d in trials.decisions)
    assert scale != "loss" or 0 < floored < len(trials.decisions)  # the floor bound in some trials, not all


@pytest.mark.parametrize("cell, rows", [("lstm", 8), ("gru", 6), ("elman", 2),
                                        ("t0 = affine(x) + linear(h)\nh' = tanh(t0 + diag(h))", 3)])
def test_paired_charges_lam_per_row_of_a_units_weights(tmp_path: Path, cell: str, rows: int) -> None:
    """With ``paired_charge`` row (the default) a unit is charged ``lam`` for each row of weights it
    has in its cell, one per weighted call (diag included): a run at ``lam`` / rows per row
    decides every trial as the run at ``lam`` per unit does, with the same charge recorded."""
    from growrnn.growth.signals import Paired
    data = TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 3})
    runs = []
    for lam, charge in ((0.005, "unit"), (0.005 / rows, "row")):
        controller = StructureController(signal="paired", lam=lam, paired_targets=0,
                                         paired_steps=5, paired_charge=charge, seed=1)
        torch.manual_seed(0)
        _trainer(tmp_path, [controller]).fit(_model([4], cell, **SETTLING_MODEL), data)
        assert controller.trials is not None and isinstance(controller.signal, Paired)
        assert controller.signal.unit_charge(0) == (rows if charge == "row" else 1)
        runs.append(controller.trials.decisions)
    assert [d["chosen"] for d in runs[0]] == [d["chosen"] for d in runs[1]]
    assert [d["bar"] for d in runs[0]] == pytest.approx([d["bar"] for d in runs[1]], rel=1e-9)
    assert any(d["chosen"] < 0 for d in runs[0]) and any(d["chosen"] > 0 for d in runs[0])


@pytest.mark.parametrize("steps, targets, counted, length", [
    (100, 40_000, [0, 0], 100),         # nothing counted yet: the steps
    (100, 40_000, [4_000, 100], 1000),  # a batch-1 stream of 40-character windows (Miconi's tasks)
    (100, 40_000, [46_800, 100], 100),  # a JSB batch of 8 chorales, about 468 frames: the steps
    (100, 40_000, [40_001, 100], 100),  # just over 400 targets a step
    (100, 0, [4_000, 100], 100),        # paired_targets 0: the steps alone
    (400, 40_000, [70_000, 100], 400),  # Penn Treebank's 20 x 35 tokens, its config's 400 steps
    (5, 7, [3, 2], 5),                  # ceil(7 x 2 / 3) = 5: the steps
    (5, 8, [3, 2], 6),                  # ceil(16 / 3)
])
def test_a_trial_lasts_its_steps_or_its_targets(steps: int, targets: int, counted: list[int], length: int) -> None:
    """A trial's length is ``paired_steps`` or the steps that hold ``paired_targets`` training
    targets at the mean the trials have trained on, whichever is more."""
    trials = StructureController(signal="paired", paired_steps=steps, paired_targets=targets).trials
    assert trials is not None
    trials.counted = counted
    assert trials.length() == length


@pytest.mark.parametrize("horizon, counted, at, length", [
    (0.0, [46_800, 100], 3_000, 100),   # no horizon: the steps, wherever the trial starts
    (0.2, [46_800, 100], None, 100),    # no start counted (the hold's judgements): the steps
    (0.2, [46_800, 100], 0, 100),       # the first trial
    (0.2, [46_800, 100], 400, 100),     # a fifth of 400 is less than the steps
    (0.2, [46_800, 100], 3_000, 600),   # a fifth of the 3,000 steps trained before the trial
    (0.2, [4_000, 100], 3_000, 1000),   # the targets' steps are more than the horizon's
    (0.15, [46_800, 100], 1_001, 151),  # ceil(150.15)
    (0.07, [46_800, 1], 1_500, 105),    # 0.07 x 1,500 is 105 (in floats 105.00000000000001)
])
def test_a_trial_lasts_a_share_of_the_steps_before_it(horizon: float, counted: list[int], at: int | None,
                                                      length: int) -> None:
    """With ``paired_horizon``, a trial also lasts at least that share of the steps trained before
    it starts."""
    trials = StructureController(signal="paired", paired_steps=100, paired_horizon=horizon).trials
    assert trials is not None
    trials.counted = counted
    assert trials.length(at) == length


@pytest.mark.parametrize("cap, epoch, at, length", [
    (None, 1_328, 10_000, 2_000),  # no cap: a fifth of the steps before the trial
    (1.0, 1_328, 3_000, 600),      # below the cap
    (1.0, 1_328, 10_000, 1_328),   # capped at one epoch (PTB's 1,328 steps of 20 x 35 tokens)
    (2.5, 1_328, 20_000, 3_320),   # 2.5 x 1,328
    (1.5, 1_327, 20_000, 1_991),   # ceil(1,990.5)
    (1.0, None, 10_000, 2_000),    # an epoch's length not known: no cap
    (1.0, 29, 3_000, 100),         # an epoch shorter than the steps (JSB, batch 8): the steps
])
def test_a_trial_the_horizon_lengthens_lasts_at_most_its_cap(cap: float | None, epoch: int | None, at: int,
                                                              length: int) -> None:
    """With ``paired_horizon_cap``, the horizon lengthens a trial to at most that many epochs, and
    never below ``paired_steps``."""
    trials = StructureController(signal="paired", paired_steps=100, paired_targets=0, paired_horizon=0.2,
                                 paired_horizon_cap=cap).trials
    assert trials is not None
    trials.epoch_steps = epoch
    assert trials.length(at) == length


@pytest.mark.parametrize("options, epoch, at, length", [
    ({}, 63, 3_000, 158),                            # the teacher (63 steps an epoch): 2.5 epochs, ceil(157.5)
    ({}, 63, 400, 100),                              # early in a run (a fifth is 80): paired_steps
    ({}, 1_328, 10_000, 2_000),                      # PTB: a fifth of the steps before the trial
    ({}, 1_328, 20_000, 3_320),                      # PTB late: 2.5 epochs
    ({}, 29, 3_000, 100),                            # JSB at batch 8: 2.5 epochs are fewer than the steps
    ({"paired_horizon_cap": None}, 1_328, 20_000, 4_000),  # uncapped
    ({"paired_horizon": 0}, 1_328, 20_000, 100),     # no horizon: the default cap bounds nothing
])
def test_the_default_horizon_and_cap(options: dict, epoch: int, at: int, length: int) -> None:
    """By default a trial lasts a fifth of the steps before it, up to 2.5 epochs, and never fewer
    than ``paired_steps``."""
    trials = StructureController(signal="paired", paired_targets=0, **options).trials
    assert trials is not None
    assert (Paired().horizon, Paired().horizon_cap) == (0.2, 2.5)  # the signal's own defaults agree
    trials.epoch_steps = epoch
    assert trials.length(at) == length


@pytest.mark.parametrize("lr, options, epoch, at, length", [
    (3e-4, {}, 29, 3_000, 334),              # JSB at 3e-4: the reach (ceil(333.3)) past 2.5 epochs (72.5)
    (3e-4, {}, 29, 1_000, 200),              # earlier: a fifth of the steps before the trial
    (3e-4, {}, 29, 400, 100),                # early: paired_steps
    (1e-3, {}, 29, 3_000, 100),              # at 1e-3 the reach is paired_steps: as before
    (1e-2, {}, 63, 3_000, 158),              # a faster rate: the cap (2.5 epochs of 63 steps)
    (1e-4, {}, 1_328, 20_000, 3_320),        # PTB: 2.5 epochs are more than the reach (1,000)
    (1e-4, {}, 200, 20_000, 1_000),          # shorter epochs: the reach
    (3e-4, {"paired_reach": 0}, 29, 3_000, 100),       # no reach: the cap alone
    (3e-4, {"paired_reach": 0.5}, 29, 3_000, 600),     # the horizon bounds it below the reach (1,667)
    (3e-4, {"paired_horizon": 0}, 29, 3_000, 100),     # no horizon: nothing lengthens the trial
    (5e-324, {}, 29, 3_000, 600),            # a subnormal rate (its reach overflows): the horizon alone
])
def test_the_reach_lifts_the_horizons_cap(lr: float, options: dict, epoch: int, at: int, length: int) -> None:
    """At a slow starting rate the horizon may lengthen a trial past its cap, to the steps the
    rate takes to sum to ``paired_reach`` (0.1 under Adam: 100 steps at 1e-3)."""
    controller = StructureController(signal="paired", paired_targets=0, **options)
    assert controller.trials is not None and isinstance(controller.signal, Paired)
    controller.signal.for_optimizer(torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=lr))
    controller.trials.epoch_steps = epoch
    assert controller.trials.length(at) == length


@pytest.mark.parametrize("make, reach, rate", [
    (lambda p: torch.optim.Adam(p, lr=3e-4), 0.1, 3e-4),
    (lambda p: torch.optim.RMSprop(p, lr=1e-3), 0.1, 1e-3),
    (lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9), 0.0, 1.0),   # SGD's recipe: no reach
])
def test_the_reach_and_the_starting_rate_follow_the_optimizer(make: Callable, reach: float, rate: float) -> None:
    """``paired_reach`` left unset takes the optimizer family's recipe; the rate read is the one
    the run starts at, a scheduler's ``initial_lr`` where it set one (not a rate it cut since)."""
    signal = Paired()
    optimizer = make([nn.Parameter(torch.zeros(1))])
    torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.param_groups[0]["lr"] *= 0.25  # cut since the start
    signal.for_optimizer(optimizer)
    assert (signal.reach, signal.rate) == (reach, pytest.approx(rate))
    assert Paired(reach=0.3).reach == 0.3  # given: kept


@pytest.mark.parametrize("batches, accumulate, steps", [(60, 1, 60), (60, 7, 9), (float("inf"), 1, None),
                                                         (0, 1, None), (None, 1, None)])
def test_an_epochs_steps(batches: float | None, accumulate: int, steps: int | None) -> None:
    """An epoch's optimizer steps: its batches over ``accumulate_grad_batches`` (the last step takes
    the rest); None where the batches are not known."""
    trainer = SimpleNamespace(num_training_batches=batches, accumulate_grad_batches=accumulate)
    assert epoch_steps(trainer) == steps


@pytest.mark.parametrize("step, young", [(1_001, [4]), (1_799, [4]), (1_800, [])])
def test_a_unit_matures_in_the_trial_lengths_of_its_birth(step: int, young: list[int]) -> None:
    """With ``paired_mature`` 2 and ``paired_horizon`` 0.5, a unit born at step 900 (trials of 450
    steps then) matures 900 steps later, and the first units (trials of 100 steps at step 0) after
    200: a length taken at the current step would keep every unit young for good (2 x 0.5 >= 1)."""
    trials = StructureController(signal="paired", paired_steps=100, paired_targets=0, paired_horizon=0.5,
                                 paired_mature=2).trials
    assert trials is not None
    trials.born = [[0, 0, 0, 0, 900]]
    assert trials._young(0, step) == young


def test_trials_lengthen_with_the_run(tmp_path: Path) -> None:
    """A run of 60 steps with trials of 3 steps and ``paired_horizon`` 0.25: every decided trial
    lasted 3 steps or a quarter of the steps before it, whichever is more, so the late ones are
    longer; the copies trained exactly the decided trials' steps."""
    controller = StructureController(signal="paired", lam=0.0, paired_steps=3, paired_targets=0,
                                     paired_horizon=0.25, seed=1)
    data = TaskData("miconi_switch", {"train_windows": 60, "eval_windows": 3})
    _trainer(tmp_path, [controller]).fit(_model([4], "lstm", **SETTLING_MODEL), data)
    trials = controller.trials
    assert trials is not None and len(trials.decisions) >= 4
    for d in trials.decisions[:-1]:  # the last may be cut by the end of training
        assert d["step"] - d["started"] == max(3, math.ceil(0.25 * d["started"]))
    assert trials.decisions[-2]["step"] - trials.decisions[-2]["started"] > 3


@pytest.mark.parametrize("reach, bound", [(0, 6), (0.09, 9)])
def test_trials_lengthen_up_to_their_cap(tmp_path: Path, reach: float, bound: int) -> None:
    """The same run with ``paired_horizon_cap`` 0.1 (an epoch of 60 steps: 6): every decided trial
    lasted 3 steps or a quarter of the steps before it, but not more than 6, and the late ones
    reached the cap; with a reach past the cap (0.09 at the model's lr 0.01: 9 steps) the reach
    bounds them instead (no reach: the default 0.1 would lift the cap to 10 steps)."""
    controller = StructureController(signal="paired", lam=0.0, paired_steps=3, paired_targets=0,
                                     paired_horizon=0.25, paired_horizon_cap=0.1, paired_reach=reach, seed=1)
    data = TaskData("miconi_switch", {"train_windows": 60, "eval_windows": 3})
    _trainer(tmp_path, [controller]).fit(_model([4], "lstm", **SETTLING_MODEL), data)
    trials = controller.trials
    assert trials is not None and trials.epoch_steps == 60 and len(trials.decisions) >= 4
    lengths = [d["step"] - d["started"] for d in trials.decisions[:-1]]  # the last may be cut
    assert lengths == [max(3, min(math.ceil(0.25 * d["started"]), bound)) for d in trials.decisions[:-1]]
    assert lengths[-1] == bound


@pytest.mark.parametrize("targets, length", [(0, 3), (400, 10), (100, 3)])
def test_a_trial_trains_on_at_least_its_targets(tmp_path: Path, targets: int, length: int) -> None:
    """On a stream of 40-character windows, batch 1 (40 targets a step), trials of 3 steps that must
    see 400 targets last 10 steps; 100 targets fit in 3 steps. Every decided trial lasted that long
    (the last may be cut by the end of training), and the copies counted every target they trained on."""
    controller = StructureController(signal="paired", lam=0.0, paired_horizon=0, paired_steps=3, paired_targets=targets,
                                     seed=1)
    data = TaskData("miconi_switch", {"train_windows": 45, "eval_windows": 3})
    _trainer(tmp_path, [controller]).fit(_model([4], "lstm", **SETTLING_MODEL), data)
    trials = controller.trials
    assert trials is not None and len(trials.decisions) >= 3
    assert {d["step"] - d["started"] for d in trials.decisions[:-1]} == {length}
    assert trials.counted == ([0, 0] if not targets else [40 * trials.counted[1], trials.trained_steps(45)])


@pytest.mark.parametrize("optimizer, d, lam, homing", [("adam", 2, 3.33e-5, False), ("sgd", 4, 1.67e-5, True)])
def test_paired_takes_the_recipe_of_the_optimizer_it_trains_with(tmp_path: Path, optimizer: str, d: int, lam: float,
                                                                 homing: bool) -> None:
    """The controller gives the paired options left unset the recipe of the model's optimizer when
    training starts: an 8-unit layer's first trial moves 2 units under Adam (a quarter), 4 under SGD
    (half), charged ``lam`` per row at the family's rate."""
    controller = StructureController(signal="paired", paired_targets=0, paired_steps=5)
    data = TaskData("miconi_switch", {"train_windows": 20, "eval_windows": 3})
    _trainer(tmp_path, [controller]).fit(_model([8], "lstm", **{**SETTLING_MODEL, "optimizer": optimizer}), data)
    assert controller.trials is not None and controller.trials.decisions
    first = controller.trials.decisions[0]
    assert sorted(int(k) for k in first["losses"]) == [-d, d]
    assert controller.signal.lam == lam and controller.signal.homing is homing  # type: ignore[attr-defined]
    assert controller.signal.steps == 5  # given: kept  # type: ignore[attr-defined]


@pytest.mark.parametrize("scale, floor, judged, holding", [
    ("loss", 0.0, 0.9, True), ("start", 0.0, 0.9, False), ("loss", 0.05, 0.9, True), ("loss", 0.5, 0.9, False),
    ("loss", 0.05, 0.97, False),  # 0.03 is less than 5 % of the loss itself (the floor, 0.5, is below it)
    ("gain", 0.0, 0.9, False), ("gain", 0.0, 0.5, True),  # 5 % of the 9 the loss came down from 10: 0.45
])
def test_paired_hold_is_a_share_of_the_scale(scale: str, floor: float, judged: float, holding: bool) -> None:
    """A validation loss falling from 1.0 to 0.9 in a trial's steps still falls by more than 5 % of
    itself, but by less than 5 % of a loss of 10 before training: with scale ``start`` (a loss that
    can reach zero always falls by a large share of itself) trials stop holding, and so they do
    with a floor of half that loss (5), not with one (0.5) below the loss itself, which is then
    the scale (a fall to 0.97 is less than 5 % of it, though more than 5 % of the floor). With
    scale ``gain`` the share is of how far the loss came down (from 10 to 1.0: 9)."""
    from growrnn.growth.signals import Paired
    from growrnn.training.paired import PairedTrials
    trials = PairedTrials(Paired(hold=0.05, steps=5, scale=scale, floor=floor), held=1.0, start_loss=10.0)
    trials._judged = lambda trainer, model: judged  # type: ignore[method-assign]
    assert trials._holds(None, None, step=10) is holding and trials.held == judged


@pytest.mark.parametrize("scale, floor, loss, start, of", [
    (None, None, 1.0, 10.0, 5.0), (None, None, 8.0, 10.0, 8.0), (None, 0.0, 1.0, 10.0, 1.0),  # default floor: 0.5
    ("start", None, 1.0, 10.0, 10.0), ("gain", None, 1.0, 10.0, 9.0), ("gain", None, 12.0, 10.0, 0.0),
    ("gain", None, math.inf, 10.0, 0.0),  # a diverged side is charged nothing (it loses on its loss)
    ("gain", None, 1.0, math.inf, 1.0), (None, None, 1.0, None, 1.0),  # no finite first loss: the loss itself
])
def test_paired_scale_table(scale: str | None, floor: float | None, loss: float, start: float | None,
                            of: float) -> None:
    """What ``lam`` and the hold are shares of, for a validation loss ``loss`` and a loss ``start``
    judged after the first step: the loss, at least ``floor`` (0.5 unless set) of ``start``; ``start``;
    or how far the loss came down from it (``gain``, never below 0)."""
    from growrnn.growth.signals import Paired
    from growrnn.training.paired import PairedTrials
    options = {k: v for k, v in (("scale", scale), ("floor", floor)) if v is not None}
    assert PairedTrials(Paired(**options), start_loss=start)._scale(loss) == of


@pytest.mark.parametrize("options, state, fails", [
    ({}, {"fractions": [0.25], "start_loss": None}, True),  # written past step 1 with no floor: refused
    ({"floor": 0.0}, {"fractions": [0.25], "start_loss": None}, False),  # resumed as it ran
    ({}, {"fractions": [], "start_loss": None}, False),  # before the first step: judged when it comes
    ({}, {"fractions": [0.25], "start_loss": 4.0}, False),
    ({"relative": False}, {"fractions": [0.25], "start_loss": None}, False),  # no share: no first loss needed
])
def test_paired_resume_without_the_first_loss_is_refused(options: dict, state: dict, fails: bool) -> None:
    """A checkpoint written past the first step by a run that judged no first loss (no floor, the
    default before it was 0.5) cannot resume under a scale that needs it: the first loss would be
    judged on a trained network. The error names ``paired_floor`` and how to resume as it ran."""
    from growrnn.growth.signals import Paired
    from growrnn.training.paired import PairedTrials
    trials = PairedTrials(Paired(**options))
    if fails:
        with pytest.raises(ArgumentError, match="paired_floor"):
            trials.load_state_dict(state)
    else:
        trials.load_state_dict(state)
        assert trials.start_loss == state["start_loss"]


@pytest.mark.parametrize("batches, limit, judged", [(None, 1.0, 10), (None, 1, 1), (None, 3, 3), (None, 0.25, 2),
                                                    (None, 0.01, 1),
                                                    (None, 0, 10), (4, 3, 4), (20, 1.0, 10)])
def test_paired_trials_judge_as_many_batches_as_validation_sees(batches: int | None, limit: float,
                                                                judged: int) -> None:
    """Without ``paired_batches`` the trials judge the batches the trainer's ``limit_val_batches``
    lets validation see (a count, or a share of the loader, at least one); all when it does not
    limit or turns validation off; ``paired_batches`` wins when set."""
    from types import SimpleNamespace

    from growrnn.training.paired import _validation_batches
    trainer = SimpleNamespace(datamodule=SimpleNamespace(val_dataloader=lambda: list(range(10))),
                              limit_val_batches=limit)
    assert _validation_batches(trainer, batches) == list(range(judged))


def test_a_share_of_a_loader_without_length_is_a_clear_error() -> None:
    from types import SimpleNamespace

    from growrnn.training.paired import _validation_batches
    trainer = SimpleNamespace(datamodule=SimpleNamespace(val_dataloader=lambda: iter(range(10))),
                              limit_val_batches=0.5)
    with pytest.raises(ArgumentError, match="limit_val_batches.*an int"):
        _validation_batches(trainer, None)


def test_a_lightning_module_of_ones_own_is_a_clear_error(tmp_path: Path) -> None:
    class Own(L.LightningModule):  # an rnn and a decoder, but not a SequenceModel
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.decoder = torch.nn.LSTM(3, 4), torch.nn.Linear(4, 2)

    with pytest.raises(ArgumentError, match="'model'.*SequenceModel.*Received: Own.*HINT: .*subclass"):
        StructureController().setup(_trainer(tmp_path, []), Own(), "fit")


@pytest.mark.parametrize("precision, scaler, accumulate", [("32-true", False, 1), ("bf16-mixed", False, 1),
                                                           ("16-mixed", True, 1), ("32-true", False, 2),
                                                           ("16-mixed", True, 3)])
def test_a_trial_copy_trains_as_lightning_trains_the_network(tmp_path: Path, precision: str, scaler: bool,
                                                             accumulate: int) -> None:
    """A copy of the network (the same width) trained one step by the trials equals the network
    trained one step by Lightning on the same batches: the same autocast, the same loss scale (a
    GradScaler, as on a GPU's 16-mixed), unscaled before the same gradient clipping, the gradient
    accumulated over the step's batches (``accumulate_grad_batches``) with the carried state."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from growrnn.growth.surgery import UnitMap
    from growrnn.training.paired import _clone, _clone_optimizer, _Copy, _train
    data = TaskData("miconi_switch", {"train_windows": accumulate, "eval_windows": 1, "batch_size": 4})
    model = SequenceModel(data.spec, cell="gru", hidden_size=[5], seed=1, **SETTLING_MODEL)
    plugins = [MixedPrecision(precision, "cpu", scaler=torch.amp.GradScaler("cpu"))] if scaler else []
    trainer = L.Trainer(accelerator="cpu", max_steps=1, precision=None if scaler else precision, plugins=plugins,
                        gradient_clip_val=0.05, accumulate_grad_batches=accumulate, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)  # as configure_optimizers builds it, before a step
    copies = []
    for _ in range(2):
        twin = _clone(model)
        copies.append(_Copy(0, UnitMap.of(5, range(5)), twin, _clone_optimizer(model, optimizer, twin)))
    trainer.fit(model, data)
    batches = list(data.train_dataloader())
    assert len(batches) == accumulate
    for i, batch in enumerate(batches):
        _train(copies[0], batch, trainer.optimizers[0], trainer, step=i == accumulate - 1)
    for (name, p), q in zip(model.named_parameters(), copies[0].model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)
    # the precision matters: the same step in full precision (the same clipping) is another step
    for i, batch in enumerate(batches):
        _train(copies[1], batch, trainer.optimizers[0],
               SimpleNamespace(gradient_clip_val=0.05, accumulate_grad_batches=accumulate), step=i == accumulate - 1)
    same = all(torch.equal(a, b) for a, b in zip(copies[1].model.parameters(), model.parameters(), strict=True))
    assert same == (precision == "32-true")


@pytest.mark.parametrize(("cell", "precision", "optimizer"), [
    ("elman", "bf16-mixed", "adam"), ("lstm", "bf16-mixed", "adam"), ("gru", "bf16-mixed", "adam"),
    ("h' = sigmoid(affine(x) + linear(relu(h)))", "bf16-mixed", "adam"),
    ("lstm", "bf16-true", "adam"), ("h' = sigmoid(affine(x) + linear(relu(h)))", "bf16-true", "adam"),
    ("lstm", "bf16-true", "rmsprop"), ("gru", "32-true", "rmsprop"),  # with a head start: its counts resume
])
def test_a_stack_grows_in_low_precision_and_resumes_exactly(tmp_path: Path, cell: str, precision: str,
                                                            optimizer: str) -> None:
    """Lightning's ``bf16-mixed`` and ``bf16-true`` on a CPU with the default signal (short trials),
    a two-layer stack with dropout on a stateful stream of one-hot inputs, two batches a step,
    checkpointed mid-run: the run grows and shrinks, and resumed it equals the uninterrupted run.
    Under RMSprop a trial's new units step with Adam's head start, counted in the optimizer's
    state (a checkpoint's load casts the counts to bf16 under ``bf16-true``).
    Until 2026-12-04 every cell but the GRU failed under ``bf16-mixed`` (the library's autograd
    functions ran their backward outside autocast, and the carried state, in bf16, reached
    measurements outside autocast, which the LSTM's kernel and the fused layer refused), and every
    cell under ``bf16-true`` (the trials' measurements fed float32 one-hot vectors to bf16 weights)."""
    def run(ckpt: str | None) -> list:
        data = TaskData("miconi_switch", {"train_windows": 96, "eval_windows": 4, "batch_size": 2})
        model = SequenceModel(data.spec, cell=cell, hidden_size=[3, 2], dropout=0.1, one_hot=True, seed=1,
                              optimizer=optimizer, lr=0.01, output_prior=True)
        record = _Record()
        saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "a", every_n_train_steps=6, save_top_k=-1,
                                                    filename="{step}")
        controller = StructureController(seed=3, paired_horizon=0, paired_steps=3, paired_targets=0, max_units=12)
        record.controller = controller
        _trainer(tmp_path, [controller, record, saver], enable_checkpointing=True, precision=precision,
                 accumulate_grad_batches=2, limit_val_batches=None, val_check_interval=20).fit(model, data,
                                                                                              ckpt_path=ckpt)
        assert record.head_start == (optimizer == "rmsprop") and model.head_start is None  # for the fit only
        return record.rows

    whole = run(None)
    ckpt = tmp_path / "mid.ckpt"
    (tmp_path / "a" / "step=6.ckpt").rename(ckpt)
    shutil.rmtree(tmp_path / "a")  # the resumed run writes its own checkpoints there (see test_distributed)
    resumed = run(str(ckpt))
    assert len(whole) == 96 and resumed == whole[-len(resumed):] and len(resumed) == 84
    sizes = [r[2] for r in whole]
    assert any(b[k] > a[k] for a, b in zip(sizes, sizes[1:], strict=False) for k in (0, 1))
    assert any(b[k] < a[k] for a, b in zip(sizes, sizes[1:], strict=False) for k in (0, 1))


def test_a_paired_run_accumulating_two_batches_is_the_run_on_their_double(tmp_path: Path) -> None:
    """With ``accumulate_grad_batches`` 2 a trial's copy accumulates its gradient over the step's
    batches as the network does, and the trial counts every batch's targets: the run takes the
    decisions of the run on batches twice the size (the same rows, one optimizer step each), at
    the same steps, with the same widths (the trials' losses equal within float rounding and the
    fold's moments, read on the step's last batch)."""
    class Widths(L.Callback):
        def __init__(self) -> None:
            self.rows: list[tuple[int, list[int]]] = []

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
            self.rows.append((trainer.global_step, pl_module.hidden_sizes()))

    def run(batch_size: int, accumulate: int) -> tuple[list[tuple[int, list[int]]], StructureController]:
        data = TaskData("teacher", {"units": 4, "length": 10, "n_train": 16 * 24, "n_eval": 32,
                                    "batch_size": batch_size})
        model = SequenceModel(data.spec, cell="lstm", hidden_size=[3, 2], seed=3, **SETTLING_MODEL)
        controller = StructureController(seed=5, lam=2e-4, paired_steps=2, paired_targets=480, paired_margin=0.0,
                                         max_units=8)
        widths = Widths()
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, accumulate_grad_batches=accumulate, limit_val_batches=0,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[controller, widths])
        trainer.fit(model, data)
        return widths.rows[accumulate - 1::accumulate], controller

    whole, one = run(16, 1)
    halves, two = run(8, 2)
    assert halves == whole and len(whole) == 24  # the widths after every optimizer step
    assert two.trials.counted == one.trials.counted  # every batch's targets, a step's count
    assert [(d["step"], d["chosen"]) for d in two.trials.decisions] == \
        [(d["step"], d["chosen"]) for d in one.trials.decisions]
    assert any(d["chosen"] < 0 for d in one.trials.decisions) and len(one.trials.decisions) >= 5
    for a, b in zip(one.trials.decisions, two.trials.decisions, strict=True):
        assert a["losses"] == pytest.approx(b["losses"], abs=1e-3)


def test_an_adopted_copy_is_the_network_from_then_on() -> None:
    """After adoption the network computes what the copy computes, and its optimizer holds the
    copy's state (parameters stay the same objects, so Lightning's references stay valid)."""
    from growrnn.growth.surgery import UnitMap
    from growrnn.training.paired import _adopt, _clone, _clone_optimizer, _Copy, _resize, _train
    model = _model([3], "gru", **SETTLING_MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = next(iter(tasks.get("miconi_switch", train_windows=2, eval_windows=1).datamodule().train_dataloader()))
    twin = _clone(model)
    twin_opt = _clone_optimizer(model, optimizer, twin)
    units = UnitMap.of(3, [0, 2], add=2)
    _resize(twin, 0, units, twin_opt)
    copy = _Copy(1, units, twin, twin_opt)
    _train(copy, batch, optimizer, None)
    params = list(model.parameters())
    _adopt(model, optimizer, copy, 0)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params] and model.hidden_sizes() == [4]
    assert model.judged_loss([batch]) == twin.judged_loss([batch])
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(optimizer.state[p]["exp_avg_sq"], twin_opt.state[q]["exp_avg_sq"], rtol=0, atol=0)


@pytest.mark.parametrize("accumulate", [1, 3])
def test_the_signals_see_the_mean_loss_of_an_accumulated_steps_batches(tmp_path: Path, accumulate: int) -> None:
    """Under ``accumulate_grad_batches`` the loss a signal's relative bar follows is the mean of the
    step's batches' losses (Lightning hands the callback the last batch's over the accumulation),
    the epoch's last, shorter step included."""
    class Losses(L.Callback):
        def __init__(self) -> None:
            self.batches: list[float] = []

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, *args: Any) -> None:
            self.batches.append(float(outputs["loss"]) * accumulate)

    controller = StructureController(signal="group_lasso", lam=1e-3, seed=0)
    seen: list[float | None] = []
    after_step = controller.signal.after_step
    controller.signal.after_step = lambda rnn, decoder, optimizer, loss: (seen.append(loss),  # type: ignore[method-assign]
                                                                          after_step(rnn, decoder, optimizer, loss))
    losses = Losses()
    model = _model(3, "lstm", **SETTLING_MODEL)
    _trainer(tmp_path, [controller, losses], accumulate_grad_batches=accumulate).fit(
        model, tasks.get("miconi_hard", train_windows=7, eval_windows=2).datamodule())
    steps = [losses.batches[i:i + accumulate] for i in range(0, 7, accumulate)]
    assert len(steps) == (7 if accumulate == 1 else 3) and len(seen) == len(steps)
    assert seen == pytest.approx([sum(s) / len(s) for s in steps], rel=1e-6)


@pytest.mark.parametrize("accumulate, steps", [(1, [0, 1, 2, 3]), (2, [0, 0, 1, 1])])
def test_each_batch_of_an_accumulated_step_draws_its_own_dropout_and_gates(tmp_path: Path, accumulate: int,
                                                                          steps: list[int]) -> None:
    """A training batch's dropout masks and gate samples are seeded by (seed, step, the batch's place
    in the step): without accumulation as before (seed * 1_000_003 + step); the batches of an
    accumulated step draw apart (they drew the same masks and samples), its first as a step does."""
    rows: list[tuple[int, int, int]] = []

    class Seeds(L.Callback):
        def on_before_backward(self, trainer: L.Trainer, pl_module: Any, loss: Any) -> None:
            rows.append((trainer.global_step, torch.initial_seed(), pl_module.rnn.gate_generator.initial_seed()))

    controller = StructureController(signal="l0_gate", seed=4)
    model = _model([3], "lstm", unit_gates=True, dropout=0.2, seed=2, **SETTLING_MODEL)
    _trainer(tmp_path, [controller, Seeds()], accumulate_grad_batches=accumulate).fit(
        model, TaskData("miconi_hard", {"train_windows": 4, "eval_windows": 2}))
    assert [r[0] for r in rows] == steps
    assert len({r[1] for r in rows}) == len({r[2] for r in rows}) == 4
    firsts = rows[::accumulate]
    assert [(r[1], r[2]) for r in firsts] == [(2 * 1_000_003 + s, 4 * 1_000_003 + s) for s in range(len(firsts))]


@pytest.mark.parametrize("options, reads", [
    ({"signal": "group_lasso"}, True), ({"signal": "group_lasso", "relative": False}, False),
    ({"signal": "l0_gate"}, True), ({"signal": "l0_gate", "relative": False}, False),
    ({"signal": "ablation"}, False), ({"signal": "outgoing_l1"}, False)])
def test_a_signal_gets_the_step_loss_only_if_it_reads_it(tmp_path: Path, options: dict, reads: bool) -> None:
    """The step's loss is read from the device (a sync on a GPU) only for a signal that uses it:
    ``group_lasso`` and ``l0_gate`` with a relative ``lam``."""
    controller = StructureController(seed=0, **options)
    assert controller.signal.reads_loss is reads
    seen: list[float | None] = []
    after_step = controller.signal.after_step
    controller.signal.after_step = lambda rnn, decoder, optimizer, loss: (seen.append(loss),  # type: ignore[method-assign]
                                                                          after_step(rnn, decoder, optimizer, loss))
    model = _model([3], "lstm", unit_gates=options["signal"] == "l0_gate", **SETTLING_MODEL)
    _trainer(tmp_path, [controller]).fit(model, TaskData("miconi_hard", {"train_windows": 3, "eval_windows": 2}))
    assert len(seen) == 3 and all((loss is not None) is reads for loss in seen)


NO_INPUT_READ = "h' = tanh(affine(h) + linear(h))"  # a legal cell that never reads x


@pytest.mark.parametrize("start, cell, grown", [(2, "elman", [5]), ([3, 2], "lstm", [1, 4]),
                                                ([3, 2], NO_INPUT_READ, [4, 1]), ([3], "gru", [6])])
def test_a_grown_state_dict_loads_into_a_model_built_from_the_config(start: Any, cell: str,
                                                                     grown: list[int]) -> None:
    """``SequenceModel.load_state_dict`` (how Lightning hands a grown model back from ddp_spawn's
    workers) gives the model the state dict's widths for a one-layer GenomeRNN (the default model,
    an int hidden_size) and for a stack of a cell that never reads its input, not only for stacks
    whose layers read the one below."""
    from growrnn.growth.stack import resize_to
    grown_model = _model(start, cell, **SETTLING_MODEL)
    resize_to(grown_model.rnn, grown_model.decoder, grown)
    fresh = _model(start, cell, **SETTLING_MODEL)
    fresh.load_state_dict(grown_model.state_dict())
    assert fresh.hidden_sizes() == grown
    for (name, a), (_, b) in zip(grown_model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("kind", "grown", "strict"), [
    ("unit_gates", [5, 2], False),        # the ddp_spawn handback: grown, folded, loaded non-strictly
    ("unit_gates", [3, 3], True),
    ("unit_multipliers", [4, 3], False),
])
def test_a_folded_models_state_dict_loads_into_a_scaled_model_as_the_folded_network(
        kind: str, grown: list[int], strict: bool) -> None:
    """A model built with gates (or multipliers) that loads the state dict of a folded model --
    how Lightning hands a ``ddp_spawn`` worker's model, its gates folded at the end of fit, back to
    the main process, whose model still has its gates -- becomes the folded network: its scales
    are removed, not left to scale weights they were already folded into, and later checkpoints
    describe it without them."""
    from growrnn.growth.stack import fold_unit_scales, resize_to
    torch.manual_seed(0)
    trained = _model([3, 3], "gru", **{kind: True}, **SETTLING_MODEL)
    resize_to(trained.rnn, trained.decoder, grown)  # grown units' gates closed, multipliers 0: opened below
    with torch.no_grad():
        for scale in (trained.rnn.gates or trained.rnn.multipliers):
            scale.uniform_(0.5, 3.0)
    fold_unit_scales(trained.rnn, trained.decoder)
    main = _model([3, 3], "gru", **{kind: True}, **SETTLING_MODEL)
    main.load_state_dict(trained.state_dict(), strict=strict)
    assert main.hidden_sizes() == grown and main.rnn.gates is None and main.rnn.multipliers is None
    assert main.hparams[kind] is False and not any(k.startswith(("rnn.gates", "rnn.multipliers"))
                                                   for k in main.state_dict())
    x = torch.randint(0, main.spec.input_size, (2, 7))
    main.eval(), trained.eval()
    with torch.no_grad():
        assert torch.allclose(main(x)[0], trained(x)[0])


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_a_gated_checkpoint_validated_after_the_fit_folded_the_gates_is_the_checkpoints_network(
        tmp_path: Path) -> None:
    """``l0_gate`` folds the gates away at the end of fit; a checkpoint written during the fit
    still holds them, and ``validate(ckpt_path=...)`` on the fitted model evaluates that
    checkpoint's network (its gates back), as ``load_from_checkpoint`` does, not its weights with
    the gates dropped unread."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    controller = StructureController(signal="l0_gate", lam=0.5, dead_steps=100, seed=1)
    model = _model([4], "gru", unit_gates=True, **SETTLING_MODEL)
    data = TaskData("miconi_hard", {"train_windows": 6, "eval_windows": 2})
    trainer = _trainer(tmp_path, [controller, ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)],
                       max_steps=6, enable_checkpointing=True, limit_val_batches=None)
    trainer.fit(model, data)
    assert model.rnn.gates is None  # folded at the end of fit
    with torch.no_grad():
        model.rnn.layers[0].weight_ih_l0[0, 0] += 1.0  # the fitted model now differs from its checkpoint
    last = tmp_path / "ck" / "last.ckpt"
    assert "rnn.gates.0" in torch.load(last, weights_only=True)["state_dict"]
    validated = trainer.validate(model, data, ckpt_path=last, verbose=False, weights_only=True)[0]
    assert model.rnn.gates is not None and model.hparams["unit_gates"]
    loaded = SequenceModel.load_from_checkpoint(last)
    assert validated == trainer.validate(loaded, data, verbose=False)[0]
    with pytest.raises(RuntimeError, match=r'Unexpected key.*"gates\.0"'):  # a bare stack refuses, not drops
        from growrnn.growth import fold_gates
        fold_gates(loaded.rnn, loaded.decoder)
        loaded.rnn.load_state_dict({k[4:]: v for k, v in torch.load(last, weights_only=True)["state_dict"].items()
                                    if k.startswith("rnn.")})
