"""Callbacks that put the cell itself in TensorBoard: its equations, a picture of its DAG, and the
run's final validation metric as the hparams-dashboard metric."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = ["CellLogger"]


class CellLogger(L.Callback):
    """Logs ``cell/equations`` (text) and ``cell/diagram`` (figure) once per fit, and after every
    validation the validation metric as ``hp_metric`` (what the hparams dashboard shows);
    ``validated_at`` is the global step of the last validation (``None`` before the first)."""

    def __init__(self) -> None:
        self.validated_at: int | None = None

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
        from growrnn.training.figures import draw_genome
        tb.add_figure("cell/diagram", draw_genome(genome, title=f"key {genome.key}"), global_step=0)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        spec = getattr(pl_module, "spec", None)
        if trainer.sanity_checking or spec is None:
            return
        self.validated_at = trainer.global_step
        value = trainer.callback_metrics.get(f"val/{spec.metric}")
        if value is not None and math.isfinite(float(value)):
            for logger in trainer.loggers:
                logger.log_metrics({"hp_metric": float(value)}, step=trainer.global_step)
