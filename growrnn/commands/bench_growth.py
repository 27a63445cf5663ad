"""``growrnn bench growth``: what growth costs. For each case, the Lightning training step of a
growable model (structure controller on, scoring and deciding every step) against the same model
with a fixed layer of the same size, timed in the same process in alternating A/B rounds (CPU
time of the process, so that other load on the machine counts less); and the time of one resize
(add a unit, then delete one: layer, readers, optimizer state, carried state).

The controller in the timed runs can neither add nor delete (Miconi's signals: P_add = P_del = 0;
the settling signals: no reserve and no deletion), so both sides keep the same size and the ratio
is the per-step overhead of growth itself: scoring, the signal's per-step update (the proximal
shrink, the gates' samples and cost) and the rule. The ``paired`` case runs its trials without
pause (a layer that has not settled) within one unit of the fixed size: the ratio is what a
step costs while a trial runs -- the copy's training step, the validation judging, the adoptions.

``device="cuda"`` runs both sides on the GPU and times them by the wall clock, the device
synchronized at each reading (a GPU's steps are asynchronous, so the process's CPU time would
miss the kernels' own time); on the CPU the clock is the process's CPU time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from growrnn.errors import ArgumentError
from growrnn.growth.stack import resize_layer
from growrnn.growth.surgery import UnitMap
from growrnn.training.cli import quiet_lightning
from growrnn.training.data import TaskData
from growrnn.training.growth import StructureController
from growrnn.training.model import SequenceModel

__all__ = ["Case", "CASES", "DEVICES", "run"]

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    options: dict[str, Any]
    model: dict[str, Any]
    signal: str = "outgoing_l1"
    controller: dict[str, Any] = field(default_factory=dict)  # the paired controller's own options


CASES = [
    Case("Miconi hard, Elman 40, batch 1, T 40 (v3)", "miconi_hard", {"train_windows": 100000, "eval_windows": 2},
         dict(cell="elman", hidden_size=40, one_hot=True, optimizer="rmsprop", lr=0.01, eps=1e-4,
              loss_sum_over_time=True, max_update=0.01, l1=1e-4, fast_path=True)),
    Case("Miconi hard, Elman 40, batch 1, T 40 (v2 multipliers)", "miconi_hard",
         {"train_windows": 100000, "eval_windows": 2},
         dict(cell="elman", hidden_size=[40], unit_multipliers=True, one_hot=True, optimizer="adagrad", lr=0.1,
              loss_sum_over_time=True, fast_path=True), "multiplier"),
    Case("copy task, LSTM 128, batch 16, T 70 (v3)", "copy", {"delay": 50, "n_train": 20000, "batch_size": 16},
         dict(cell="lstm", hidden_size=128, optimizer="adam", lr=1e-3, l1=1e-5)),
    Case("copy task, LSTM 128, batch 16, T 70 (group_lasso, Adam)", "copy",
         {"delay": 50, "n_train": 20000, "batch_size": 16},
         dict(cell="lstm", hidden_size=128, optimizer="adam", lr=1e-3), "group_lasso"),
    Case("copy task, LSTM 128, batch 16, T 70 (l0_gate, Adam)", "copy",
         {"delay": 50, "n_train": 20000, "batch_size": 16},
         dict(cell="lstm", hidden_size=[128], unit_gates=True, optimizer="adam", lr=1e-3), "l0_gate"),
    Case("copy task, LSTM 128, batch 16, T 70 (ablation regress, Adam)", "copy",
         {"delay": 50, "n_train": 20000, "batch_size": 16},
         dict(cell="lstm", hidden_size=128, optimizer="adam", lr=1e-3), "ablation"),
    Case("copy task, LSTM 128, batch 16, T 70 (paired, trials of 50 steps, 8 validation batches, Adam)", "copy",
         {"delay": 50, "n_train": 20000, "batch_size": 16},
         dict(cell="lstm", hidden_size=128, optimizer="adam", lr=1e-3), "paired"),
    # under RMSprop a trial's new units step with Adam's head start (paired_head_start adam, the
    # default): its cost against the optimizer's own (paired_head_start optimizer)
    Case("copy task, LSTM 128, batch 16, T 70 (paired, trials of 50 steps, 8 validation batches, RMSprop)", "copy",
         {"delay": 50, "n_train": 20000, "batch_size": 16},
         dict(cell="lstm", hidden_size=128, optimizer="rmsprop", lr=1e-3), "paired"),
    Case("copy task, LSTM 128, batch 16, T 70 (paired, trials of 50 steps, 8 validation batches, RMSprop, "
         "paired_head_start optimizer)", "copy", {"delay": 50, "n_train": 20000, "batch_size": 16},
         dict(cell="lstm", hidden_size=128, optimizer="rmsprop", lr=1e-3), "paired",
         {"paired_head_start": "optimizer"}),
]


def _clock(device: str) -> Callable[[], float]:
    """The process's CPU time on the CPU; on CUDA the wall clock once the device has caught up."""
    if device == "cpu":
        return time.process_time

    def synchronized() -> float:
        torch.cuda.synchronize()
        return time.perf_counter()
    return synchronized


