"""Variation operators on cell genomes: tree genetic programming (Rawal & Miikkulainen 2018) plus
the network morphisms of :mod:`growrnn.search.variation.morphisms` (Booysen & Bosman 2024).

Every operator is a pure function ``op(genome, rng, limits) -> Genome``: it returns a new, valid
genome (built through :func:`~growrnn.genome.make_genome`, the parser's validation path) that
respects :class:`Limits`, or raises :class:`~growrnn.errors.VariationError` when it cannot apply.
Node ids that survive an operator keep their value and brand-new nodes get ids above every id of
the parent(s), so :func:`growrnn.search.variation.inherit.inherit_weights` can match weighted call sites by
id. (Ids live in the JSON form; the text form renumbers them in reading order.)

Besides the genome rules, a child must not lose what makes a cell useful: if the parent's ``h'``
depends on ``x``, so does the child's; no memory state may stop influencing ``h'`` (a *dead* state);
no new constant expression (``relu(1)``, ``1 * 0.5``) may appear. A random choice that breaks a
rule or a limit is retried a few times, then the operator raises VariationError.

>>> import random, growrnn as gr
>>> child, name = vary([gr.cells.lstm()], random.Random(0), Limits())
>>> name in OPERATORS
True

Standard library and ``growrnn.genome`` only: no torch.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from functools import partial

from growrnn.errors import ArgumentError, VariationError, check_int
from growrnn.genome.graph import ACTIVATIONS, BINARY, TERMINALS, WEIGHTED, Genome, Node
from growrnn.genome.validate import CONST, HIDDEN, value_spaces
from growrnn.search.variation import morphisms
from growrnn.search.variation.draft import CONSTANTS, STATE_NAMES, Draft, Limits, Retry, attempt, random_term, reachable

__all__ = ["Limits", "Operator", "Crossover", "point_mutation", "insert_branch", "shrink", "add_state",
           "remove_state", "subtree_crossover", "homologous_crossover", "OPERATORS", "CROSSOVERS", "vary"]
log = logging.getLogger(__name__)

Operator = Callable[[Genome, random.Random, Limits], Genome]
Crossover = Callable[[Genome, Genome, random.Random, Limits], Genome]


# --------------------------------------------------------------------------------- mutations
def point_mutation(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Change one node's function for another of the same arity: an activation for another, a
    binary operator for another, a weighted kind for another (affine/linear/diag; the new call
    site gets a fresh id, since its weights are new), or a constant's value."""
    return attempt("point_mutation", genome, rng, limits, _point_mutation)


def _point_mutation(d: Draft, rng: random.Random) -> None:
    cands = [i for i in sorted(d.live()) if d.nodes[i].op not in ("x", "state")]
    if not cands:
        raise VariationError("point_mutation", "the genome has no function or constant to change")
    n = d.nodes[rng.choice(cands)]
    if n.op in ACTIVATIONS or n.op in BINARY:
        pool = sorted(ACTIVATIONS) if n.op in ACTIVATIONS else sorted(BINARY)
        d.nodes[n.id] = Node(n.id, rng.choice([o for o in pool if o != n.op] or [n.op]), n.args)
    elif n.op == "const":
        d.nodes[n.id] = Node(n.id, "const", value=rng.choice([c for c in CONSTANTS if c != n.value]))
    else:
        hidden = d.spaces()[n.args[0]] == HIDDEN
        kinds = [k for k in WEIGHTED if k != n.op and (hidden or k != "diag")]
        d.replace(n.id, d.add(rng.choice(kinds), n.args[0]))


