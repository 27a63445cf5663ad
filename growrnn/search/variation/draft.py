"""The editing machinery shared by the variation operators and the network morphisms.

A :class:`Draft` is a mutable copy of a genome's DAG. An operator edits one draft, then
:meth:`Draft.build` prunes what no output uses and validates the result through
:func:`~growrnn.genome.make_genome` (the path the parser and the JSON reader take), so every child
is a valid genome. Node ids that survive keep their value; brand-new nodes get ids greater than
every id of the parent(s) -- weight inheritance matches call sites by id.

A *position* is where a subtree hangs: ``("edge", parent id, slot)`` (one operand of one node)
or ``("bind", name, 0)`` (the value a name is bound to). Putting a new node at an edge changes
that operand only; putting it at a binding redefines the name, so every reader of the old value
reads the new one.

Standard library and ``growrnn.genome`` only (the operators must not need torch).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from growrnn.errors import ArgumentError, GenomeError, VariationError, check_int
from growrnn.genome.graph import ACTIVATIONS, BINARY, TERMINALS, WEIGHTED, Genome, Node, make_genome
from growrnn.genome.validate import CONST, HIDDEN, INPUT, reachable, value_spaces

__all__ = ["Limits", "Draft", "Retry", "Pos", "attempt", "random_term", "measure", "CONSTANTS", "STATE_NAMES",
           "reachable", "dead_states", "constant_expressions"]

Pos = tuple[str, int | str, int]
#: Constants a mutation may write (a small set keeps the text short and the search space finite).
CONSTANTS: tuple[float, ...] = (0.5, 1.0, 2.0, -1.0)
#: How many random choices an operator tries on one call before it gives up.
ATTEMPTS = 8
#: Names add_state gives new memory states, first free first.
STATE_NAMES = ("c", "m", "k", "q", "u", "v", "r", "p", "w", "y", "z")


@dataclass(frozen=True)
class Limits:
    """Bloat limits every child must respect.

    Args:
        max_nodes: nodes of the step DAG (terminals included).
        max_depth: longest chain of nodes from an output down to a terminal.
        max_states: memory states besides ``h`` (an LSTM has 1).
        max_weighted: weighted call sites (an LSTM has 8).
    """

    max_nodes: int = 48
    max_depth: int = 12
    max_states: int = 3
    max_weighted: int = 16

    def __post_init__(self) -> None:
        for name, low in (("max_nodes", 1), ("max_depth", 1), ("max_states", 0), ("max_weighted", 1)):
            check_int(name, getattr(self, name), low,
                      hint="the defaults (48 nodes, depth 12, 3 states, 16 weights) fit library cells")

    def violation(self, g: Genome) -> str | None:
        """Why ``g`` breaks a limit, or ``None`` if it respects them all."""
        sizes = measure(g)
        for name in ("nodes", "depth", "states", "weighted"):
            limit = getattr(self, f"max_{name}")
            if sizes[name] > limit:
                return f"the child has {sizes[name]} {name}, over the limit max_{name}={limit}"
        return None


def measure(g: Genome) -> dict[str, int]:
    """The sizes :class:`Limits` bounds: ``nodes``, ``depth``, ``states`` (memory), ``weighted``."""
    depth: dict[int, int] = {}
    for nid in g.topological:
        args = g.nodes[nid].args
        depth[nid] = 1 + max((depth[a] for a in args), default=0)
    return {"nodes": len(g.nodes), "depth": max(depth[i] for i in g.outputs.values()),
            "states": len(g.memory_states), "weighted": len(g.weighted)}


class Retry(Exception):
    """One random choice of an operator did not give a valid child; another choice may."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Draft:
    """A mutable copy of ``genome`` for one edit; ``others`` are genomes whose ids fresh ids must
    also exceed (the second parent of a crossover)."""

    def __init__(self, genome: Genome, *others: Genome):
        self.genome = genome
        self.nodes: dict[int, Node] = dict(genome.nodes)
        self.bindings: list[tuple[str, int]] = list(genome.bindings)
        self.next_id = 1 + max(max(g.nodes) for g in (genome, *others))
        self.created: set[int] = set()

    # ------------------------------------------------------------------ building blocks
    def add(self, op: str, *args: int, name: str | None = None, value: float | None = None) -> int:
        """A new node (fresh id), or the existing node of terminal ``x`` / state ``name``."""
        if op in ("x", "state"):
            for n in self.nodes.values():
                if n.op == op and n.name == name:
                    return n.id
        nid = self.next_id
        self.next_id += 1
        self.nodes[nid] = Node(nid, op, tuple(args), name, value)
        self.created.add(nid)
        return nid

    def live(self) -> set[int]:
        return reachable(self.nodes, [i for n, i in self.bindings if n.endswith("'")])

    def users(self) -> dict[int, list[tuple[int, int]]]:
        """Live node id -> ``(user id, operand slot)`` of every live node that reads it."""
        live = self.live()
        out: dict[int, list[tuple[int, int]]] = {i: [] for i in live}
        for i in sorted(live):
            for slot, a in enumerate(self.nodes[i].args):
                out[a].append((i, slot))
        return out

    def ancestors(self, nid: int) -> set[int]:
        """Live nodes that depend on ``nid`` (not ``nid`` itself)."""
        users, seen, stack = self.users(), set[int](), [nid]
        while stack:
            for u, _ in users.get(stack.pop(), []):
                if u not in seen:
                    seen.add(u)
                    stack.append(u)
        return seen

    def spaces(self) -> dict[int, str]:
        """Live node id -> value space (INPUT, HIDDEN or CONST), see growrnn.genome.validate."""
        out: dict[int, str] = {}

        def space(i: int) -> str:
            if i not in out:
                n = self.nodes[i]
                if n.op in TERMINALS:
                    out[i] = {"x": INPUT, "state": HIDDEN, "const": CONST}[n.op]
                elif n.op in WEIGHTED:
                    out[i] = HIDDEN
                else:
                    kinds = {space(a) for a in n.args}
                    out[i] = HIDDEN if HIDDEN in kinds else INPUT if INPUT in kinds else CONST
            return out[i]

        for i in sorted(self.live()):
            space(i)
        return out

    # ------------------------------------------------------------------ positions
    def positions(self) -> list[Pos]:
        """Every place a subtree hangs: each binding, then each operand of each live node."""
        out: list[Pos] = [("bind", name, 0) for name, _ in self.bindings]
        for i in sorted(self.live()):
            out += [("edge", i, slot) for slot in range(len(self.nodes[i].args))]
        return out

    def at(self, pos: Pos) -> int:
        kind, where, slot = pos
        if kind == "edge":
            return self.nodes[int(where)].args[slot]
        return dict(self.bindings)[str(where)]

    def forbidden(self, pos: Pos) -> set[int]:
        """Nodes a new subtree put at ``pos`` must not read (reading them would close a cycle)."""
        if pos[0] == "edge":
            return {int(pos[1])} | self.ancestors(int(pos[1]))
        return self.ancestors(self.at(pos))

    def put(self, pos: Pos, new: int) -> None:
        """Hang node ``new`` at ``pos`` (see the module docstring)."""
        kind, where, slot = pos
        if kind == "edge":
            n = self.nodes[int(where)]
            args = list(n.args)
            args[slot] = new
            self.nodes[n.id] = Node(n.id, n.op, tuple(args), n.name, n.value)
        else:
            self.replace(self.at(pos), new)

    def replace(self, old: int, new: int) -> None:
        """Every reader of ``old`` (but the nodes this edit created) and every name bound to it now
        reads ``new``."""
        for i, n in list(self.nodes.items()):
            if i not in self.created and old in n.args:
                args = tuple(new if a == old else a for a in n.args)
                self.nodes[i] = Node(i, n.op, args, n.name, n.value)
        self.bindings = [(name, new if i == old else i) for name, i in self.bindings]

    def fresh_name(self, candidates: Iterable[str], stem: str) -> str:
        """A name no binding, state, function or terminal uses (nor the formatter's ``t0``...)."""
        taken = ({n.rstrip("'") for n, _ in self.bindings} | set(self.genome.states) | set(ACTIVATIONS)
                 | set(WEIGHTED) | set(BINARY) | {"x", "h"})
        taken |= {str(n.name) for n in self.nodes.values() if n.op == "state"}
        for name in (*candidates, *(f"{stem}{k}" for k in range(1, 1000))):
            if name not in taken and not (name[0] == "t" and name[1:].isdigit()):
                return name
        raise Retry("no free name")  # unreachable within the bloat limits

    # ------------------------------------------------------------------ result
    def build(self, limits: Limits) -> Genome:
        """Prune what no output uses, validate, and check the limits; raise :class:`Retry`."""
        live = self.live()
        bindings = [(n, i) for n, i in self.bindings if n.endswith("'") or i in live]
        nodes = [n for i, n in self.nodes.items() if i in live]
        try:
            child = make_genome(nodes, bindings)
        except GenomeError as e:
            raise Retry(str(e)) from None
        if (reason := limits.violation(child)) is not None:
            raise Retry(reason)
        if reads_input(self.genome) and not reads_input(child):
            raise Retry("h' would no longer depend on the input x")
        if dead := dead_states(child) - dead_states(self.genome):
            raise Retry(f"memory state {sorted(dead)[0]!r} would no longer influence h'")
        if constant_expressions(child) > constant_expressions(self.genome):
            raise Retry("the child computes a constant expression such as relu(1) or 1 * 0.5")
        return child