class _Clock(L.Callback):
    def __init__(self, skip: int, clock: Callable[[], float]) -> None:
        self.skip, self.clock, self.t0, self.t1 = skip, clock, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.t0 = self.clock()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.t1 = self.clock()


def _step_time(case: Case, grow: bool, steps: int, device: str) -> float:
    data = TaskData(case.task, case.options)
    model_kw = dict(case.model)
    if grow and not isinstance(model_kw["hidden_size"], list):
        model_kw["hidden_size"] = [model_kw["hidden_size"]]  # the growable stack, as growth uses it
    if not grow:  # the fixed layer: no multipliers or gates, one size
        model_kw.pop("unit_multipliers", None)
        model_kw.pop("unit_gates", None)
        size = model_kw["hidden_size"]
        model_kw["hidden_size"] = size[0] if isinstance(size, list) else size
    model = SequenceModel(data.spec, **model_kw)
    skip = 20
    clock = _Clock(skip, _clock(device))
    callbacks: list[L.Callback] = [clock]
    if grow and case.signal in ("group_lasso", "l0_gate", "ablation"):
        # the signal's whole per-step cost (the ablation's measurements included), no resize
        callbacks.append(StructureController(signal=case.signal, reserve=0, reserve_fraction=0.0, dead_steps=10**9,
                                             max_units=1024,
                                             **({"trial_steps": 1, "warmup_steps": 10**9}  # measure all, remove none
                                                if case.signal == "ablation" else {})))
    elif grow and case.signal == "paired":
        # trials running all the time (a layer not yet settled), each moving the width by one unit
        # at most: the copy's training, the validation judging and the adoptions, at 127-129 units
        H = int(model_kw["hidden_size"][0])
        callbacks.append(StructureController(signal="paired", paired_steps=50, paired_horizon=0, paired_batches=8,
                                             min_units=H - 1, max_units=H + 1, paired_fraction=1.0 / H,
                                             **case.controller))
    elif grow:
        callbacks.append(StructureController(signal=case.signal, p_add=0.0, p_delete=0.0, p_spontaneous=0.0,
                                             max_units=1024))
    trainer = L.Trainer(max_steps=steps + skip, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=callbacks, log_every_n_steps=100)
    trainer.fit(model, data)
    return (clock.t1 - clock.t0) / steps


def _resize_ms(case: Case, device: str, repeats: int = 20) -> float:
    data = TaskData(case.task, case.options)
    kw = dict(case.model)
    kw["hidden_size"] = kw["hidden_size"] if isinstance(kw["hidden_size"], list) else [kw["hidden_size"]]
    kw.pop("l1", None)
    model = SequenceModel(data.spec, **kw).to(device)
    opt = torch.optim.Adam(model.parameters())
    tokens = data.spec.input_kind == "tokens"
    x = torch.zeros(2, 5, dtype=torch.long) if tokens else torch.zeros(2, 5, data.spec.input_size)
    x = x.to(device)
    out, state = model(x)
    out.sum().backward()
    opt.step()
    clock, times = _clock(device), []
    for _ in range(repeats):
        H = model.rnn.hidden_size
        t0 = clock()
        state = resize_layer(model.rnn, model.decoder, 0, UnitMap.of(H, range(H), add=1), opt, state=state)
        state = resize_layer(model.rnn, model.decoder, 0, UnitMap.of(H + 1, range(1, H + 1)), opt, state=state)
        times.append((clock() - t0) / 2)
    return statistics.median(times) * 1e3


def run(steps: int = 300, rounds: int = 4, quick: bool = False, match: str | None = None,
        device: str = "cpu") -> str:
    """Measure every case (or those whose name contains ``match``) on ``device`` (``cpu`` or
    ``cuda``); returns a markdown table."""
    if device not in DEVICES:
        raise ArgumentError("--device", allowed=" or ".join(DEVICES), received=device, hint="e.g. --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("--device", allowed="cuda on a machine where torch sees a CUDA device", received=device,
                            hint="torch.cuda.is_available() is False here: use --device cpu")
    quiet_lightning()
    if quick:
        steps, rounds = 30, 1
    cases = [c for c in CASES if match is None or match in c.name]
    if not cases:
        raise ArgumentError("--case", allowed="a part of a case's name: " + "; ".join(c.name for c in CASES),
                            received=match, hint="e.g. --case ablation")
    rows = ["| case | fixed ms/step | growable ms/step | ratio | one resize (ms) |", "|---|---:|---:|---:|---:|"]
    for case in cases:
        fixed, grown = [], []
        for r in range(rounds):  # alternate, so drift in machine load hits both sides alike,
            for growable in ((False, True) if r % 2 == 0 else (True, False)):  # and so does going first
                (grown if growable else fixed).append(_step_time(case, growable, steps, device))
        f, g = statistics.median(fixed), statistics.median(grown)
        rows.append(f"| {case.name} | {f * 1e3:.3f} | {g * 1e3:.3f} | {g / f:.3f} | {_resize_ms(case, device):.2f} |")
    return "\n".join(rows)
