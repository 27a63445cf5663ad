"""Structural validation of a genome DAG (shared by the parser, the JSON reader and the
variation operators). Each rule raises its own :class:`~growrnn.errors.GenomeError` subclass
with the line and column when the genome came from text."""

from __future__ import annotations

import difflib
import heapq
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from growrnn.errors import (
    ArityError,
    CycleError,
    DuplicateAssignmentError,
    EmptyGenomeError,
    GenomeSyntaxError,
    InputOutsideWeightError,
    MissingOutputError,
    StateNotReadError,
    StateNotWrittenError,
    UnknownFunctionError,
    UnusedLocalError,
)
from growrnn.genome.nodes import (
    ACTIVATIONS,
    BINARY,
    MAX_DEPTH,
    NAME,
    TERMINALS,
    WEIGHTED,
    Node,
    Position,
    arity,
    known_op,
)

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.genome.graph import Genome

# Value "spaces": what size a node's value has. A constant broadcasts; x has the input size;
# everything produced by a weighted call (and what is built from it) has the hidden size.
CONST, INPUT, HIDDEN = "const", "input", "hidden"
CYCLE_HINT = ("a value may depend only on states at t-1 (written `s`) and on values that do not "
              "depend on it in turn")


def function_names() -> list[str]:
    return [*WEIGHTED, *ACTIVATIONS]


def unknown_function_hint(name: str) -> str:
    close = difflib.get_close_matches(name, function_names(), n=1)
    return f"did you mean '{close[0]}'?" if close else "use one of the functions listed above"