def constant_expressions(g: Genome) -> int:
    """How many non-terminal nodes of ``g`` depend on no input or state (``relu(1)``, ``1 * 0.5``):
    bloat, a constant written the long way."""
    return sum(1 for i, s in value_spaces(g).items() if s == CONST and g.nodes[i].op != "const")


def reads_input(g: Genome) -> bool:
    """Whether ``h'`` depends on the input ``x``."""
    return any(g.nodes[i].op == "x" for i in reachable(dict(g.nodes), [g.outputs["h"]]))


def dead_states(g: Genome) -> set[str]:
    """Memory states whose value never reaches ``h'`` (read only by their own update, or by other
    dead states): bloat that costs compute and does nothing."""
    nodes = dict(g.nodes)
    alive, frontier = set[str](), ["h"]
    while frontier:
        cone = reachable(nodes, [g.outputs[frontier.pop()]])
        for i in cone:
            name = nodes[i].name
            if nodes[i].op == "state" and name != "h" and name not in alive:
                alive.add(str(name))
                frontier.append(str(name))
    return set(g.memory_states) - alive


def attempt(name: str, genome: Genome, rng: random.Random, limits: Limits,
            edit: Callable[[Draft, random.Random], None], others: tuple[Genome, ...] = ()) -> Genome:
    """Run ``edit`` on fresh drafts of ``genome`` until it gives a valid child that differs from
    ``genome``, at most :data:`ATTEMPTS` times. ``edit`` raises :class:`Retry` for an unlucky
    choice and :class:`VariationError` when the operator cannot apply at all."""
    if not isinstance(genome, Genome):
        raise ArgumentError("genome", allowed="a growrnn Genome", received=type(genome).__name__)
    if not isinstance(rng, random.Random):
        raise ArgumentError("rng", allowed="a random.Random", received=type(rng).__name__,
                            hint="pass random.Random(seed) so one seed reproduces the search")
    if not isinstance(limits, Limits):
        raise ArgumentError("limits", allowed="a Limits", received=type(limits).__name__)
    reason = "no applicable change"
    for _ in range(ATTEMPTS):
        draft = Draft(genome, *others)
        try:
            edit(draft, rng)
            child = draft.build(limits)
        except Retry as e:
            reason = e.reason
            continue
        if child != genome:
            return child
        reason = "the change gives back the parent"
    raise VariationError(name, f"{ATTEMPTS} random tries failed; the last: {reason}")


def random_term(d: Draft, rng: random.Random, space: str, depth: int = 1) -> int:
    """A new small random subtree of the given value space, built from x and the parent's states."""
    if space == CONST:
        return d.add("const", value=rng.choice(CONSTANTS))
    if space == INPUT:
        return d.add("x") if rng.random() < 0.7 else d.add("const", value=rng.choice(CONSTANTS))
    if depth > 0 and rng.random() < 0.5:
        if rng.random() < 0.4:
            return d.add(rng.choice(sorted(ACTIVATIONS)), random_term(d, rng, HIDDEN, depth - 1))
        return d.add(rng.choice(sorted(BINARY)), random_term(d, rng, HIDDEN, depth - 1),
                     random_term(d, rng, HIDDEN, depth - 1))
    roll = rng.random()
    if roll < 0.35:
        return d.add(rng.choice(("affine", "linear")), d.add("x"))
    state = d.add("state", name=rng.choice(d.genome.states))
    if roll < 0.8:
        return d.add(rng.choice(WEIGHTED), state)
    return state
