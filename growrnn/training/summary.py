"""The end of a ``growrnn fit``: what happened, in a few lines, and whether the run diverged.

:func:`fit_summary` reads the finished trainer and model: the units per layer (from the model's
layers) and the units added and deleted (from the :class:`~growrnn.training.growth.StructureController`
callback) of a growable model, the final validation metric next to the task's floor where it has
one, and where TensorBoard finds the run. If the last validation is older than the last step, or
saw other layer sizes than the model ends with (a paired trial decided after a stop the trainer's
limits did not foresee: early stopping, ``max_time``), it validates the final model once more,
so the metric (and TensorBoard's ``hp_metric``, which
:class:`~growrnn.training.callbacks.CellLogger` writes after every validation) is the final
model's, never a stale value or Lightning's ``-1`` placeholder. A run whose weights or last loss
are NaN or infinite is reported as diverged; ``growrnn fit`` then exits with status 1 unless
``--allow_divergence true`` is given.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

__all__ = ["FitSummary", "fit_summary"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSummary:
    """What one fit did. ``units``/``added``/``deleted`` are per layer (``None`` when no
    structure controller ran; empty when it ran in other processes only, ``ddp_spawn``'s and
    ``ddp_fork``'s workers; with the ``paired`` signal they count the units a trial adds to
    the network on probation, also when the trial's end folds them away: a trial that goes on
    with the copy of ``d`` fewer units counts ``d`` added and ``2 d`` deleted); ``value`` is the
    final validation ``metric`` (``None`` if the run never validated); ``floor`` the task's best
    possible value, where it has one; ``trials`` and ``trial_share``, with the ``paired`` signal,
    the trials decided and the share of the steps a copy of the network trained beside it (their
    cost on top of the network's own training)."""

    task: str
    metric: str
    value: float | None
    step: int
    floor: float | None
    units: list[int]
    added: list[int] | None
    deleted: list[int] | None
    log_dir: str | None
    diverged: bool
    trials: int | None = None
    trial_share: float | None = None

    def text(self) -> str:
        """The summary as the lines ``growrnn fit`` prints."""
        lines = [f"growrnn fit done: {self.task}, {self.step} steps"]
        if self.added is not None and len(self.added) != len(self.units):
            # the controller never ran in this process (ddp_spawn's, ddp_fork's main process)
            per = ", ".join(f"layer {k}: {u}" for k, u in enumerate(self.units))
            lines.append(f"  units: {per} (added and deleted not known here: under ddp_spawn or ddp_fork the "
                         "training processes' controller does not travel back; ddp's summary has them)")
        elif self.added is not None and self.deleted is not None:
            per = ", ".join(f"layer {k}: {u} (+{a} -{d})"
                            for k, (u, a, d) in enumerate(zip(self.units, self.added, self.deleted, strict=False)))
            probation = ", counting the units each trial took on probation" if self.trials is not None else ""
            lines.append(f"  units: {per}; {sum(self.added)} added, {sum(self.deleted)} deleted in all{probation}")
        else:
            lines.append(f"  units: {', '.join(map(str, self.units))} (fixed size)")
        if self.trials is not None and self.trial_share is not None:
            lines.append(f"  paired trials: {self.trials}; a copy trained beside the network on "
                         f"{self.trial_share:.0%} of the steps")
        if self.value is None:
            lines.append(f"  val/{self.metric}: not measured (no validation ran)")
        else:
            floor = f" (the task's floor: {self.floor:.4g})" if self.floor is not None else ""
            lines.append(f"  val/{self.metric}: {self.value:.4g}{floor}")
        if self.diverged:
            lines.append("  DIVERGED: the loss or the weights became NaN or infinite")
        if self.log_dir is not None:
            lines.append(f"  curves: tensorboard --logdir {self.log_dir}")
        return "\n".join(lines)


def fit_summary(trainer: L.Trainer, model: Any, datamodule: Any = None) -> FitSummary:
    """Summarise a finished fit of ``model`` (a :class:`~growrnn.training.SequenceModel`);
    validates the final model first when the last validation is older than the last step or saw
    other layer sizes."""
    spec = model.spec
    key = f"val/{spec.metric}"
    diverged = _diverged(trainer, model)
    if not diverged and datamodule is not None and _stale(trainer, model):
        trainer.validate(model, datamodule=datamodule, verbose=False)
    value = trainer.callback_metrics.get(key)
    value = float(value) if value is not None else None
    if value is not None and not math.isfinite(value):
        diverged = True
    from growrnn.training.growth import controller_of
    controller = controller_of(trainer)
    units = _units(model, growable=controller is not None)
    info = getattr(getattr(datamodule, "task", None), "info", None) or {}
    floor = info.get("floor")
    growth = controller.record(int(trainer.global_step)) if controller is not None else {}
    return FitSummary(task=spec.name, metric=spec.metric, value=value, step=int(trainer.global_step),
                      floor=float(floor) if floor is not None else None, units=units,
                      added=growth.get("added"), deleted=growth.get("deleted"), trials=growth.get("trials"),
                      trial_share=growth.get("trial_share"), log_dir=_log_dir(trainer), diverged=diverged)


def _diverged(trainer: L.Trainer, model: Any) -> bool:
    with torch.no_grad():
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            return True
    loss = trainer.callback_metrics.get("train/loss")
    return loss is not None and not math.isfinite(float(loss))


def _stale(trainer: L.Trainer, model: Any) -> bool:
    """Whether the final model was not validated: no validation at the last step, or one of other
    layer sizes (interrupted and fast_dev_run runs excepted)."""
    from growrnn.training.callbacks import CellLogger
    if trainer.interrupted or trainer.fast_dev_run or not trainer.limit_val_batches:
        return False
    cells = [c for c in trainer.callbacks if isinstance(c, CellLogger)]  # type: ignore[attr-defined]
    if not cells:
        return False
    return cells[0].validated_at != trainer.global_step or cells[0].validated_sizes != list(model.hidden_sizes())


def _units(model: Any, growable: bool) -> list[int]:
    if growable:
        from growrnn.growth.stack import layers_of
        return [int(layer.hidden_size) for layer in layers_of(model.rnn)]
    return list(model.hidden_sizes())


def _log_dir(trainer: L.Trainer) -> str | None:
    from lightning.pytorch.loggers import TensorBoardLogger
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return str(logger.log_dir)
    return None
