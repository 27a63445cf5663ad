"""SequenceModel: every output kind trains, state is carried, options are checked, checkpoints
round-trip."""

import math
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

import tasks
from growrnn.errors import ArgumentError
from growrnn.task import TaskSpec
from growrnn.training import SequenceModel, TaskData


def _trainer(tmp_path: Path, **kw) -> L.Trainer:
    opts = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
            "enable_model_summary": False, "default_root_dir": str(tmp_path), "num_sanity_val_steps": 0}
    return L.Trainer(**{**opts, **kw})


@pytest.mark.parametrize(("task", "options", "cell"), [
    ("anbncn", {"n_train": 64, "n_eval": 16, "batch_size": 16}, "mgu"),         # multi-hot per step
    ("adding", {"length": 8, "n_train": 64, "n_eval": 16, "batch_size": 16}, "gru"),  # real, one per sequence
    ("copy", {"delay": 3, "n_train": 64, "n_eval": 16, "batch_size": 16}, "lstm"),   # tokens per step
    ("miconi_easy", {"train_windows": 30, "eval_windows": 3}, "elman"),            # stateful stream
])
def test_loss_falls(task: str, options: dict, cell: str, tmp_path: Path) -> None:
    t = tasks.get(task, **options)
    model = SequenceModel(t.spec, cell=cell, hidden_size=16, lr=0.02)
    dm = t.datamodule()
    trainer = _trainer(tmp_path, max_epochs=4)
    before = trainer.validate(model, dm, verbose=False)[0][f"val/{t.spec.metric}"]
    trainer.fit(model, dm)
    after = trainer.validate(model, dm, verbose=False)[0][f"val/{t.spec.metric}"]
    assert (after < before) if t.spec.direction == "min" else (after > before)


def test_class_task_reads_the_last_valid_step(imdb_dir: Path, tmp_path: Path) -> None:
    t = tasks.get("imdb", path=str(imdb_dir), vocab_size=40, max_len=8, batch_size=4)
    model = SequenceModel(t.spec, cell="gru", hidden_size=8)
    out = _trainer(tmp_path, max_epochs=1).test(model, t.datamodule(), verbose=False)[0]
    assert 0.0 <= out["test/accuracy"] <= 1.0


def test_state_is_carried_across_windows_and_reset_each_epoch() -> None:
    t = tasks.get("miconi_hard", train_windows=4, eval_windows=2)
    model = SequenceModel(t.spec, cell="lstm", hidden_size=4)
    batches = list(t.datamodule().train_dataloader())
    model.on_train_epoch_start()
    model._step(batches[0], "train")
    carried = model._state["train"]
    assert carried is not None and len(carried) == 2 and not carried[0].requires_grad
    fresh, _ = model(batches[1]["x"])
    cont, _ = model(batches[1]["x"], carried)
    assert not torch.allclose(fresh, cont)
    model.on_train_epoch_start()
    assert model._state["train"] is None


@pytest.mark.parametrize("task", ["miconi_hard", "copy"])
def test_the_probe_reads_a_batch_from_the_state_its_training_step_started_from(task: str) -> None:
    """The structure controller's probe of a stateful stream's window starts from the state
    carried into it (as the step trained it); a task without carried state starts fresh."""
    t = tasks.get(task, **({"train_windows": 4, "eval_windows": 2} if task == "miconi_hard" else
                           {"delay": 3, "n_train": 32, "n_eval": 8, "batch_size": 8}))
    model = SequenceModel(t.spec, cell="lstm", hidden_size=4)
    batches = list(t.datamodule().train_dataloader())
    model.on_train_epoch_start()
    model._step(batches[0], "train")
    carried = model._state.get("train")
    model._step(batches[1], "train")
    model.eval()
    with torch.no_grad():
        expected, _ = model(batches[1]["x"], carried if t.spec.stateful else None)
        loss_sum, count, _ = model._loss(expected, batches[1]["y"], batches[1].get("mask"),
                                         batches[1].get("lengths"), False)
    model.train()
    expected_loss = float(model._normalised(loss_sum, count, batches[1]["x"].shape[0]))
    assert model.batch_loss(batches[1]) == pytest.approx(expected_loss)
    assert (carried is not None) is t.spec.stateful