def insert_branch(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Wrap a subtree in a new activation, a new weighted call, or a new binary operator whose
    other operand is a new terminal or small random subtree (e.g. ``e`` -> ``e * diag(c)``)."""
    return attempt("insert_branch", genome, rng, limits, _insert_branch)


def _insert_branch(d: Draft, rng: random.Random) -> None:
    spaces = d.spaces()
    pos = rng.choice(d.positions())
    old = d.at(pos)
    space = spaces[old]
    kind = rng.choice(("activation", "weighted", "binary"))
    if kind == "activation":
        new = d.add(rng.choice(sorted(ACTIVATIONS)), old)
    elif kind == "weighted":
        if space == CONST:
            raise Retry("a weighted call of a constant has nothing to weigh")
        new = d.add(rng.choice(WEIGHTED if space == HIDDEN else ("affine", "linear")), old)
    else:
        term = random_term(d, rng, HIDDEN if space == CONST else space)
        new = d.add(rng.choice(sorted(BINARY)), *((old, term) if rng.random() < 0.5 else (term, old)))
    d.put(pos, new)


def shrink(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Replace a node by one of its operands of the same size (``tanh(e)`` -> ``e``,
    ``f * c`` -> ``c``, ``affine(h)`` -> ``h``), dropping what only the node used."""
    return attempt("shrink", genome, rng, limits, _shrink)


def _shrink(d: Draft, rng: random.Random) -> None:
    spaces = d.spaces()
    pairs = [(pos, c) for pos in d.positions() for c in dict.fromkeys(d.nodes[d.at(pos)].args)
             if spaces[c] == spaces[d.at(pos)]]
    if not pairs:
        raise VariationError("shrink", "no node has an operand of its own size to take its place")
    pos, c = rng.choice(pairs)
    d.put(pos, c)


def add_state(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Add a memory state ``s``: a new line ``s' = ...`` (a leaky or gated memory of an existing
    value, or a small new recurrence) and a read ``+ linear(s)`` or ``+ diag(s)`` of ``s`` inside the
    equations of ``h'``. The read is an identity insert (see
    :func:`growrnn.search.variation.morphisms.zero_init_nodes`)."""
    if len(genome.memory_states) >= limits.max_states:
        raise VariationError("add_state", f"the genome has {len(genome.memory_states)} memory states, "
                                          f"the limit max_states={limits.max_states}")
    return attempt("add_state", genome, rng, limits, _add_state)


def _add_state(d: Draft, rng: random.Random) -> None:
    spaces = d.spaces()
    cone = reachable(d.nodes, [d.genome.outputs["h"]])
    sites = [p for p in d.positions() if spaces[d.at(p)] == HIDDEN
             and (p[1] in cone if p[0] == "edge" else d.at(p) in cone)]
    values = [i for i in sorted(spaces) if spaces[i] == HIDDEN and d.nodes[i].op not in TERMINALS]
    name = d.fresh_name(STATE_NAMES, "s")
    s = d.add("state", name=name)
    roll = rng.random()
    if roll < 0.4 or not values:  # a small new recurrence
        drive = d.add(rng.choice(("affine", "linear")), d.add("x"))
        root = d.add(rng.choice(("tanh", "sigmoid", "relu")), d.add("add", drive, d.add("diag", s)))
    elif roll < 0.7:  # a leaky accumulator of an existing value
        root = d.add("add", rng.choice(values), d.add("diag", s))
    else:  # a gated running average: k * s + (1 - k) * v
        gate = d.add("sigmoid", d.add("add", d.add("affine", d.add("x")), d.add("affine", d.add("state", name="h"))))
        keep = d.add("mul", gate, s)
        take = d.add("mul", d.add("sub", d.add("const", value=1.0), gate), rng.choice(values))
        root = d.add("add", keep, take)
    at = [n for n, _ in d.bindings].index("h'")
    d.bindings.insert(at, (f"{name}'", root))
    pos = rng.choice(sites)
    d.put(pos, d.add("add", d.at(pos), d.add(rng.choice(("linear", "diag")), s)))



def remove_state(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Remove a memory state ``s``: drop its line ``s' = ...`` and read ``h`` where ``s`` was read
    (``f * c`` -> ``f * h``); what only ``s'`` used is dropped."""
    if not genome.memory_states:
        raise VariationError("remove_state", "the genome has no memory state besides h")
    return attempt("remove_state", genome, rng, limits, _remove_state)


