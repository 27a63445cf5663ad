"""Canonical form of a genome: the same string for cells that differ only in local and
memory-state names, in the order of commutative operands, or in how a ``+``/``*`` chain is
bracketed. Shared nodes (one node used twice, so one set of weights) stay distinct from two
structurally equal nodes: the form writes a back-reference ``#k`` for a node seen before.

The serialisation is a complete description of the DAG, so two genomes with different cells never
share a form. In rare symmetric cases two equal cells may get different forms (a harmless miss for
deduplication).

The **equivalence form** (:func:`equivalence_form`) goes one step further: it is shared by cells
that differ in how their weights are written but not in what they can compute as the weights
range over all values -- a weighted call subtracted is a weighted call added (``a - affine(h)``
is ``a + affine(h)`` with the matrix and bias negated), and a sum needs one bias (``affine(x) +
affine(h) + 1`` is ``affine(x) + linear(h)``). Two such cells train alike up to how their
weights are initialised and stepped, so a search that finds one has found the other (the PTB
search's cell 121 is the LSTM up to a sign and a bias: docs/reproductions/language.md).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, NamedTuple

from growrnn.genome.nodes import BINARY, COMMUTATIVE, TERMINALS, WEIGHTED

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.genome.graph import Genome

__all__ = ["Flat", "canonical_form", "equivalence_form", "flatten"]

#: The operand id of the one bias a sum with an ``affine`` term reads as (equivalence form only).
BIAS = -1


class Flat(NamedTuple):
    """A genome's DAG as its canonical form reads it (see :func:`flatten`)."""

    labels: dict[int, str]
    operands: dict[int, tuple[int, ...]]
    absorbed: frozenset[int]
    ops: dict[int, str]  # the op each node reads as (its own, or after the equivalence form's rewrites)


def flatten(g: Genome, up_to_weights: bool = False) -> Flat:
    """The DAG up to names and bracketing: each node's ``label`` (``x``; ``s<k>`` for the k-th
    state in :attr:`~growrnn.genome.Genome.states` order; ``c<value>``; else the op, with ``!``
    when the node is shared), its ``operands`` (a ``+``/``*`` chain flattened through children of
    the same op used only there; sorting commutative operands is left to the caller) and the
    ``absorbed`` nodes, the inner links of such chains, which no canonical description names.

    With ``up_to_weights``, also up to the weights' values (the equivalence form's rewrites, see
    the module): a ``-`` whose right operand is a weighted call used only there, or a ``+`` chain
    of such used only there, reads as ``+``; in a ``+`` chain holding an ``affine`` used only
    there, each such ``affine`` reads as ``linear``, the chain's constants go, and the chain gets
    one :data:`BIAS` operand (labelled ``bias``)."""
    nodes = g.nodes
    state_index = {s: k for k, s in enumerate(g.states)}
    uses = {i: len(p) for i, p in g.parents.items()}
    for nid in g.outputs.values():
        uses[nid] += 1
    ops = {nid: n.op for nid, n in nodes.items()}
    if up_to_weights:
        def negatable(a: int) -> bool:  # -a is a with other weights
            return uses[a] == 1 and (ops[a] in WEIGHTED or ops[a] == "add" and all(map(negatable, nodes[a].args)))
        for nid in g.topological:  # children first: a rewritten child is read as rewritten
            if ops[nid] == "sub" and negatable(nodes[nid].args[1]):
                ops[nid] = "add"
    absorbed = frozenset(a for nid, n in nodes.items() if ops[nid] in COMMUTATIVE for a in n.args
                         if ops[a] == ops[nid] and uses[a] == 1)

    def operands(nid: int) -> tuple[int, ...]:
        if ops[nid] not in COMMUTATIVE:
            return nodes[nid].args
        out: list[int] = []
        for a in nodes[nid].args:
            out.extend(operands(a) if a in absorbed else (a,))
        return tuple(out)

    flat = {nid: operands(nid) for nid in g.topological}
    if up_to_weights:
        for nid in g.topological:
            terms = flat[nid]
            if ops[nid] != "add" or nid in absorbed or not any(ops[a] == "affine" and uses[a] == 1 for a in terms):
                continue
            for a in terms:
                if ops[a] == "affine" and uses[a] == 1:
                    ops[a] = "linear"
            flat[nid] = tuple(a for a in terms if ops[a] != "const") + (BIAS,)
    labels: dict[int, str] = {BIAS: "bias"} if up_to_weights else {}
    for nid, n in nodes.items():
        if n.op == "x":
            labels[nid] = "x"
        elif n.op == "state":
            labels[nid] = f"s{state_index[str(n.name)]}"
        elif n.op == "const":
            labels[nid] = f"c{float(n.value or 0.0)!r}"
        else:
            labels[nid] = f"{ops[nid]}{'!' if uses[nid] > 1 else ''}"
    return Flat(labels, flat, absorbed, {**ops, BIAS: "bias"} if up_to_weights else ops)


def canonical_form(g: Genome) -> tuple[str, tuple[int, ...]]:
    """Return ``(form, order)``: the canonical string and the node ids in canonical visit order
    (used to map the weighted nodes of two genomes with the same form onto each other)."""
    return _serialise(g, flatten(g))


def equivalence_form(g: Genome) -> str:
    """The string shared by cells equal up to names, bracketing, operand order **and** the values
    of their weights (a subtracted weighted call, the biases of a sum: see the module); two
    genomes with one :func:`canonical_form` always share it."""
    return _serialise(g, flatten(g, up_to_weights=True))[0]


def _serialise(g: Genome, flat: Flat) -> tuple[str, tuple[int, ...]]:
    """The form of ``flat`` (``g``'s DAG as :func:`flatten` reads it) and its visit order."""
    ops = flat.ops

    def leaf(nid: int) -> bool:
        return ops[nid] in TERMINALS or ops[nid] == "bias"

    sig: dict[int, str] = {BIAS: "bias"}
    for nid in g.topological:
        if leaf(nid):
            text = flat.labels[nid]
        else:
            kids = [sig[a] for a in flat.operands[nid]]
            if ops[nid] in COMMUTATIVE:
                kids.sort()
            text = f"{flat.labels[nid]}({','.join(kids)})"
        sig[nid] = hashlib.blake2b(text.encode(), digest_size=8).hexdigest() if len(text) > 24 else text

    seen: dict[int, int] = {}
    order: list[int] = []

    def visit(nid: int) -> str:
        if leaf(nid):
            if nid not in seen and nid != BIAS:
                seen[nid] = -1
                order.append(nid)
            return sig[nid]
        if nid in seen:
            return f"#{seen[nid]}"
        seen[nid] = len(seen)
        order.append(nid)
        kids = list(flat.operands[nid])
        if ops[nid] in COMMUTATIVE:
            kids.sort(key=lambda a: sig[a])
        symbol = BINARY.get(ops[nid], ops[nid])
        return f"{symbol}({','.join(visit(a) for a in kids)})"

    parts = [f"s{k}'={visit(nid)}" for k, nid in enumerate(g.outputs.values())]
    return ";".join(parts), tuple(order)