@pytest.mark.parametrize(("layer", "units"), [
    (0, (4, [0, 2, 3], 2)),  # the first layer: one folded away, two added
    (1, (3, [2], 0)),        # the last: two folded away
])
def test_a_resize_carries_the_training_and_probe_states_along(layer: int, units: tuple) -> None:
    """``SequenceModel.resize`` resizes the training state and the state the last training step
    started from with the layer (kept units' entries as they were, fresh ones zero): a probe of
    that batch after the resize reads it from the state its step started from, resized."""
    from growrnn.growth.surgery import UnitMap

    t = tasks.get("miconi_hard", train_windows=4, eval_windows=2)
    model = SequenceModel(t.spec, cell="lstm", hidden_size=[4, 3], seed=0)
    batches = list(t.datamodule().train_dataloader())
    model.on_train_epoch_start()
    model._step(batches[0], "train")
    model._step(batches[1], "train")
    before = [tuple(s.clone() for s in layer_state) for layer_state in model._probe_state]
    old, kept, add = units
    model.resize(layer, UnitMap.of(old, kept, add=add))
    for k, (layer_state, was) in enumerate(zip(model._probe_state, before, strict=True)):
        for s, w in zip(layer_state, was, strict=True):
            if k != layer:
                assert torch.equal(s, w)
                continue
            assert s.shape[-1] == len(kept) + add
            assert torch.equal(s[..., :len(kept)], w[..., kept]) and not s[..., len(kept):].any()
    assert [s.shape for s in model._state["train"][layer]] == [s.shape for s in model._probe_state[layer]]
    assert math.isfinite(model.batch_loss(batches[1]))


