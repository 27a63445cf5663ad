"""Weight inheritance: a child network starts from its parent's trained weights, call site by
call site, matched by the genome's stable node ids (see :mod:`growrnn.search.variation.operators`).

>>> import random, torch, growrnn as gr
>>> from growrnn.search.variation.operators import Limits
>>> from growrnn.search.variation.morphisms import add_connection
>>> parent = gr.GenomeRNN(gr.cells.gru(), input_size=3, hidden_size=4)
>>> child = gr.GenomeRNN(add_connection(parent.genome, random.Random(0), Limits()), 3, 4)
>>> report = inherit_weights(child, parent)
>>> (report.inherited, report.new, report.zeroed)
(6, 1, 1)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from growrnn.cells.plan import plan_for
from growrnn.cells.rnn import GenomeRNN, layer_weights
from growrnn.errors import ArgumentError
from growrnn.genome.graph import Genome
from growrnn.genome.validate import value_spaces
from growrnn.search.variation.morphisms import zero_init_nodes

__all__ = ["InheritReport", "inherit_state", "inherit_weights"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InheritReport:
    """What :func:`inherit_weights` did, counted in weighted call sites of the genome (each one
    has a block in every layer).

    Attributes:
        inherited: call sites whose weights (and bias) were copied from the parent.
        new: call sites the parent lacks (kept their initialisation, or zeroed).
        zeroed: of the new ones, identity inserts set to zero (see
            :func:`growrnn.search.variation.morphisms.zero_init_nodes`).
        names: the child's parameter tensors that received parent weights, sorted.
        inherited_ids / new_ids / zeroed_ids: the node ids behind the counts.
    """

    inherited: int
    new: int
    zeroed: int
    names: tuple[str, ...]
    inherited_ids: frozenset[int] = frozenset()
    new_ids: frozenset[int] = frozenset()
    zeroed_ids: frozenset[int] = frozenset()


def inherit_weights(child: GenomeRNN, parent: GenomeRNN, zero_new: bool = True) -> InheritReport:
    """Copy ``parent``'s weights into ``child`` (in place) wherever their genomes share a call site.

    Both networks need the same ``input_size``, ``hidden_size`` and ``num_layers``; see
    :func:`inherit_state`, which this calls with the parent's genome and state dict."""
    for arg, value in (("child", child), ("parent", parent)):
        if not isinstance(value, GenomeRNN):
            raise ArgumentError(arg, allowed="a GenomeRNN", received=type(value).__name__)
    for size in ("input_size", "hidden_size", "num_layers"):
        if getattr(child, size) != getattr(parent, size):
            raise ArgumentError(f"child.{size}", allowed=f"the parent's {size}, {getattr(parent, size)}",
                                received=getattr(child, size),
                                hint="build the child with the parent's sizes, then grow it if needed")
    return inherit_state(child, parent.genome, parent.state_dict(), zero_new)


