"""Growth under Lightning's DDP on CPU (gloo, 2 processes): layers grow and shrink, the replicas
stay bit-identical (parameters and optimizer state) at every step, the run equals one process
training on the same global batch, and checkpoints resume exactly on the same or another number
of processes. The two processes are started once (torch.multiprocessing) and run every job."""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp

from growrnn.errors import ArgumentError
from growrnn.training import SequenceModel, TaskData
from growrnn.training.distributed import Replicas, _rows, fingerprint, gather_rows, shard_batch, shard_rows
from growrnn.training.growth import StructureController

WORLD = 2
STEPS = 24
SAVE_AT = 10  # a mid-epoch checkpoint

#: one job per structure signal: the model, the task (the batch is the global batch) and the rule
MICONI = {"optimizer": "rmsprop", "lr": 0.01, "loss_sum_over_time": True, "max_update": 0.01, "l1": 1e-4,
          "init_range": 0.017, "one_hot": True}
SETTLE = {"optimizer": "adam", "lr": 0.01}
STREAM = ("miconi_switch", {"train_windows": STEPS, "eval_windows": 2, "batch_size": 4})
JOBS: dict[str, dict[str, Any]] = {
    "outgoing_l1": {"cell": "elman", "start": 2, "model": MICONI, "data": STREAM,
                    "rule": {"threshold": 0.2, "p_add": 0.5, "p_delete": 0.5}},
    "multiplier": {"cell": "gru", "start": [2, 1], "model": {**MICONI, "unit_multipliers": True}, "data": STREAM,
                   "rule": {"threshold": 0.9, "p_add": 0.5, "p_delete": 1.0}},
    "group_lasso": {"cell": "lstm", "start": [3, 2], "model": SETTLE,
                    "data": ("teacher", {"units": 4, "length": 10, "n_train": 16 * STEPS, "n_eval": 16,
                                         "batch_size": 16}),
                    "rule": {"lam": 0.003, "relative": True, "dead_steps": 3}},
    "ablation": {"cell": "lstm", "start": [3], "model": SETTLE,
                 "data": ("teacher", {"units": 4, "length": 10, "n_train": 16 * STEPS, "n_eval": 16,
                                      "batch_size": 16}),
                 "rule": {"lam": 0.003, "trial_steps": 3, "ablation_every": 2, "ablation_rate": 1.0,
                          "ablation_baseline": "mean"}},  # the baseline measured on the batch,
    "l0_gate": {"cell": "gru", "start": [3], "model": {**SETTLE, "unit_gates": True, "gate_lr": 30.0},
                "data": STREAM, "rule": {"lam": 2.0, "dead_steps": 2}},
    # trials of 3 steps once counted (480 targets, 160 a global batch: a process that counted its
    # own rows alone would run trials of 6), judged on 2 validation batches (the margin's standard
    # error is estimated across them), on a stateful stream: a checkpoint mid-trial holds the
    # copy's carried state
    "paired": {"cell": "gru", "start": [3, 2], "model": SETTLE,
               "data": ("miconi_switch", {"train_windows": STEPS, "eval_windows": 8, "batch_size": 4}),
               "rule": {"lam": 1e-4, "paired_steps": 2, "paired_targets": 480, "paired_batches": 2,
                        "max_units": 8}},
    # sequences of many lengths, padded and masked, 7 rows split 4 + 3: each process's rows hold
    # their own number of targets, and the loss per target is the global batch's only if each
    # process divides its sum by the processes' mean count (as JSB's chorales need); the decoder's
    # bias starts at the prior of every process's rows, not rank 0's
    "masked": {"signal": "paired", "cell": "lstm", "start": [3], "model": {**SETTLE, "output_prior": True},
               "data": ("anbncn", {"max_n": 8, "n_train": 7 * STEPS, "n_eval": 14, "batch_size": 7}),
               "rule": {"lam": 1e-4, "paired_steps": 3, "paired_targets": 0, "max_units": 8}},
    # the same with two batches a step (accumulate_grad_batches): the copy accumulates as the network does
    "accumulated": {"signal": "paired", "cell": "lstm", "start": [3], "model": SETTLE,
                    "data": ("anbncn", {"max_n": 8, "n_train": 14 * STEPS, "n_eval": 14, "batch_size": 7}),
                    "trainer": {"accumulate_grad_batches": 2},
                    "rule": {"lam": 1e-4, "paired_steps": 3, "paired_targets": 0, "max_units": 8}},
    "ablation_masked": {"signal": "ablation", "cell": "lstm", "start": [3], "model": SETTLE,
                        "data": ("anbncn", {"max_n": 8, "n_train": 7 * STEPS, "n_eval": 14, "batch_size": 7}),
                        "rule": {"lam": 0.003, "trial_steps": 3, "ablation_every": 2, "ablation_rate": 1.0,
                                 "ablation_baseline": "mean"}},
}



