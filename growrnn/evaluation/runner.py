"""``evaluate(genome, task, budget, seed)``: train a fresh model and return a :class:`Result`.

A loss that turns NaN or infinite stops the run and comes back as ``diverged=True`` with the
worst metric value — a bad fitness, never an exception."""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L

from growrnn.errors import ArgumentError, check_int
from growrnn.evaluation.config import MODEL_OWNED, TRAINER_OWNED, Budget, check_keys
from growrnn.executors import torch_threads
from growrnn.genome.graph import Genome
from growrnn.task import Task, get_task, task_factory
from growrnn.training.callbacks import ValidationCurve, limit_reached
from growrnn.training.cli import quiet_lightning
from growrnn.training.model import SequenceModel

__all__ = ["Budget", "Result", "evaluate"]


@dataclass
class Result:
    """What one evaluation measured. ``curve`` holds one point per validation:
    ``{"step", "epoch", "val", "train_loss"}``. ``hidden_sizes`` are the trained model's unit
    counts per layer (growth may have changed them); ``train_seconds`` sums the time between the
    start and end of each training batch (forward, backward, optimizer step and the growth
    controller's surgery; not validation) over ``train_steps`` batches. ``growth`` is what a
    growth controller did (units added and deleted per layer; with ``paired`` trials, their count
    and the share of the steps a copy trained beside the network: see
    :meth:`~growrnn.training.growth.StructureController.record`), ``None`` without one."""

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
    growth: dict[str, Any] | None = None

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


class _FinalCheckpoint(L.Callback):
    """Writes a checkpoint after the fit's last training batch, where Lightning's own
    ``ModelCheckpoint`` would, so that a run resumed from it goes on exactly as an uninterrupted
    one would have (a checkpoint written after ``fit()`` returns holds the loops' finished state,
    and the continuation drifts). Not written when the run stops before its budget or diverged
    (``watch``, the run's learning curve, says so), even on its budget's last step.

    One repair: a run that was itself resumed from a checkpoint taken at an epoch's last batch
    counts its next epoch as completed without counting it as started (Lightning 2.6's restart
    path), and a resume from *its* checkpoint would then replay that epoch; the written progress
    marks the current epoch started. Measured in the test suite: a run split in three parts (mid-
    epoch, on epochs' ends, and by epochs) reaches the uninterrupted run's every step."""

    def __init__(self, path: Path, watch: ValidationCurve) -> None:
        self.path, self.watch = path, watch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        reached = limit_reached(trainer)
        if reached and not (trainer.should_stop and reached != "steps") and not self.watch.diverged:
            from growrnn.files import atomic_path

            with atomic_path(self.path) as tmp:
                trainer.save_checkpoint(tmp, weights_only=False)  # optimizer and loops too: the run goes on

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        epochs, batches = loop.get("epoch_progress"), loop.get("epoch_loop.batch_progress")
        if not epochs or not batches or batches["current"]["processed"] == 0:
            return
        for part in ("total", "current"):  # this epoch has processed batches: it has started
            counts = epochs[part]
            if counts["started"] <= counts["completed"]:
                counts["ready"] = counts["started"] = counts["completed"] + 1


