"""The structure controller's rule and the ``outgoing_l1`` structure signal, as pure functions
(the Lightning callback that applies them during training is
:class:`growrnn.training.growth.StructureController`).

Faithful to the v3 code of ``ThomasMiconi/DiffRNN`` (its ``rnn.py``): a unit whose score (the
normalised L1 norm of its outgoing weights) is below ``threshold`` is deletable; ``reserve``
deletable units are always kept; each other deletable unit is deleted with probability
``p_delete`` per step; when no unit beyond the reserve is below threshold, one unit is added with
probability ``p_add``, and with probability ``p_spontaneous`` in any case, up to ``max_units``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from growrnn.errors import ArgumentError, is_number
from growrnn.growth.surgery import UnitMap

__all__ = ["GrowthRule", "structure_step", "outgoing_l1", "reader_scales", "NeedRule", "need_step"]


@dataclass(frozen=True)
class GrowthRule:
    """The controller's meta-parameters; defaults are the paper's code (v3). A layer grows to at most
    ``max_units - 1`` units (the paper's ``MAX_HIDDEN_SIZE - 1``)."""

    threshold: float = 0.05
    reserve: int = 1
    p_delete: float = 0.05
    p_add: float = 0.01
    p_spontaneous: float = 1e-4
    max_units: int = 100
    min_units: int = 1

    def __post_init__(self) -> None:
        for name in ("p_delete", "p_add", "p_spontaneous"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ArgumentError(name, allowed="a probability in [0, 1]", received=p,
                                    hint="the paper's code uses P_del 0.05, P_add 0.01 (v3)")
        if self.reserve < 0:
            raise ArgumentError("reserve", allowed="an int >= 0", received=self.reserve,
                                hint="the paper keeps 1 sub-threshold unit in reserve")
        if self.min_units < 1 or self.max_units < self.min_units + 1:
            raise ArgumentError("min_units, max_units", allowed="1 <= min_units < max_units",
                                received=(self.min_units, self.max_units),
                                hint="the layer grows to at most max_units - 1, as the paper's code")
        if not is_number(self.threshold) or not self.threshold >= 0:
            raise ArgumentError("threshold", allowed="a number >= 0", received=self.threshold)


def structure_step(scores: Tensor, rule: GrowthRule, rng: random.Random) -> UnitMap:
    """One application of the rule to the units' ``scores`` (shape ``(H,)``): which units stay
    (in their order) and whether one is added. The randomness comes from ``rng`` alone."""
    H = int(scores.numel())
    above = (scores.abs() > rule.threshold).tolist()
    keep = [True] * H
    if sum(above) < H - rule.reserve:  # more sub-threshold units than the reserve
        deletable = [j for j in range(H) if not above[j]]
        rng.shuffle(deletable)
        for j in deletable[rule.reserve:]:
            if rng.random() < rule.p_delete:
                keep[j] = False
    kept = [j for j in range(H) if keep[j]]
    if len(kept) < rule.min_units:  # never below the floor: keep the best-scored units
        best = sorted(range(H), key=lambda j: -float(scores[j].abs()))[: rule.min_units]
        kept = sorted(set(kept) | set(best))
    n = len(kept)
    none_spare = sum(above[j] for j in kept) > n - rule.reserve
    add = int(n < rule.max_units - 1 and ((none_spare and rng.random() < rule.p_add)
                                          or rng.random() < rule.p_spontaneous))
    if n == H and not add:  # the common case, every step: skip UnitMap.of's checks
        return UnitMap(torch.arange(H))
    return UnitMap.of(H, kept, add)


@dataclass(frozen=True)
class NeedRule:
    """The settling signals' rule (no probability anywhere): a dead unit is *spare* (and so is a
    unit still on trial, where the signal says so); a unit dead for ``dead_steps`` consecutive
    steps is deleted (never below ``min_units``: a unit kept only by that floor is not counted as
    spare, so a layer whose every unit failed still tries new ones); and while fewer than
    ``max(reserve, ceil(reserve_fraction * units))`` units are spare, units are added (up to
    ``max_units``). A new unit is spare until it proves itself, so the layer tries that many fresh
    units at a time: it grows while they prove themselves and stops when they do not, whatever the
    training length."""

    reserve: int = 1
    dead_steps: int = 100
    max_units: int = 1024
    min_units: int = 1
    reserve_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.reserve < 0:
            raise ArgumentError("reserve", allowed="an int >= 0", received=self.reserve,
                                hint="1 keeps one fresh unit on trial; 0 never adds units (shrink only)")
        if self.dead_steps < 1:
            raise ArgumentError("dead_steps", allowed="an int >= 1", received=self.dead_steps,
                                hint="the steps a unit may stay dead (on trial) before it is deleted")
        if self.min_units < 1 or self.max_units < self.min_units:
            raise ArgumentError("min_units, max_units", allowed="1 <= min_units <= max_units",
                                received=(self.min_units, self.max_units))
        if not is_number(self.reserve_fraction) or not 0.0 <= self.reserve_fraction <= 1.0:
            raise ArgumentError("reserve_fraction", allowed="a number in [0, 1]", received=self.reserve_fraction,
                                hint="the share of the layer's units kept on trial; 0.1 grows a layer by up to 10 % "
                                     "per trial")

    def spares_wanted(self, units: int) -> int:
        """How many spare units a layer of ``units`` units keeps."""
        return max(self.reserve, math.ceil(self.reserve_fraction * units))


def need_step(dead: Tensor, streak: Tensor, rule: NeedRule, spare: Tensor | None = None) -> tuple[UnitMap, Tensor]:
    """One application of :class:`NeedRule` to a layer whose units are ``dead`` (bool ``(H,)``),
    given each unit's count of consecutive dead steps before this one (``streak``, ``(H,)``) and
    which units are ``spare`` (bool ``(H,)``; default: the dead ones).
    Returns the units that stay (in order) plus those added, and the streaks of the new layout.
    The rule decides on the host: ``dead`` and ``spare`` may be on any device, ``streak`` is on the CPU."""
    dead, spare = dead.cpu(), None if spare is None else spare.cpu()
    H = int(dead.numel())
    streak = torch.where(dead, streak + 1, torch.zeros_like(streak))
    expired = (streak >= rule.dead_steps).tolist()
    keep = [j for j in range(H) if not expired[j]]
    floor: list[int] = []
    if len(keep) < rule.min_units:  # never below the floor: keep the units dead the shortest time
        order = sorted(range(H), key=lambda j: (int(streak[j]), j))
        floor = [j for j in order[: rule.min_units] if expired[j]]
        keep = sorted(set(keep) | set(floor))
    # a unit kept only by the floor is not a spare: it does not stop the layer from trying new ones
    counted = [j for j in keep if j not in floor]
    spares = int((dead if spare is None else spare)[counted].sum()) if counted else 0
    add = max(0, min(rule.spares_wanted(len(keep)) - spares, rule.max_units - len(keep)))
    if len(keep) == H and not add:
        return UnitMap(torch.arange(H)), streak
    units = UnitMap.of(H, keep, add)
    return units, torch.cat([streak[keep], torch.zeros(add, dtype=streak.dtype)])


def outgoing_l1(readers: Sequence[tuple[Tensor, float]]) -> Tensor:
    """Unit scores: ``sum_r scale_r * sum_i |W_r[i, j]|`` over the weights ``W_r`` that read the
    units (columns = units). Miconi's v3 uses the decoder with scale 0.5 and the recurrent weight
    with scale ``0.5 * n_outputs / H``, so that both stay comparable as the layer changes size;
    :func:`reader_scales` gives these scales for any cell and stack."""
    if not readers:
        raise ArgumentError("readers", allowed="at least one (weight, scale) pair", received=[])
    total = None
    for w, scale in readers:
        part = scale * w.detach().abs().sum(0)
        total = part if total is None else total + part
    assert total is not None
    return total


def reader_scales(ahead: Sequence[Tensor], recurrent: Sequence[Tensor],
                  reference_rows: int) -> list[tuple[Tensor, float]]:
    """The (weight, scale) pairs of :func:`outgoing_l1` for a layer: each part (the readers ahead,
    the recurrent readers) counts as ``0.5 * reference_rows`` times its mean absolute weight per
    row. With the decoder ahead and ``reference_rows`` = its outputs this is Miconi's v3 score."""
    pairs: list[tuple[Tensor, float]] = []
    for part in (ahead, recurrent):
        rows = sum(int(w.shape[0]) for w in part)
        pairs += [(w, 0.5 * reference_rows / rows) for w in part]
    return pairs