@pytest.mark.parametrize(("task", "options"), [
    ("teacher", {"units": 4, "n_train": 16, "n_eval": 16, "batch_size": 16}),   # tokens, per step
    ("flipflop", {"bits": 4, "n_train": 16, "n_eval": 16, "batch_size": 16}),   # multi-hot, per step
    ("adding", {"length": 10, "n_train": 16, "n_eval": 16, "batch_size": 16}),  # real, one per sequence
])
def test_a_half_precision_model_judges_its_loss_in_single_precision(task: str, options: dict) -> None:
    """A bf16 model's (``precision: bf16-true``) judged loss is its bf16 outputs' loss summed in
    single precision: what growth's trials compare resolves differences far finer than bf16's
    2 ** -8 of the loss (a loss summed in bf16 ties two networks a trial tells apart)."""
    data = TaskData(task, options)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    model = SequenceModel(data.spec, cell="lstm", hidden_size=8, seed=0).to(torch.bfloat16).eval()
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}
    sums, counts = model.judged_parts([half])
    with torch.no_grad():
        logits = model(half["x"], None)[0].double()
    exact = model._loss(logits, half["y"].double() if half["y"].is_floating_point() else half["y"], None, None,
                        False)[0]
    assert abs(float(sums[0]) - float(exact)) <= 1e-5 * abs(float(exact))  # bf16 would be ~4e-3 off
    assert sums.dtype == torch.float64 and float(counts[0]) > 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"optimizer": "lbfgs"}, "'optimizer'.*sgd, adam, adamw, rmsprop, adagrad"),
    ({"schedule": "cosine"}, "'schedule'.*none, decay, plateau"),
    ({"tie_weights": True, "embedding_size": 4}, "'tie_weights'"),
    ({"cell": "lsmt"}, "'cell'.*lstm.*did you mean 'lstm'"),
    ({"lr": float("nan")}, "'lr'.*a finite number >= 0.*Received: nan"),
    ({"lr": -1e-3}, "'lr'.*Received: -0.001"),
    ({"lr": float("inf")}, "'lr'.*Received: inf"),
    ({"momentum": -0.9}, "'momentum'"),
    ({"weight_decay": float("nan")}, "'weight_decay'"),
    ({"cell": "cells/missing.txt"}, "'cell'.*existing, readable genome file.*missing.txt.*no such file"),
    ({"hidden_size": [6], "num_layers": 2}, "'num_layers'.*length of hidden_size's list \\(1\\).*Received: 2"),
    ({"hidden_size": [4, 5], "num_layers": 3}, "'num_layers'.*Received: 3"),
    ({"hidden_size": [4, 0]}, "'hidden_size'.*non-empty list.*Received: \\[4, 0\\]"),
    ({"hidden_size": []}, "'hidden_size'"),
    ({"betas": [0.9, 1.0]}, "'betas'.*two numbers in \\[0, 1\\).*Received: \\[0.9, 1.0\\]"),
    ({"betas": [0.9]}, "'betas'"),
    ({"betas": "0.9"}, "'betas'"),
    ({"optimizer": "rmsprop", "alpha": 1.5}, "'alpha'.*\\[0, 1\\).*Received: 1.5"),
    ({"optimizer": "sgd", "betas": [0.9, 0.99]}, "'betas'.*under optimizer 'sgd'.*set optimizer: adam"),
    ({"alpha": 0.999}, "'alpha'.*under optimizer 'adam'.*set optimizer: rmsprop"),
    ({"optimizer": "adamw", "alpha": 0.9}, "'alpha'.*under optimizer 'adamw'"),
    ({"betas": 0.9}, "'betas'.*Received: 0.9"),
    ({"betas": {0.1: 1, 0.2: 2}}, "'betas'"),             # a sized mapping is not a pair
    ({"optimizer": "rmsprop", "alpha": True}, "'alpha'"),  # a bool is not a rate
])
def test_bad_options(kwargs: dict, match: str) -> None:
    spec = tasks.get("copy", delay=2).spec
    with pytest.raises(ArgumentError, match=match):
        SequenceModel(spec, **{"hidden_size": 8, **kwargs})


@pytest.mark.parametrize(("optimizer", "schedule", "kind", "decay"), [
    ("sgd", "decay", torch.optim.SGD, 0.0), ("adam", "plateau", torch.optim.Adam, 0.0),
    ("adamw", "none", torch.optim.AdamW, 0.01),  # the optimizer's own default weight decay
    ("rmsprop", "none", torch.optim.RMSprop, 0.0), ("adagrad", "none", torch.optim.Adagrad, 0.0)])
def test_optimizers_and_schedules(optimizer: str, schedule: str, kind: type, decay: float, tmp_path: Path) -> None:
    t = tasks.get("copy", delay=2, n_train=32, n_eval=8, batch_size=8)
    model = SequenceModel(t.spec, cell="gru", hidden_size=8, optimizer=optimizer, schedule=schedule, decay_start=1,
                          lr=0.1, momentum=0.0)
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(model, t.datamodule())
    opt = trainer.optimizers[0]
    assert type(opt) is kind and opt.param_groups[0]["weight_decay"] == decay
    lr = opt.param_groups[0]["lr"]
    assert lr == pytest.approx(0.025 if schedule == "decay" else 0.1) or schedule == "plateau"


@pytest.mark.parametrize(("optimizer", "options", "group"), [
    ("adam", {"betas": [0.9, 0.99]}, {"betas": (0.9, 0.99)}),    # a list (from a config) becomes torch's tuple
    ("adamw", {"betas": (0.8, 0.9)}, {"betas": (0.8, 0.9)}),
    ("adam", {}, {"betas": (0.9, 0.999)}),                       # unset: torch's default
    ("rmsprop", {"alpha": 0.999}, {"alpha": 0.999}),
    ("rmsprop", {}, {"alpha": 0.99}),
])
def test_the_optimizers_decay_rates(optimizer: str, options: dict, group: dict) -> None:
    """``betas`` (Adam, AdamW) and ``alpha`` (RMSprop) reach the optimizer's parameter groups."""
    model = SequenceModel(tasks.get("copy", delay=2).spec, hidden_size=8, optimizer=optimizer, **options)
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    assert {key: opt.param_groups[0][key] for key in group} == group


