"""Hard-concrete gates (Louizos, Welling & Kingma 2018, "Learning sparse neural networks through
L0 regularization"): a per-unit existence variable whose evaluation value is exactly 0 or in
(0, 1], and whose probability of being non-zero (the expected L0 norm) is differentiable."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["GATE_LIMITS", "GATE_BETA", "gate_closed_below", "hard_concrete", "open_probability"]

#: the hard-concrete stretch (gamma, zeta) and temperature beta of Louizos et al. (2018)
GATE_LIMITS = (-0.1, 1.1)
GATE_BETA = 2.0 / 3.0


def gate_closed_below(dtype: torch.dtype | None = None) -> float:
    """The log-alpha at and below which a gate's deterministic (evaluation) value is exactly 0; with
    ``dtype``, the largest value that dtype holds at or below it (bfloat16 rounds the threshold
    itself up, to a gate a little open: -2.3906 where the threshold is -2.3979)."""
    gamma, zeta = GATE_LIMITS
    p = -gamma / (zeta - gamma)
    edge = math.log(p / (1.0 - p))
    if dtype is None:
        return edge
    held = torch.tensor(edge, dtype=dtype)
    while float(held) > edge:  # one step of the dtype's spacing down (it rounds to nearest)
        held = (held.double() - torch.finfo(dtype).eps * abs(edge)).to(dtype)
    return float(held)


def hard_concrete(log_alpha: Tensor, generator: torch.Generator | None = None, sample: bool = True) -> Tensor:
    """Gate values in [0, 1] (shape of ``log_alpha``): a hard-concrete sample (training) or the
    deterministic value ``clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)`` (evaluation),
    which is exactly 0 for ``log_alpha <= gate_closed_below()``."""
    gamma, zeta = GATE_LIMITS
    if sample:
        u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype).to(log_alpha.device)
        u = u.clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / GATE_BETA)
    else:
        s = torch.sigmoid(log_alpha)
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def open_probability(log_alpha: Tensor) -> Tensor:
    """P(gate != 0) of a hard-concrete gate: its expected L0 cost."""
    gamma, zeta = GATE_LIMITS
    return torch.sigmoid(log_alpha - GATE_BETA * math.log(-gamma / zeta))
