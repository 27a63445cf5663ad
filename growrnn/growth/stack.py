"""``GrowableRNN``: a stack of recurrent layers in which every layer has its own unit count.

``GenomeRNN`` stacks layers of one hidden size, and its state tensors ``(L, B, H)`` cannot hold
layers of different sizes. A growable stack is therefore a list of one-layer ``GenomeRNN``s; its
state is a tuple with one state tuple per layer. Optionally every unit has a learned multiplier on
its outgoing path (Miconi's v2 structure signal, as in ``rnn.py.modif`` of ThomasMiconi/DiffRNN):
each weight that reads the unit's output ``h`` — the layer's own weighted reads of ``h``, the next
layer's input weights and the decoder — sees ``m_j * h_j``. (Element-wise uses of ``h`` such as a
GRU's ``z * h``, ``diag(h)`` and reads of memory states are not scaled.)

Layout of unit ``j`` in layer ``k`` (what surgery moves together, see :func:`resize_layer`): row
``j`` of every gate block of the layer's weights and biases, entry ``j`` of its diag vectors and of
its multiplier, column ``j`` of every weight of layer ``k`` that reads a hidden-size value, and
column ``j`` of the next layer's input weights (or of the decoder, for the last layer).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from growrnn.cells.plan import WeightGroup
from growrnn.cells.rnn import GenomeRNN
from growrnn.errors import ArgumentError
from growrnn.genome.graph import Genome
from growrnn.growth.gates import gate_closed_below, hard_concrete
from growrnn.growth.surgery import UnitMap, remap_parameter, remap_state, resize_readers, resize_units

__all__ = ["GrowableRNN", "LayerState", "resize_layer", "resize_state", "layers_of", "outgoing_weights",
           "recurrent_weights", "input_weights", "unit_rows", "fold_gates", "fold_unit_scales", "reader_biases",
           "ReaderBias"]

LayerState = tuple[Tensor, ...]


class GrowableRNN(nn.Module):
    """A stack of one-layer :class:`~growrnn.cells.GenomeRNN` with per-layer unit counts.

    Args:
        genome: the cell (a :class:`Genome`, library name or genome text).
        input_size: features of the input ``x``.
        hidden_sizes: the unit count of each layer (bottom first).
        dropout: dropout between layers (not after the last).
        multipliers: give every unit a learned multiplier on its outgoing path (initialised at 1).
        gates: give every unit a hard-concrete L0 gate on its outgoing path (Louizos et al. 2018):
            a learned ``log_alpha`` (initialised at ``gate_init``); the unit's output is scaled by a
            sample of the gate in training (drawn from ``gate_generator`` when it is set) and by
            its deterministic value in evaluation (:func:`~growrnn.growth.gates.hard_concrete`).
        fast_path: as for ``GenomeRNN``.
        generator: draws the initial weights (as for ``GenomeRNN``).
        dtype: the parameters' dtype.

    ``forward(x (B, T, I), state)`` returns ``(B, T, H_last)`` and a tuple with one state tuple per
    layer (each tensor ``(1, B, H_k)``), h first. Always batch-first.
    """

    def __init__(self, genome: Genome | str, input_size: int, hidden_sizes: Sequence[int], dropout: float = 0.0,
                 multipliers: bool = False, fast_path: bool | str = "auto",
                 generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                 gates: bool = False, gate_init: float = 3.0) -> None:
        super().__init__()
        if multipliers and gates:
            raise ArgumentError("gates", allowed="false when multipliers is true", received=True,
                                hint="a unit has a learned multiplier (signal multiplier) or a gate (l0_gate)")
        sizes = list(hidden_sizes)
        if not sizes or any(not isinstance(h, int) or h < 1 for h in sizes):
            raise ArgumentError("hidden_sizes", allowed="a non-empty list of ints >= 1", received=hidden_sizes,
                                hint="one unit count per layer, e.g. [64, 32]")
        layers = []
        for k, h in enumerate(sizes):
            layers.append(GenomeRNN(genome, input_size if k == 0 else sizes[k - 1], h, 1, batch_first=True,
                                    fast_path=fast_path, generator=generator, dtype=dtype))
        self.layers: list[GenomeRNN] = nn.ModuleList(layers)  # type: ignore[assignment]
        self.genome: Genome = layers[0].genome
        self.plan = layers[0].plan
        self.input_size = input_size
        self.dropout = float(dropout)
        self.multipliers = nn.ParameterList(
            [nn.Parameter(torch.ones(h, dtype=dtype)) for h in sizes]) if multipliers else None
        self.gates = nn.ParameterList(
            [nn.Parameter(torch.full((h,), float(gate_init), dtype=dtype)) for h in sizes]) if gates else None
        #: draws the gates' training samples (set it, and re-seed it per step, for exact resumes)
        self.gate_generator: torch.Generator | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_sizes(self) -> list[int]:
        return [int(layer.hidden_size) for layer in self.layers]

    @property
    def hidden_size(self) -> int:
        """The last layer's unit count (what a decoder reads)."""
        return int(self.layers[-1].hidden_size)

    def forward(self, x: Tensor, state: Sequence[LayerState] | None = None) -> tuple[Tensor, tuple[LayerState, ...]]:
        """x: (B, T, I) -> (B, T, H_last), one state tuple per layer."""
        if state is not None and len(state) != self.num_layers:
            raise ArgumentError("state", allowed=f"one state tuple per layer ({self.num_layers})",
                                received=f"{len(state)} entries", hint="pass the state this module returned")
        out, new = x, []
        for k, layer in enumerate(self.layers):
            if k:
                out = nn.functional.dropout(out, self.dropout, self.training)
            prev = None if state is None else state[k]
            m = self.unit_scale(k)
            if m is None:
                out, s = layer(out, prev)
            else:
                # recurrent reads see m * h: scale the reading columns (one product per window);
                # readers ahead see m * h: scale the output
                scaled = {name: w * m for name, w in h_weights(layer)}
                with _swapped(layer, scaled):
                    out, s = layer(out, prev)
                out = out * m
            new.append(s)
        return out, tuple(new)

    def to_torch(self) -> nn.LSTM | nn.GRU | nn.RNN:
        """The ``nn.LSTM``/``nn.GRU``/``nn.RNN`` this stack computes, with a copy of its weights,
        for a stack whose layers all hold the same number of units (torch's modules have one
        hidden size; a grown stack of other widths converts layer by layer, ``[layer.to_torch()
        for layer in rnn.layers]``, each ``(1, B, H_k)`` state its own). ``batch_first=True`` and
        the dropout between layers as here; outputs equal this stack's, its state tuple per layer
        stacked into torch's ``(num_layers, B, H)``. A stack with multipliers or gates is refused:
        fold them first (:func:`fold_unit_scales`, which needs the decoder that reads the last
        layer), also before converting layer by layer, which cannot see them.

        >>> lstm = GrowableRNN("lstm", 3, [5, 5]).to_torch()
        >>> type(lstm).__name__, lstm.num_layers, lstm.hidden_size
        ('LSTM', 2, 5)
        """
        sizes = self.hidden_sizes
        if self.multipliers is not None or self.gates is not None:
            raise ArgumentError("rnn", allowed="a stack without multipliers or gates",
                                received="multipliers" if self.multipliers is not None else "gates",
                                hint="fold them into the weights that read the units first: "
                                     "growrnn.growth.fold_unit_scales(rnn, decoder)")
        if len(set(sizes)) > 1:
            raise ArgumentError("rnn.hidden_sizes", allowed="one unit count in every layer (torch's modules "
                                "have one hidden size)", received=sizes,
                                hint="convert layer by layer: [layer.to_torch() for layer in rnn.layers] "
                                     "(after fold_unit_scales(rnn, decoder) where it has multipliers or gates)")
        parts = [layer.to_torch() for layer in self.layers]
        module = type(parts[0])(self.input_size, sizes[0], self.num_layers, batch_first=True,
                                dropout=self.dropout if self.num_layers > 1 else 0.0,
                                device=parts[0].weight_ih_l0.device, dtype=parts[0].weight_ih_l0.dtype,
                                **({"nonlinearity": parts[0].nonlinearity} if isinstance(parts[0], nn.RNN) else {}))
        with torch.no_grad():
            for k, part in enumerate(parts):
                for name, t in part.named_parameters():
                    getattr(module, name.replace("_l0", f"_l{k}")).copy_(t)
        module.train(self.training)
        return module

    def unit_scale(self, k: int) -> Tensor | None:
        """Layer ``k``'s per-unit scale on the outgoing path: its multipliers, its gates (sampled in
        training, deterministic in evaluation), or None."""
        if self.multipliers is not None:
            return self.multipliers[k]
        if self.gates is not None:
            return hard_concrete(self.gates[k], self.gate_generator, sample=self.training)
        return None


