"""Structure signals: what decides that a unit is worth keeping.

A signal is one object that owns everything a structure decision needs for one stack: its per-step
weight update (an L1 decrement, a proximal shrink, a gate's cost), its unit scores (for histograms
and Miconi's rule) and, for the settling signals, which units are *dead*. The Lightning callback
:class:`growrnn.training.growth.StructureController` calls it; models know nothing of signals.

Three families:

- **Miconi's** (``outgoing_l1`` v3, ``multiplier`` v2), paper-faithful for the reproduction: a
  score against a threshold and a probabilistic add/delete rule (:func:`~growrnn.growth.structure_step`).
- **Settling** (``ablation``, ``group_lasso``, ``l0_gate``): a unit is *dead* when it is measured
  to be worth less than the bar (``ablation``), when its group of weights is exactly zero
  (``group_lasso``) or when its gate is closed (``l0_gate``); dead units and units on trial are
  spare, dead ones are deleted, and units are added while too few are spare
  (:func:`~growrnn.growth.need_step`). The width is where the task's worth of a unit and the bar
  balance, not a function of ``p_add`` x steps.
- **Paired** (``paired``, the controller's default): no unit is scored dead; the width is chosen by paired trials on
  validation data (the network with units added against a copy with as many folded away), run by
  :mod:`growrnn.training.paired`; this class holds its options and the units' last measured worth.

The bar ``lam`` of the settling signals has one meaning: **the training loss a unit must be
worth**. For ``ablation`` that is literal: the loss rises by at least ``lam`` when the unit's
outgoing weights are zeroed. For ``group_lasso`` a group stays at zero exactly when the (running
mean of the) loss gradient on it is at most ``lam`` per weight (RMS), the group lasso's optimality
condition ``||grad_g L|| <= lam * sqrt(|g|)``. For ``l0_gate`` an open unit costs ``lam`` (in loss
units) per step, so a unit survives when closing it would raise the loss by more than ``lam``. With
``relative=True`` (the default) ``lam`` is a fraction of the running loss, which makes it
independent of how the loss is normalised (summed over time or averaged, nats or bits).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from growrnn.errors import ArgumentError, check_choice, check_int, check_number, is_number
from growrnn.growth.gates import gate_closed_below, hard_concrete, open_probability
from growrnn.growth.rule import outgoing_l1, reader_scales
from growrnn.growth.stack import (
    GrowableRNN,
    ReaderBias,
    layers_of,
    outgoing_weights,
    reader_biases,
    reads_output,
    unit_rows,
)
from growrnn.growth.surgery import UnitMap

__all__ = ["Signal", "OutgoingL1", "Multiplier", "GroupLasso", "L0Gate", "Ablation", "Paired", "SIGNALS", "make_signal",
           "l1_decrement", "UpdateClip", "HeadStart", "fresh_step_ratios", "ADAM_BETAS", "Member",
           "unit_members", "reading_weights", "unit_worth", "weakest_units", "fold_units"]

# ---------------------------------------------------------------------------------------- tweaks
def l1_decrement(weights: Sequence[Tensor], l1: float) -> None:
    """Miconi's ``COEFFWPEN``: move every weight by ``-l1 * sign(w)`` (foreach: a few kernel calls)."""
    if l1 and weights:
        with torch.no_grad():
            torch._foreach_sub_(list(weights), torch._foreach_mul(torch._foreach_sign(list(weights)), l1))


class UpdateClip:
    """Miconi's ``MAXDW``: clamp every parameter's change per optimizer step to ``±limit``.
    ``before(params)`` right before the step, ``after()`` right after it."""

    def __init__(self, limit: float) -> None:
        if not is_number(limit) or not limit > 0:
            raise ArgumentError("max_update", allowed="a number > 0", received=limit,
                                hint="Miconi's code clips updates at 0.01")
        self.limit = float(limit)
        self._params: list[Tensor] = []
        self._before: list[Tensor] = []

    def before(self, params: Sequence[Tensor]) -> None:
        self._params = list(params)
        self._before = torch._foreach_mul(self._params, 1.0) if self._params else []

    def after(self) -> None:
        if not self._params:
            return
        with torch.no_grad():
            change = torch._foreach_sub(self._params, self._before)
            torch._foreach_clamp_min_(change, -self.limit)
            torch._foreach_clamp_max_(change, self.limit)
            torch._foreach_add_(self._before, change)
            torch._foreach_copy_(self._params, self._before)
        self._params, self._before = [], []


#: Adam's default decay rates: the head start a new unit's entries get from a zero optimizer state
#: under them is the one :class:`HeadStart` gives every optimizer
ADAM_BETAS = (0.9, 0.999)
#: the optimizer-state keys that count an entry's steps since its state was zeroed (the low and high
#: byte, uint8: exact under any float type a checkpoint's load casts them to), and the most they hold
FRESH_STEPS = ("fresh_steps", "fresh_steps_high")
MAX_FRESH_STEPS = 65535


