"""``growrnn fit|validate|test --config FILE``: LightningCLI over ``SequenceModel`` and
``TaskData``. The task's spec is linked into the model, TensorBoard logs to ``runs/`` by default
with the cell's equations and diagram, and the resolved config is saved next to the logs."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI

from growrnn.errors import format_message
from growrnn.training.checkpoint import SafeCheckpointIO, load_checkpoint
from growrnn.training.data import TaskData
from growrnn.training.model import SequenceModel
from growrnn.training.summary import fit_summary

__all__ = ["GrowCLI", "run"]

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
               "init_args": {"save_dir": "runs", "name": "growrnn"}},
}


class GrowCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")
        parser.add_argument("--allow_divergence", type=bool, default=False,
                            help="fit: exit 0 even if the loss or the weights became NaN or infinite "
                                 "(by default such a run ends with an error and exit status 1)")

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        # the model options the user set (config files and command line, no defaults), which a
        # --ckpt_path's options would replace (none where they cannot be told apart)
        self._given_model: set[str] = set()
        if isinstance(args, dict):
            return
        try:
            model = parser.parse_args(args, defaults=False)[self.config["subcommand"]].get("model")
            self._given_model = set(vars(model)) if model is not None else set()
        except (SystemExit, Exception):  # noqa: BLE001 -- then no option counts as given
            self._given_model = set()

    def _parse_ckpt_path(self) -> None:
        # Lightning reads --ckpt_path here first (for its hyper-parameters): check the file with the
        # one safe loader before, so a bad or crafted file is a clear error naming it
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        meta: dict[str, Any] = {}
        if ckpt_path:
            stored = load_checkpoint(ckpt_path).get("growrnn")
            meta = stored if isinstance(stored, dict) else {}
        given = getattr(self, "_given_model", set())
        before = {k: v for k, v in dict(self.config[sub]["model"]).items() if k in given} if ckpt_path else {}
        super()._parse_ckpt_path()
        # a checkpoint of another task is refused when the model loads it, naming the task
        task = (meta.get("spec") or {}).get("name")
        if ckpt_path and task in (None, self.config[sub]["data"].get("task")):
            _replaced_by_checkpoint(before, dict(self.config[sub]["model"]), str(ckpt_path), meta.get("genome"))

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        # `--trainer.enable_progress_bar false` wins over a progress bar the config lists (the
        # quickstart's throttled one): Lightning would refuse the pair
        if config.get("enable_progress_bar") is False:
            listed = config.get("callbacks")
            listed = listed if isinstance(listed, list) else [] if listed is None else [listed]
            config["callbacks"] = [c for c in listed if not isinstance(c, ProgressBar)]
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        return super()._instantiate_trainer(config, callbacks)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Lightning's trainer, loading ``--ckpt_path`` weights-only with clear errors (see
        :mod:`growrnn.training.checkpoint`) unless the config chose its own checkpoint IO."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = SafeCheckpointIO()
        return trainer


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (tips, device lines) and its own deprecation notices about
    the libraries under it (which a user cannot act on) out of the console."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # what a --ckpt_path holds (task, steps, cell) is worth a line on the console
    announce = logging.getLogger("growrnn.training.checkpoint")
    if not announce.handlers:
        announce.setLevel(logging.INFO)
        announce.addHandler(logging.StreamHandler())
        announce.propagate = False  # once: not again through the root handler `growrnn -v` sets
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")


def _replaced_by_checkpoint(given: dict[str, Any], loaded: dict[str, Any], ckpt_path: str,
                            genome: str | None = None) -> None:
    """Lightning builds a ``--ckpt_path`` run's model from the checkpoint's options, over the ones
    ``given`` (those a config file or the command line set; defaults are not given): refuse another
    cell (the weights would mean other equations), and say which other options the checkpoint
    replaced, so none is dropped silently. Sizes are not reported: a grown layer's checkpoint holds
    its current sizes, not the config's start. ``genome``: the cell's text the checkpoint records
    (else its ``cell`` option)."""
    from growrnn.errors import ArgumentError
    from growrnn.genome.source import load as load_genome

    def genome_text(cell: Any) -> str:
        try:
            return load_genome(cell, "model.cell").to_text()
        except Exception:  # noqa: BLE001 -- compared as given; the model refuses a bad cell later
            return str(cell)

    cell, stored = given.get("cell"), genome if genome is not None else loaded.get("cell")
    if cell is not None and stored is not None and genome_text(cell) != genome_text(stored):
        raise ArgumentError("model.cell", allowed=f"the cell of --ckpt_path {ckpt_path} "
                            f"({'; '.join(genome_text(stored).splitlines())})", received=cell,
                            hint="a checkpoint holds one cell's weights: drop --model.cell (or use the config the "
                                 "checkpoint was trained with), or pass a checkpoint of that cell")
    quiet = {"cell", "hidden_size", "num_layers"}
    changed = [f"model.{k} {given[k]!r} -> {v!r}" for k, v in loaded.items()
               if k in given and k not in quiet and given[k] != v]
    if changed:
        print(f"growrnn: note: --ckpt_path {ckpt_path} sets the model's options from the checkpoint: "
              + ", ".join(changed), file=sys.stderr)


def run(args: list[str] | None) -> int:
    """Run LightningCLI on ``args`` (``None``: on ``sys.argv``); a fit ends with its summary
    (:mod:`growrnn.training.summary`) and exit status 1 if it diverged (unless allowed)."""
    quiet_lightning()
    with warnings.catch_warnings():
        # we pass args on purpose when called from Python (tests, notebooks)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli = GrowCLI(SequenceModel, TaskData, args=args, trainer_defaults=TRAINER_DEFAULTS,
                      save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
        if cli.subcommand != "fit":
            return 0
        summary = fit_summary(cli.trainer, cli.model, cli.datamodule)
    if cli.trainer.global_rank == 0:  # under DDP every process gets here; one summary is enough
        print(summary.text())
    if summary.diverged and not cli.config["fit"].get("allow_divergence", False):
        print(format_message("growrnn: error: the run diverged: its loss or weights became NaN or infinite",
                             hint="lower model.lr, clip the gradients (trainer.gradient_clip_val: 1.0), or "
                                  "try another cell; pass --allow_divergence true to exit 0 anyway"),
              file=sys.stderr)
        return 1
    return 0
