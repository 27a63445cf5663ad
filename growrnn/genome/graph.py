"""The genome: an immutable, validated DAG describing one time step of a recurrent cell.

A :class:`Genome` holds typed :class:`Node` objects with stable integer ids and an ordered list of
*bindings* (``name -> node id``): locals such as ``i`` and outputs such as ``h'`` and ``c'``. It is
built only through :func:`make_genome` (used by the parser, the JSON reader and the variation
operators), which validates it, so every ``Genome`` object is a valid cell.

Standard library only (see DESIGN.md: ``growrnn.genome`` must not import torch).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

__all__ = ["Node", "Genome", "make_genome", "WEIGHTED", "ACTIVATIONS", "BINARY", "TERMINALS",
           "register_activation", "JSON_FORMAT", "MAX_DEPTH", "NAME"]

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
JSON_FORMAT = "growrnn-genome"
JSON_VERSION = 1
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
        from growrnn.errors import ArgumentError
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


@dataclass(frozen=True, eq=False)
class Genome:
    """An immutable, validated cell genome. Build one with :func:`growrnn.parse`,
    :meth:`Genome.from_json` or :func:`make_genome`.

    Two genomes are equal when their text forms are equal (same equations, names and order);
    node ids are not compared. Use :attr:`key` to compare cells up to renaming and operand order.
    """

    nodes: Mapping[int, Node]
    bindings: tuple[tuple[str, int], ...]
    positions: Mapping[int, Position] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------------------- structure
    @cached_property
    def states(self) -> tuple[str, ...]:
        """State names in tensor order: ``h`` first, then memory states in binding order."""
        mem = [n[:-1] for n, _ in self.bindings if n.endswith("'") and n != "h'"]
        return ("h", *mem)

    @cached_property
    def outputs(self) -> dict[str, int]:
        """Map state name -> node id of its next value, in :attr:`states` order."""
        by_name = {n[:-1]: i for n, i in self.bindings if n.endswith("'")}
        return {s: by_name[s] for s in self.states}

    @cached_property
    def locals(self) -> dict[str, int]:
        return {n: i for n, i in self.bindings if not n.endswith("'")}

    @cached_property
    def parents(self) -> dict[int, list[int]]:
        """Map node id -> ids of the nodes that use it, one entry per operand slot."""
        out: dict[int, list[int]] = {i: [] for i in self.nodes}
        for node in self.nodes.values():
            for a in node.args:
                out[a].append(node.id)
        return out

    @cached_property
    def topological(self) -> tuple[int, ...]:
        """Node ids, children before parents (ties broken by id)."""
        from growrnn.genome.validate import topological_order
        return topological_order(self.nodes)

    @cached_property
    def weighted(self) -> tuple[int, ...]:
        """Ids of the weighted call sites in *weight order* (reading order of :meth:`to_text`)."""
        return self._emit()[1]

    @cached_property
    def memory_states(self) -> tuple[str, ...]:
        return self.states[1:]

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    # ----------------------------------------------------------------------------- text form
    def to_text(self) -> str:
        """The genome as equations, one per line (see the genome format page)."""
        return self._emit()[0]

    def _emit(self) -> tuple[str, tuple[int, ...]]:
        cached = self.__dict__.get("_emitted")
        if cached is None:
            from growrnn.genome.text import emit
            cached = emit(self)
            object.__setattr__(self, "_emitted", cached)
        return cached

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        lines = self.to_text().strip().splitlines()
        return f"Genome({'; '.join(lines)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Genome):
            return NotImplemented
        return self.to_text() == other.to_text()

    def __hash__(self) -> int:
        return hash(self.to_text())

    # ----------------------------------------------------------------------------- keys
    @cached_property
    def canonical(self) -> str:
        """A canonical description of the DAG, invariant to local and memory-state names and to
        the order of commutative operands (``+``, ``*``) and of flattened ``+``/``*`` chains."""
        from growrnn.genome.canonical import canonical_form
        return canonical_form(self)[0]

    @cached_property
    def key(self) -> str:
        """Short canonical key (sha1 of :attr:`canonical`), for deduplication and caching."""
        import hashlib
        return hashlib.sha1(self.canonical.encode()).hexdigest()[:16]

    # ----------------------------------------------------------------------------- JSON form
    def to_dict(self) -> dict[str, object]:
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "nodes": [self.nodes[i].to_dict() for i in sorted(self.nodes)],
            "bindings": [[n, i] for n, i in self.bindings],
        }

    def to_json(self, indent: int | None = None) -> str:
        """The JSON form: nodes with stable ids plus the ordered bindings."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | Mapping[str, object]) -> Genome:
        """Read the JSON form (a string or an already-decoded dict); validates the genome."""
        from growrnn.errors import GenomeSyntaxError
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
        except json.JSONDecodeError as e:
            raise GenomeSyntaxError(f"genome JSON does not decode: {e}",
                                    hint="pass the output of Genome.to_json()") from None
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise GenomeSyntaxError(
                f"not a growrnn genome JSON: 'format' must be {JSON_FORMAT!r}",
                hint="pass the output of Genome.to_json()")
        if data.get("version") != JSON_VERSION:
            raise GenomeSyntaxError(f"unsupported genome JSON version {data.get('version')!r} "
                                    f"(this growrnn reads version {JSON_VERSION})")
        try:
            nodes = [Node(id=int(d["id"]), op=str(d["op"]), args=tuple(int(a) for a in d.get("args", ())),
                          name=d.get("name"), value=(None if d.get("value") is None else float(d["value"])))
                     for d in data["nodes"]]
            bindings = [(str(n), int(i)) for n, i in data["bindings"]]
        except (KeyError, TypeError, ValueError) as e:
            raise GenomeSyntaxError(f"malformed genome JSON ({type(e).__name__}: {e})",
                                    hint="each node needs 'id' and 'op'; bindings are [name, id] pairs") from None
        return make_genome(nodes, bindings)


def make_genome(nodes: Iterable[Node], bindings: Iterable[tuple[str, int]],
                positions: Mapping[int, Position] | None = None,
                binding_positions: Mapping[str, Position] | None = None) -> Genome:
    """Validate and build a :class:`Genome`; raise a :class:`~growrnn.errors.GenomeError` subclass
    (with line and column when ``positions`` are given) if it is not a valid cell."""
    from growrnn.genome.validate import validate
    node_map, binding_list = validate(list(nodes), list(bindings), positions or {},
                                      binding_positions or {})
    return Genome(node_map, tuple(binding_list), dict(positions or {}))