def inherit_state(child: GenomeRNN, parent: Genome, state: Mapping[str, torch.Tensor],
                  zero_new: bool = True, *, stored: Genome | None = None) -> InheritReport:
    """Copy the weights of a ``parent`` genome's network, given as its ``state`` dict (the names
    :class:`GenomeRNN` uses: ``weight_ih_l0``, ...), into ``child`` (in place), wherever the two
    genomes share a call site. No module of the parent is built: its weights are read from the
    state dict through the parent's plan.

    A weighted call node of the child inherits when the parent's genome has a node with the same
    id, the same kind (``affine``/``linear``/``diag``) and an argument of the same size (input-sized
    vs hidden-sized); its weight block ``(H, d)`` or ``(H,)`` and bias ``(H,)`` are copied in every
    layer (where the parent's block has the same shape). Other call sites keep the child's
    initialisation, except identity inserts, which are set to zero when ``zero_new`` (so a
    morphism's child computes what its parent computed).

    The child's genome must descend from ``parent`` through :mod:`growrnn.search.variation`
    (node ids are kept by the JSON form, not by the text form), and ``state`` must hold
    ``child.num_layers`` layers. ``state`` may instead be the network's of ``stored``, another
    genome with the parent's canonical form (a search trains one of two equivalent cells and
    reuses its weights for the other): its call sites are matched to the parent's through the
    canonical visit order (:func:`~growrnn.genome.canonical.canonical_form`).
    """
    if not isinstance(child, GenomeRNN):
        raise ArgumentError("child", allowed="a GenomeRNN", received=type(child).__name__)
    cg = child.genome
    pg = parent if stored is None else stored  # the genome the state's layout is of
    alias = _aliases(parent, stored) if stored is not None else {}  # parent id -> stored id
    plan = plan_for(pg)
    sizes = {state[f"weight_{g.tag}_l0"].shape[0] // len(g.members) for g in plan.groups
             if f"weight_{g.tag}_l0" in state}
    if plan.diags and "weight_diag_l0" in state:
        sizes.add(state["weight_diag_l0"].shape[-1])
    if sizes and sizes != {child.hidden_size}:
        raise ArgumentError("state", allowed=f"weights of hidden size {child.hidden_size} (the child's)",
                            received=f"hidden size {sorted(sizes)}",
                            hint="resize the child to the parent's sizes first (growrnn.growth.resize_to)")
    c_space, p_space = value_spaces(cg), value_spaces(pg)
    p_index = {nid: k for k, nid in enumerate(pg.weighted)}
    zero = zero_init_nodes(parent, cg) if zero_new else set()
    where = {w: grp for grp in child.plan.groups for w in grp.members}
    inherited: set[int] = set()
    zeroed: set[int] = set()
    names: set[str] = set()
    with torch.no_grad():
        for layer in range(child.num_layers):
            mine = child.cell_weights(layer)
            try:
                theirs = layer_weights(pg, plan, child.hidden_size, lambda name: state[f"{name}_l{layer}"])  # noqa: B023
            except KeyError as err:
                raise ArgumentError("state", allowed=f"the state dict of the parent's {child.num_layers}-layer "
                                    "GenomeRNN", received=f"no tensor {err}",
                                    hint="pass GenomeRNN.state_dict() of a network of the parent genome") from None
            for k, nid in enumerate(cg.weighted):
                src = nid if stored is None else alias.get(nid)
                node, j = cg.nodes[nid], p_index.get(src)
                _, weight, bias = mine[k]
                if (j is not None and pg.nodes[src].op == node.op
                        and p_space[pg.nodes[src].args[0]] == c_space[node.args[0]]
                        and theirs[j][1].shape == weight.shape):
                    weight.copy_(theirs[j][1])
                    p_bias = theirs[j][2]
                    if bias is not None and p_bias is not None:
                        bias.copy_(p_bias)
                    inherited.add(nid)
                    names.update(_param_names(where, k, node.op, layer, bias is not None))
                elif nid in zero:
                    weight.zero_()
                    if bias is not None:
                        bias.zero_()
                    zeroed.add(nid)
    new = set(cg.weighted) - inherited
    log.debug("inherited %d call sites, %d new (%d zeroed)", len(inherited), len(new), len(zeroed))
    return InheritReport(len(inherited), len(new), len(zeroed), tuple(sorted(names)),
                         frozenset(inherited), frozenset(new), frozenset(zeroed))


def _aliases(parent: Genome, stored: Genome) -> dict[int, int]:
    """``parent``'s node ids -> the corresponding ids of ``stored``, a genome of the same canonical
    form (node for node in canonical visit order); an error if the forms differ."""
    from growrnn.genome.canonical import canonical_form

    (form, order), (stored_form, stored_order) = canonical_form(parent), canonical_form(stored)
    if form != stored_form:
        raise ArgumentError("stored", allowed="a genome with the parent's canonical form (an equivalent cell)",
                            received=f"key {stored.key} (the parent's: {parent.key})",
                            hint="pass the parent's own state, or the state of a cell equivalent to it")
    return dict(zip(order, stored_order, strict=True))


def _param_names(where: dict, k: int, op: str, layer: int, has_bias: bool) -> list[str]:
    """Names of the parameters (see GenomeRNN) holding weight index ``k`` of ``layer``."""
    if op == "diag":
        return [f"weight_diag_l{layer}"]
    tag = where[k].tag
    return [f"weight_{tag}_l{layer}"] + ([f"bias_{tag}_l{layer}"] if has_bias else [])