def _remove_state(d: Draft, rng: random.Random) -> None:
    s = rng.choice(d.genome.memory_states)
    read = d.add("state", name=s)
    d.bindings = [(n, i) for n, i in d.bindings if n != f"{s}'"]
    d.replace(read, d.add("state", name="h"))


# --------------------------------------------------------------------------------- crossover
def subtree_crossover(a: Genome, b: Genome, rng: random.Random, limits: Limits,
                      homologous: bool = False) -> Genome:
    """A copy of ``a`` with one subtree replaced by a subtree of ``b`` of the same size.

    Non-homologous: a random subtree of ``b`` is grafted at a random position of ``a``.
    Homologous: the subtrees sit at the same place in both parents -- under the same name (``h'``,
    ``c'``, a local such as ``i``), reached by the same operand path -- and differ.
    The child keeps ``a``'s node ids; grafted nodes get fresh ids (above those of both parents).
    States of ``b`` that ``a`` lacks are read as ``h``.
    """
    if not isinstance(b, Genome):
        raise ArgumentError("b", allowed="a growrnn Genome", received=type(b).__name__)
    if homologous:
        return attempt("homologous_crossover", a, rng, limits, partial(_homologous, b=b), others=(b,))
    return attempt("subtree_crossover", a, rng, limits, partial(_graft_random, b=b), others=(b,))


def homologous_crossover(a: Genome, b: Genome, rng: random.Random, limits: Limits) -> Genome:
    """:func:`subtree_crossover` with ``homologous=True``."""
    return subtree_crossover(a, b, rng, limits, homologous=True)


def _graft(d: Draft, b: Genome, root: int) -> int:
    """Copy ``b``'s subtree at ``root`` into the draft (fresh ids; terminals are the draft's own)."""
    copies: dict[int, int] = {}

    def copy(nid: int) -> int:
        if nid not in copies:
            n = b.nodes[nid]
            if n.op == "state":
                copies[nid] = d.add("state", name=n.name if n.name in d.genome.states else "h")
            else:
                copies[nid] = d.add(n.op, *(copy(a) for a in n.args), value=n.value)
        return copies[nid]

    return copy(root)


def _graft_random(d: Draft, rng: random.Random, b: Genome) -> None:
    spaces, b_spaces = d.spaces(), value_spaces(b)
    pos = rng.choice(d.positions())
    want = spaces[d.at(pos)]
    donors = [i for i in sorted(b.nodes) if b.nodes[i].op not in TERMINALS and b_spaces[i] == want]
    if not donors:
        raise Retry(f"the other parent has no {want}-size subtree")
    d.put(pos, _graft(d, b, rng.choice(donors)))


def _homologous(d: Draft, rng: random.Random, b: Genome) -> None:
    spaces, b_spaces = d.spaces(), value_spaces(b)
    a_sig, b_sig = _Signature(d.genome, d.genome.states), _Signature(b, d.genome.states)
    pairs: list[tuple[tuple, int]] = []

    def walk(pos: tuple, na: int, nb: int, depth: int) -> None:
        if len(pairs) >= 2000:
            return
        if spaces[na] == b_spaces[nb] and a_sig(na) != b_sig(nb):
            pairs.append((pos, nb))
        A, B = d.nodes[na], b.nodes[nb]
        if depth < 16 and len(A.args) == len(B.args):
            for slot, (ca, cb) in enumerate(zip(A.args, B.args, strict=True)):
                walk(("edge", na, slot), ca, cb, depth + 1)

    b_bound = dict(b.bindings)
    for name, ra in d.genome.bindings:
        if name in b_bound:
            walk(("bind", name, 0), ra, b_bound[name], 0)
    if not pairs:
        raise VariationError("homologous_crossover", "the parents do not differ at any shared place")
    pos, nb = rng.choice(pairs)
    d.put(pos, _graft(d, b, nb))