def test_tied_weights_share_the_embedding() -> None:
    spec = tasks.get("copy", delay=2).spec
    model = SequenceModel(spec, hidden_size=8, tie_weights=True)
    assert model.decoder.weight is model.encoder.weight


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    t = tasks.get("copy", delay=2, n_train=16, n_eval=8, batch_size=8)
    model = SequenceModel(t.spec, cell="dual_lstm", hidden_size=8, seed=3, betas=(0.9, 0.99))
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, t.datamodule())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    back = SequenceModel.load_from_checkpoint(tmp_path / "m.ckpt")  # the spec comes from the checkpoint
    assert tuple(back.hparams.betas) == (0.9, 0.99)  # the options too (a tuple loads weights-only)
    x = torch.randint(0, 10, (2, 5))
    model.eval()
    back.eval()
    torch.testing.assert_close(back(x)[0], model(x)[0])
    assert back.genome == model.genome and back.spec == model.spec


def test_same_seed_same_weights() -> None:
    spec = tasks.get("copy", delay=2).spec
    a, b = (SequenceModel(spec, cell="mgu", hidden_size=8, seed=5) for _ in range(2))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_resized_model_reloads_and_resumes_with_its_unit_count(tmp_path: Path) -> None:
    from growrnn.growth import UnitMap, resize_readers, resize_units
    t = tasks.get("copy", delay=2, n_train=16, n_eval=8, batch_size=8)
    model = SequenceModel(t.spec, cell="gru", hidden_size=5, seed=1)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, t.datamodule())
    units = UnitMap.of(5, [0, 2, 3, 4], add=3)
    resize_units(model.rnn, units, trainer.optimizers[0])  # the optimizer's state is resized with them
    resize_readers([model.decoder.weight], units, trainer.optimizers[0])
    trainer.save_checkpoint(tmp_path / "grown.ckpt")
    back = SequenceModel.load_from_checkpoint(tmp_path / "grown.ckpt")
    x = torch.randint(0, 10, (2, 5))
    model.eval()
    back.eval()
    assert back.rnn.hidden_size == 7
    torch.testing.assert_close(back(x)[0], model(x)[0])
    fresh = SequenceModel(t.spec, cell="gru", hidden_size=5, seed=1)  # as a config would build it
    _trainer(tmp_path, max_epochs=2).fit(fresh, t.datamodule(), ckpt_path=tmp_path / "grown.ckpt")
    assert fresh.rnn.hidden_size == 7 and fresh.decoder.weight.shape == (10, 7)