def evaluate(genome: Genome | str, task: str | Task, budget: Budget | Mapping[str, Any], seed: int = 0, *,
             task_options: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
             trainer: Mapping[str, Any] | None = None, grow: Mapping[str, Any] | None = None,
             callbacks: Sequence[L.Callback] = (), threads: int | None = None, test: bool = True,
             logger: Any = False, resume_from: str | os.PathLike[str] | None = None,
             checkpoint_to: str | os.PathLike[str] | None = None, score: bool = True) -> Result:
    """Train ``genome`` on ``task`` for ``budget`` and score it on valid (and test).

    Args:
        genome: a Genome (it reaches the model as it is, node ids included), or anything
            :func:`growrnn.genome.load` reads: a library cell name, genome text or a genome file.
        task: a task name (built with ``task_options``) or a task object (then no
            ``task_options``: it is built already).
        budget: a :class:`Budget` or its fields as a dict.
        seed: seeds the weights, dropout, the task's data (its ``seed`` option, unless
            ``task_options`` sets one) and the growth controller (unless ``grow`` sets one).
        model: ``SequenceModel`` options (``hidden_size``, ``optimizer``, ``lr``, ...). A key of
            ``task_options``, ``model``, ``trainer`` or ``grow`` that what it is passed to does
            not take, or that evaluate sets itself (``model.seed``, ``trainer.max_steps``), is an
            ArgumentError naming it.
        trainer: extra ``lightning.Trainer`` options (``gradient_clip_val``, ...).
        grow: ``StructureController`` options: train with growth on (``{}`` for the defaults;
            ``None``: no growth). ``model.hidden_size`` is then the start size. Its
            ``decide_at_limit`` is set here: false with ``checkpoint_to`` (a paired trial running
            at the part's last step goes on in the next part), else true.
        callbacks: more Lightning callbacks, run after the learning-curve recorder and before
            the growth controller (e.g. weight inheritance in ``setup``, an early stop).
        threads: torch threads while it runs (then restored); ``None`` leaves them as they are.
            One thread makes results independent of the machine's core count.
        logger: a Lightning logger (e.g. TensorBoard), or False.
        resume_from: a checkpoint that an earlier call wrote (``checkpoint_to``) with the same
            genome, task, options and seed: training goes on from it (weights, optimizer,
            scheduler, growth controller, step and epoch, the carried state mid-epoch) until
            ``budget``, which then counts from the start of that first call. Read weights-only
            (:mod:`growrnn.training.checkpoint`). ``curve``, ``steps``, ``train_steps`` and
            ``train_seconds`` of the result cover this call alone.
        checkpoint_to: write a Lightning checkpoint there (atomically) when training ends, so a
            later call can go on with ``resume_from`` (the search's rungs do).
        score: False skips the closing validation and test passes: ``val`` is then the learning
            curve's last point (the worst value without one) and ``test`` is ``None`` -- for a
            part of a run that another call goes on with.

    Shapes: the model reads the task's batches, ``(B, T, I)`` features or ``(B, T)`` tokens.
    """
    check_int("seed", seed, 0, hint="seeds the weights, dropout, the data's order and growth")
    if resume_from is not None and not Path(resume_from).is_file():
        raise ArgumentError("resume_from", allowed="a checkpoint file an earlier call wrote (checkpoint_to)",
                            received=str(resume_from), hint="pass None to train from the start")
    files = (resume_from, checkpoint_to)
    passes = (score, test and score)
    if threads is None:
        return _evaluate(genome, task, budget, seed, task_options, model, trainer, grow, callbacks, passes, logger,
                         files)
    with torch_threads(threads):
        return _evaluate(genome, task, budget, seed, task_options, model, trainer, grow, callbacks, passes, logger,
                         files)


def _budget(budget: Budget | Mapping[str, Any]) -> Budget:
    """``budget`` as a :class:`Budget` (a mapping of its fields), or an ArgumentError naming it."""
    if isinstance(budget, Budget):
        return budget
    fields = ", ".join(Budget.__dataclass_fields__)
    if not isinstance(budget, Mapping):
        raise ArgumentError("budget", allowed=f"a Budget or a mapping of {fields}", received=budget,
                            hint='e.g. budget={"steps": 200, "val_every": 50}')
    unknown = sorted(set(budget) - set(Budget.__dataclass_fields__))
    if unknown:
        raise ArgumentError("budget", allowed=f"keys {fields}", received=", ".join(map(str, unknown)),
                            hint='e.g. budget={"steps": 200, "val_every": 50}')
    return Budget(**budget)


def _check_options(task: str | Task, task_options: Mapping[str, Any] | None, model: dict[str, Any],
                   trainer: dict[str, Any], grow: Mapping[str, Any] | None) -> None:
    """Each options dict of :func:`evaluate` holds only arguments of what it is passed to, and none
    that evaluate sets itself: else an ArgumentError naming ``model.hidden_sizee`` with the allowed
    names, as a config's keys are checked (:func:`~growrnn.evaluation.config.check_keys`), where
    the constructors would raise a bare TypeError. Keys only: values may be Python objects (a
    Lightning strategy) that a config's value check would not read; the constructors check them."""
    owner = "evaluate"
    if isinstance(task, str):
        check_keys("task_options", dict(task_options or {}), task_factory(task), (),
                   f"options of the task {task!r}: growrnn tasks lists them", owner, values=False)
    elif task_options:
        raise ArgumentError("task_options", allowed="no options (None or {}) with a task object: it is built already",
                            received=", ".join(map(str, task_options)),
                            hint="pass the task by name to build it with these options")
    check_keys("model", model, SequenceModel, MODEL_OWNED,
               "SequenceModel options (hidden_size, optimizer, lr, ...); evaluate passes the task's spec, "
               "the genome as the cell and its own seed", owner, values=False)
    check_keys("trainer", trainer, L.Trainer, tuple(o for o in TRAINER_OWNED if o != "callbacks"),
               "evaluate sets the run's length from budget, and its logger and checkpoints itself; give the "
               "length as budget (steps, epochs, seconds, val_every)", owner, values=False)
    if grow is not None:
        from growrnn.training.growth import StructureController

        check_keys("grow", dict(grow), StructureController, ("decide_at_limit",),
                   "StructureController options; evaluate sets decide_at_limit from checkpoint_to", owner,
                   values=False)


