"""Canonical form of a genome: the same string for cells that differ only in local and
memory-state names, in the order of commutative operands, or in how a ``+``/``*`` chain is
bracketed. Shared nodes (one node used twice, so one set of weights) stay distinct from two
structurally equal nodes: the form writes a back-reference ``#k`` for a node seen before.

The serialisation is a complete description of the DAG, so two genomes with different cells never
share a form. In rare symmetric cases two equal cells may get different forms (a harmless miss for
deduplication).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, NamedTuple

from growrnn.genome.nodes import BINARY, COMMUTATIVE

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.genome.graph import Genome

__all__ = ["Flat", "canonical_form", "flatten"]


class Flat(NamedTuple):
    """A genome's DAG as its canonical form reads it (see :func:`flatten`)."""

    labels: dict[int, str]
    operands: dict[int, tuple[int, ...]]
    absorbed: frozenset[int]


def flatten(g: Genome) -> Flat:
    """The DAG up to names and bracketing: each node's ``label`` (``x``; ``s<k>`` for the k-th
    state in :attr:`~growrnn.genome.Genome.states` order; ``c<value>``; else the op, with ``!``
    when the node is shared), its ``operands`` (a ``+``/``*`` chain flattened through children of
    the same op used only there; sorting commutative operands is left to the caller) and the
    ``absorbed`` nodes, the inner links of such chains, which no canonical description names."""
    nodes = g.nodes
    state_index = {s: k for k, s in enumerate(g.states)}
    uses = {i: len(p) for i, p in g.parents.items()}
    for nid in g.outputs.values():
        uses[nid] += 1
    absorbed = frozenset(a for n in nodes.values() if n.op in COMMUTATIVE for a in n.args
                         if nodes[a].op == n.op and uses[a] == 1)

    def operands(nid: int) -> tuple[int, ...]:
        n = nodes[nid]
        if n.op not in COMMUTATIVE:
            return n.args
        out: list[int] = []
        for a in n.args:
            out.extend(operands(a) if a in absorbed else (a,))
        return tuple(out)

    labels: dict[int, str] = {}
    for nid, n in nodes.items():
        if n.op == "x":
            labels[nid] = "x"
        elif n.op == "state":
            labels[nid] = f"s{state_index[str(n.name)]}"
        elif n.op == "const":
            labels[nid] = f"c{float(n.value or 0.0)!r}"
        else:
            labels[nid] = f"{n.op}{'!' if uses[nid] > 1 else ''}"
    return Flat(labels, {nid: operands(nid) for nid in g.topological}, absorbed)


def canonical_form(g: Genome) -> tuple[str, tuple[int, ...]]:
    """Return ``(form, order)``: the canonical string and the node ids in canonical visit order
    (used to map the weighted nodes of two genomes with the same form onto each other)."""
    nodes = g.nodes
    flat = flatten(g)

    sig: dict[int, str] = {}
    for nid in g.topological:
        n = nodes[nid]
        if n.op in ("x", "state", "const"):
            text = flat.labels[nid]
        else:
            kids = [sig[a] for a in flat.operands[nid]]
            if n.op in COMMUTATIVE:
                kids.sort()
            text = f"{flat.labels[nid]}({','.join(kids)})"
        sig[nid] = hashlib.blake2b(text.encode(), digest_size=8).hexdigest() if len(text) > 24 else text

    seen: dict[int, int] = {}
    order: list[int] = []

    def visit(nid: int) -> str:
        n = nodes[nid]
        if n.op in ("x", "state", "const"):
            if nid not in seen:
                seen[nid] = -1
                order.append(nid)
            return sig[nid]
        if nid in seen:
            return f"#{seen[nid]}"
        seen[nid] = len(seen)
        order.append(nid)
        kids = list(flat.operands[nid])
        if n.op in COMMUTATIVE:
            kids.sort(key=lambda a: sig[a])
        symbol = BINARY.get(n.op, n.op)
        return f"{symbol}({','.join(visit(a) for a in kids)})"

    parts = [f"s{k}'={visit(nid)}" for k, nid in enumerate(g.outputs.values())]
    return ";".join(parts), tuple(order)