@contextmanager
def _swapped(module: nn.Module, tensors: Mapping[str, Tensor]) -> Iterator[None]:
    """Let ``module`` see ``tensors`` in place of its parameters of those names for one call.
    (What ``torch.func.functional_call`` does, without its per-call cost of ~0.1 ms, which
    matters for batch-1 windows; the module reads its weights by attribute at call time.)"""
    saved = {name: module._parameters[name] for name in tensors}
    try:
        module._parameters.update(tensors)  # type: ignore[arg-type]
        yield
    finally:
        module._parameters.update(saved)


def layers_of(rnn: nn.Module) -> list[GenomeRNN]:
    """The growable layers of a model's recurrent part: a ``GrowableRNN``'s layers, or a one-layer
    ``GenomeRNN`` itself."""
    if isinstance(rnn, GrowableRNN):
        return list(rnn.layers)  # type: ignore[arg-type]
    if isinstance(rnn, GenomeRNN) and rnn.num_layers == 1:
        return [rnn]
    raise ArgumentError("rnn", allowed="a GrowableRNN or a one-layer GenomeRNN",
                        received=f"{type(rnn).__name__} with {getattr(rnn, 'num_layers', '?')} layers",
                        hint="give hidden_size as a list (one size per layer) to build a growable stack")


def recurrent_weights(layer: GenomeRNN) -> list[tuple[str, Tensor]]:
    """The layer's weights that read a hidden-size value (``h``, a memory state or a local): their
    columns are the layer's units."""
    return [(f"weight_{g.tag}_l0", getattr(layer, f"weight_{g.tag}_l0")) for g in layer.plan.groups
            if not g.input_sized]


