"""Callbacks: :class:`CellLogger` puts the cell itself in TensorBoard (its equations, a picture of
its DAG, and the run's final validation metric as the hparams-dashboard metric);
:class:`ValidationCurve` records a run's learning curve and stops a run whose loss diverged."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from growrnn.errors import is_number

__all__ = ["CellLogger", "ValidationCurve", "epoch_steps", "limit_reached"]


def limit_reached(trainer: L.Trainer) -> str | None:
    """Which of the trainer's limits the optimizer step just taken reached (in a callback's
    ``on_train_batch_end``): ``"steps"`` (``max_steps``), ``"epochs"`` (the last batch of the last
    epoch: ``max_epochs`` with ``limit_train_batches``), or None. A stop the limits do not foresee
    (early stopping, ``max_time``, ``should_stop``) is known only once training has ended."""
    if trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return "steps"
    epochs = trainer.max_epochs
    if epochs is not None and epochs > 0 and trainer.current_epoch + 1 >= epochs \
            and bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch):
        return "epochs"
    return None


def epoch_steps(trainer: Any) -> int | None:
    """The optimizer steps of one training epoch (the batches ``limit_train_batches`` lets an epoch
    see, over ``accumulate_grad_batches``, the last step taking the batches left), or None while
    that is not known (before the fit loop's setup, or a data set without a length and no
    ``limit_train_batches`` count)."""
    batches = getattr(trainer, "num_training_batches", None)
    if not is_number(batches) or not 0 < batches < math.inf:
        return None
    return math.ceil(int(batches) / max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1))


class CellLogger(L.Callback):
    """Logs ``cell/equations`` (text) and ``cell/diagram`` (figure) once per fit, and after every
    validation the validation metric as ``hp_metric`` (what the hparams dashboard shows);
    ``validated_at`` is the global step of the last validation (``None`` before the first) and
    ``validated_sizes`` the model's layer sizes then (a growable model can change after its last
    validation in the same step: a paired trial decided after an unforeseen stop)."""

    def __init__(self) -> None:
        self.validated_at: int | None = None
        self.validated_sizes: list[int] | None = None

    def _tensorboard(self, trainer: L.Trainer) -> Any:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tb = self._tensorboard(trainer)
        genome = getattr(pl_module, "genome", None)
        if tb is None or genome is None or trainer.sanity_checking:
            return
        text = genome.to_text()
        tb.add_text("cell/equations", "    " + text.replace("\n", "\n    "), global_step=0)
        from growrnn.genome.figures import draw_genome
        tb.add_figure("cell/diagram", draw_genome(genome, title=f"key {genome.key}"), global_step=0)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        spec = getattr(pl_module, "spec", None)
        if trainer.sanity_checking or spec is None:
            return
        self.validated_at = trainer.global_step
        sizes = getattr(pl_module, "hidden_sizes", None)
        self.validated_sizes = list(sizes()) if callable(sizes) else None
        value = trainer.callback_metrics.get(f"val/{spec.metric}")
        if value is not None and math.isfinite(float(value)):
            for logger in trainer.loggers:
                logger.log_metrics({"hp_metric": float(value)}, step=trainer.global_step)


class ValidationCurve(L.Callback):
    """Records the learning curve: after every validation (not the sanity check) one point
    ``{"step", "epoch", "val", "train_loss"}`` in :attr:`points`, ``val`` being the ``monitor``
    metric (default: ``val/<metric>`` of the module's task spec, ``val/loss`` without one). The
    end-of-epoch validation that repeats a check at the same step replaces its point. A training
    loss that is no longer finite sets :attr:`diverged` and stops the run.

    Subclasses act on each new point in :meth:`on_point` (the search's predictor stops hopeless
    runs there)."""

    def __init__(self, monitor: str | None = None) -> None:
        self.monitor = monitor
        self.points: list[dict[str, float]] = []
        self.diverged, self.last_loss = False, math.nan
        self.last_epoch: int | None = None  # the epoch of the last training batch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.last_loss, self.last_epoch = float(loss.detach()), trainer.current_epoch
        if not math.isfinite(self.last_loss):
            self.diverged = True
            trainer.should_stop = True

    def monitored(self, pl_module: Any) -> str:
        """The logged metric the curve follows."""
        spec = getattr(pl_module, "spec", None)
        return self.monitor or (f"val/{spec.metric}" if spec is not None else "val/loss")

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitored(pl_module))
        if value is None:
            return
        if self.points and self.points[-1]["step"] == trainer.global_step:
            self.points.pop()  # the end-of-epoch check repeats the last one
        # a validation after fit (trainer.validate) comes once the loop has counted one more epoch
        # than a run stopped by max_steps trained in: its point is at the last batch's epoch
        fitting = getattr(getattr(trainer, "state", None), "fn", "fit") == "fit" or self.last_epoch is None
        epoch = trainer.current_epoch if fitting else self.last_epoch
        self.points.append({"step": trainer.global_step, "epoch": epoch, "val": float(value),
                            "train_loss": self.last_loss})
        self.on_point(trainer, pl_module)

    def on_point(self, trainer: L.Trainer, pl_module: Any) -> None:
        """Called after each new point; nothing here."""