@pytest.mark.parametrize("kind, y, mask, expected", [
    # multi_hot: each output's log-odds over the valid steps (the masked step's targets are ignored)
    ("multi_hot", [[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], [[True, True, False]], [math.log(1e4 - 1), 0.0]),
    # tokens: log-frequencies over the valid steps
    ("tokens", [[0, 2, 2, 1]], [[True, True, True, False]], [math.log(1 / 3), math.log(1e-8), math.log(2 / 3)]),
    # regression: the mean target
    ("real", [[[1.0, 2.0], [3.0, 6.0]]], None, [2.0, 4.0]),
])
def test_output_prior_is_the_targets_prior(kind: str, y: list, mask: list | None, expected: list[float]) -> None:
    from growrnn.training.model import output_prior
    spec = TaskSpec("t", "real", 2, kind, len(expected), "nll" if kind != "real" else "mse")
    batch = {"y": torch.tensor(y), **({} if mask is None else {"mask": torch.tensor(mask)})}
    torch.testing.assert_close(output_prior(spec, [batch]), torch.tensor(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hook", ["on_train_batch_end", "on_validation_end"])
def test_a_plateau_schedule_resumes_exactly_mid_epoch(tmp_path: Path, hook: str) -> None:
    """Lightning skips a ReduceLROnPlateau's step at the end of the epoch a run resumed in (the
    metric is not in the checkpoint); the model steps it with that epoch's validation metric, so
    a run resumed mid-epoch, or from a checkpoint written after an epoch's validation (as
    ModelCheckpoint writes them), halves the learning rate when an uninterrupted one does and ends
    with the same weights (lr 0.2, patience 0: the schedule halves at several epoch ends)."""
    from growrnn.training.data import TaskData

    class Rates(L.Callback):
        def __init__(self) -> None:
            self.seen: list[float] = []

        def on_train_epoch_end(self, trainer: L.Trainer, model: L.LightningModule) -> None:
            self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    def stop(self: L.Callback, trainer: L.Trainer, *args: object) -> None:
        # epochs of 40 steps: mid-way through epoch 1, or after epoch 1's validation
        if trainer.global_step == (50 if hook == "on_train_batch_end" else 80) and not trainer.sanity_checking:
            trainer.save_checkpoint(tmp_path / "mid.ckpt")
            raise InterruptedError
    Stop = type("Stop", (L.Callback,), {hook: stop})

    def run(callbacks: list, ckpt: Path | None = None) -> tuple[SequenceModel, Rates]:
        L.seed_everything(0, verbose=False)
        data = TaskData("miconi_switch", {"train_windows": 40, "eval_windows": 8})
        model = SequenceModel(data.spec, cell="lstm", hidden_size=4, optimizer="adam", lr=0.2, schedule="plateau",
                              plateau_factor=2.0, patience=0, seed=0)
        rates = Rates()
        _trainer(tmp_path, max_epochs=5, callbacks=[rates, *callbacks]).fit(model, datamodule=data, ckpt_path=ckpt,
                                                                              weights_only=True)
        return model, rates

    whole, rates = run([])
    with pytest.raises(InterruptedError):
        run([Stop()])
    resumed, rates_resumed = run([], tmp_path / "mid.ckpt")
    assert len(set(rates.seen)) > 1 and rates_resumed.seen == rates.seen[1:]  # the resumed run ends epochs 1-4
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_run_resumed_with_accumulation_keeps_the_checkpoint_it_resumed_from(tmp_path: Path) -> None:
    """With ``accumulate_grad_batches`` Lightning's ModelCheckpoint saved again at the first batch
    of the resumed step (its global_step still the checkpoint's, Lightning-AI/pytorch-lightning#17903),
    and in the same folder replaced the checkpoint resumed from with one taken mid-step; the model
    counts the resumed step as saved, and the file stays the one the uninterrupted run wrote."""
    from growrnn.training.data import TaskData

    def run(ckpt: str | None = None) -> None:
        data = TaskData("miconi_switch", {"train_windows": 16, "eval_windows": 2, "batch_size": 2})
        model = SequenceModel(data.spec, cell="gru", hidden_size=4, optimizer="adam", lr=0.01, seed=0)
        saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1,
                                                    filename="{step}")
        _trainer(tmp_path, max_epochs=1, accumulate_grad_batches=2, limit_val_batches=0, enable_checkpointing=True,
                 callbacks=[saver]).fit(model, datamodule=data, ckpt_path=ckpt)
    run()
    mid = tmp_path / "ckpt" / "step=2.ckpt"
    before = torch.load(mid, weights_only=False)
    with warnings.catch_warnings():  # the resumed run saves where the run it resumes saved
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        run(str(mid))
    after = torch.load(mid, weights_only=False)
    assert after["loops"] == before["loops"]
    for key, value in before["state_dict"].items():
        assert torch.equal(after["state_dict"][key], value), key