def _evaluate(genome: Genome | str, task: str | Task, budget: Budget | Mapping[str, Any], seed: int,
              task_options: Mapping[str, Any] | None, model: Mapping[str, Any] | None,
              trainer: Mapping[str, Any] | None, grow: Mapping[str, Any] | None, callbacks: Sequence[L.Callback],
              passes: tuple[bool, bool], logger: Any, files: tuple[Any, Any] = (None, None)) -> Result:
    quiet_lightning()
    budget = _budget(budget)
    model, trainer = dict(model or {}), dict(trainer or {})
    _check_options(task, task_options, model, trainer, grow)
    resume_from, checkpoint_to = files
    datamodule: Any = None
    if isinstance(task, str):
        options = dict(task_options or {})
        if "seed" in inspect.signature(task_factory(task)).parameters:
            options.setdefault("seed", seed)  # one seed: weights, dropout and the data's order
        if resume_from is not None or checkpoint_to is not None:
            from growrnn.training.data import TaskData

            # its training loader resumes mid-epoch where the checkpoint left off
            datamodule = TaskData(task, options)
            task_obj = datamodule.task
        else:
            task_obj = get_task(task, **options)
    elif resume_from is not None or checkpoint_to is not None:
        raise ArgumentError("task", allowed="a task name with resume_from or checkpoint_to",
                            received=type(task).__name__,
                            hint="a resumed run rebuilds its data by name so that it goes on mid-epoch")
    else:
        task_obj = task
    spec = task_obj.spec
    L.seed_everything(seed, workers=True, verbose=False)
    net = SequenceModel(spec, cell=genome, seed=seed, **model)  # a Genome goes in as it is
    if datamodule is None:
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
    extra = trainer
    hooks = [watch, *callbacks, *extra.pop("callbacks", [])]
    if grow is not None:
        from growrnn.training.growth import StructureController

        # each run's growth draws its own numbers; a part that a later one may continue leaves its
        # running trial running in its checkpoint (its limits are not training's end)
        hooks.append(StructureController(**{"seed": seed, **grow, "decide_at_limit": checkpoint_to is None}))
    if checkpoint_to is not None:  # after the controller: the checkpoint holds the step's surgery
        hooks.append(_FinalCheckpoint(Path(checkpoint_to), watch))
    kw["callbacks"] = [*hooks, clock]  # the clock last: its batch end includes the controller's surgery
    kw.update(extra)
    fitter = L.Trainer(**kw)
    if resume_from is not None or checkpoint_to is not None:
        from growrnn.training.checkpoint import SafeCheckpointIO

        fitter.strategy.checkpoint_io = SafeCheckpointIO(announce=False)  # read weights-only, never run
    start = time.perf_counter()
    if resume_from is None:
        fitter.fit(net, datamodule=datamodule)
    else:
        fitter.fit(net, datamodule=datamodule, ckpt_path=str(resume_from), weights_only=True)
    wall = time.perf_counter() - start

    worst = math.inf if spec.direction == "min" else -math.inf
    val, test_value = worst, None
    validate, test = passes
    if not watch.diverged and not validate:
        val = float(watch.points[-1]["val"]) if watch.points else worst
    elif not watch.diverged:
        validated = fitter.validate(net, datamodule=datamodule, verbose=False)
        if not validated:
            raise ArgumentError("trainer.limit_val_batches", allowed="a number of batches >= 1 or a share > 0",
                                received=getattr(fitter, "limit_val_batches", None),
                                hint="a run is scored on its validation data, and none was validated")
        val = float(validated[0][f"val/{spec.metric}"])
        if test:
            test_value = float(fitter.test(net, datamodule=datamodule, verbose=False)[0][f"test/{spec.metric}"])
    measured = validate or bool(watch.points)
    if measured and (not math.isfinite(val) or not math.isfinite(float(fitter.callback_metrics.get("val/loss", 0.0)))):
        watch.diverged, val = True, worst  # a NaN model can keep a finite accuracy
    from growrnn.training.growth import controller_of
    controller = controller_of(fitter)
    g = net.genome
    figures = net.complexity()
    return Result(task=spec.name, metric=spec.metric, direction=spec.direction, genome=g.to_text(), key=g.key,
                  val=val, test=test_value, curve=watch.points, params=figures["params"],
                  rnn_params=figures["rnn_params"], macs_per_step=figures["macs_per_step"],
                  steps=fitter.global_step, wall_time=wall, diverged=watch.diverged, seed=seed,
                  hidden_sizes=net.hidden_sizes(), train_seconds=clock.seconds, train_steps=clock.steps,
                  growth=controller.record(fitter.global_step) if controller is not None else None)
