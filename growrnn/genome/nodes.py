"""The vocabulary of genomes: the node kinds (terminals, weighted functions, activations, binary
operators), the :class:`Node` a genome's DAG is made of, and the format's limits. Everything the
genome modules share sits here, below them all: the DAG (:mod:`~growrnn.genome.graph`), its
validation, canonical key and text form import this module and none imports another's cycle.

Standard library only (see DESIGN.md: ``growrnn.genome`` must not import torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from growrnn.errors import ArgumentError

__all__ = ["ACTIVATIONS", "BINARY", "COMMUTATIVE", "MAX_DEPTH", "NAME", "TERMINALS", "WEIGHTED", "Node", "Position",
           "arity", "format_number", "known_op", "register_activation"]

#: Weighted functions: every call site owns its own weights and maps to the hidden size.
WEIGHTED: tuple[str, ...] = ("affine", "linear", "diag")
#: Element-wise activations known to the genome format (a registry; see register_activation).
ACTIVATIONS: dict[str, str] = {
    "sigmoid": "logistic sigmoid",
    "tanh": "hyperbolic tangent",
    "relu": "rectified linear unit",
    "identity": "no-op",
}
#: Binary element-wise operators, by op name, with their text symbol.
BINARY: dict[str, str] = {"add": "+", "sub": "-", "mul": "*"}
COMMUTATIVE = frozenset({"add", "mul"})
#: Terminals: the input ``x``, a state's value at t-1 (``h``, ``c``, ...), a numeric constant.
TERMINALS: tuple[str, ...] = ("x", "state", "const")
Position = tuple[int, int]
#: The deepest genome accepted: the longest chain of nodes from an output down to a terminal, and
#: the deepest nesting of parentheses and calls on one line. Searches stay far below it (their
#: default bloat limit is depth 12); past it the recursive formatter, canonical key and compiler
#: would exhaust Python's stack, so a deeper genome is refused with a GenomeError naming the line.
MAX_DEPTH = 100
#: What a local or state name may be: the text format's identifiers (ASCII, so the text parses back).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def register_activation(name: str, description: str) -> None:
    """Make ``name`` a valid activation in genome text. To compile genomes that use it, register
    its torch function with :func:`growrnn.cells.register_activation` (which calls this)."""
    if not name.isidentifier() or name in WEIGHTED or name in ("x", "h", *TERMINALS, *BINARY):
        raise ArgumentError("name", allowed="an identifier other than x, h, a weighted function, a "
                            "terminal or a binary op name", received=name)
    ACTIVATIONS[name] = description


def arity(op: str) -> int:
    if op in TERMINALS:
        return 0
    if op in BINARY:
        return 2
    return 1


def known_op(op: str) -> bool:
    return op in TERMINALS or op in WEIGHTED or op in ACTIVATIONS or op in BINARY


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the step DAG.

    ``op`` is a terminal (``x``, ``state``, ``const``), a weighted function, an activation or a
    binary operator (``add``, ``sub``, ``mul``). ``args`` are child node ids in operand order;
    ``name`` is the state name of a ``state`` terminal; ``value`` the number of a ``const``.
    """

    id: int
    op: str
    args: tuple[int, ...] = ()
    name: str | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"id": self.id, "op": self.op}
        if self.args:
            d["args"] = list(self.args)
        if self.name is not None:
            d["name"] = self.name
        if self.value is not None:
            d["value"] = self.value
        return d


def format_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text