def h_weights(layer: GenomeRNN) -> list[tuple[str, Tensor]]:
    """The layer's weights whose argument is the cell output ``h`` itself (what a unit multiplier
    scales: reads of memory states, of locals and ``diag`` calls are not scaled)."""
    g = layer.genome

    def reads_h(j: int) -> bool:
        arg = g.nodes[g.nodes[g.weighted[j]].args[0]]
        return arg.op == "state" and arg.name == "h"
    return [(f"weight_{grp.tag}_l0", getattr(layer, f"weight_{grp.tag}_l0")) for grp in layer.plan.groups
            if not grp.input_sized and reads_h(grp.members[0])]


def input_weights(layer: GenomeRNN) -> list[tuple[str, Tensor]]:
    """The layer's weights that read its input ``x`` (their columns are the input features)."""
    return [(f"weight_{g.tag}_l0", getattr(layer, f"weight_{g.tag}_l0")) for g in layer.plan.groups
            if g.input_sized]


def outgoing_weights(rnn: nn.Module, decoder: nn.Linear, k: int) -> tuple[list[Tensor], list[Tensor]]:
    """The weights that read layer ``k``'s units, as (feed-forward readers, recurrent readers): the
    next layer's input weights (or the decoder's for the last layer), and the layer's own
    hidden-size-reading weights. Column ``j`` of each belongs to unit ``j``."""
    layers = layers_of(rnn)
    ahead = [w for _, w in input_weights(layers[k + 1])] if k + 1 < len(layers) else [decoder.weight]
    return ahead, [w for _, w in recurrent_weights(layers[k])]


class ReaderBias(NamedTuple):
    """The bias added to a reading weight's product: ``rows`` are the product's rows that have an
    entry in ``bias``, in its order (None: every row, one entry each). A weight group that mixes
    ``affine`` and ``linear`` calls has bias entries for its affine calls' blocks only."""

    bias: Tensor
    rows: Tensor | None

    def add_(self, v: Tensor) -> None:
        """Add ``v`` (shaped as the product: one value per row of the weight) to the bias."""
        self.bias.add_((v if self.rows is None else v[self.rows.to(v.device)]).to(self.bias))


