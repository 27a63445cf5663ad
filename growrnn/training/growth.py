"""``StructureController``: the growth regime's Lightning callback (Miconi 2016).

After every ``every_n_steps`` optimizer steps it scores each layer's units, applies the controller
rule (:func:`~growrnn.growth.structure_step`) and performs the surgery on the layer, the readers
ahead of it, the optimizer state and the carried TBPTT state together
(:func:`~growrnn.growth.resize_layer`). Two structure signals, each with the defaults of
``ThomasMiconi/DiffRNN``:

- ``outgoing_l1`` (v3, the repository's HEAD): a unit's score is the normalised L1 norm of its
  outgoing weights (pair it with ``SequenceModel(l1=1e-4)``, the L1 decrement on those weights).
  New units get incoming weights N(0, ``init_std``) and outgoing weights whose score is half the
  threshold. Defaults P_del 0.05, P_add 0.01.
- ``multiplier`` (v2): a unit's score is ``|m_j|``, its learned multiplier on the outgoing path
  (needs ``SequenceModel(unit_multipliers=True)``). The multiplier's task gradient is scaled by
  ``multiplier_grad_scale`` and an L1 term ``multiplier_l1 * sign(m)`` is added; after each step
  multipliers below ``multiplier_floor`` are raised to it. New units get multiplier = threshold
  and all their weights N(0, ``init_std``). Defaults P_del 0.25, P_add 0.05.

The callback is stateful: its random generators and counters are in its ``state_dict``, so a run
resumed from a checkpoint makes the same decisions as the uninterrupted run.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import torch
from torch import Tensor

from growrnn.errors import ArgumentError
from growrnn.growth.rule import GrowthRule, outgoing_l1, reader_scales, structure_step
from growrnn.growth.stack import GrowableRNN, layers_of, outgoing_weights, resize_layer

__all__ = ["StructureController", "SIGNALS"]

log = logging.getLogger(__name__)

#: signal -> (P_del, P_add, new units' optimizer second moment) defaults of the paper's code for that signal
SIGNALS = {"outgoing_l1": (0.05, 0.01, 0.01), "multiplier": (0.25, 0.05, 0.0)}


class StructureController(L.Callback):
    """Args:
        signal: ``outgoing_l1`` (v3) or ``multiplier`` (v2).
        threshold, reserve, p_delete, p_add, p_spontaneous, max_units, min_units: the rule
            (:class:`~growrnn.growth.GrowthRule`); ``p_delete``/``p_add`` default per signal.
        init_std: std of a new unit's incoming weights (and, for ``multiplier``, outgoing ones).
        every_n_steps: apply the rule after every n-th optimizer step.
        seed: seeds the rule's and the new weights' random numbers.
        fresh_second_moment: start a new unit's optimizer second moment (RMSprop/Adam/Adagrad)
            here instead of at zero. Default: 0.01 for ``outgoing_l1`` under RMSprop (Miconi's
            v3 code, which keeps a new unit's first updates small), else 0 -- under Adam the
            tiny gradients of a new unit divided by sqrt(0.01) would keep it from ever rising
            above the threshold, so the layer could not grow.
        reference_rows: the row count the ``outgoing_l1`` score is normalised to (default: the
            decoder's outputs, as in the paper).
        multiplier_floor, multiplier_l1, multiplier_grad_scale: the v2 signal's M_min, L1
            coefficient per window (the v2 code adds 2e-5 per time step: 8e-4 over 40 steps) and
            task-gradient scale.
        histogram_every_n_steps: how often unit-score histograms go to TensorBoard.
    """

    def __init__(self, signal: str = "outgoing_l1", threshold: float = 0.05, reserve: int = 1,
                 p_delete: float | None = None, p_add: float | None = None, p_spontaneous: float = 1e-4,
                 max_units: int = 100, min_units: int = 1, init_std: float = 0.01, every_n_steps: int = 1,
                 seed: int = 0, fresh_second_moment: float | None = None, reference_rows: int | None = None,
                 multiplier_floor: float = 0.025, multiplier_l1: float = 8e-4, multiplier_grad_scale: float = 0.1,
                 histogram_every_n_steps: int = 1000) -> None:
        if signal not in SIGNALS:
            raise ArgumentError("signal", allowed=", ".join(SIGNALS), received=signal,
                                hint="outgoing_l1 is the paper's v3 (HEAD) signal, multiplier its v2")
        d_del, d_add, d_moment = SIGNALS[signal]
        self.signal = signal
        self.rule = GrowthRule(threshold, reserve, d_del if p_delete is None else p_delete,
                               d_add if p_add is None else p_add, p_spontaneous, max_units, min_units)
        if every_n_steps < 1:
            raise ArgumentError("every_n_steps", allowed="an int >= 1", received=every_n_steps,
                                hint="1 applies the rule after every optimizer step, as the paper")
        for name, value in (("init_std", init_std), ("fresh_second_moment", fresh_second_moment),
                            ("multiplier_l1", multiplier_l1), ("multiplier_grad_scale", multiplier_grad_scale)):
            if value is not None and not value >= 0:
                raise ArgumentError(name, allowed="a number >= 0", received=value)
        if reference_rows is not None and reference_rows < 1:
            raise ArgumentError("reference_rows", allowed="an int >= 1, or None for the decoder's outputs",
                                received=reference_rows)
        if signal == "multiplier" and not 0 <= multiplier_floor < threshold:
            raise ArgumentError("multiplier_floor", allowed=f"0 <= floor < threshold ({threshold})",
                                received=multiplier_floor, hint="the v2 code uses 0.025 with threshold 0.05")
        self.init_std, self.every_n_steps = init_std, every_n_steps
        self._fresh_given = fresh_second_moment  # None: chosen in setup, from the model's optimizer
        self.fresh_second_moment = d_moment if fresh_second_moment is None else fresh_second_moment
        self.reference_rows = reference_rows
        self.m_floor, self.m_l1, self.m_scale = multiplier_floor, multiplier_l1, multiplier_grad_scale
        self.histogram_every = histogram_every_n_steps
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.added: list[int] = []
        self.deleted: list[int] = []
        self._pending: list[tuple[int, list[int]]] = []  # (step, units per layer) not yet logged
        self._last_step = -1  # with gradient accumulation, act once per optimizer step

    # ------------------------------------------------------------------ checks and hooks
    def setup(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        layers = layers_of(pl_module.rnn)
        if dict(getattr(pl_module, "hparams", {})).get("tie_weights", False):
            raise ArgumentError("model.tie_weights", allowed="false with a StructureController", received=True,
                                hint="a tied decoder cannot change size with the last layer")
        multipliers = isinstance(pl_module.rnn, GrowableRNN) and pl_module.rnn.multipliers is not None
        if self.signal == "multiplier" and not multipliers:
            raise ArgumentError("model.unit_multipliers", allowed="true with signal: multiplier", received=False,
                                hint="set model.unit_multipliers: true")
        n = len(layers)
        self.added = self.added or [0] * n
        self.deleted = self.deleted or [0] * n
        hp = dict(getattr(pl_module, "hparams", {}))
        if self._fresh_given is None and "optimizer" in hp:
            self.fresh_second_moment = SIGNALS[self.signal][2] if hp["optimizer"] == "rmsprop" else 0.0
        if self.signal == "outgoing_l1" and not hp.get("l1"):
            log.warning("signal outgoing_l1 with model.l1 = 0: nothing pulls the units' scores down, so units "
                        "are added but rarely deleted. HINT: set model.l1 (the paper's code uses 1e-4)")
        if self.signal == "multiplier" and not hp.get("loss_sum_over_time", True):
            log.warning("signal multiplier with a loss averaged over time steps: multiplier_l1 is per window "
                        "and assumes a summed loss (the paper's), so it is about T times stronger here. "
                        "HINT: set model.loss_sum_over_time: true, or scale multiplier_l1 down")

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        n = len(layers_of(pl_module.rnn))
        layout = {"growth": {
            "units": ["Multiline", [f"structure/units/layer{k}" for k in range(n)]],
            "loss": ["Multiline", ["train/loss", "val/loss"]],
            "added and deleted": ["Multiline", ["structure/added", "structure/deleted"]]}}
        for logger in trainer.loggers:
            experiment: Any = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_custom_scalars"):
                experiment.add_custom_scalars(layout)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        if self.signal != "multiplier":
            return
        with torch.no_grad():
            for m in pl_module.rnn.multipliers:
                if m.grad is not None:  # scaled task gradient plus the L1 term, as the v2 code
                    m.grad.mul_(self.m_scale).add_(m.sign(), alpha=self.m_l1)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        rnn, decoder = pl_module.rnn, pl_module.decoder
        if self.signal == "multiplier":
            with torch.no_grad():
                for m in rnn.multipliers:
                    m.masked_fill_(m < self.m_floor, self.m_floor)
        step = trainer.global_step
        if step == self._last_step:  # a micro-batch of an accumulated step: the weights did not move
            return
        self._last_step = step
        if step % self.every_n_steps == 0:
            optimizer = trainer.optimizers[0] if trainer.optimizers else None
            for k in range(len(layers_of(rnn))):
                scores = self.scores(rnn, decoder, k)
                if self.histogram_every and step % self.histogram_every == 0:
                    self._histogram(trainer, k, scores, step)
                self._grow(pl_module, k, scores, optimizer)
        sizes = [layer.hidden_size for layer in layers_of(rnn)]
        self._pending.append((step, sizes))
        if self._logs_now(trainer):
            # the console's progress bar shows the sizes too (TensorBoard gets them from flush)
            for k, size in enumerate(sizes):
                pl_module.log("units" if len(sizes) == 1 else f"units{k}", float(size), prog_bar=True,
                              logger=False, on_step=True, on_epoch=False)
            self.flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.flush(trainer)

    # ------------------------------------------------------------------ the rule
    def scores(self, rnn: Any, decoder: torch.nn.Linear, k: int) -> Tensor:
        """Layer ``k``'s unit scores under this controller's signal (shape ``(H_k,)``)."""
        if self.signal == "multiplier":
            return rnn.multipliers[k].detach().abs()
        ahead, recurrent = outgoing_weights(rnn, decoder, k)
        rows = self.reference_rows or decoder.out_features
        return outgoing_l1(reader_scales(ahead, recurrent, rows))

    def _grow(self, pl_module: Any, k: int, scores: Tensor, optimizer: Any) -> None:
        rnn, decoder = pl_module.rnn, pl_module.decoder
        H = int(scores.numel())
        units = structure_step(scores, self.rule, self.rng)
        if units.size == H and int(units.index[-1]) == H - 1:  # kept in order, none added: unchanged
            return
        fresh = torch.nonzero(units.index < 0).flatten().tolist()
        kept = units.size - len(fresh)
        v2 = self.signal == "multiplier"
        state = getattr(pl_module, "_state", {}).get("train")
        state = resize_layer(rnn, decoder, k, units, optimizer, self.gen, self.init_std, self.fresh_second_moment,
                             state, fresh_multiplier=self.rule.threshold)
        if state is not None:
            pl_module._state["train"] = state
        if fresh:
            self._init_outgoing(rnn, decoder, k, fresh, kept, v2)
        self.added[k] += len(fresh)
        self.deleted[k] += H - kept

    @torch.no_grad()
    def _init_outgoing(self, rnn: Any, decoder: torch.nn.Linear, k: int, fresh: list[int], kept: int,
                       v2: bool) -> None:
        """New units' outgoing weights. v3: the readers ahead get a column of L1 norm giving half
        the threshold's score, the recurrent readers likewise (sized by the rows before the
        addition, as the v3 code); v2: N(0, ``init_std``)."""
        ahead, recurrent = outgoing_weights(rnn, decoder, k)
        rows_ref = self.reference_rows or decoder.out_features
        thr = self.rule.threshold
        r_ahead = sum(int(w.shape[0]) for w in ahead)
        r_rec = sum(int(w.shape[0]) for w in recurrent)
        per_unit = r_rec // rnn_size(rnn, k)  # recurrent rows per unit (gates reading hidden values)
        for j in fresh:
            v = torch.randn(r_ahead, generator=self.gen)
            v = v * self.init_std if v2 else 0.5 * thr * v / (1e-8 + v.abs().sum()) * (r_ahead / rows_ref)
            _write_column(ahead, j, v)
            u = torch.randn(r_rec, generator=self.gen)
            u = u * self.init_std if v2 else 0.5 * (kept * per_unit) * thr * u / (1e-8 + rows_ref * u.abs().sum())
            _write_column(recurrent, j, u)

    # ------------------------------------------------------------------ logging
    def _logs_now(self, trainer: L.Trainer) -> bool:
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        return (trainer.global_step + 1) % every == 0

    def flush(self, trainer: L.Trainer) -> None:
        """Write the buffered unit counts (one point per step) to every logger."""
        if not self._pending:
            return
        for logger in trainer.loggers:
            for step, sizes in self._pending:
                logger.log_metrics({f"structure/units/layer{k}": float(h) for k, h in enumerate(sizes)}, step=step)
            logger.log_metrics({"structure/added": float(sum(self.added)),
                                "structure/deleted": float(sum(self.deleted))}, step=self._pending[-1][0])
        self._pending = []

    def _histogram(self, trainer: L.Trainer, k: int, scores: Tensor, step: int) -> None:
        for logger in trainer.loggers:
            experiment: Any = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_histogram"):
                experiment.add_histogram(f"structure/scores/layer{k}", scores.float().cpu(), step)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "gen": self.gen.get_state(), "added": list(self.added),
                "deleted": list(self.deleted), "signal": self.signal, "pending": list(self._pending),
                "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("signal", self.signal) != self.signal:
            raise ArgumentError("signal", allowed=f"the checkpoint's signal ({state_dict['signal']})",
                                received=self.signal, hint="resume with the controller the run was trained with")
        self._pending = [(int(a), list(b)) for a, b in state_dict.get("pending", [])]
        self._last_step = int(state_dict.get("last_step", -1))
        self.rng.setstate(state_dict["rng"])
        self.gen.set_state(state_dict["gen"])
        added, deleted = state_dict["added"], state_dict["deleted"]
        self.added = list(added) if isinstance(added, list) else [added]
        self.deleted = list(deleted) if isinstance(deleted, list) else [deleted]


def rnn_size(rnn: Any, k: int) -> int:
    return int(layers_of(rnn)[k].hidden_size)


def _write_column(weights: list[Tensor], j: int, values: Tensor) -> None:
    """Write ``values`` down column ``j`` of the row-stacked ``weights``."""
    start = 0
    for w in weights:
        n = int(w.shape[0])
        w[:, j] = values[start:start + n].to(w)
        start += n
