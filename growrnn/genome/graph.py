"""The genome: an immutable, validated DAG describing one time step of a recurrent cell.

A :class:`Genome` holds typed :class:`Node` objects with stable integer ids and an ordered list of
*bindings* (``name -> node id``): locals such as ``i`` and outputs such as ``h'`` and ``c'``. It is
built only through :func:`make_genome` (used by the parser, the JSON reader and the variation
operators), which validates it, so every ``Genome`` object is a valid cell.

The node kinds live in :mod:`~growrnn.genome.nodes`; validation, the canonical key and the
formatter work on those and import this module only for type hints, so the imports run one way.

Standard library only (see DESIGN.md: ``growrnn.genome`` must not import torch).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from growrnn.errors import GenomeSyntaxError
from growrnn.genome.canonical import canonical_form, equivalence_form
from growrnn.genome.formatter import emit
from growrnn.genome.nodes import (
    ACTIVATIONS,
    BINARY,
    COMMUTATIVE,
    MAX_DEPTH,
    NAME,
    TERMINALS,
    WEIGHTED,
    Node,
    Position,
    arity,
    format_number,
    known_op,
    register_activation,
)
from growrnn.genome.validate import topological_order, validate

__all__ = ["Node", "Genome", "make_genome", "WEIGHTED", "ACTIVATIONS", "BINARY", "COMMUTATIVE", "TERMINALS",
           "register_activation", "JSON_FORMAT", "MAX_DEPTH", "NAME", "Position", "arity", "format_number", "known_op"]

JSON_FORMAT = "growrnn-genome"
JSON_VERSION = 1


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
        return canonical_form(self)[0]

    @cached_property
    def key(self) -> str:
        """Short canonical key (sha1 of :attr:`canonical`), for deduplication and caching."""
        return hashlib.sha1(self.canonical.encode()).hexdigest()[:16]

    @cached_property
    def equivalence_key(self) -> str:
        """Short key of the cell up to the values of its weights (sha1 of
        :func:`~growrnn.genome.canonical.equivalence_form`): shared by genomes with one :attr:`key`,
        and by those that differ only in a subtracted weighted call or in a sum's biases
        (``affine(x) - affine(h)`` and ``affine(x) + linear(h)`` share it)."""
        return hashlib.sha1(equivalence_form(self).encode()).hexdigest()[:16]

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
    nodes, bindings = _shared_terminals(list(nodes), list(bindings))
    node_map, binding_list = validate(nodes, bindings, positions or {}, binding_positions or {})
    return Genome(node_map, tuple(binding_list), dict(positions or {}))


def _shared_terminals(nodes: list[Node], bindings: list[tuple[str, int]]) -> tuple[list[Node], list[tuple[str, int]]]:
    """One node per constant value, as the parser builds them: equal constants are merged into the
    one with the lowest id, so a genome built by an edit and the same genome read back from its
    text are the same graph. (Two ``x`` or two nodes of one state stay an error of ``validate``.)"""
    first: dict[tuple, int] = {}
    alias: dict[int, int] = {}
    for n in sorted(nodes, key=lambda n: n.id):
        if n.op == "const":
            key = (n.op, n.name, n.value)
            alias[n.id] = first.setdefault(key, n.id)
    if all(a == i for i, a in alias.items()):
        return nodes, bindings
    kept = [n if not any(a in alias and alias[a] != a for a in n.args)
            else Node(n.id, n.op, tuple(alias.get(a, a) for a in n.args), n.name, n.value)
            for n in nodes if alias.get(n.id, n.id) == n.id]
    return kept, [(name, alias.get(nid, nid)) for name, nid in bindings]