def _group_bias(layer: GenomeRNN, g: WeightGroup) -> ReaderBias | None:
    if not g.has_bias:
        return None
    b, H = getattr(layer, f"bias_{g.tag}_l0"), int(layer.hidden_size)
    if all(g.affine):
        return ReaderBias(b, None)
    rows = torch.cat([torch.arange(p * H, (p + 1) * H) for p, affine in enumerate(g.affine) if affine])
    return ReaderBias(b, rows)


def reader_biases(rnn: nn.Module, decoder: nn.Linear, k: int) -> list[ReaderBias | None]:
    """For each weight of :func:`outgoing_weights` (ahead, then recurrent), the bias added to its
    product, where that product reads layer ``k``'s output ``h`` itself (None otherwise: reads of
    a memory state or a local, and groups without a bias). A unit's constant part ``W[:, j] * mean_j``
    can be moved into these biases (for the rows that have one: a ``linear`` call's rows have none,
    so there the constant part is lost)."""
    layers = layers_of(rnn)
    if k + 1 < len(layers):
        nxt = layers[k + 1]
        ahead = [_group_bias(nxt, g) for g in nxt.plan.groups if g.input_sized]
    else:
        ahead = [None if decoder.bias is None else ReaderBias(decoder.bias, None)]
    of_h = reads_output(rnn, k)[len(ahead):]
    rec = [_group_bias(layers[k], g) if h else None
           for g, h in zip([g for g in layers[k].plan.groups if not g.input_sized], of_h, strict=True)]
    return ahead + rec


def reads_output(rnn: nn.Module, k: int) -> list[bool]:
    """For each weight of :func:`outgoing_weights` (ahead, then recurrent), whether it reads layer
    ``k``'s output ``h`` itself (the feed-forward readers always do; a recurrent weight may read a
    memory state or a local instead)."""
    layers = layers_of(rnn)
    ahead = len(input_weights(layers[k + 1])) if k + 1 < len(layers) else 1
    reads_h = {name for name, _ in h_weights(layers[k])}
    return [True] * ahead + [name in reads_h for name, _ in recurrent_weights(layers[k])]


def unit_rows(layer: GenomeRNN) -> list[tuple[Tensor, Tensor]]:
    """The one-layer ``layer``'s own weights with its units along dim 1, as ``(view, parameter)``:
    each weight group ``(n*H, cols)`` as ``(n, H, cols)``, each bias as ``(n, H, 1)``, the diagonal
    scales as ``(m, H, 1)`` (views of the parameters' data: writing to them writes the weights)."""
    H = int(layer.hidden_size)
    out = []
    for grp in layer.plan.groups:
        w = getattr(layer, f"weight_{grp.tag}_l0")
        out.append((w.data.view(-1, H, w.shape[1]), w))
        if grp.has_bias:
            b = getattr(layer, f"bias_{grp.tag}_l0")
            out.append((b.data.view(-1, H, 1), b))
    if layer.plan.diags:
        d = layer.weight_diag_l0
        out.append((d.data.view(-1, H, 1), d))  # type: ignore[union-attr]
    return out


@torch.no_grad()
def fold_unit_scales(rnn: GrowableRNN, decoder: nn.Linear) -> None:
    """Fold every layer's per-unit scale -- its multipliers, or its gates' deterministic values --
    into the weights that read its units (the layer's own reads of ``h``, the next layer's input
    weights or the decoder) and remove them: what the decoder computes in evaluation and the states
    do not change (the stack's own output is then the last layer's ``h``, where it was the scaled
    ``h``), and the stack has no multipliers or gates left (what :meth:`GrowableRNN.to_torch` and
    a layer's :meth:`~growrnn.cells.GenomeRNN.to_torch` need to compute what the stack did)."""
    if rnn.gates is None and rnn.multipliers is None:
        return
    was = rnn.training
    rnn.eval()
    scales = [rnn.unit_scale(k).detach() for k in range(rnn.num_layers)]  # type: ignore[union-attr]
    rnn.train(was)
    for k, z in enumerate(scales):
        ahead, _ = outgoing_weights(rnn, decoder, k)
        for w in ahead:
            w.mul_(z.to(w))
        for _, w in h_weights(rnn.layers[k]):  # type: ignore[arg-type]
            w.mul_(z.to(w))
    # removed, not set to None in their slots: a strict load of a state dict that holds them
    # then says so instead of dropping them unread
    for kind in ("gates", "multipliers"):
        if kind in rnn._modules:
            del rnn._modules[kind]
        setattr(rnn, kind, None)


