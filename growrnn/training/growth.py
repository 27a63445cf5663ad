"""``StructureController``: the growth regime's Lightning callback (first version: one-layer
models, the ``outgoing_l1`` signal of Miconi's v3 code).

After every ``every_n_steps`` optimizer steps it scores the units by the normalised L1 norm of
their outgoing weights (decoder and recurrent), applies the controller rule, and performs the
surgery on the RNN, the decoder, the optimizer state and the carried TBPTT state together. New
units get incoming weights N(0, ``init_std``) and outgoing weights of L1 norm as in the v3 code.
Its RNG states are part of its ``state_dict``, so checkpoints restore them.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import torch

from growrnn.errors import ArgumentError
from growrnn.growth.rule import GrowthRule, outgoing_l1, structure_step
from growrnn.growth.surgery import remap_state, resize_readers, resize_units

__all__ = ["StructureController"]


class StructureController(L.Callback):
    """Args: the :class:`~growrnn.growth.GrowthRule` fields, ``init_std`` of new incoming weights,
    ``every_n_steps``, and ``seed`` of the rule's and the initialisation's random numbers."""

    def __init__(self, threshold: float = 0.05, reserve: int = 1, p_delete: float = 0.05, p_add: float = 0.01,
                 p_spontaneous: float = 1e-4, max_units: int = 100, min_units: int = 1, init_std: float = 0.01,
                 every_n_steps: int = 1, seed: int = 0) -> None:
        self.rule = GrowthRule(threshold, reserve, p_delete, p_add, p_spontaneous, max_units, min_units)
        if every_n_steps < 1:
            raise ArgumentError("every_n_steps", allowed="an int >= 1", received=every_n_steps)
        self.init_std, self.every_n_steps = init_std, every_n_steps
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.added = self.deleted = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        rnn, decoder = pl_module.rnn, pl_module.decoder
        if rnn.num_layers != 1 or not hasattr(rnn, "weight_hh_l0"):
            raise ArgumentError("model", allowed="one recurrent layer whose cell reads h through affine/linear(h)",
                                received=f"num_layers={rnn.num_layers}")
        H, n_out = rnn.hidden_size, decoder.out_features
        whh = rnn.weight_hh_l0
        scores = outgoing_l1([(decoder.weight, 0.5), (whh, 0.5 * n_out / H)])
        units = structure_step(scores, self.rule, self.rng)
        fresh = torch.nonzero(units.index < 0).flatten()
        kept = int((units.index >= 0).sum())
        if kept == H and fresh.numel() == 0:
            self._log(trainer, H)
            return
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        resize_units(rnn, units, optimizer, self.gen, self.init_std)
        resize_readers([decoder.weight], units, optimizer)
        with torch.no_grad():  # the v3 code's outgoing weights for a new unit
            thr = self.rule.threshold
            for j in fresh.tolist():
                v = torch.randn(n_out, generator=self.gen).to(decoder.weight)
                decoder.weight[:, j] = 0.5 * thr * v / (1e-8 + v.abs().sum())
                u = torch.randn(whh.shape[0], generator=self.gen).to(whh)
                whh[:, j] = 0.5 * kept * thr * u / (1e-8 + n_out * u.abs().sum())
        state = getattr(pl_module, "_state", {}).get("train")
        if state is not None:
            pl_module._state["train"] = remap_state(state, units)
        self.added += int(fresh.numel())
        self.deleted += H - kept
        self._log(trainer, rnn.hidden_size)

    def _log(self, trainer: L.Trainer, units: int) -> None:
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1)))
        if trainer.global_step % every:
            return
        for logger in trainer.loggers:
            logger.log_metrics({"structure/units/layer0": float(units), "structure/added": float(self.added),
                                "structure/deleted": float(self.deleted)}, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "gen": self.gen.get_state(), "added": self.added,
                "deleted": self.deleted}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rng.setstate(state_dict["rng"])
        self.gen.set_state(state_dict["gen"])
        self.added, self.deleted = state_dict["added"], state_dict["deleted"]