def topological_order(nodes: Mapping[int, Node]) -> tuple[int, ...]:
    """Children before parents, smallest id first among the ready ones; raises CycleError."""
    pending = {i: len(set(n.args)) for i, n in nodes.items()}
    users: dict[int, set[int]] = {i: set() for i in nodes}
    for n in nodes.values():
        for a in set(n.args):
            users[a].add(n.id)
    ready = [i for i, c in pending.items() if c == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = set(nodes) - set(order)  # the cycles and whatever reads them
        sinks = [i for i in stuck if not users[i] & stuck]
        while sinks:  # peel off what only reads a cycle (a node on one has a user on it)
            stuck -= set(sinks)
            sinks = [i for i in stuck if not users[i] & stuck]
        stuck = sorted(stuck)
        err = CycleError(f"cycle within one step through nodes {stuck}", hint=CYCLE_HINT)
        err.nodes = stuck  # type: ignore[attr-defined]
        raise err
    return tuple(order)


def _where(pos: Mapping[int, Position], node_id: int) -> dict[str, int | None]:
    line, col = pos.get(node_id, (None, None))
    return {"line": line, "column": col}


def validate(nodes: list[Node], bindings: list[tuple[str, int]], pos: Mapping[int, Position],
             bpos: Mapping[str, Position]) -> tuple[dict[int, Node], list[tuple[str, int]]]:
    if not bindings:
        raise EmptyGenomeError("the genome is empty: it has no equations",
                               hint="a cell needs at least `h' = ...`, e.g. h' = tanh(affine(x) + affine(h))")
    node_map: dict[int, Node] = {}
    for n in nodes:
        if n.id in node_map:
            raise GenomeSyntaxError(f"node id {n.id} appears twice")
        node_map[n.id] = n
    terminals: dict[tuple[str, str | None], int] = {}
    for n in nodes:
        _check_node(n, node_map, pos)
        if n.op in ("x", "state"):
            first = terminals.setdefault((n.op, n.name), n.id)
            if first != n.id:
                what = "x" if n.op == "x" else f"state '{n.name}'"
                raise GenomeSyntaxError(f"nodes {first} and {n.id} are both {what}",
                                        hint="use one node per terminal; every reader points at it")

    def bwhere(name: str) -> dict[str, int | None]:
        line, col = bpos.get(name, (None, None))
        return {"line": line, "column": col}

    seen: set[str] = set()
    for name, nid in bindings:
        _check_binding_name(name, bwhere(name))
        if name in seen:
            raise DuplicateAssignmentError(f"'{name}' is assigned twice", **bwhere(name),
                                           hint="give each value its own name; assign each state once")
        seen.add(name)
        if nid not in node_map:
            raise GenomeSyntaxError(f"binding '{name}' names node {nid}, which does not exist")
    if "h'" not in seen:
        raise MissingOutputError("the genome has no output `h'`",
                                 hint="every cell must assign its output, e.g. h' = o * tanh(c')")
    try:
        order = topological_order(node_map)
    except CycleError as e:
        names = [n for n, i in bindings if i in set(e.nodes)]  # type: ignore[attr-defined]
        if not names:
            raise
        raise CycleError(f"cycle within one step through {' -> '.join(names)}", **bwhere(names[0]),
                         hint=CYCLE_HINT) from None

    _check_depth(node_map, order, bindings, bwhere)
    written = {n[:-1] for n, _ in bindings if n.endswith("'")}
    live = reachable(node_map, [i for n, i in bindings if n.endswith("'")])
    for n in node_map.values():
        if n.op == "state" and n.name not in written and n.name != "h":
            raise StateNotWrittenError(f"state '{n.name}' is read but never written",
                                       **_where(pos, n.id),
                                       hint=f"give its next value with a line `{n.name}' = ...`")
    read = {node_map[i].name for i in live if node_map[i].op == "state"}
    for name, _ in bindings:
        if name.endswith("'") and name != "h'" and name[:-1] not in read:
            raise StateNotReadError(
                f"state '{name[:-1]}' is written but never read", **bwhere(name),
                hint=f"use its previous value `{name[:-1]}` in an equation, or delete the `{name}` line")
    for name, nid in bindings:
        if not name.endswith("'") and nid not in live:
            raise UnusedLocalError(f"local '{name}' is assigned but never used", **bwhere(name),
                                   hint="use it in an output's equation or delete the line")
    for nid in node_map:
        if nid not in live:
            raise GenomeSyntaxError(f"node {nid} ({node_map[nid].op}) is not used by any output",
                                    **_where(pos, nid), hint="remove unused nodes")
    _check_spaces(node_map, order, bindings, pos, bwhere)
    return node_map, bindings


def _check_node(n: Node, node_map: Mapping[int, Node], pos: Mapping[int, Position]) -> None:
    where = _where(pos, n.id)
    if not known_op(n.op):
        raise UnknownFunctionError(
            f"unknown function '{n.op}'. Allowed: {', '.join(sorted(function_names()))}",
            **where, hint=unknown_function_hint(n.op))
    want = arity(n.op)
    if len(n.args) != want:
        what = f"'{BINARY[n.op]}'" if n.op in BINARY else f"'{n.op}'"
        raise ArityError(f"{what} takes {want} argument{'s' if want != 1 else ''}, "
                         f"received {len(n.args)}", **where,
                         hint="functions take one expression; combine values with + - * first")
    for a in n.args:
        if a not in node_map:
            raise GenomeSyntaxError(f"node {n.id} uses node {a}, which does not exist")
    if n.op == "const" and n.value is None:
        raise GenomeSyntaxError(f"constant node {n.id} has no value")
    if n.op == "const" and not (isinstance(n.value, (int, float)) and math.isfinite(n.value)):
        raise GenomeSyntaxError(f"constant {n.value!r} is not a finite number", **where,
                                hint="write a finite constant such as 1 or 0.5 (not inf or nan)")
    if n.op == "state" and not (isinstance(n.name, str) and NAME.fullmatch(n.name)):
        raise GenomeSyntaxError(f"state node {n.id} needs an identifier name, got {n.name!r}")
    if n.op == "state" and n.name == "x":
        raise GenomeSyntaxError("'x' is the input, not a state")


def _check_binding_name(name: object, where: dict[str, int | None]) -> None:
    """A binding is a local ``name`` or an output ``name'``, named as the text format can read it."""
    base = name[:-1] if isinstance(name, str) and name.endswith("'") else name
    if not (isinstance(base, str) and NAME.fullmatch(base)):
        raise GenomeSyntaxError(f"binding name {name!r} is not an identifier", **where,
                                hint="name locals like `i` or `gate_1` and outputs like `h'` or `c'` "
                                     "(ASCII letters, digits and _, not starting with a digit)")
    if base == "x" or (base == "h" and base == name) or base in ACTIVATIONS or base in WEIGHTED:
        raise GenomeSyntaxError(f"'{name}' cannot be assigned", **where,
                                hint="x is the input, h the output at t-1 (write h' for its next value), "
                                     "and function names are reserved; choose another name")


def _check_depth(node_map: Mapping[int, Node], order: tuple[int, ...], bindings: list[tuple[str, int]],
                 bwhere) -> None:  # noqa: ANN001
    """Refuse a genome deeper than :data:`~growrnn.genome.graph.MAX_DEPTH` (computed without
    recursion), naming the line of the first binding that reaches past it."""
    depth: dict[int, int] = {}
    for i in order:
        depth[i] = 1 + max((depth[a] for a in node_map[i].args), default=0)
    for name, nid in bindings:
        if depth[nid] > MAX_DEPTH:
            raise GenomeSyntaxError(
                f"'{name}' is {depth[nid]} nodes deep, over the limit of {MAX_DEPTH}", **bwhere(name),
                hint=f"genomes may chain at most {MAX_DEPTH} operations from an output down to x or a "
                     "state; split long sums into fewer terms or shorten the chain of locals")


def reachable(node_map: Mapping[int, Node], roots: Iterable[int]) -> set[int]:
    """The ids of ``roots`` and every node they depend on."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(node_map[i].args)
    return seen


def _check_spaces(node_map: Mapping[int, Node], order: tuple[int, ...],
                  bindings: list[tuple[str, int]], pos: Mapping[int, Position], bwhere) -> dict[int, str]:  # noqa: ANN001
    space: dict[int, str] = {}
    x_hint = "wrap it in a weighted function, e.g. affine(x) or linear(x)"
    for i in order:
        n = node_map[i]
        if n.op in TERMINALS:
            space[i] = {"x": INPUT, "state": HIDDEN, "const": CONST}[n.op]
        elif n.op in WEIGHTED:
            arg = space[n.args[0]]
            if arg == CONST:
                raise InputOutsideWeightError(
                    f"'{n.op}' of a constant has no input to weigh", **_where(pos, i),
                    hint="weighted functions take x, a state, or an expression of them")
            if n.op == "diag" and arg == INPUT:
                raise InputOutsideWeightError(
                    "'diag' scales a hidden-size value element-wise and cannot take x",
                    **_where(pos, i), hint="use affine(x) or linear(x) for the input")
            space[i] = HIDDEN
        elif n.op in ACTIVATIONS:
            space[i] = space[n.args[0]]
        else:
            a, b = (space[j] for j in n.args)
            if INPUT in (a, b) and HIDDEN in (a, b):
                raise InputOutsideWeightError(
                    "x (input size) is combined with a hidden-size value outside a weighted "
                    "function", **_where(pos, i), hint=x_hint)
            space[i] = HIDDEN if HIDDEN in (a, b) else INPUT if INPUT in (a, b) else CONST
    for name, nid in bindings:
        if not name.endswith("'"):
            continue
        if space[nid] == INPUT:
            raise InputOutsideWeightError(f"`{name}` depends on x outside a weighted function",
                                          **bwhere(name), hint=x_hint)
        if space[nid] == CONST:
            raise InputOutsideWeightError(f"`{name}` is a constant: it depends on no input or state",
                                          **bwhere(name), hint="use x and the states, e.g. tanh(affine(x) + affine(h))")
    return space


def value_spaces(g: Genome) -> dict[int, str]:
    """Map node id -> 'input' (size I), 'hidden' (size H) or 'const' (a broadcast scalar)."""
    return _check_spaces(g.nodes, g.topological, list(g.bindings), {}, lambda name: {})
