"""``evaluate(genome, task, budget, seed)``: train a fresh model and return a :class:`Result`.

A loss that turns NaN or infinite stops the run and comes back as ``diverged=True`` with the
worst metric value — a bad fitness, never an exception."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import lightning as L

from growrnn.evaluation.config import Budget
from growrnn.executors import torch_threads
from growrnn.genome.graph import Genome
from growrnn.task import Task, get_task, task_factory
from growrnn.training.callbacks import ValidationCurve
from growrnn.training.cli import quiet_lightning
from growrnn.training.model import SequenceModel

__all__ = ["Budget", "Result", "evaluate"]


@dataclass
class Result:
    """What one evaluation measured. ``curve`` holds one point per validation:
    ``{"step", "epoch", "val", "train_loss"}``. ``hidden_sizes`` are the trained model's unit
    counts per layer (growth may have changed them); ``train_seconds`` sums the time between the
    start and end of each training batch (forward, backward, optimizer step and the growth
    controller's surgery; not validation) over ``train_steps`` batches."""

    task: str
    metric: str
    direction: str
    genome: str
    key: str
    val: float
    test: float | None
    curve: list[dict[str, float]] = field(default_factory=list)
    params: int = 0
    rnn_params: int = 0
    macs_per_step: int = 0
    steps: int = 0
    wall_time: float = 0.0
    diverged: bool = False
    seed: int = 0
    hidden_sizes: list[int] = field(default_factory=list)
    train_seconds: float = 0.0
    train_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def better_than(self, other: Result) -> bool:
        return self.val < other.val if self.direction == "min" else self.val > other.val


class _Clock(L.Callback):
    """Times the training batches (the last callback, so that its batch end includes the growth
    controller's surgery)."""

    def __init__(self) -> None:
        self.seconds, self.steps, self._start = 0.0, 0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.seconds += time.perf_counter() - self._start
        self.steps += 1


def evaluate(genome: Genome | str, task: str | Task, budget: Budget | Mapping[str, Any], seed: int = 0, *,
             task_options: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
             trainer: Mapping[str, Any] | None = None, grow: Mapping[str, Any] | None = None,
             callbacks: Sequence[L.Callback] = (), threads: int | None = None, test: bool = True,
             logger: Any = False) -> Result:
    """Train ``genome`` on ``task`` for ``budget`` and score it on valid (and test).

    Args:
        genome: a Genome (it reaches the model as it is, node ids included), or anything
            :func:`growrnn.genome.load` reads: a library cell name, genome text or a genome file.
        task: a task name (built with ``task_options``) or a task object.
        budget: a :class:`Budget` or its fields as a dict.
        seed: seeds the weights, dropout, the task's data (its ``seed`` option, unless
            ``task_options`` sets one) and the growth controller (unless ``grow`` sets one).
        model: ``SequenceModel`` options (``hidden_size``, ``optimizer``, ``lr``, ...).
        trainer: extra ``lightning.Trainer`` options (``gradient_clip_val``, ...).
        grow: ``StructureController`` options: train with growth on (``{}`` for the defaults;
            ``None``: no growth). ``model.hidden_size`` is then the start size.
        callbacks: more Lightning callbacks, run after the learning-curve recorder and before
            the growth controller (e.g. weight inheritance in ``setup``, an early stop).
        threads: torch threads while it runs (then restored); ``None`` leaves them as they are.
            One thread makes results independent of the machine's core count.
        logger: a Lightning logger (e.g. TensorBoard), or False.

    Shapes: the model reads the task's batches, ``(B, T, I)`` features or ``(B, T)`` tokens.
    """
    if threads is None:
        return _evaluate(genome, task, budget, seed, task_options, model, trainer, grow, callbacks, test, logger)
    with torch_threads(threads):
        return _evaluate(genome, task, budget, seed, task_options, model, trainer, grow, callbacks, test, logger)


def _evaluate(genome: Genome | str, task: str | Task, budget: Budget | Mapping[str, Any], seed: int,
              task_options: Mapping[str, Any] | None, model: Mapping[str, Any] | None,
              trainer: Mapping[str, Any] | None, grow: Mapping[str, Any] | None, callbacks: Sequence[L.Callback],
              test: bool, logger: Any) -> Result:
    quiet_lightning()
    budget = budget if isinstance(budget, Budget) else Budget(**budget)
    if isinstance(task, str):
        options = dict(task_options or {})
        if "seed" in inspect.signature(task_factory(task)).parameters:
            options.setdefault("seed", seed)  # one seed: weights, dropout and the data's order
        task_obj = get_task(task, **options)
    else:
        task_obj = task
    spec = task_obj.spec
    L.seed_everything(seed, workers=True, verbose=False)
    net = SequenceModel(spec, cell=genome, seed=seed, **(model or {}))  # a Genome goes in as it is
    datamodule = task_obj.datamodule()
    watch, clock = ValidationCurve(f"val/{spec.metric}"), _Clock()
    kw: dict[str, Any] = {
        "max_steps": budget.steps if budget.steps is not None else -1,
        "max_epochs": budget.epochs if budget.epochs is not None else (-1 if budget.steps or budget.seconds else None),
        "logger": logger, "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, "num_sanity_val_steps": 0,
    }
    if budget.seconds is not None:
        kw["max_time"] = timedelta(seconds=budget.seconds)
    if budget.val_every is not None:
        kw["val_check_interval"] = budget.val_every
        kw["check_val_every_n_epoch"] = None
    extra = dict(trainer or {})
    hooks = [watch, *callbacks, *extra.pop("callbacks", [])]
    if grow is not None:
        from growrnn.training.growth import StructureController

        hooks.append(StructureController(**{"seed": seed, **grow}))  # each run's growth draws its own numbers
    kw["callbacks"] = [*hooks, clock]  # the clock last: its batch end includes the controller's surgery
    kw.update(extra)
    fitter = L.Trainer(**kw)
    start = time.perf_counter()
    fitter.fit(net, datamodule=datamodule)
    wall = time.perf_counter() - start
    worst = math.inf if spec.direction == "min" else -math.inf
    val, test_value = worst, None
    if not watch.diverged:
        val = float(fitter.validate(net, datamodule=datamodule, verbose=False)[0][f"val/{spec.metric}"])
        if test:
            test_value = float(fitter.test(net, datamodule=datamodule, verbose=False)[0][f"test/{spec.metric}"])
    if not math.isfinite(val) or not math.isfinite(float(fitter.callback_metrics.get("val/loss", 0.0))):
        watch.diverged, val = True, worst  # a NaN model can keep a finite accuracy
    g = net.genome
    figures = net.complexity()
    return Result(task=spec.name, metric=spec.metric, direction=spec.direction, genome=g.to_text(), key=g.key,
                  val=val, test=test_value, curve=watch.points, params=figures["params"],
                  rnn_params=figures["rnn_params"], macs_per_step=figures["macs_per_step"],
                  steps=fitter.global_step, wall_time=wall, diverged=watch.diverged, seed=seed,
                  hidden_sizes=net.hidden_sizes(), train_seconds=clock.seconds, train_steps=clock.steps)