class _Signature:
    """A structural signature of a subtree (states ``a`` lacks read as ``h``, as _graft does)."""

    def __init__(self, g: Genome, states: tuple[str, ...]):
        self.g, self.states, self.memo = g, states, dict[int, tuple]()

    def __call__(self, nid: int) -> tuple:
        if nid not in self.memo:
            n = self.g.nodes[nid]
            name = n.name if n.name is None or n.name in self.states else "h"
            self.memo[nid] = (n.op, name, n.value, tuple(self(a) for a in n.args))
        return self.memo[nid]


# --------------------------------------------------------------------------------- registry
#: Mutation operators by name: tree GP and network morphisms.
OPERATORS: dict[str, Operator] = {
    "point_mutation": point_mutation,
    "insert_branch": insert_branch,
    "shrink": shrink,
    "add_state": add_state,
    "remove_state": remove_state,
    **morphisms.MORPHISMS,
}
#: Crossover operators by name: ``(a, b, rng, limits) -> child`` keeping ``a``'s node ids.
CROSSOVERS: dict[str, Crossover] = {
    "subtree_crossover": subtree_crossover,
    "homologous_crossover": homologous_crossover,
}


def vary(parents: Sequence[Genome], rng: random.Random, limits: Limits,
         operators: Sequence[str] | None = None, p_crossover: float = 0.2,
         tries: int = 20) -> tuple[Genome, str]:
    """One child of ``parents`` and the name of the operator that made it.

    With two or more parents, a crossover of ``parents[0]`` and ``parents[1]`` is tried with
    probability ``p_crossover``; otherwise ``parents[0]`` is mutated. The child keeps
    ``parents[0]``'s node ids (inherit weights from it). An operator that does not apply, or a
    child equal to a parent, counts as a failed try; after ``tries`` failures raises
    :class:`~growrnn.errors.VariationError`. ``operators`` restricts the choice to these names
    (of :data:`OPERATORS` and :data:`CROSSOVERS`); ``None`` means all.
    """
    if isinstance(parents, Genome) or not isinstance(parents, Sequence) or not parents \
            or not all(isinstance(p, Genome) for p in parents):
        raise ArgumentError("parents", allowed="a non-empty sequence of Genome", received=parents,
                            hint="pass [genome] to mutate, [a, b] to allow crossover")
    if isinstance(p_crossover, bool) or not isinstance(p_crossover, (int, float)) or not 0 <= p_crossover <= 1:
        raise ArgumentError("p_crossover", allowed="a float in [0, 1]", received=p_crossover)
    check_int("tries", tries, 1)
    names = list(OPERATORS) + list(CROSSOVERS) if operators is None else list(operators)
    unknown = [n for n in names if n not in OPERATORS and n not in CROSSOVERS]
    if unknown or not names or isinstance(operators, str):
        raise ArgumentError("operators", allowed=f"names from {sorted([*OPERATORS, *CROSSOVERS])}",
                            received=operators, hint="or None for all of them")
    mutations = [n for n in names if n in OPERATORS]
    crossovers = [n for n in names if n in CROSSOVERS] if len(parents) >= 2 else []
    if not mutations and not crossovers:
        raise ArgumentError("operators", allowed="at least one mutation, or a crossover with two parents",
                            received=operators, hint="pass two parents or add a mutation operator")
    reason = ""
    for _ in range(tries):
        cross = bool(crossovers) and (not mutations or rng.random() < p_crossover)
        name = rng.choice(crossovers if cross else mutations)
        try:
            if cross:
                child = CROSSOVERS[name](parents[0], parents[1], rng, limits)
            else:
                child = OPERATORS[name](parents[0], rng, limits)
        except VariationError as e:
            reason = f"{name}: {e.reason}"
            log.debug("variation failed: %s", reason)
            continue
        if any(child == p for p in parents):
            reason = f"{name}: the child equals a parent"
            continue
        return child, name
    raise VariationError("vary", f"{tries} tries failed; the last: {reason}")