def fold_gates(rnn: GrowableRNN, decoder: nn.Linear) -> None:
    """Fold every layer's deterministic gate values into the weights that read its units and remove
    the gates (:func:`fold_unit_scales` for a gated stack; a stack without gates is left as it is):
    what the decoder computes in evaluation does not change, and the stack has no gates left."""
    if rnn.gates is not None:
        fold_unit_scales(rnn, decoder)


def resize_layer(rnn: nn.Module, decoder: nn.Linear, k: int, units: UnitMap,
                 optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None,
                 init_std: float = 0.0, fresh_second_moment: float | str = 0.0,
                 state: Sequence[LayerState] | LayerState | None = None,
                 fresh_multiplier: float | None = None) -> Sequence[LayerState] | LayerState | None:
    """Give layer ``k`` the units of ``units`` and keep everything that touches them true: the
    layer's parameters (fresh rows N(0, ``init_std``), fresh columns zero), the readers ahead (next
    layer or decoder; fresh columns zero), the unit's multiplier or gate (fresh ones
    ``fresh_multiplier``; None: a multiplier 0, a gate closed),
    the optimizer state (retained entries exact, fresh ones zero or ``fresh_second_moment``), and
    the carried ``state`` (returned, resized; fresh units at zero)."""
    layers = layers_of(rnn)
    if not 0 <= k < len(layers):
        raise ArgumentError("k", allowed=f"a layer index in 0..{len(layers) - 1}", received=k,
                            hint="layers are numbered from the input up")
    resize_units(layers[k], units, optimizer, generator, init_std, fresh_second_moment)
    ahead, _ = outgoing_weights(rnn, decoder, k)
    resize_readers(ahead, units, optimizer, fresh_second_moment=fresh_second_moment)
    if k + 1 < len(layers):
        layers[k + 1].input_size = units.size
    else:
        decoder.in_features = units.size
    for kind in ("multipliers", "gates"):
        scales = getattr(rnn, kind, None)
        if scales is not None:
            m = scales[k]
            value = fresh_multiplier if fresh_multiplier is not None else \
                gate_closed_below(m.dtype) if kind == "gates" else 0.0
            fresh = torch.full((units.size,), value, dtype=m.dtype, device=m.device)
            remap_parameter(m, {0: units.index}, optimizer, fresh, fresh_second_moment)
    return resize_state(rnn, k, units, state)


def resize_state(rnn: nn.Module, k: int, units: UnitMap,
                 state: Sequence[LayerState] | LayerState | None) -> Sequence[LayerState] | LayerState | None:
    """A carried ``state`` of ``rnn`` (per layer for a stack; None: none) with layer ``k``
    resized by ``units`` (fresh units at zero)."""
    if state is None:
        return None
    if isinstance(rnn, GrowableRNN):
        states: list[LayerState] = list(state)  # type: ignore[arg-type]
        states[k] = remap_state(states[k], units)
        return tuple(states)
    return remap_state(state, units)  # type: ignore[arg-type]


def resize_to(rnn: nn.Module, decoder: nn.Linear, sizes: Sequence[int]) -> None:
    """Give every layer the unit count in ``sizes`` (keeping its first units, adding zero-weight
    ones): how a checkpoint's sizes are rebuilt before its weights load."""
    layers = layers_of(rnn)
    if len(sizes) != len(layers):
        raise ArgumentError("sizes", allowed=f"one size per layer ({len(layers)})", received=list(sizes),
                            hint="a checkpoint of another architecture cannot be loaded into this one")
    for k, (layer, h) in enumerate(zip(layers, sizes, strict=True)):
        current = int(layer.hidden_size)
        if h != current:
            resize_layer(rnn, decoder, k, UnitMap.of(current, range(min(current, h)), add=max(0, h - current)))
