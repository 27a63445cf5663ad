"""Unit surgery: add and delete hidden units of a one-layer ``GenomeRNN`` and of the modules that
read its output, keeping the record true (DESIGN: "surgery keeps the record true").

A unit j is component j of every gate and state: row j of every weighted call's block, column j of
every weight that reads a hidden-size value, entry j of every bias and diag vector. Parameters
are resized **in place** (``param.data`` is replaced, the ``Parameter`` object stays), so
optimizers, LR schedulers and Lightning keep valid references; :func:`remap_parameter` moves the
optimizer state of retained entries exactly and starts fresh entries at zero.

Stacks with a size per layer resize through :func:`growrnn.growth.stack.resize_layer`, which uses
these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from growrnn.cells.rnn import GenomeRNN
from growrnn.errors import ArgumentError

__all__ = ["UnitMap", "remap_parameter", "resize_units", "resize_readers", "remap_state"]


@dataclass(frozen=True)
class UnitMap:
    """Where each new unit comes from: ``index[i]`` is the old unit that becomes unit i, or -1
    for a fresh unit. Retained units keep their order; fresh units come last."""

    index: Tensor

    @classmethod
    def of(cls, old_size: int, keep: Sequence[int] | Tensor, add: int = 0) -> UnitMap:
        if torch.as_tensor(keep).dtype == torch.bool:
            raise ArgumentError("keep", allowed="unit indices (ints)", received="a bool mask",
                                hint="pass torch.nonzero(mask).flatten() for the units a mask keeps")
        keep_t = torch.as_tensor(keep, dtype=torch.long).flatten()
        out_of_range = keep_t.numel() > 0 and (keep_t.min() < 0 or keep_t.max() >= old_size)
        if out_of_range or keep_t.unique().numel() != keep_t.numel():
            raise ArgumentError("keep", allowed=f"distinct unit indices in 0..{old_size - 1}", received=keep_t.tolist())
        if add < 0 or keep_t.numel() + add < 1:
            raise ArgumentError("add", allowed="an int >= 0 that leaves at least one unit", received=add)
        return cls(torch.cat([keep_t, torch.full((add,), -1, dtype=torch.long)]))

    @property
    def size(self) -> int:
        return int(self.index.numel())

    def blocks(self, n: int, old_size: int) -> Tensor:
        """The map over ``n`` stacked blocks of ``old_size`` rows (one block per gate)."""
        return torch.cat([torch.where(self.index >= 0, self.index + b * old_size, -1) for b in range(n)])


def _apply(t: Tensor, maps: dict[int, Tensor]) -> Tensor:
    for dim, index in maps.items():
        keep = index >= 0
        shape = list(t.shape)
        shape[dim] = index.numel()
        out = t.new_zeros(shape)
        pos = torch.nonzero(keep).flatten().to(t.device)
        out.index_copy_(dim, pos, t.index_select(dim, index[keep].to(t.device)))
        t = out
    return t


#: Optimizer state entries that hold a running second moment (RMSprop, Adam, Adagrad).
SECOND_MOMENTS = ("square_avg", "exp_avg_sq", "sum")


def remap_parameter(param: Tensor, maps: dict[int, Tensor], optimizer: torch.optim.Optimizer | None = None,
                    fresh: Tensor | None = None, fresh_second_moment: float | str = 0.0) -> None:
    """Resize ``param`` in place along the dims in ``maps`` (dim -> index, -1 = fresh entry).

    Fresh entries are zero, or taken from ``fresh`` (a tensor of the new shape) where given. The
    gradient and every optimizer state tensor shaped like the parameter (momentum, Adam's moments,
    RMSprop's and Adagrad's squares) are moved the same way, fresh entries at zero — the one
    explicit optimizer-surgery helper. ``fresh_second_moment`` starts the fresh entries of the
    second-moment states (:data:`SECOND_MOMENTS`) at that value instead (Miconi's code starts a new
    unit's RMSprop mean square at 0.01, which keeps its first updates small)."""
    old_shape = param.shape
    new = _apply(param.data, maps)
    if fresh is not None:
        mask = _apply(torch.ones_like(param.data, dtype=torch.bool), maps)
        new = torch.where(mask, new, fresh.to(new))
    param.data = new
    if param.grad is not None:
        param.grad = _apply(param.grad, maps)
    if optimizer is not None and param in optimizer.state:
        state = optimizer.state[param]
        for key, value in list(state.items()):
            if torch.is_tensor(value) and value.shape == old_shape:
                state[key] = _apply(value, maps)
                if fresh_second_moment and key in SECOND_MOMENTS:
                    mask = _apply(torch.ones_like(value, dtype=torch.bool), maps)
                    fill = float(value.mean()) if fresh_second_moment == "mean" else float(fresh_second_moment)
                    state[key] = state[key].masked_fill(~mask, fill)


def resize_units(rnn: GenomeRNN, units: UnitMap, optimizer: torch.optim.Optimizer | None = None,
                 generator: torch.Generator | None = None, init_std: float = 0.0,
                 fresh_second_moment: float | str = 0.0) -> None:
    """Give the one-layer ``rnn`` the units of ``units``: retained units keep every weight, fresh
    units get incoming weights (their rows) drawn N(0, ``init_std``) from ``generator`` and zero
    outgoing weights (their columns in every weight that reads a hidden-size value)."""
    if rnn.num_layers != 1:
        raise ArgumentError("rnn", allowed="a one-layer GenomeRNN (a growable stack resizes its layers one by one)",
                            received=f"num_layers={rnn.num_layers}")
    H, plan = rnn.hidden_size, rnn.plan
    cols = units.index
    for grp in plan.groups:
        weight = getattr(rnn, f"weight_{grp.tag}_l0")
        rows = units.blocks(len(grp.members), H)
        maps = {0: rows} if grp.input_sized else {0: rows, 1: cols}
        fresh = None
        if init_std > 0:
            shape = (rows.numel(), weight.shape[1] if grp.input_sized else cols.numel())
            fresh = torch.randn(shape, generator=generator, dtype=weight.dtype).to(weight.device) * init_std
            if not grp.input_sized:  # fresh columns (outgoing weights) stay zero
                fresh[:, cols < 0] = 0.0
        remap_parameter(weight, maps, optimizer, fresh, fresh_second_moment)
        if grp.has_bias:
            remap_parameter(getattr(rnn, f"bias_{grp.tag}_l0"), {0: units.blocks(sum(grp.affine), H)}, optimizer,
                            fresh_second_moment=fresh_second_moment)
    if plan.diags:
        diag: Tensor = rnn.weight_diag_l0  # type: ignore[assignment]
        remap_parameter(diag, {1: cols}, optimizer, fresh_second_moment=fresh_second_moment)
    rnn.hidden_size = units.size


def resize_readers(weights: Sequence[Tensor], units: UnitMap, optimizer: torch.optim.Optimizer | None = None,
                   dim: int = 1, fresh_second_moment: float | str = 0.0) -> None:
    """Resize the input dimension of modules that read the layer's output (a decoder's or the next
    layer's input weight): retained units keep their columns, fresh units read as zero."""
    for w in weights:
        remap_parameter(w, {dim: units.index}, optimizer, fresh_second_moment=fresh_second_moment)


def remap_state(state: tuple[Tensor, ...], units: UnitMap) -> tuple[Tensor, ...]:
    """The carried state (tensors ``(L, B, H)``) of the resized layer; fresh units start at zero."""
    return tuple(_apply(s, {s.dim() - 1: units.index}) for s in state)