class _Record(L.Callback):
    """Per step: this process's loss, the unit counts, a fingerprint of the replica (every
    parameter and optimizer state tensor, bit for bit) and the logged ``train/loss``."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, list[int], list[list[int]], float]] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        self.stepped = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int) -> None:
        if not getattr(self, "stepped", False):
            return  # a batch of an accumulated step that did not step
        self.stepped = False
        tensors = [p for p in pl_module.parameters()]
        opt = trainer.optimizers[0]
        tensors += [v for g in opt.param_groups for p in g["params"] for v in opt.state.get(p, {}).values()
                    if torch.is_tensor(v)]
        prints = [fingerprint(t).tolist() for t in tensors]
        logged = float(trainer.callback_metrics["train/loss"])
        self.rows.append((trainer.global_step, float(outputs["loss"]), pl_module.hidden_sizes(), prints, logged))


def _run(name: str, root: Path, devices: int, strategy: str = "auto", ckpt: str | None = None,
         save: str | None = None) -> dict[str, Any]:
    job = JOBS[name]
    task, options = job["data"]
    data = TaskData(task, options)
    model = SequenceModel(data.spec, cell=job["cell"], hidden_size=job["start"], seed=3, **job["model"])
    record = _Record()
    callbacks: list[Any] = [StructureController(signal=job.get("signal", name), seed=5, **job["rule"]), record]
    if save or ckpt:  # a resumed run has the callbacks of the run it resumes, and saves in its own folder
        # (the later runs resume from the same checkpoints; see also SequenceModel.on_train_start)
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=root / (save or "resumed_ckpt"),
                                                             every_n_train_steps=SAVE_AT, save_top_k=-1,
                                                             filename="{step}"))
    trainer = L.Trainer(**job.get("trainer", {}), accelerator="cpu", devices=devices, strategy=strategy,
                        max_epochs=1, logger=False, log_every_n_steps=1,
                        enable_checkpointing=bool(save or ckpt), enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(root), limit_val_batches=None if name == "outgoing_l1" else 0,
                        val_check_interval=STEPS // 2 if name == "outgoing_l1" else None, callbacks=callbacks)
    trainer.fit(model, data, ckpt_path=ckpt)
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return {"rows": record.rows, "val": val, "sizes": model.hidden_sizes()}


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    out = Path(root)
    results = {}
    for name in JOBS:  # whole runs, saving a mid-epoch checkpoint
        results[name] = _run(name, out / name, WORLD, "ddp", save="ddp_ckpt")
    for name in JOBS:  # resumed on as many processes, and from one process's checkpoint
        results[f"{name}/same"] = _run(name, out / name / "same", WORLD, "ddp",
                                       ckpt=str(out / name / "ddp_ckpt" / f"step={SAVE_AT}.ckpt"))
        results[f"{name}/from1"] = _run(name, out / name / "from1", WORLD, "ddp",
                                        ckpt=str(out / name / "one_ckpt" / f"step={SAVE_AT}.ckpt"))
    torch.save(results, out / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(root: Path, timeout: float = 900.0) -> None:
    ctx = mp.start_processes(_worker, args=(_free_port(), str(root)), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {WORLD} processes did not finish in {timeout:.0f} s")


def _close(a: list, b: list, rtol: float = 1e-4) -> None:
    assert [r[0] for r in a] == [r[0] for r in b]
    assert [r[2] for r in a] == [r[2] for r in b], "unit counts differ"
    torch.testing.assert_close(torch.tensor([r[1] for r in a]), torch.tensor([r[1] for r in b]), rtol=rtol, atol=1e-5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    one = {name: _run(name, root / name, 1, save="one_ckpt") for name in JOBS}
    _spawn(root)
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    with warnings.catch_warnings():  # the resumed run saves in its own folder
        warnings.filterwarnings("ignore", message="The dirpath has changed")
        back = {name: _run(name, root / name / "back", 1, ckpt=str(root / name / "ddp_ckpt" / f"step={SAVE_AT}.ckpt"))
                for name in JOBS}
    return {"one": one, "ranks": ranks, "back": back, "root": root}


@pytest.mark.parametrize("name", list(JOBS))
def test_ddp_grows_and_shrinks_with_identical_replicas_as_one_process(runs: dict[str, Any], name: str) -> None:
    r0, r1 = (r[name]["rows"] for r in runs["ranks"])
    assert len(r0) == STEPS and [r[0] for r in r0] == list(range(1, STEPS + 1))
    # the replicas are bit-identical at every step, resizes included (parameters and optimizer state)
    assert [r[3] for r in r0] == [r[3] for r in r1]
    assert [r[2] for r in r0] == [r[2] for r in r1]
    # some layer grew and some layer shrank during the run
    start = JOBS[name]["start"]
    sizes = [start if isinstance(start, list) else [start]] + [r[2] for r in r0]
    steps = list(zip(sizes, sizes[1:], strict=False))
    assert any(b[k] > a[k] for a, b in steps for k in range(len(a))), sizes
    assert any(b[k] < a[k] for a, b in steps for k in range(len(a))), sizes
    # the same run as one process on the same global batch: units equal, the loss (the mean of the
    # processes' losses) within float tolerance
    mean = [(a[0], (a[1] + b[1]) / 2, a[2]) for a, b in zip(r0, r1, strict=True)]
    _close(mean, runs["one"][name]["rows"])
    # and the train/loss every process logs is that global batch's loss, not its own share
    _close([(a[0], a[4], a[2]) for a in r0], [(b[0], b[4], b[2]) for b in runs["one"][name]["rows"]])
    assert [a[4] for a in r0] == [b[4] for b in r1]
    for key, value in runs["one"][name]["val"].items():
        assert runs["ranks"][0][name]["val"][key] == pytest.approx(value, rel=1e-4)


@pytest.mark.parametrize("name", list(JOBS))
def test_ddp_checkpoints_resume_exactly_on_as_many_or_other_processes(runs: dict[str, Any], name: str) -> None:
    whole = runs["ranks"][0][name]["rows"]
    same = runs["ranks"][0][f"{name}/same"]["rows"]
    assert [r[0] for r in same] == list(range(SAVE_AT + 1, STEPS + 1))
    assert [r[:3] for r in same] == [r[:3] for r in whole[SAVE_AT:]]  # exact, fingerprints aside
    assert [r[3] for r in same] == [r[3] for r in whole[SAVE_AT:]]
    # written on 2 processes, resumed on 1; written on 1, resumed on 2: the same run
    two_ranks = [(a[0], (a[1] + b[1]) / 2, a[2]) for a, b in zip(runs["ranks"][0][name]["rows"],
                                                                  runs["ranks"][1][name]["rows"], strict=True)]
    _close(runs["back"][name]["rows"], two_ranks[SAVE_AT:])
    f0, f1 = (r[f"{name}/from1"]["rows"] for r in runs["ranks"])
    _close([(a[0], (a[1] + b[1]) / 2, a[2]) for a, b in zip(f0, f1, strict=True)], runs["one"][name]["rows"][SAVE_AT:])


def test_a_paired_checkpoint_holds_the_copys_carried_state_of_the_whole_batch(runs: dict[str, Any]) -> None:
    """Written mid-trial on 2 processes, the copy's carried state is every process's rows (as one
    process's checkpoint holds it), not rank 0's alone."""
    def copies(where: str) -> list[Any]:
        ckpt = torch.load(runs["root"] / "paired" / where / f"step={SAVE_AT}.ckpt", weights_only=False)
        return ckpt["callbacks"]["StructureController"]["trials"]["copies"]

    def leaves(state: Any) -> list[torch.Tensor]:
        return [state] if torch.is_tensor(state) else [t for s in state for t in leaves(s)]
    two, one = copies("ddp_ckpt"), copies("one_ckpt")
    assert two and [c["delta"] for c in two] == [c["delta"] for c in one]  # the checkpoint is mid-trial
    for a, b in zip(two, one, strict=True):
        for x, y in zip(leaves(a["carried"]), leaves(b["carried"]), strict=True):
            assert x.shape == y.shape and x.shape[1] == JOBS["paired"]["data"][1]["batch_size"]
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
# not paired: under ddp_spawn a paired run's worker aborted at exit in about 1 run of 40, after its
# fit finished ("terminate called without an active exception"; 0 of 90 since the process group is
# destroyed at exit, too few to call it fixed) -- a known issue, docs/growth.md "Many processes"
@pytest.mark.parametrize("name", ["group_lasso"])
def test_ddp_spawn_hands_the_grown_model_back_to_the_main_process(tmp_path: Path, name: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_PORT"] = str(_free_port())
    try:
        got = _run(name, tmp_path, WORLD, "ddp_spawn")
    finally:
        os.environ.pop("MASTER_PORT", None)
    one = _run(name, tmp_path / "one", 1)
    assert got["sizes"] == one["sizes"] != JOBS[name]["start"]


def test_ddp_on_one_device_grows_and_shrinks_as_one_process(tmp_path: Path) -> None:
    """``strategy: ddp`` with ``devices: 1`` wraps the model in DistributedDataParallel though no
    replica needs checking: its reducer is rebuilt at every resize all the same (it kept the old
    shapes, and the step after the first resize failed), and the run is the one process's."""
    os.environ["MASTER_PORT"] = str(_free_port())
    try:
        got = _run("group_lasso", tmp_path, 1, "ddp")
    finally:
        os.environ.pop("MASTER_PORT", None)
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    one = _run("group_lasso", tmp_path / "one", 1)
    assert len({tuple(r[2]) for r in one["rows"]}) > 1  # the layers were resized
    _close(got["rows"], one["rows"])


# ---------------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_a_strategy_that_shards_parameters_is_refused(strategy: str) -> None:
    from growrnn.training.distributed import check_strategy

    class FakeStrategy:
        pass
    FakeStrategy.__name__ = {"fsdp": "FSDPStrategy", "deepspeed": "DeepSpeedStrategy"}[strategy]

    class FakeTrainer:
        strategy = FakeStrategy()
    with pytest.raises(ArgumentError, match=f"trainer.strategy.*{FakeStrategy.__name__}.*HINT.*ddp"):
        check_strategy(FakeTrainer())


@pytest.mark.parametrize("n, world", [(8, 2), (5, 2), (3, 3), (7, 3)])
def test_the_global_batch_is_split_into_rows_and_the_state_put_back_together(n: int, world: int) -> None:
    batch = {"x": torch.arange(n * 2).view(n, 2), "y": torch.arange(n), "scalar": torch.tensor(1.0)}
    parts = [shard_batch(batch, r, world) for r in range(world)]
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    assert [len(p["y"]) for p in parts] == [len(t) for t in torch.arange(n).tensor_split(world)]
    assert all(p["scalar"] is batch["scalar"] for p in parts)
    assert [_rows(n, r, world) for r in range(world)][-1][1] == n

    class T:
        def __init__(self, r: int) -> None:
            self.global_rank, self.world_size = r, world
    state = ((torch.randn(1, n, 3),), (torch.randn(1, n, 2), torch.randn(1, n, 2)))
    cuts = [shard_rows(state, T(r)) for r in range(world)]
    assert torch.equal(torch.cat([c[1][1] for c in cuts], dim=1), state[1][1])
    assert gather_rows(state, T(0)) is state  # no process group: nothing to gather


def test_a_batch_smaller_than_the_processes_is_named() -> None:
    with pytest.raises(ArgumentError, match="batch_size.*at least one row per process.*a batch of 1 rows.*HINT"):
        shard_batch({"x": torch.zeros(1, 3)}, 0, 2)
    assert shard_batch({"x": torch.zeros(1, 3)}, 1, 2, training=False)["x"].shape == (0, 3)


@pytest.mark.parametrize(("n", "batch_size", "world", "drop_last", "match"), [
    (229, 8, 6, False, r"\(6\) of the 229 training.*Received: 8, whose last batch holds 5.*10 or 11 would do"),
    (229, 8, 5, False, None),     # JSB at batch 8: a last batch of 5 rows splits over 5 processes
    (64, 16, 4, False, None),     # no short batch
    (17, 16, 2, True, None),      # the short batch is dropped
    (17, 16, 2, False, r"Received: 16, whose last batch holds 1.*(15|17)"),
])
def test_a_training_set_whose_last_batch_cannot_be_split_is_refused_before_training(
        n: int, batch_size: int, world: int, drop_last: bool, match: str | None) -> None:
    """Every process trains on at least one row of every batch: a last batch with fewer rows than
    processes is refused where the loader is made (the start of fit), with the batch sizes that
    would do, not when the epoch reaches it."""
    from torch.utils.data import DataLoader

    from growrnn.training.distributed import shard_loader

    class T:
        global_rank, world_size = 0, world
    loader = DataLoader([{"x": torch.tensor([i])} for i in range(n)], batch_size=batch_size, drop_last=drop_last)
    if match is None:
        assert len(list(shard_loader(loader, T()))) == len(loader)
    else:
        with pytest.raises(ArgumentError, match=f"'data.options.batch_size'.*{match}"):
            shard_loader(loader, T())
    assert shard_loader(loader, T(), training=False).loader is loader  # evaluation splits any batch


def test_one_process_costs_no_collective() -> None:
    replicas = Replicas()
    assert not replicas.active and replicas.mean(2.5) == 2.5
    t = torch.ones(3)
    assert replicas.weighted_mean(t, 7.0) is t and replicas.total(t) is t
    assert replicas.mean_gradients([torch.nn.Parameter(t.clone())], True)
    plans: list[Any] = [None]
    streaks = [torch.zeros(3, dtype=torch.long)]
    assert replicas.agree(plans, streaks, __import__("random").Random(0), torch.Generator()) == (plans, streaks)


def test_a_fingerprint_sees_every_bit() -> None:
    t = torch.randn(100)
    u = t.clone()
    u[37] = torch.nextafter(u[37], torch.tensor(float("inf")))
    assert not torch.equal(fingerprint(t), fingerprint(u))
    assert torch.equal(fingerprint(t), fingerprint(t.clone()))
    assert not torch.equal(fingerprint(t), fingerprint(t.flip(0)))


def test_the_controller_and_the_data_travel_by_pickle_as_ddp_spawn_sends_them() -> None:
    import pickle
    controller = StructureController(signal="group_lasso", seed=4)
    torch.randn(5, generator=controller.gen)
    copy = pickle.loads(pickle.dumps(controller))
    assert torch.equal(torch.randn(3, generator=copy.gen), torch.randn(3, generator=controller.gen))
    data = pickle.loads(pickle.dumps(TaskData("teacher", {"units": 4, "n_train": 8, "n_eval": 4, "batch_size": 2})))
    assert data.spec.name == "teacher" and len(data.train_dataloader()) == 4


@pytest.mark.slow
def test_a_shipped_growth_config_runs_under_ddp_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    out = []
    for strategy, devices in (("auto", "1"), ("ddp", "2")):
        cmd = [sys.executable, "-m", "growrnn.cli", "fit", "--config", "configs/debug/grow_teacher.yaml",
               "--trainer.strategy", strategy, "--trainer.devices", devices, "--trainer.accelerator", "cpu",
               "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
        done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("growrnn fit done: teacher, 8 steps") == 1  # one summary, from rank 0
        out.append([line for line in done.stdout.splitlines() if any(k in line for k in ("units:", "trials:", "val/"))])
    # the same units, additions, deletions, paired trials and loss
    assert out[0] == out[1] and "added" in out[0][0] and "paired trials" in out[0][1]