def fresh_step_ratios(optimizer: type[torch.optim.Optimizer], group: dict[str, Any], n: int) -> Tensor | None:
    """Under a constant gradient, the step an entry whose optimizer state was zeroed takes ``k``
    steps later over the step of an entry whose state is long settled (its own head start), for
    ``k`` = 1..``n`` (float64, shape ``(n,)``), under the ``optimizer`` class with the parameter
    ``group``'s decay rates (``eps`` and weight decay aside). Adam and AdamW (the step count is the
    tensor's, so a fresh entry's moments are not corrected for their zero start):
    ``(1 - b1^k) / sqrt(1 - b2^k)``; RMSprop: ``1 / sqrt(1 - alpha^k)`` (through its momentum
    where set); SGD: ``1 - m^k`` with momentum ``m`` (Nesterov's: its own), 1 without. None where
    it is not known: Adagrad (a settled entry's steps shrink for ever), a centered RMSprop (a
    constant gradient's variance is zero), any other class."""
    k = torch.arange(1, n + 1, dtype=torch.float64)
    if issubclass(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        b1, b2 = (float(b) for b in group["betas"])
        return (1 - b1 ** k) / torch.sqrt(1 - b2 ** k)
    if issubclass(optimizer, torch.optim.RMSprop):
        if group.get("centered"):
            return None
        ratios = 1 / torch.sqrt(1 - float(group["alpha"]) ** k)
        m = float(group.get("momentum", 0.0) or 0.0)
        if m:  # the buffer sums the steps with weights m^(k-i); a settled one holds 1 / (1 - m)
            buffer, out = 0.0, []
            for r in ratios.tolist():
                buffer = m * buffer + r
                out.append(buffer * (1 - m))
            ratios = torch.tensor(out, dtype=torch.float64)
        return ratios
    if issubclass(optimizer, torch.optim.SGD):
        m, dampening = float(group.get("momentum", 0.0) or 0.0), float(group.get("dampening", 0.0) or 0.0)
        if not m:
            return torch.ones(n, dtype=torch.float64)
        fresh, settled = (1 - dampening) * (1 - m ** k) / (1 - m), (1 - dampening) / (1 - m)
        if group.get("nesterov"):
            return (1 + m * fresh) / (1 + m * settled)
        return fresh / settled
    return None


class HeadStart:
    """A new unit's **head start**, the same under every optimizer whose own is known: the step an
    entry takes ``k`` steps after its optimizer state was zeroed (a unit added, a column of a
    reader grown) is multiplied by ``target(k) / own(k)``, so that it travels, against an entry
    whose state is settled, as it would under Adam with its default rates (``target``:
    :func:`fresh_step_ratios` of Adam with :data:`ADAM_BETAS`; ``own``: ``optimizer``'s, per
    parameter group, from its class and rates when the head start is made: a scheduler that cycles
    momentum or betas later does not change them). Under Adam with ``(0.9, 0.999)`` nothing moves;
    under RMSprop (0.99) a new entry's first steps are damped (its own first step is 10 times a
    settled one's, Adam's 3.2 times) and later ones lengthened (RMSprop's mean square forgets the
    zero start in ~100 steps, Adam's in ~1,000); under SGD, which has none of its own (momentum's
    zero buffer even slows a fresh entry), it would give Adam's. The target is Adam's once its step
    count is past ~1,000 steps (Adam's own bias correction gives a fresh entry less before that).
    The whole change of a young entry is scaled, a weight decay's part with it. ``before(optimizer)``
    right before a step, ``after(optimizer)`` right after it, with ``optimizer`` this one or a copy
    of it (the same groups).

    Each entry's steps since its state was zeroed are counted in the optimizer's own state
    (:data:`FRESH_STEPS`, two bytes an entry), up to the last step whose factor is further than
    ``tolerance`` from 1 (about 6,200 steps under RMSprop: the entry is then settled): the unit
    surgery moves them with the rest of the state and starts a fresh entry's at zero, copies and
    checkpoints carry them, and an entry whose state existed before they were counted (the
    network's at its first step) counts as settled. A step the optimizer skips (a loss scaler's,
    on gradients that are not finite) still counts. A parameter with no young entry costs nothing
    (its counts are read again only where its state's tensors were replaced, as a resize and a
    load replace them; a change made to them in place is not seen); a young one a few tensor
    operations a step. A deep copy (a trial's copy of the model) starts with no counts read."""

    def __init__(self, optimizer: torch.optim.Optimizer, target: tuple[float, float] = ADAM_BETAS,
                 tolerance: float = 1e-3) -> None:
        optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer's
        self.target, self.tolerance = target, tolerance
        wanted = fresh_step_ratios(torch.optim.Adam, {"betas": target}, MAX_FRESH_STEPS)
        assert wanted is not None
        #: per parameter group: the factor of a young entry's steps 1, 2, ... (float32; empty: none
        #: further than ``tolerance`` from 1), None where the optimizer's own head start is not known
        self.tables: list[Tensor | None] = []
        for g in optimizer.param_groups:
            own = fresh_step_ratios(type(optimizer), g, MAX_FRESH_STEPS)
            if own is None:
                self.tables.append(None)
                continue
            factors = wanted / own
            far = torch.nonzero((factors - 1).abs() > tolerance).flatten()
            self.tables.append(factors[: int(far[-1]) + 1 if far.numel() else 0].float())
        self._shifted: dict[tuple[Any, ...], Tensor] = {}  # per group, device and type: the factors less one
        self._counts: dict[int, _Counts] = {}  # per parameter (its id): the counts as last read or written
        self._before: list[tuple[Tensor, Tensor]] = []  # the young parameters and their values before the step

    @property
    def known(self) -> bool:
        """Whether every parameter group's own head start is known (:func:`fresh_step_ratios`)."""
        return all(t is not None for t in self.tables)

    @property
    def moves(self) -> bool:
        """Whether it changes any step (not under Adam's default rates)."""
        return any(t is not None and t.numel() > 0 for t in self.tables)

    def __deepcopy__(self, memo: dict[int, Any]) -> HeadStart:
        twin = copy.copy(self)  # the tables shared (never written), no counts
        twin._shifted, twin._counts, twin._before = dict(self._shifted), {}, []
        return twin

    def forget(self) -> None:
        """Drop the counts read (they hold the optimizer's state tensors): at the end of a fit."""
        self._counts, self._before = {}, []

    def _groups(self, optimizer: torch.optim.Optimizer) -> list[tuple[int, dict[str, Any], Tensor]]:
        return [(i, g, t) for i, (g, t) in enumerate(zip(optimizer.param_groups, self.tables, strict=False))
                if t is not None and t.numel()]

    def before(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer = getattr(optimizer, "optimizer", optimizer)
        young = []
        for _, g, table in self._groups(optimizer):
            for p in g["params"]:
                counts = self._read(optimizer.state.get(p), p, table)
                if counts is None or counts.youngest < table.numel():
                    young.append(p)
        self._before = list(zip(young, torch._foreach_mul(young, 1.0), strict=True)) if young else []

    @torch.no_grad()
    def after(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer = getattr(optimizer, "optimizer", optimizer)
        befores = {id(p): b for p, b in self._before}
        self._before = []
        moved, factors = [], []
        for i, g, table in self._groups(optimizer) if befores else []:
            for p in g["params"]:
                if id(p) not in befores or p.grad is None:  # not stepped (an optimizer skips it)
                    continue
                state = optimizer.state.get(p)
                if not state:  # no state of its own yet: a first step skipped (a loss scaler's) -- the
                    if not isinstance(optimizer, torch.optim.SGD):  # optimizer sets its state up only
                        continue  # when its state is empty -- or SGD's, which keeps none without momentum
                    state = optimizer.state[p]
                counts = self._read(state, p, table)
                if counts is None:  # no step before this one: its entries count from now, settled
                    self._counts[id(p)] = _Counts.written(
                        state, torch.full(p.shape, table.numel(), dtype=torch.int32, device=p.device))
                    continue
                if counts.steps is None:  # settled since the step before
                    continue
                moved.append((p, befores[id(p)]))
                factors.append(self._less_one(i, table, p)[counts.steps])
                counts.advance(table.numel())
        if moved:  # p += (factor - 1) (p - before): an entry whose factor is 1 stays as the optimizer left it
            params = [p for p, _ in moved]
            change = torch._foreach_sub(params, [b for _, b in moved])
            torch._foreach_mul_(change, factors)
            torch._foreach_add_(params, change)

    def _less_one(self, group: int, table: Tensor, param: Tensor) -> Tensor:
        """``table`` - 1 and a last 0 (a settled entry's), on ``param``'s device and in its type."""
        key = (group, param.device, param.dtype)
        if key not in self._shifted:
            self._shifted[key] = torch.cat([table - 1, table.new_zeros(1)]).to(param.device, param.dtype)
        return self._shifted[key]

    def _read(self, state: dict[str, Any] | None, param: Tensor, table: Tensor) -> _Counts | None:
        """``param``'s counts (None: not counted yet), read from its ``state`` again where a resize
        or a load replaced them since they were last read or written."""
        if not state:
            return None
        counts = self._counts.get(id(param))
        if counts is not None and counts.current(state):
            return counts
        steps = fresh_steps(state, param)
        if steps is None:
            self._counts.pop(id(param), None)
            return None
        counts = self._counts[id(param)] = _Counts.written(state, steps.clamp_(max=table.numel()).int())
        return counts


@dataclass
class _Counts:
    """One parameter's counts: the state tensors that hold them (two bytes an entry), the same
    counts as one int32 tensor (None once no entry is young) and the least of them."""

    low: Tensor
    high: Tensor
    steps: Tensor | None
    youngest: int

    @classmethod
    def written(cls, state: dict[str, Any], steps: Tensor) -> _Counts:
        """``steps`` written into ``state`` (as two bytes an entry; uint8 tensors already there are
        written in place, others -- a load's float casts -- replaced)."""
        low = state.get(FRESH_STEPS[0])
        if low is None or low.dtype != torch.uint8 or low.shape != steps.shape:
            state[FRESH_STEPS[0]], state[FRESH_STEPS[1]] = steps.to(torch.uint8), (steps >> 8).to(torch.uint8)
        else:
            state[FRESH_STEPS[0]].copy_(steps)
            state[FRESH_STEPS[1]].copy_(steps >> 8)
        return cls(state[FRESH_STEPS[0]], state[FRESH_STEPS[1]], steps,
                   int(steps.min()) if steps.numel() else MAX_FRESH_STEPS)

    def current(self, state: dict[str, Any]) -> bool:
        """Whether ``state`` still holds the tensors these counts were written to."""
        return state.get(FRESH_STEPS[0]) is self.low and state.get(FRESH_STEPS[1]) is self.high

    def advance(self, length: int) -> None:
        assert self.steps is not None
        self.steps.add_(1).clamp_(max=length)
        self.low.copy_(self.steps)  # the low byte (a cast to uint8 keeps it)
        self.high.copy_(self.steps >> 8)
        self.youngest = min(self.youngest + 1, length)
        if self.youngest >= length:  # settled: the counts stay as written
            self.steps = None


def fresh_steps(state: dict[str, Any], param: Tensor) -> Tensor | None:
    """Each entry's steps since its optimizer ``state`` was zeroed (:data:`FRESH_STEPS`; long,
    shaped like ``param``), or None where they are not counted."""
    low, high = state.get(FRESH_STEPS[0]), state.get(FRESH_STEPS[1])
    if low is None or high is None or low.shape != param.shape:
        return None
    # a checkpoint's load casts them to the parameter's float type (every byte exact in it)
    return high.round().long() * 256 + low.round().long() if low.is_floating_point() else \
        high.long() * 256 + low.long()


# ---------------------------------------------------------------------------------------- signals
@dataclass
class Signal:
    """The interface (see the module docstring). ``settles``: the signal marks dead units and the
    need rule applies; otherwise Miconi's probabilistic rule on :meth:`scores` does."""

    name: ClassVar[str] = ""
    settles: ClassVar[bool] = False
    #: the signal measures the model's loss (:meth:`measure` gets a probe)
    needs_probe: ClassVar[bool] = False
    #: the controller's defaults with this signal (``dead_steps``, ``reserve_fraction``,
    #: ``fresh_second_moment``), where they differ from the controller's own
    controller_defaults: ClassVar[dict[str, Any]] = {}
    #: P_del, P_add, new units' optimizer second moment under RMSprop (Miconi's rule only)
    rule_defaults: ClassVar[tuple[float, float, float]] = (0.0, 0.0, 0.0)

    @property
    def reads_loss(self) -> bool:
        """Whether :meth:`after_step` reads the step's training loss (else it gets None, and the
        controller reads no float from the device for it)."""
        return False

    def check(self, rnn: nn.Module, hparams: dict[str, Any]) -> None:
        """Refuse (or warn about) a model this signal cannot work with."""

    def before_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any) -> None:
        """Edit gradients right before the optimizer step."""

    def after_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any, loss: float | None) -> None:
        """Update weights right after the optimizer step (``loss``: the step's training loss)."""

    def scores(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """Layer ``k``'s unit scores (shape ``(H_k,)``); larger = more alive."""
        raise NotImplementedError

    def dead(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """Layer ``k``'s dead units (bool, shape ``(H_k,)``); settling signals only."""
        raise NotImplementedError

    def spare(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor | None:
        """Layer ``k``'s spare units (bool ``(H_k,)``): dead or still on trial; None: the dead ones."""
        return None

    def measure(self, rnn: nn.Module, decoder: nn.Linear, probe: Callable[[], float], step: int,
                mask: Tensor | None = None) -> None:
        """After the step's weight update: measure what needs the model's loss (``probe()``: the
        current batch's loss with the weights as they are now, evaluation mode, no gradient;
        ``mask``: the batch's valid steps, bool ``(B, T)``, where the task pads its sequences)."""

    def resized(self, k: int, units: UnitMap) -> None:
        """Layer ``k`` was resized as ``units`` says: move the signal's per-unit state along."""

    def fresh_gate(self, dtype: torch.dtype = torch.float32) -> float:
        """The multiplier/gate value a new unit starts with (held in ``dtype``)."""
        return 0.0

    def across_processes(self, t: Tensor, weight: float = 1.0) -> Tensor:
        """``t`` averaged over the processes of a data-parallel run (``t`` itself in one process),
        each process's weighted by ``weight`` (what its ``t`` is a mean over: the steps of its rows
        a layer's output moments were read on; equal by default). A signal that measures
        something on its batch (not on the weights, which every process holds alike) passes it
        through here, so every process uses the global batch's value. The controller sets
        ``process_mean`` (:meth:`growrnn.training.distributed.Replicas.weighted_mean`)."""
        mean = getattr(self, "process_mean", None)
        return t if mean is None else mean(t, weight)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class OutgoingL1(Signal):
    """Miconi's v3 signal: a unit's score is the normalised L1 norm of its outgoing weights
    (:func:`~growrnn.growth.outgoing_l1`), which the L1 decrement ``l1`` pulls down after every
    step (``model.l1`` is the same decrement for fixed-size models; set one of them)."""

    reference_rows: int | None = None
    l1: float = 0.0
    name: ClassVar[str] = "outgoing_l1"
    rule_defaults: ClassVar[tuple[float, float, float]] = (0.05, 0.01, 0.01)

    def check(self, rnn: nn.Module, hparams: dict[str, Any]) -> None:
        if hparams.get("l1") and self.l1:
            raise ArgumentError("l1", allowed="set on the controller or on the model, not both",
                                received=f"controller {self.l1}, model {hparams['l1']}",
                                hint="drop model.l1 and keep the controller's l1")

    def after_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any, loss: float | None) -> None:
        if self.l1:
            l1_decrement(reading_weights(rnn, decoder), self.l1)

    def scores(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        ahead, recurrent = outgoing_weights(rnn, decoder, k)
        return outgoing_l1(reader_scales(ahead, recurrent, self.reference_rows or decoder.out_features))


@dataclass
class Multiplier(Signal):
    """Miconi's v2 signal: a unit's score is ``|m_j|``, its learned multiplier on the outgoing path;
    the multiplier's task gradient is scaled by ``grad_scale`` plus ``l1 * sign(m)``, and after each
    step multipliers below ``floor`` are raised to it."""

    threshold: float = 0.05
    floor: float = 0.025
    l1: float = 8e-4
    grad_scale: float = 0.1
    name: ClassVar[str] = "multiplier"
    rule_defaults: ClassVar[tuple[float, float, float]] = (0.25, 0.05, 0.0)

    def check(self, rnn: nn.Module, hparams: dict[str, Any]) -> None:
        # (model.unit_multipliers is checked by the controller, from the model's options)
        if not 0 <= self.floor < self.threshold:
            raise ArgumentError("multiplier_floor", allowed=f"0 <= floor < threshold ({self.threshold})",
                                received=self.floor, hint="the v2 code uses 0.025 with threshold 0.05")

    def before_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any) -> None:
        with torch.no_grad():
            for m in rnn.multipliers:  # type: ignore[union-attr]
                if m.grad is not None:
                    m.grad.mul_(self.grad_scale).add_(m.sign(), alpha=self.l1)

    def after_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any, loss: float | None) -> None:
        with torch.no_grad():
            for m in rnn.multipliers:  # type: ignore[union-attr]
                m.masked_fill_(m < self.floor, self.floor)

    def scores(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        return rnn.multipliers[k].detach().abs()  # type: ignore[index]

    def fresh_gate(self, dtype: torch.dtype = torch.float32) -> float:
        return self.threshold


class _LossScale:
    """The running training loss (an exponential mean), for penalties relative to it."""

    def __init__(self, horizon: int = 100) -> None:
        self.decay = 1.0 - 1.0 / horizon
        self.mean: float | None = None

    def update(self, loss: float | None) -> float | None:
        if loss is not None and math.isfinite(loss):
            self.mean = loss if self.mean is None else self.decay * self.mean + (1 - self.decay) * loss
        return self.mean


@dataclass
class GroupLasso(Signal):
    """Group sparsity by a proximal step after every optimizer step (exact zeros under any
    optimizer). Each unit's group ``g`` of weights is shrunk by the group-lasso proximal operator

        W_g <- W_g * max(0, 1 - eta * lam * sqrt(|g|) / ||D_g * W_g||)

    with ``eta`` the step's learning rate (schedulers included) and ``D = 1`` (``preconditioned``
    false: the plain proximal gradient step, right for SGD) or ``D = sqrt(v_hat) + eps`` the
    optimizer's own preconditioner (Adam, RMSprop, Adagrad; after Deleu & Bengio 2021): the
    proximal step in the metric the optimizer steps in, whose zero set is exact — a group is set to
    zero when ``||eta * step_g||`` in that metric is below ``eta * lam * sqrt(|g|)``, i.e. when the
    running mean of its loss gradient is at most ``lam`` per weight — and whose shrink is the
    closed form for a group-constant ``D`` (first order otherwise).

    ``group``: ``outgoing`` (Miconi's: the columns of every weight that reads the unit) or
    ``units`` (ISS, Wen et al. 2018: those plus the unit's rows in every gate and state, its
    biases and diagonal scales). Under ``units`` a unit whose outgoing weights are zero (a new
    unit, or one the shrink zeroed) keeps its incoming weights until its outgoing part comes alive:
    they are the random features it is tried with. A unit is **dead** when its outgoing weights
    are exactly zero.

    ``relative``: ``lam`` is a fraction of the running training loss (scale-free; the default
    recipe), else in loss units. ``warmup_steps``: the penalty ramps up linearly over these first
    steps, so that a large layer's units learn something before they are judged.
    """

    lam: float = 3e-5
    group: str = "outgoing"
    preconditioned: bool | None = None
    relative: bool = True
    warmup_steps: int = 0
    name: ClassVar[str] = "group_lasso"
    settles: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_number("lam", self.lam,
                     hint="the loss a unit must be worth per weight; see docs/growth.md")
        check_int("warmup_steps", self.warmup_steps, 0)
        self.steps = 0
        check_choice("group", self.group, ("outgoing", "units"),
                     hint="outgoing: Miconi's group; units: ISS's (outgoing and incoming)")
        self._loss = _LossScale()

    def check(self, rnn: nn.Module, hparams: dict[str, Any]) -> None:
        if self.preconditioned is None:
            self.preconditioned = hparams.get("optimizer", "adam") != "sgd"

    @property
    def reads_loss(self) -> bool:
        return self.relative

    def strength(self, loss: float | None) -> float:
        """``lam`` in loss units for this step (one call per step)."""
        self.steps += 1
        ramp = min(1.0, self.steps / self.warmup_steps) if self.warmup_steps else 1.0
        if not self.relative:
            return self.lam * ramp
        mean = self._loss.update(loss)
        return 0.0 if mean is None else self.lam * abs(mean) * ramp

    @torch.no_grad()
    def after_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any, loss: float | None) -> None:
        lam = self.strength(loss)
        if lam <= 0:
            return
        for k in range(len(layers_of(rnn))):
            out_m, in_m = unit_members(rnn, decoder, k)
            eta = _lr_of(optimizer, out_m[0].param)
            out_sq = _group_sq(out_m, optimizer, self.preconditioned)
            out_factor = _shrink(out_sq, eta * lam * math.sqrt(_size(out_m)))
            if self.group == "outgoing":
                _scale(out_m, out_factor)
                continue
            factor = _shrink(out_sq + _group_sq(in_m, optimizer, self.preconditioned),
                             eta * lam * math.sqrt(_size(out_m) + _size(in_m)))
            # a unit whose outgoing part is zero is tried with its incoming (random) weights kept
            probe = _group_sq(out_m, None, False) == 0
            _scale(out_m, torch.where(probe, out_factor, factor))
            _scale(in_m, torch.where(probe, torch.ones_like(factor), factor))

    def scores(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """The RMS of each unit's outgoing weights."""
        out_m, _ = unit_members(rnn, decoder, k)
        return (_group_sq(out_m, None, False) / _size(out_m)).sqrt()

    def dead(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        out_m, _ = unit_members(rnn, decoder, k)
        return _group_sq(out_m, None, False) == 0

    def state_dict(self) -> dict[str, Any]:
        return {"loss_mean": self._loss.mean, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loss.mean = state.get("loss_mean")
        self.steps = int(state.get("steps", 0))


@dataclass
class L0Gate(Signal):
    """A hard-concrete gate per unit on its output (Louizos et al. 2018): in training the unit's
    output is multiplied by a sample ``z_j`` of a stretched, clipped concrete variable with
    location ``log_alpha_j``; in evaluation by its deterministic value, exactly 0 for a closed gate.
    An open gate costs ``lam`` (times the running training loss when ``relative``) per step: the
    gradient of ``lam * P(z_j != 0)`` is added to ``log_alpha``'s gradient before every step. A
    unit is **dead** when its gate is closed. New units start at the closed edge with zero outgoing
    weights. Needs ``model.unit_gates: true``; :func:`~growrnn.growth.fold_gates` folds the gates
    into the outgoing weights (done at deletion and by ``export``)."""

    lam: float = 0.002
    relative: bool = True
    name: ClassVar[str] = "l0_gate"
    settles: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_number("lam", self.lam,
                     hint="the loss an open unit costs per step; see docs/growth.md")
        self._loss = _LossScale()
        self._last_loss: float | None = None

    def before_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any) -> None:
        mean = self._loss.mean
        lam = self.lam if not self.relative else 0.0 if mean is None else self.lam * abs(mean)
        if not lam:
            return
        for log_alpha in rnn.gates:  # type: ignore[union-attr]
            with torch.enable_grad():
                a = log_alpha.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(open_probability(a).sum() * lam, a)
            if log_alpha.grad is None:
                log_alpha.grad = g
            else:
                log_alpha.grad.add_(g)

    @property
    def reads_loss(self) -> bool:
        return self.relative

    def after_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any, loss: float | None) -> None:
        self._loss.update(loss)

    def scores(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """The gates' deterministic values."""
        return hard_concrete(rnn.gates[k].detach(), sample=False)  # type: ignore[index]

    def dead(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        # compared in float32: a low-precision gate at the threshold rounded up is a little open
        return rnn.gates[k].detach().float() <= gate_closed_below()  # type: ignore[index]

    def fresh_gate(self, dtype: torch.dtype = torch.float32) -> float:
        return gate_closed_below(dtype)  # closed in the gate's own dtype

    def state_dict(self) -> dict[str, Any]:
        return {"loss_mean": self._loss.mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loss.mean = state.get("loss_mean")


@dataclass
class Ablation(Signal):
    """A unit is worth what the loss rises by without it: every unit is tested by **ablation** —
    the current training batch's loss (evaluation mode, no gradient) with the unit removed, minus
    the loss with it — and kept while that worth is at least ``lam`` (a fraction of the loss, when
    ``relative``). The one bar holds for every unit, old or new, which is what makes the width an
    equilibrium rather than a record of where training started: a layer grows while new units earn
    ``lam`` and shrinks while old ones do not. No penalty touches the weights, so the units that
    stay train as in a fixed layer.

    How a unit is removed (``baseline``): ``regress`` (default) replaces its output by its
    least-squares estimate from the other units' outputs and a constant, measured on the batch
    (its reading weights' column is moved onto the other units' columns and the readers' biases),
    so a unit is worth only what the others cannot stand in for — co-adapted, redundant units in
    a wide layer are not each credited with what they share; ``mean`` keeps only its mean output
    (as a bias); ``zero`` zeroes its reading weights. A unit measured below the bar is **dead**:
    the removal that was measured is kept (its reading weights are zero afterwards, so deleting it
    costs what was measured) and the units measured after it in the round are measured without it.

    New units start with zero outgoing weights (the function is kept) and are on trial (spare)
    for ``trial_steps`` steps (counted at the first step's learning rate: a unit added after a
    scheduler halved the rate is tried twice as many steps); then they are measured first. Units
    are measured round-robin at ``rate`` units per step on average, in rounds every
    ``check_every`` steps (each round costs one forward for the base loss and one per unit
    measured: about ``rate / 3`` training steps per step); a unit's worth is a running mean over
    its measurements (the newest weighted ``memory``). Units below the bar are spare, but none is
    removed during the first ``warmup_steps`` steps, nor in a layer not yet measured to be worth
    ``layer_worth`` of the loss beyond its units' mean outputs (0: no such wait). With ``retrial``
    (>= 1), an old unit (past twice its trial) measured below ``retrial`` times the bar is removed
    as a dead one is, and put back on trial with no outgoing weights: judged again after the
    others have had a trial's steps to adapt to its absence, as a new unit is (its optimizer
    state is kept). With ``held_out``, ``regress`` fits each stand-in on the earlier measured
    batches (running moments) rather than on the batch it is judged on. ``bound`` (default 1; None:
    none) bounds each ``regress`` coefficient to ``[-bound, bound]`` (the constant is free): a unit
    stands in for another at most at its own scale. Fitted on one batch, a regression on a few units
    can match the batch with large coefficients that do not hold on the next (on Miconi's tasks,
    coefficients up to 12; a removal moved weights that large onto the others and training
    diverged); bounded, a removal stays a small move. Works for any cell and stack.
    """

    lam: float = 2e-4
    relative: bool = True
    baseline: str = "regress"
    trial_steps: int = 100
    rate: float = 0.25
    check_every: int = 20
    memory: float = 0.5
    warmup_steps: int = 0
    layer_worth: float = 0.0
    retrial: float = 0.0
    held_out: bool = False
    bound: float | None = 1.0
    name: ClassVar[str] = "ablation"
    settles: ClassVar[bool] = True
    needs_probe: ClassVar[bool] = True
    #: delete a unit once it is measured below the bar; keep a quarter of the layer on trial (a layer
    #: started small grows by up to 25 % per trial); new units' Adam/RMSprop second moments start
    #: at zero, so a unit on trial takes full-size steps (no penalty holds it at zero)
    controller_defaults: ClassVar[dict[str, Any]] = {"dead_steps": 1, "reserve_fraction": 0.25,
                                                     "fresh_second_moment": 0.0}

    def __post_init__(self) -> None:
        check_number("lam", self.lam,
                     hint="the loss a unit must be worth, as a fraction of the loss; see docs/growth.md")
        check_int("trial_steps", self.trial_steps, 1)
        check_int("ablation_every", self.check_every, 1, hint="the steps between measurement rounds; 20 is the default")
        check_int("warmup_steps", self.warmup_steps, 0)
        if not is_number(self.layer_worth) or not self.layer_worth >= 0:
            raise ArgumentError("ablation_layer_worth", allowed="a number >= 0 (0: remove from the first measurement)",
                                received=self.layer_worth,
                                hint="a layer's units are removed once the layer is worth this fraction of the loss "
                                     "beyond its units' mean outputs; 0.05 waits until it has learned more than "
                                     "constants")
        if not (self.retrial == 0 or self.retrial >= 1):
            raise ArgumentError("ablation_retrial", allowed="0 (off) or a number >= 1", received=self.retrial,
                                hint="an old unit measured below retrial x the bar is removed and tried again as "
                                     "a new unit would be; 4 retries units worth less than four times the bar")
        if not is_number(self.rate) or not self.rate > 0:
            raise ArgumentError("ablation_rate", allowed="a number > 0", received=self.rate,
                                hint="units measured per training step; 0.25 costs about 8 % of a step")
        check_choice("ablation_baseline", self.baseline, ("zero", "mean", "regress"),
                     hint="mean: an ablated unit's mean output stays, as a bias of its readers; "
                          "regress: its best linear estimate from the other units stands in")
        if self.bound is not None and (not is_number(self.bound) or not self.bound > 0):
            raise ArgumentError("ablation_bound", allowed="a number > 0, or null (no bound)", received=self.bound,
                                hint="the largest coefficient a regress stand-in may give another unit; 1 (the "
                                     "default) lets a unit stand in for another at most at its own scale")
        if not is_number(self.memory) or not 0 < self.memory <= 1:
            raise ArgumentError("memory", allowed="a number in (0, 1]", received=self.memory,
                                hint="the newest measurement's weight in a unit's running worth")
        self.worth: list[Tensor] = []  # per layer, per unit: running worth (nan: not measured yet)
        self.age: list[Tensor] = []  # per layer, per unit: steps since the unit was added, at the first rate
        self.lr0: float | None = None  # the first step's learning rate
        self.seen: list[Tensor] = []  # per layer, per unit: the step of its last measurement (-1: never)
        self.budget = 0.0
        self.base: float | None = None  # running loss with every unit (the relative bar's scale)
        self.steps = 0  # optimizer steps seen (no unit is removed before warmup_steps)
        self.engaged: list[bool] = []  # per layer: worth layer_worth of the loss once (a latch)

    def check(self, rnn: nn.Module, hparams: dict[str, Any]) -> None:
        sizes = [int(x.hidden_size) for x in layers_of(rnn)]
        if [int(w.numel()) for w in self.worth] != sizes:  # a new run (a resume loads the state after)
            self.worth = [torch.full((h,), math.nan) for h in sizes]
            self.age = [torch.zeros(h, dtype=torch.float64) for h in sizes]
            self.seen = [torch.full((h,), -1, dtype=torch.long) for h in sizes]
            self.removed = [torch.zeros(h, dtype=torch.bool) for h in sizes]
            self.engaged = [False] * len(sizes)
            self.sums: list[Tensor | None] = [None] * len(sizes)  # held_out: running moment sums, per layer
            self.weights: list[Tensor | None] = [None] * len(sizes)  # and the weight each entry has gathered

    def bar(self) -> float:
        """The worth a unit must have, in loss units."""
        if not self.relative:
            return self.lam
        return math.inf if self.base is None else self.lam * abs(self.base)

    def after_step(self, rnn: nn.Module, decoder: nn.Linear, optimizer: Any, loss: float | None) -> None:
        # a unit ages by the step's learning rate over the first one: a trial lasts as much
        # learning as trial_steps steps at the starting rate, however far a schedule has cut it
        self.steps += 1
        lr = _lr_of(optimizer, decoder.weight)
        if self.lr0 is None:
            self.lr0 = lr
        for a in self.age:
            a += lr / self.lr0 if self.lr0 > 0 else 1.0

    @torch.no_grad()
    def measure(self, rnn: nn.Module, decoder: nn.Linear, probe: Callable[[], float], step: int,
                mask: Tensor | None = None) -> None:
        if step % self.check_every:
            return
        self.budget += self.rate * self.check_every
        n = int(self.budget)
        # due units: past their trial; the never measured first, then the longest unmeasured
        due = [(int(self.seen[k][j]), k, j) for k in range(len(self.age))
               for j in torch.nonzero(self.age[k] >= self.trial_steps).flatten().tolist()]
        picked = sorted(due)[:n]
        if not picked:
            return
        self.budget -= len(picked)
        layers = layers_of(rnn)
        moments: dict[int, Tensor] = {}
        latching = {k for _, k, _ in picked if self.layer_worth > 0 and not self.engaged[k]}
        steps: dict[int, int] = {}
        hooks = [layers[k].register_forward_hook(_output_moments(moments, k, self.baseline == "regress", mask, steps))
                 for k in {k for _, k, _ in picked} if self.baseline != "zero" or k in latching]
        try:
            base = probe()
        finally:
            for hook in hooks:
                hook.remove()
        if not math.isfinite(base):
            return  # a diverged batch measures nothing
        # the global batch's, under DDP (each process's weighted by the steps it read)
        moments = {k: self.across_processes(m, steps[k]) for k, m in sorted(moments.items())}
        fit = {k: self._held_out(k, m) for k, m in moments.items()} if self.held_out else moments
        self.base = base if self.base is None else (1 - self.memory) * self.base + self.memory * base
        bar = self.bar()
        for k in sorted({k for _, k, _ in picked}):
            ahead, recurrent = outgoing_weights(rnn, decoder, k)
            readers, of_h = ahead + recurrent, reads_output(rnn, k)
            biases = reader_biases(rnn, decoder, k)
            if k in latching:  # the whole layer replaced by its units' mean outputs
                mean = moments[k] if moments[k].dim() == 1 else moments[k][-1, :-1]
                saved = [w.clone() for w in readers]
                saved_b = [None if b is None else b.bias.clone() for b in biases]
                for w, b, h in zip(readers, biases, of_h, strict=True):
                    if h and b is not None:
                        b.add_(w @ mean.to(w))
                    w.zero_()
                lost = probe() - base
                _restore(readers, biases, saved, saved_b)
                self.engaged[k] = math.isfinite(lost) and lost >= self.layer_worth * abs(base)
            gone: list[int] = []  # units removed in this round: no longer stand-ins for others
            stand_ins = _stand_ins(fit[k], gone, bound=self.bound) if self.baseline != "zero" else None
            for j in [j for _, kk, j in picked if kk == k]:
                saved = [w.clone() for w in readers]
                saved_b = [None if b is None else b.bias.clone() for b in biases]
                for w, b, h in zip(readers, biases, of_h, strict=True):
                    col = w[:, j].clone()
                    if stand_ins is not None and h:  # unit j's output replaced by its stand-in
                        coef = stand_ins[j].to(col)
                        w.add_(torch.outer(col, coef[:-1]))
                        if b is not None:
                            b.add_(col * coef[-1])
                    w[:, j] = 0
                loss = probe()
                worth = loss - base if math.isfinite(loss) else math.inf
                old = float(self.worth[k][j])
                self.worth[k][j] = worth if math.isnan(old) else (1 - self.memory) * old + self.memory * worth
                self.seen[k][j] = step
                dead = float(self.worth[k][j]) < bar
                retried = (not dead and float(self.worth[k][j]) < self.retrial * bar
                           and float(self.age[k][j]) >= 2 * self.trial_steps)
                if (dead or retried) and self.removing(k):
                    # dead: the removal measured is kept (the controller deletes a unit that has no
                    # outgoing weights left, so the deletion costs what was measured), and the
                    # units measured after it are measured without it. Retried: removed the same
                    # way, but put back on trial with no outgoing weights, as a new unit is: the
                    # others adapt to its absence while it relearns, and it is judged after the
                    # same trial as a new unit (an old unit's instant worth counts what the others
                    # would learn to carry, so a layer started wide would stay wider)
                    base, gone = loss, gone + [j]
                    stand_ins = _stand_ins(fit[k], gone, bound=self.bound) if stand_ins is not None else None
                    if retried:
                        self.worth[k][j], self.age[k][j], self.seen[k][j] = math.nan, 0.0, -1
                    self.removed[k][j] = not retried
                    continue
                self.removed[k][j] = False
                _restore(readers, biases, saved, saved_b)

    def _held_out(self, k: int, batch: Tensor) -> Tensor:
        """The moments to fit layer ``k``'s stand-ins on: those of the earlier measured batches
        (a running mean, the newest batch weighted :data:`HELD_OUT_WEIGHT`, each entry over the batches in
        which both its units existed) where there are any, else ``batch``'s; then ``batch`` joins
        the running mean. A stand-in fitted on the batch it is judged on explains part of any
        unit by chance (about ``units / samples`` of its variance), so a wide layer's units
        would look replaceable."""
        S, W = self.sums[k], self.weights[k]
        if S is None or S.shape != batch.shape:
            self.sums[k], self.weights[k] = HELD_OUT_WEIGHT * batch, torch.full_like(batch, HELD_OUT_WEIGHT)
            return batch
        fit = torch.where(W > 0, S / W.clamp_min(1e-300), batch)
        a = HELD_OUT_WEIGHT
        self.sums[k], self.weights[k] = (1 - a) * S + a * batch, (1 - a) * W + a
        return fit

    def scores(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """Each unit's running worth (0 before its first measurement)."""
        return torch.nan_to_num(self.worth[k], nan=0.0)

    def removing(self, k: int) -> bool:
        """Whether layer ``k``'s units below the bar are removed yet: after ``warmup_steps``, and
        once the layer has been measured to be worth ``layer_worth`` of the loss."""
        return self.steps >= self.warmup_steps and (self.layer_worth == 0 or self.engaged[k])

    def dead(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """The units a measurement removed (their removal measured and kept, their outgoing
        weights folded onto their stand-ins): a unit whose stored worth falls below a bar that
        rose since, or that was measured while removal was off (``warmup_steps``,
        ``ablation_layer_worth``), is spare, not dead, until it is measured again."""
        return self.removed[k].clone()

    def spare(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """Units on trial and those below the bar (removed or not yet)."""
        return ~(self.worth[k] >= self.bar())

    def resized(self, k: int, units: UnitMap) -> None:
        old = units.index.clamp_min(0)
        fresh = units.index < 0
        self.worth[k] = torch.where(fresh, math.nan, self.worth[k][old])
        self.age[k] = torch.where(fresh, 0.0, self.age[k][old])
        self.seen[k] = torch.where(fresh, -1, self.seen[k][old])
        self.removed[k] = self.removed[k][old] & ~fresh
        if self.sums[k] is not None:  # the running moments follow the units; a new unit's start empty
            index = torch.cat([units.index, torch.tensor([self.sums[k].shape[0] - 1])])  # the constant stays last
            for held in (self.sums, self.weights):
                t = held[k][index.clamp_min(0)][:, index.clamp_min(0)]
                t[index < 0, :] = 0
                t[:, index < 0] = 0
                held[k] = t

    def state_dict(self) -> dict[str, Any]:
        return {"worth": [w.tolist() for w in self.worth], "age": [a.tolist() for a in self.age],
                "seen": [s.tolist() for s in self.seen], "removed": [r.tolist() for r in self.removed],
                "budget": self.budget, "base": self.base, "lr0": self.lr0,
                "steps": self.steps, "engaged": self.engaged,
                "sums": [None if t is None else t.tolist() for t in self.sums],
                "weights": [None if t is None else t.tolist() for t in self.weights]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "worth" not in state:
            return
        self.worth = [torch.tensor(w, dtype=torch.float32) for w in state["worth"]]
        self.age = [torch.tensor(a, dtype=torch.float64) for a in state["age"]]
        self.seen = [torch.tensor(s, dtype=torch.long) for s in state["seen"]]
        # before 2026-12-06 the removed units were not kept: none (a unit below the bar is spare until measured)
        self.removed = [torch.tensor(r, dtype=torch.bool) for r in state.get("removed", [[False] * len(s)
                                                                                         for s in state["seen"]])]
        self.budget = float(state["budget"])
        self.base = state["base"]
        self.lr0 = state.get("lr0")
        self.steps = int(state.get("steps", 0))
        self.engaged = [bool(e) for e in state.get("engaged", self.engaged)]
        for name in ("sums", "weights"):
            held = state.get(name, [None] * len(self.worth))
            setattr(self, name, [None if t is None else torch.tensor(t, dtype=torch.float64) for t in held])


#: The ``paired`` signal's default recipe per optimizer family: what ``lam``, ``steps``,
#: ``fraction``, ``homing`` and ``reach`` take when left unset (:meth:`Paired.for_optimizer`).
#: Measured on JSB (docs/reproductions/settling.md): under plain or momentum SGD a 100-step trial
#: shows less of what a unit will be worth than under Adam, and the layers stopped 25-66 units
#: apart at the adaptive recipe; trials 4x as long, half the charge, a step of up to half the layer
#: that only halves once a trial has turned back brought the two starts within 25 % in 5 of 6 seeds
#: (1.00-1.29x). The reach (a trial may last as many steps as the starting rate takes to sum to it)
#: is an adaptive optimizer's, whose steps move a weight by about the rate: 0.1 is 100 steps at
#: Adam's 1e-3 (with the default 100 steps it changes no trial at 1e-3 or faster); at 3e-4 it
#: brought JSB's LSTM within 1 % of its best fixed layer in 12 of 12 runs.
#: A trial's new units step with Adam's head start under an adaptive optimizer (:class:`HeadStart`:
#: under RMSprop at 3e-4 it brought every grown LSTM within 1 % of the best fixed one, none before)
#: and with SGD's own under SGD (Adam's stalled small starts there and split the seed pairs).
PAIRED_RECIPES: dict[str, dict[str, Any]] = {
    "adaptive": {"lam": 3.33e-5, "steps": 100, "fraction": 0.25, "homing": False, "reach": 0.1,
                 "head_start": "adam"},
    "sgd": {"lam": 1.67e-5, "steps": 400, "fraction": 0.5, "homing": True, "reach": 0.0, "head_start": "optimizer"},
}


@dataclass
class Paired(Signal):
    """The width a task sets, chosen by **paired trials** on held-out data. Every trial takes one
    layer and a step ``d`` (at most ``fraction`` of its units): the controller copies the network,
    folds away in the copy the ``d`` units the others can best stand in for (their outputs are
    moved onto the kept units' reading weights, so the copy starts from nearly the same function),
    adds ``d`` fresh units to the network itself (zero outgoing weights: the same function), trains
    both on the same batches for ``steps`` steps, and then goes on with whichever has the lower
    validation loss plus a charge per unit (``charge`` ``row``, the default: ``lam`` for each row of
    weights a unit has in its cell, one per weighted call -- an LSTM unit 8, a GRU unit 6, an Elman
    unit 2, an evolved cell's by its genome; ``unit``: ``lam`` per unit whatever its cell), and
    ``lam`` (with ``relative``, a fraction of a loss: ``scale``
    ``loss`` (the default), the validation loss the trial ends at, but at least ``floor`` (0.5)
    times the validation loss judged after the first training step (the untrained network's, to
    one step) -- on a task the network can solve the loss, and a charge relative to it, go to
    zero, and without a charge a solved layer grows at every trial: the floor keeps the charge
    from vanishing while it follows the loss on every task whose loss stays above half its
    untrained loss; ``start``, that first loss itself, fixed for the run; ``gain``, how far the
    validation loss has come down since that first judgement (the floor bounds ``loss`` only): a
    unit must be worth ``lam`` of what training has learned so far, a charge that adding a constant to the
    loss (a task's irreducible entropy) or scaling it leaves alone, near zero while the network
    has learned little, and not vanishing when a task is solved).
    A trial that goes the same way as the layer's last doubles the step (up to ``fraction``), one
    that turns back halves it (down to one unit); a layer that turns back at one unit is settled,
    and waits 1, 3, 7, then 15 trials' steps between trials. With ``settle`` ``cycle``, a layer is
    also settled when its last four trials went both ways and left it within one step of where
    they began (the sum of their moves no larger than the largest): near its width a layer whose
    step doubles after each one-unit move in the same direction (+5, -2, -1, -2, +5 ...) never
    turns back at one unit, and would otherwise fold units away and train fresh ones at every
    trial to the end (``turn``, the default: a one-unit turn only).

    Both sides of a trial are disturbed the same way -- one by a fold, one by new units -- and
    trained the same from the same point, so a layer started wide and one started narrow face the
    same comparison at every width (an instant ablation judges an old unit before the others
    adapt, which keeps wide layers wide). With ``keep`` the undisturbed network is judged against
    a copy with ``d`` more and one with ``d`` fewer units and may keep its width; measured on JSB,
    that leaves a band of widths where neither copy wins, and the two starts end 1.3-1.4x apart.
    ``batches`` limits the validation batches judged (None: those validation sees). With ``hold`` > 0, no trial
    starts until the network's validation loss (judged every ``steps`` steps) improves by less than
    ``hold`` of the scale ``lam`` is a share of over ``steps`` steps: while the network is
    still learning fast, what ``steps`` steps show says little about what a width is worth. With
    ``extend`` > 1, a trial's sides are also judged half-way through its last ``steps`` steps, and
    a trial whose verdict would turn if every side went on improving as it did over that last
    half for ``steps`` more steps is not decided: it trains ``steps`` more, up to ``extend`` times
    ``steps`` in all (a trial ending with training is decided as it stands). What a wider layer
    is worth can show only after longer training than a trial's; where the wider side is still
    catching up, the trial waits for it. A trial trains one more network (two with ``keep``)
    beside the network, and judges two on the validation batches (three with ``keep``; with
    ``extend``, as many again half-way through each trial length).

    With ``margin`` > 0 (by default 0.5; 0 with ``move`` ``slope`` or ``batches`` 1), the side
    with the lowest charged loss goes on only when no narrower side's is within ``margin`` standard
    errors of their difference; else the narrowest side within it does (the one-standard-error rule
    of Breiman et al. 1984 with ``margin`` 1; a tie then goes to
    the narrower side, not to the network), and a move the margin made -- the narrower side within
    the noise, not better -- keeps the step ``d`` as it is, where a move on the losses doubles it.
    The error is estimated from the sides' losses on the same validation batches, at least 2 (their
    per-batch differences: batches are the units of the estimate, so a task that carries its state
    across batches gets an estimate that ignores their correlation). Where the loss is nearly flat
    in the width, the verdict of a plain trial is a coin that moves the width at random within the
    flat stretch; with a margin, trials there go to the narrower side, so a layer started wide and
    one started narrow both stop where the wider side's gain first exceeds the noise.

    With ``restart`` (the default), every resize the trials make -- units added for a trial, a
    folded copy adopted -- starts a ``plateau`` learning-rate schedule's count of epochs without
    improvement over (:func:`~growrnn.training.growth.restart_plateaus`): a fold's damage to the
    validation loss is the width moving, not training stalling, and without the restart a layer
    shrinking from a wide start had its learning rate halved while it moved (measured on JSB with
    ``lam`` 3e-4: an LSTM settled at 36 units from 256 tested 1.7 % behind one grown to 39 units
    from 8, whose learning rate was never cut, and 0.3 % behind it with the restart).

    With ``mature`` > 0, a trial's fold takes only units that have trained for at least ``mature``
    trials' steps since they were added (the layer's first units count from the start): the
    others are kept in both sides. Without it a settled layer cannot grow: the units a trial adds
    are the weakest a trial later, and the next trial's fold takes them away at no cost, so the
    layer goes round the width it had when it settled (measured on JSB, a GRU from 8 units: 46 ->
    48 -> 47 -> 46 ... to the end) and a narrow start and a wide one settle apart. With it, a
    new unit is judged, as an old one is, by what folding it costs once it has had time to take a
    part -- but measured on the same GRU with ``mature`` 2 the layer stops settling: a fold of
    trained units only is costly at a narrow width and cheap at a wide one, the step keeps
    doubling, and the width swings between 37 and 88 units to the end (off by default).

    With ``homing``, a layer's step no longer doubles once a trial of it has turned back (after
    its first turn the step only halves, down to one unit, and a move keeps it): a layer homes in
    on the width where its trials turn, as a bisection does, instead of swinging past it with a
    step that grows again. With ``mature`` 2, measured on JSB (3 seeds), a start at 8 units and
    one at 256 end 1.02-1.18x apart for the LSTM (every run ahead of the best fixed LSTM) and
    1.02-1.38x for the GRU (seed 1: 55 and 56 units, where without homing they swing between 37
    and 88); off in the adaptive optimizers' recipe, on in SGD's (below).

    With ``move`` ``slope`` a trial's verdict is a size, not a side: a finite-difference stochastic
    approximation of the width where the charged validation loss is least (Kiefer & Wolfowitz
    1952). Every trial probes ``d`` = ``fraction`` of the layer on each side (the probe does not
    shrink: the sides' difference grows with ``d`` while a trial's noise does not), and the layer
    moves by ``gain`` x its width x the wider side's charged gain per unit in units of the charge
    (``z``, clipped to [-1, 1]: 0 where a unit is worth exactly ``lam``, -1 where the wider side
    gains nothing, +1 where it gains twice the charge), rounded; ``gain`` starts at ``fraction``
    and is ``fraction / (1 + turns)``, ``turns`` the times ``z`` changed sign (Kesten 1958: the
    gain falls only once the layer goes back and forth). A trial near the balance moves the layer a
    little where a ``sign`` trial (the default) moves it by the whole step either way, and later
    trials average the noise out instead of walking. The new width is made from the side nearest
    it that is no narrower (the network, with its surplus units folded as a trial's copy folds
    them) or, for a move narrower than the start, from the copy with fresh units added (zero
    outgoing weights: its function). A trial that moves nothing counts as settled (the waits
    above). Not with ``keep``, ``extend``, ``margin`` or ``homing``, which are rules of the sign.
    Measured on JSB (3 seeds, starts at 8 and 256 units, ``lam`` 2e-4): a late +-11-unit trial's
    verdict has a standard deviation of 0.021-0.025 nats against 0.038-0.041 charged between its
    sides (a one-unit ``sign`` trial's: 0.006-0.008 against 0.0034), yet the layers end as
    scattered as with the sign (LSTM 37-52 units, GRU 41-53, a seed pair 1.41x apart), since the
    loss is nearly flat in the width over a wider band than that; off by default.

    A trial also trains on at least ``targets`` training targets (the terms a batch's loss is a
    mean of: tokens, frames; 40,000 by default, 0: ``steps`` alone): its length is ``steps`` or
    ``targets`` over the mean targets per step its trials have trained on so far, whichever is
    more, and every length above (the waits, the hold's, ``extend``'s, ``mature``'s) is that
    trial length. A step is a batch, and what a batch holds differs between tasks by a hundred
    times -- a JSB batch of 8 chorales about 470 frames, a window of Miconi's batch-1 character
    stream 40 characters -- while what a unit is worth shows only after training on a share of the
    data: a fixed LSTM on Miconi's hard task with 32 units learns it within 10,000 windows and one
    with 8 does not, so a trial of 100 windows saw no unit worth its charge and held the layer at
    6-10 units. With trials of 100 steps the default lengthens them only where a step holds
    fewer than 400 targets (Miconi's tasks: 1,000 steps; with SGD's 400, fewer than 100); JSB
    (batch 8), Penn Treebank (20 x 35), the teacher and the flip-flop (32 x 50) keep their
    ``steps`` as far as ``targets`` goes (the horizon below lengthens the later trials of all of them
    except JSB). Counting a masked batch's targets reads one number from the device per trial step.

    With ``horizon`` > 0 (0.2 by default; 0: ``steps`` and ``targets`` alone) a trial also lasts at
    least ``horizon`` times the steps trained before it starts (with 0.2, a trial started at step
    3,000 trains 600); a settled layer's waits count in
    the length a trial starting then would have, ``mature`` in the length a trial had when the
    unit was born, and the hold's judgements keep the length without it. A learning curve falls
    about as a power of the steps, so a trial lasting a fixed share of the steps trained so far
    sees about the same share of what is still to learn wherever in the run it starts, where a
    trial of a fixed length sees less and less of it: width that pays over the whole budget, as
    a faster descent that adds up (a slow learning rate, a large data set), shows in a late
    trial only if trials grow with the run. ``horizon_cap`` bounds that length at so many epochs
    (2.5 by default; the optimizer steps of ``horizon_cap`` passes over the batches
    ``limit_train_batches`` lets an epoch see; None: no bound, and none where that count is not
    known: a data set without a length and no ``limit_train_batches`` count; with ``horizon`` 0 it
    bounds nothing): trials grow with the run until one sees the data set 2.5 times, and where 2.5
    epochs are fewer steps than ``steps`` (JSB's 29 steps an epoch at batch 8: 72.5 steps) the
    horizon never lengthens a trial at all. The default was chosen over Penn Treebank, JSB,
    Miconi's tasks, the teacher and the flip-flop: uncapped, the horizon let a PTB layer from 256
    units find its width with no option of its own but cost the teacher's and JSB's width targets;
    a cap of one or two epochs cut PTB's late trials short of what width pays there (settling.md,
    the twenty-ninth to thirty-fifth sessions).

    ``reach`` lifts that cap where the run's learning rate is slow: the horizon may lengthen a
    trial to the steps the rate the run starts at (:meth:`for_optimizer`; a scheduler's
    ``initial_lr``) takes to sum to ``reach``, if that is more than ``horizon_cap`` epochs (unset:
    0.1 under an adaptive optimizer, 0 -- off -- under SGD, whose steps do not move a weight by
    about the rate). Adam moves a weight by about its rate a step, so with 0.1 a trial may last as
    long as the 100 steps of 1e-3 let the copies move: 334 steps at 3e-4, where JSB's fixed layers
    still gain from width at the end of 120 epochs and 100-step trials held the LSTM's layer at
    27-38 units, about 1 % behind the best fixed layer; at 1e-3 or faster it is at most the default
    ``steps`` (100) and changes no trial of the default recipe. The rate is the first parameter
    group's, a scheduler's base rate (``initial_lr``) where it set one: under a schedule that starts
    low and climbs (``OneCycleLR``, ``CyclicLR``) that is the low rate, and the trials long.

    A trial's new units start with zero optimizer state, and under Adam that is a head start: a
    zero second moment lets a new entry travel, against a settled one fed the same gradients,
    about 4.5 times as far over a 100-step trial (the layer grows because of it: started at the
    tensor's mean moment instead, JSB layers from 8 units stayed at 7-15). RMSprop's mean square
    forgets the zero start ten times sooner (about 2 times as far) and SGD gives none, so
    ``head_start`` ``adam`` (the adaptive optimizers' recipe, where the optimizer's own is known:
    AdamW, RMSprop not centered; also SGD when given) scales a new entry's steps so that it travels
    as under Adam with its default rates whatever the optimizer (:class:`HeadStart`; under Adam and
    AdamW with their default rates nothing changes); ``optimizer`` (SGD's recipe: measured on JSB,
    Adam's head start under SGD stalled a small start at 11 units and split the seed pairs) leaves
    each optimizer its own. A number ``b`` in (0, 1) gives the head start of Adam with β₂ ``b``
    (``adam`` is 0.999): a longer one with 0.9999, which under Adam itself lengthens a new entry's
    steps about 3 times over its first few thousand steps -- probed on JSB (3 seeds) it put every
    grown LSTM and GRU within 1 % of the best fixed layer at 3e-4 and 1e-3, and is not the default.

    ``lam``, ``steps``, ``fraction``, ``homing``, ``reach`` and ``head_start`` left unset take the recipe of the
    optimizer's family (:data:`PAIRED_RECIPES`, set by :meth:`for_optimizer` when training starts):
    under Adam, RMSprop and every optimizer but SGD 3.33e-5 a row, trials of 100 steps, a step of up
    to a quarter of the layer, no homing, a reach of 0.1, Adam's head start; under
    :class:`torch.optim.SGD` 1.67e-5 a row, trials of 400 steps, up to half the layer, homing, no
    reach, SGD's own head start. SGD moves a fresh unit's
    weights more slowly than an adaptive optimizer does (no per-weight scaling), so a trial must
    train longer to show what a unit is worth, and the layer must move in larger steps to reach its
    width in fewer trials.
    """

    lam: float | None = None  # None: the optimizer family's recipe (PAIRED_RECIPES), as steps, fraction, homing
    relative: bool = True
    charge: str = "row"
    fraction: float | None = None
    steps: int | None = None
    targets: int = 40_000
    horizon: float = 0.2
    horizon_cap: float | None = 2.5  # epochs; None: the horizon's length is not bounded
    reach: float | None = None  # None: the family's recipe (0.1 under an adaptive optimizer, 0 under SGD)
    batches: int | None = None
    keep: bool = False
    hold: float = 0.0
    scale: str = "loss"
    floor: float | None = None  # None: 0.5 with scale "loss" (it bounds that scale only)
    extend: int = 1
    margin: float | None = None  # None: 0.5, but 0 with move "slope" or a single batch judged
    settle: str = "turn"
    restart: bool = True
    mature: int = 0
    homing: bool | None = None
    move: str = "sign"
    head_start: str | float | None = None  # None: the family's recipe ("adam" under an adaptive optimizer where known)
    name: ClassVar[str] = "paired"
    settles: ClassVar[bool] = True

    def __post_init__(self) -> None:
        # the fields left unset take the adaptive family's recipe until for_optimizer sees the optimizer
        self.unset = [name for name in PAIRED_RECIPES["adaptive"] if getattr(self, name) is None]
        self.family = "adaptive"
        self._take_recipe("adaptive")
        check_number("lam", self.lam,
                     hint="the validation loss a unit must be worth per row of its weights (per "
                          "unit with paired_charge unit), as a fraction of the loss")
        check_choice("paired_charge", self.charge, ("row", "unit"),
                     hint="row (the default) charges lam for each row of weights a unit has in its "
                          "cell (an LSTM unit 8, a GRU unit 6); unit charges lam per unit")
        if not is_number(self.fraction) or not 0 < self.fraction <= 1:
            raise ArgumentError("paired_fraction", allowed="a number in (0, 1]", received=self.fraction,
                                hint="the share of a layer a trial adds or removes at most; 0.25 moves by a quarter")
        check_int("paired_steps", self.steps, 1, hint="the steps a trial trains its copies; 100 (400 under SGD)")
        check_int("paired_targets", self.targets, 0, hint="the training targets (tokens, frames) a trial trains "
                                                          "its copies on at least; 0: paired_steps alone")
        check_number("paired_horizon", self.horizon,
                     hint="a trial lasts at least this share of the steps trained before it starts "
                          "(0.2: a trial started at step 1,000 trains 200 steps); 0 leaves "
                          "paired_steps and paired_targets alone to set its length")
        if self.horizon_cap is not None and (not is_number(self.horizon_cap) or not 0 < self.horizon_cap < math.inf):
            raise ArgumentError("paired_horizon_cap", allowed="a finite number > 0 (epochs), or None",
                                received=self.horizon_cap,
                                hint="the most epochs paired_horizon lengthens a trial to (default 2.5; 1: a trial "
                                     "grows with the run until it sees the whole training set once); None: no bound")
        check_number("paired_reach", self.reach,
                     hint="the distance, in learning rates summed over a trial's steps, the horizon may "
                          "lengthen a trial to past paired_horizon_cap (0.1: 100 steps at Adam's 1e-3, 334 "
                          "at 3e-4; unset: 0.1, 0 under SGD); 0: the cap alone; with paired_horizon 0 it "
                          "lengthens nothing")
        check_int("paired_extend", self.extend, 1, hint="the most trial lengths a trial may last while its "
                                                         "verdict is still turning; 1 decides every trial after "
                                                         "its length")
        if self.extend > 1 and self.steps < 2:
            raise ArgumentError("paired_extend", allowed="1 with paired_steps 1 (no half-way judgement)",
                                received=self.extend, hint="a trial is judged half-way through to see where its "
                                                           "verdict is going; give it at least 2 steps")
        if self.batches is not None:
            check_int("paired_batches", self.batches, 1, hint="None judges the batches validation sees")
        self.margin_given = self.margin is not None  # a default margin yields to a single batch judged
        if self.margin is None:
            self.margin = 0.0 if self.move == "slope" or self.batches == 1 else 0.5
        check_number("paired_margin", self.margin, allowed="a finite number >= 0 (standard errors)",
                     hint="1 keeps the narrower side unless the wider one is better by more than one "
                          "standard error of their difference; 0.5 is the default; 0 judges the "
                          "losses alone")
        if self.margin > 0 and self.batches == 1:
            raise ArgumentError("paired_batches", allowed="at least 2 with paired_margin > 0", received=self.batches,
                                hint="the standard error of two sides' difference is estimated across the "
                                     "validation batches judged; judge more, or set paired_margin 0")
        check_choice("paired_settle", self.settle, ("turn", "cycle"),
                     hint="when a layer counts as settled and waits longer between trials: turn, when "
                          "a one-unit trial turns back; cycle, also when its last four trials went "
                          "both ways and left it within one step of where they began")
        check_int("paired_mature", self.mature, 0, hint="the trials' steps a unit must have trained before a "
                                                        "trial may fold it; 0 lets a trial fold any unit")
        if not isinstance(self.homing, bool):
            raise ArgumentError("paired_homing", allowed="true or false", received=self.homing,
                                hint="true (the default under SGD): once a layer's trial has turned back, its "
                                     "step only halves (no doubling again); false (the default otherwise) doubles "
                                     "it after every move the way of the last")
        if not (is_number(self.head_start) and 0 < float(self.head_start) < 1 or self.head_start in ("adam",
                                                                                                   "optimizer")):
            raise ArgumentError("paired_head_start", allowed="adam, optimizer, or a number in (0, 1)",
                                received=self.head_start,
                                hint="adam (the default under an adaptive optimizer) gives a trial's new units the "
                                     "head start Adam's zero state gives them under any optimizer; a number b, Adam's "
                                     "with beta2 b (adam is 0.999; 0.9999 a longer one); optimizer (the default "
                                     "under SGD) leaves them the optimizer's own")
        self.head_start_rule: HeadStart | None = None  # set by for_optimizer
        check_choice("paired_move", self.move, ("sign", "slope"),
                     hint="how a trial moves a layer: sign, to the side with the lower charged loss by "
                          "the layer's step; slope, by the charged gain it measured (a stochastic "
                          "approximation of the best width)")
        if self.move == "slope":
            clash = [name for name, on in (("paired_keep", self.keep), ("paired_extend", self.extend > 1),
                                           ("paired_margin", self.margin > 0), ("paired_homing", self.homing)) if on]
            if clash:
                raise ArgumentError(clash[0], allowed="its default with paired_move slope",
                                    received=getattr(self, clash[0].removeprefix("paired_")),
                                    hint="it is a rule of paired_move sign (which side a trial goes on with, "
                                         "and how its step changes); a slope trial moves by what it measured and "
                                         "averages the noise over later trials instead")
        if not isinstance(self.keep, bool):
            raise ArgumentError("paired_keep", allowed="true or false", received=self.keep,
                                hint="true judges the network against a copy with more units and one with fewer "
                                     "(it may keep its width); false (the default) against one copy with fewer")
        if not isinstance(self.restart, bool):
            raise ArgumentError("paired_restart", allowed="true or false", received=self.restart,
                                hint="true (the default) starts a plateau schedule's count of epochs without "
                                     "improvement over whenever the trials resize a layer")
        if not is_number(self.hold) or not 0 <= self.hold < 1:
            raise ArgumentError("paired_hold", allowed="a number in [0, 1)", received=self.hold,
                                hint="trials wait until the validation loss improves by less than this share "
                                     "per trial's steps; 0 starts them at once")
        check_choice("paired_scale", self.scale, ("loss", "start", "gain"),
                     hint="what lam is a fraction of: the validation loss at each trial, the one "
                          "judged after the first step, or how far it has come down since")
        if self.floor is None:
            self.floor = 0.5 if self.scale == "loss" else 0.0
        elif self.scale != "loss" and self.floor:
            raise ArgumentError("paired_floor", allowed=f"unset (or 0) with paired_scale {self.scale}",
                                received=self.floor, hint="the floor bounds the loss scale only; a charge "
                                                          f"of the {self.scale} scale does not vanish")
        if not is_number(self.floor) or not 0 <= self.floor <= 1:
            raise ArgumentError("paired_floor", allowed="a number in [0, 1]", received=self.floor,
                                hint="the least loss lam is a share of, as a share of the loss after the first "
                                     "step; 0.5 (the default) keeps a solved task's charge from vanishing")
        self.rate = 0.0  # the optimizer's starting learning rate (for_optimizer); 0: not known
        self.worth: list[Tensor] = []  # per layer: each unit's share of the loss no other unit can carry
        self.rows: list[int] = []  # per layer: the rows of weights a unit has in its cell

    def _take_recipe(self, family: str) -> None:
        for name in self.unset:
            value = PAIRED_RECIPES[family][name]
            setattr(self, name, value and self.move != "slope" if name == "homing" else value)

    def for_optimizer(self, optimizer: Any) -> None:
        """Give the fields left unset the recipe of ``optimizer``'s family (:data:`PAIRED_RECIPES`):
        ``sgd`` for :class:`torch.optim.SGD` (momentum or not), ``adaptive`` for any other (Adam,
        AdamW, RMSprop ...; also with no optimizer). Fields given keep their values; ``homing`` is
        never switched on with ``move`` ``slope`` (it is a rule of the sign). Also reads ``rate``,
        the learning rate ``reach`` is counted in: the first parameter group's ``initial_lr`` (a
        scheduler's base rate), else its ``lr``; 0 without an optimizer. And sets
        :attr:`head_start_rule`, the :class:`HeadStart` a trial's new units step with (None where it
        would change no step -- Adam, AdamW with their default rates -- or ``head_start`` is
        ``optimizer`` -- SGD's recipe --, or unset under an optimizer whose own head start is not
        known)."""
        self.family = "sgd" if isinstance(optimizer, torch.optim.SGD) else "adaptive"
        self._take_recipe(self.family)
        group = optimizer.param_groups[0] if optimizer is not None and optimizer.param_groups else {}
        # the rate the run starts at (a scheduler's initial_lr; at fit start a resumed run's optimizer
        # is not restored yet, so this is the configured rate there too)
        self.rate = float(group.get("initial_lr", group.get("lr", 0.0)) or 0.0)
        self.head_start_rule = None
        if optimizer is None or self.head_start == "optimizer":
            return
        target = ADAM_BETAS if self.head_start == "adam" else (ADAM_BETAS[0], float(self.head_start))  # type: ignore[arg-type]
        rule = HeadStart(optimizer, target)
        if not rule.known:
            if "head_start" not in self.unset:
                raise ArgumentError("paired_head_start", allowed="optimizer (or unset) under "
                                    f"{type(optimizer).__name__}", received=self.head_start,
                                    hint="the head start is known for Adam, AdamW, RMSprop (not centered) and "
                                         "SGD; another optimizer keeps its own")
            self.head_start = "optimizer"  # what it runs with
            return
        self.head_start_rule = rule if rule.moves else None

    def check(self, rnn: nn.Module, hparams: dict[str, Any]) -> None:
        layers = layers_of(rnn)
        sizes = [int(x.hidden_size) for x in layers]
        if [int(w.numel()) for w in self.worth] != sizes:
            self.worth = [torch.zeros(h) for h in sizes]
        self.rows = [len(x.genome.weighted) for x in layers]

    def unit_charge(self, k: int) -> float:
        """What a unit of layer ``k`` is charged, in units of ``lam``: the rows of weights it has
        in its cell (one per weighted call) with ``charge`` ``row``, else 1."""
        return float(self.rows[k]) if self.charge == "row" else 1.0

    def scores(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        """Each unit's weight in what it carries alone (see :func:`unit_worth`), as last measured."""
        return self.worth[k]

    def dead(self, rnn: nn.Module, decoder: nn.Linear, k: int) -> Tensor:
        return torch.zeros(int(self.worth[k].numel()), dtype=torch.bool)

    def resized(self, k: int, units: UnitMap) -> None:
        self.worth[k] = torch.where(units.index < 0, 0.0, self.worth[k][units.index.clamp_min(0)])

    def state_dict(self) -> dict[str, Any]:
        return {"worth": [w.tolist() for w in self.worth]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "worth" in state:
            self.worth = [torch.tensor(w, dtype=torch.float32) for w in state["worth"]]


def unit_worth(moments: Tensor, readers: Sequence[Tensor], gone: Sequence[int] = (), ridge: float = 1e-4) -> Tensor:
    """What each unit carries that no other unit (outside ``gone``) can stand in for, as read:
    ``||W[:, j]||^2`` over the reading weights times the variance of the unit's output left after
    its least-squares estimate from the others and a constant (``1 / P[j, j]``, ``P`` the inverse
    of their moment matrix; ``moments``: ``(H + 1, H + 1)``, see :func:`_output_moments`). Shape
    ``(H,)``, on the CPU; the units in ``gone`` get ``inf``."""
    H = moments.shape[0] - 1
    keep, g = _kept_moments(moments, gone, ridge)
    residual = 1.0 / torch.linalg.inv(g).diagonal()[:-1]
    read = sum(w.detach().double().pow(2).sum(0).cpu() for w in readers)
    worth = torch.full((H,), math.inf, dtype=torch.float64)
    worth[keep[:-1]] = read[keep[:-1]] * residual
    return worth


def weakest_units(moments: Tensor, readers: Sequence[Tensor], n: int, kept: Sequence[int] = ()) -> list[int]:
    """The ``n`` units to remove, greedily: each time the one that carries least alone
    (:func:`unit_worth`) among those left, so of two twins only one goes; never one of ``kept``
    (fewer than ``n`` when too few are left)."""
    gone: list[int] = []
    keep = torch.tensor(sorted(set(kept)), dtype=torch.long)
    for _ in range(min(n, moments.shape[0] - 1 - len(keep))):
        worth = unit_worth(moments, readers, gone)
        worth[keep] = math.inf
        gone.append(int(worth.argmin()))
    return gone


@torch.no_grad()
def fold_units(rnn: nn.Module, decoder: nn.Linear, k: int, moments: Tensor, gone: Sequence[int],
               ridge: float = 1e-4) -> None:
    """Fold layer ``k``'s units ``gone`` into the others: each one's output is replaced by its
    least-squares estimate from the kept units' outputs and a constant (``moments``: their
    ``(H + 1, H + 1)`` second moments), by moving its reading weights' columns onto the kept
    units' columns and the readers' biases; the ``gone`` columns are zero afterwards."""
    gone_t = torch.tensor(sorted(set(gone)), dtype=torch.long)
    keep, g = _kept_moments(moments, gone, ridge)
    # (kept + 1, gone): h_gone ~ coef^T [h_kept, 1], solved on the CPU, applied where the weights are
    coef = torch.linalg.solve(g, moments.detach().double().cpu()[keep][:, gone_t])
    ahead, recurrent = outgoing_weights(rnn, decoder, k)
    for w, b, of_h in zip(ahead + recurrent, reader_biases(rnn, decoder, k), reads_output(rnn, k), strict=True):
        cols = w[:, gone_t].double()
        coef = coef.to(cols.device)
        if of_h:
            w[:, keep[:-1]] += (cols @ coef[:-1].T).to(w)
            if b is not None:
                b.add_(cols @ coef[-1])
        w[:, gone_t] = 0


#: with ``held_out``, the newest measured batch's weight in a layer's running output moments (about
#: the last ten rounds count)
HELD_OUT_WEIGHT = 0.1


def _restore(weights: list[Tensor], biases: list[ReaderBias | None], saved: list[Tensor],
             saved_b: list[Tensor | None]) -> None:
    """Copy ``saved`` (and ``saved_b``) back into ``weights`` (and ``biases``)."""
    for w, b, old_w, old_b in zip(weights, biases, saved, saved_b, strict=True):
        w.copy_(old_w)
        if b is not None and old_b is not None:
            b.bias.copy_(old_b)


def _output_moments(moments: dict[int, Tensor], k: int, second: bool, mask: Tensor | None = None,
                    steps: dict[int, int] | None = None) -> Callable[..., None]:
    """A forward hook that keeps a (batch-first) layer's output moments over batch and time in
    ``moments[k]``, over the valid steps of ``mask`` (bool ``(B, T)``; default: every step): the
    mean ``(H,)``, or with ``second`` the mean of ``[h, 1] [h, 1]^T``, ``(H + 1, H + 1)`` (the
    last row and column are the mean). Computed where the layer runs, kept on the CPU with the
    rest of growth's bookkeeping (the least-squares stand-ins are read from it there). ``steps``
    gets ``steps[k]``, how many steps the moments are a mean over (their weight under DDP)."""
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        out = output[0].detach()
        x = (out if mask is None else out[mask.to(out.device)]).reshape(-1, out.shape[-1]).double()
        if steps is not None:
            steps[k] = int(x.shape[0])
        if second:
            x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
            moments[k] = (x.T @ x / max(1, x.shape[0])).cpu()
        else:
            moments[k] = x.mean(0).cpu()
    return hook


def _stand_ins(moments: Tensor, gone: Sequence[int] = (), ridge: float = 1e-4, bound: float | None = None) -> Tensor:
    """Each unit's stand-in, ``(H, H + 1)``: row ``j`` holds the coefficients ``c`` (``c[j] = 0``,
    and 0 for the units in ``gone``) and the constant ``c[H]`` of the best linear estimate of unit
    ``j``'s output from the other units' outputs, ``h_j ~ sum_i c[i] h_i + c[H]``. From the mean
    output alone ``(H,)``, the constant is the mean and the other coefficients are 0; from the
    second moments ``(H + 1, H + 1)`` of ``[h, 1]`` (see :func:`_output_moments`), it is the
    least-squares regression on the others that are not ``gone`` (with a ``ridge`` relative to
    the mean variance), read off the inverse ``P`` of their moment matrix:
    ``c[i] = -P[i, j] / P[j, j]``, each then clipped to ``[-bound, bound]`` (None: not; the
    constant never)."""
    H = moments.shape[0] - (moments.dim() == 2)
    coef = torch.zeros(H, H + 1, dtype=torch.float64)
    if moments.dim() == 1:
        coef[:, H] = moments.double()
        return coef
    keep, g = _kept_moments(moments, gone, ridge)
    units = keep[:-1]
    p = torch.linalg.inv(g)
    fit = -p / p.diagonal()[None, :]  # column j: the coefficients that estimate unit j from the others
    fit.fill_diagonal_(0.0)
    coef[units[:, None], keep[None, :]] = fit.T[:-1]
    if bound is not None:
        coef[:, :H].clamp_(-bound, bound)
    return coef


def _kept_moments(moments: Tensor, gone: Sequence[int], ridge: float) -> tuple[Tensor, Tensor]:
    """The units not in ``gone`` and then the constant (indices into ``moments``, ``(H + 1, H + 1)``),
    and their moment matrix in float64 with a ``ridge`` (relative to the mean variance) on the units'
    diagonal, on the CPU: what every least-squares stand-in here is read from."""
    H = moments.shape[0] - 1
    keep = torch.tensor([i for i in range(H + 1) if i not in set(gone)])
    g = moments.detach().double().cpu()[keep][:, keep].clone()
    n = len(keep) - 1
    g[:-1, :-1] += torch.eye(n, dtype=g.dtype) * ridge * (float(g[:-1, :-1].diagonal().mean()) + 1e-12)
    return keep, g


#: signal name -> class
SIGNALS: dict[str, type[Signal]] = {s.name: s for s in (OutgoingL1, Multiplier, GroupLasso, L0Gate, Ablation, Paired)}


def make_signal(name: str, **options: Any) -> Signal:
    """The signal ``name`` with ``options`` (its dataclass fields)."""
    if name not in SIGNALS:
        raise ArgumentError("signal", allowed=", ".join(SIGNALS), received=name,
                            hint="ablation, paired, group_lasso or l0_gate settle under any optimizer; outgoing_l1 "
                                 "and multiplier are Miconi's v3 and v2 signals")
    return SIGNALS[name](**options)


# ---------------------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class Member:
    """A parameter seen with one layer's units along dim 1: ``view`` is ``(blocks, H, rest)``;
    ``columns``: the units are the parameter's columns (a reader), else its rows."""

    view: Tensor
    param: Tensor
    columns: bool

    def laid_out(self, t: Tensor) -> Tensor:
        """``t`` (shaped like the parameter) laid out as ``view``."""
        return t.t().unsqueeze(0) if self.columns else t.reshape(self.view.shape)


def unit_members(rnn: nn.Module, decoder: nn.Linear, k: int) -> tuple[list[Member], list[Member]]:
    """Layer ``k``'s weights with its units along dim 1, split into the outgoing part (every weight
    that reads the units: the readers ahead and the layer's own hidden-size reads) and the incoming
    part (the unit's rows in every gate block, its biases and diagonal scales)."""
    ahead, recurrent = outgoing_weights(rnn, decoder, k)
    outgoing = [Member(w.data.t().unsqueeze(0), w, True) for w in ahead + recurrent]
    incoming = [Member(view, p, False) for view, p in unit_rows(layers_of(rnn)[k])]
    return outgoing, incoming


def reading_weights(rnn: nn.Module, decoder: nn.Linear) -> list[Tensor]:
    """Every weight that reads a layer's units, each once: the decoder, every layer's weights that
    read hidden-size values, and the input weights of every layer above the first (for a growable
    stack and for a fixed multi-layer ``GenomeRNN`` alike)."""
    out = [decoder.weight]
    if isinstance(rnn, GrowableRNN):
        for k, layer in enumerate(rnn.layers):
            out += [w for g in layer.plan.groups if k or not g.input_sized
                    for w in [getattr(layer, f"weight_{g.tag}_l0")]]
        return out
    for k in range(rnn.num_layers):
        out += [getattr(rnn, f"weight_{g.tag}_l{k}") for g in rnn.plan.groups if k or not g.input_sized]
    return out


def _lr_of(optimizer: Any, param: Tensor) -> float:
    if optimizer is None or not optimizer.param_groups:
        return 1.0
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])


def _preconditioner(optimizer: Any, param: Tensor) -> Tensor | None:
    """``sqrt(v_hat) + eps`` of an adaptive optimizer for ``param`` (None: no such state yet)."""
    state = optimizer.state.get(param, {}) if optimizer is not None else {}
    if not state:
        return None
    group = next((g for g in optimizer.param_groups if any(p is param for p in g["params"])),
                 optimizer.param_groups[0])
    if "exp_avg_sq" in state:  # Adam, AdamW
        v = state["exp_avg_sq"]
        step = float(state["step"])
        beta2 = group["betas"][1]
        return (v / (1 - beta2 ** max(step, 1.0))).sqrt().add_(group["eps"])
    if "square_avg" in state:  # RMSprop
        return state["square_avg"].sqrt().add_(group["eps"])
    if "sum" in state:  # Adagrad
        return state["sum"].sqrt().add_(group["eps"])
    return None


def _size(members: list[Member]) -> int:
    """Weights per unit in ``members``."""
    return sum(m.view[:, 0].numel() for m in members)


def _shrink(sq: Tensor, c: float) -> Tensor:
    """The proximal factor ``max(0, 1 - c / sqrt(sq))`` per unit."""
    return (1.0 - c / sq.sqrt().clamp_min(1e-30)).clamp_min(0.0)


def _group_sq(members: list[Member], optimizer: Any, preconditioned: bool | None) -> Tensor:
    """Per unit: the sum over ``members`` of ``(D * W)^2`` (``D = 1`` unless preconditioned)."""
    total: Tensor | None = None
    for m in members:
        x = m.view
        if preconditioned:
            d = _preconditioner(optimizer, m.param)
            if d is not None:
                x = x * m.laid_out(d)
        part = x.square().sum(dim=(0, 2))
        total = part if total is None else total + part
    if total is None:
        raise ArgumentError("members", allowed="at least one weight", received=[])
    return total


def _scale(members: list[Member], factor: Tensor) -> None:
    """Multiply every unit's part of ``members`` by its ``factor`` (shape ``(H,)``), in place."""
    f = factor.view(1, -1, 1)
    for m in members:
        m.view.mul_(f.to(m.view))
