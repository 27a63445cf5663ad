"""The formatter of the text form: :func:`emit` writes a genome as equations, one per line (the
parser is :func:`growrnn.genome.text.parse`). Works on the genome's nodes and bindings, so the DAG
module can call it without an import cycle."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from growrnn.genome.nodes import ACTIVATIONS, BINARY, TERMINALS, WEIGHTED, format_number

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.genome.graph import Genome

__all__ = ["emit"]

_PREC = {"add": 1, "sub": 1, "mul": 2}


def emit(g: Genome) -> tuple[str, tuple[int, ...]]:
    """Format ``g`` as text; also return the weighted node ids in the order the text reads."""
    nodes = g.nodes
    uses = {i: len(p) for i, p in g.parents.items()}
    primary: dict[int, str] = {}
    for name, nid in g.bindings:
        primary.setdefault(nid, name)
    taken = {n.rstrip("'") for n, _ in g.bindings} | set(g.states) | set(ACTIVATIONS) | set(WEIGHTED)
    fresh = (f"t{k}" for k in itertools.count() if f"t{k}" not in taken)
    for nid in sorted(nodes):
        if nid not in primary and uses[nid] > 1 and nodes[nid].op not in TERMINALS:
            primary[nid] = next(fresh)

    lines: list[tuple[str, int | None, str | None]] = []  # (target, node to define, alias of)
    defined: set[int] = set()

    bound = {nid for _, nid in g.bindings}

    def define_auto(nid: int) -> None:
        # Shared, unnamed sub-expressions get their own line, placed before their first user.
        for child in nodes[nid].args:
            if child in defined or child in bound or nodes[child].op in TERMINALS:
                continue
            define_auto(child)
            if child in primary:
                defined.add(child)
                lines.append((primary[child], child, None))

    for name, nid in g.bindings:
        if nid in defined:
            lines.append((name, None, primary[nid]))
            continue
        defined.add(nid)
        define_auto(nid)
        lines.append((name, nid, None))

    weights: list[int] = []

    def render(nid: int, root: bool) -> tuple[str, int]:
        n = nodes[nid]
        if not root and nid in primary:
            return primary[nid], 3
        if n.op == "x":
            return "x", 3
        if n.op == "state":
            return str(n.name), 3
        if n.op == "const":
            text = format_number(float(n.value or 0.0))
            return (f"({text})" if text.startswith("-") and not root else text), 3
        if n.op in BINARY:
            prec = _PREC[n.op]
            left, lp = render(n.args[0], False)
            right, rp = render(n.args[1], False)
            left = f"({left})" if lp < prec else left
            right = f"({right})" if rp <= prec else right
            return f"{left} {BINARY[n.op]} {right}", prec
        if n.op in WEIGHTED:
            weights.append(nid)
        return f"{n.op}({render(n.args[0], False)[0]})", 3

    out = [f"{target} = {alias if nid is None else render(nid, True)[0]}"
           for target, nid, alias in lines]
    return "\n".join(out) + "\n", tuple(weights)
