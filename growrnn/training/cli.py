"""``growrnn fit|validate|test --config FILE``: LightningCLI over ``SequenceModel`` and
``TaskData``. The task's spec is linked into the model, TensorBoard logs to ``runs/`` by default
with the cell's equations and diagram, and the resolved config is saved next to the logs."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from lightning.pytorch.cli import LightningCLI

from growrnn.training.data import TaskData
from growrnn.training.model import SequenceModel

__all__ = ["GrowCLI", "run"]

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
               "init_args": {"save_dir": "runs", "name": "growrnn"}},
}


class GrowCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (tips, device lines) and its own deprecation notices about
    the libraries under it (which a user cannot act on) out of the console."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")


def run(args: list[str] | None) -> int:
    """Run LightningCLI on ``args`` (``None``: on ``sys.argv``)."""
    quiet_lightning()
    with warnings.catch_warnings():
        # we pass args on purpose when called from Python (tests, notebooks)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        GrowCLI(SequenceModel, TaskData, args=args, trainer_defaults=TRAINER_DEFAULTS,
                save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    return 0
