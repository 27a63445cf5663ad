"""Network morphisms on cell genomes, after MOE/RNAS (Booysen & Bosman 2024, arXiv 2403.11173):
add or remove a unit, add a (recurrent) connection, remove a connection, change an activation,
change how two values combine. Same contract as :mod:`growrnn.search.variation.operators`:
``op(genome, rng, limits) -> Genome`` or :class:`~growrnn.errors.VariationError`.

**Function preservation.** The growing morphisms add their new term *additively*:
``e`` becomes ``e + linear(v)`` (:func:`add_connection`, :func:`add_recurrent_connection`,
:func:`add_unit`, and the read of a new state in ``add_state``). Operators record nothing; the
rule is structural, and :func:`zero_init_nodes` recovers it from parent and child: a weighted call
site that is new in the child, used once, as an operand of a new ``+`` (or the right operand of a
new ``-``) whose other operand the parent already had, is an *identity insert*.
:func:`growrnn.search.variation.inherit.inherit_weights` sets those weights (and biases) to zero, so the
child starts computing exactly what its trained parent computed, and training grows the new path
from there.

Standard library and ``growrnn.genome`` only.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from growrnn.errors import VariationError
from growrnn.genome.graph import ACTIVATIONS, BINARY, TERMINALS, WEIGHTED, Genome, Node
from growrnn.genome.validate import HIDDEN
from growrnn.search.variation.draft import Draft, Limits, Pos, attempt, reachable

__all__ = ["add_unit", "remove_unit", "add_connection", "add_recurrent_connection", "remove_connection",
           "change_activation", "change_combination", "zero_init_nodes", "MORPHISMS"]

_UNIT_NAMES = ("u", "a", "b", "d", "e")


def _receiving(d: Draft, rng: random.Random) -> tuple[Pos, int, dict[int, str]]:
    """A random position holding a hidden-size value, the value there, and the draft's spaces."""
    spaces = d.spaces()
    sites = [p for p in d.positions() if spaces[d.at(p)] == HIDDEN]
    pos = rng.choice(sites)
    return pos, d.at(pos), spaces


def _insert(d: Draft, pos: Pos, old: int, term: int) -> int:
    """Put ``old + linear(term)`` at ``pos``; return the new linear call site."""
    w = d.add("linear", term)
    d.put(pos, d.add("add", old, w))
    return w


def add_connection(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Feed an existing value ``v`` (``x`` or a hidden-size node that does not depend on the
    receiving place) into a hidden-size value ``e``: ``e`` -> ``e + linear(v)``. Identity insert."""
    return attempt("add_connection", genome, rng, limits, _add_connection)


def _add_connection(d: Draft, rng: random.Random) -> None:
    pos, old, spaces = _receiving(d, rng)
    banned = d.forbidden(pos)
    sources = [d.add("x")] + [i for i in sorted(spaces) if spaces[i] == HIDDEN and i not in banned
                              and d.nodes[i].op not in TERMINALS]
    _insert(d, pos, old, rng.choice(sources))


def add_recurrent_connection(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Feed a state at t-1 (``h`` or a memory state ``s``) into a hidden-size value ``e``:
    ``e`` -> ``e + linear(s)``. Identity insert."""
    return attempt("add_recurrent_connection", genome, rng, limits, _add_recurrent)


def _add_recurrent(d: Draft, rng: random.Random) -> None:
    pos, old, _ = _receiving(d, rng)
    _insert(d, pos, old, d.add("state", name=rng.choice(d.genome.states)))


def add_unit(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Add a unit: a new named value ``u = act(affine(v))`` of an existing value ``v`` (``x`` or a
    hidden-size node), fed into a hidden-size value ``e``: ``e`` -> ``e + linear(u)``. Identity
    insert (the unit's output weights start at zero)."""
    return attempt("add_unit", genome, rng, limits, _add_unit)


def _add_unit(d: Draft, rng: random.Random) -> None:
    pos, old, spaces = _receiving(d, rng)
    banned = d.forbidden(pos)
    sources = [d.add("x")] + [i for i in sorted(spaces) if spaces[i] == HIDDEN and i not in banned]
    unit = d.add(rng.choice(("sigmoid", "tanh", "relu")), d.add("affine", rng.choice(sources)))
    name = d.fresh_name(_UNIT_NAMES, "u")
    _insert(d, pos, old, unit)
    # name the unit on its own line, just before the first equation that reads it
    at = next(k for k, (_, i) in enumerate(d.bindings) if unit in reachable(d.nodes, [i]))
    d.bindings.insert(at, (name, unit))


def remove_unit(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Remove a unit -- a named local or an activation that only feeds ``+``, ``-`` or ``*`` --
    by replacing each combination that reads it by the combination's other operand
    (``i * g`` -> ``g``, ``a + u`` -> ``a``)."""
    return attempt("remove_unit", genome, rng, limits, _remove_unit)


def _remove_unit(d: Draft, rng: random.Random) -> None:
    users = d.users()
    outputs = {i for n, i in d.bindings if n.endswith("'")}
    named = {i for n, i in d.bindings if not n.endswith("'")}

    def removable(i: int) -> bool:
        n = d.nodes[i]
        return (n.op not in TERMINALS and i not in outputs and (i in named or n.op in ACTIVATIONS)
                and bool(users[i]) and all(d.nodes[u].op in BINARY and len(set(d.nodes[u].args)) == 2
                                           for u, _ in users[i]))

    units = [i for i in sorted(users) if removable(i)]
    if not units:
        raise VariationError("remove_unit", "no named value or activation feeds only + - * combinations")
    unit = rng.choice(units)
    while users.get(unit):
        u, slot = users[unit][0]
        d.replace(u, d.nodes[u].args[1 - slot])
        users = d.users()


def remove_connection(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Remove a weighted term from a combination: ``e + affine(v)`` -> ``e``."""
    return attempt("remove_connection", genome, rng, limits, _remove_connection)


def _remove_connection(d: Draft, rng: random.Random) -> None:
    terms = [(i, slot) for i in sorted(d.live()) if d.nodes[i].op in BINARY
             and len(set(d.nodes[i].args)) == 2
             for slot, a in enumerate(d.nodes[i].args) if d.nodes[a].op in WEIGHTED]
    if not terms:
        raise VariationError("remove_connection", "no weighted call is an operand of + - *")
    i, slot = rng.choice(terms)
    d.replace(i, d.nodes[i].args[1 - slot])


def change_activation(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Swap one activation for another (``sigmoid`` -> ``tanh``)."""
    return attempt("change_activation", genome, rng, limits,
                   lambda d, r: _change(d, r, "change_activation", sorted(ACTIVATIONS)))


def change_combination(genome: Genome, rng: random.Random, limits: Limits) -> Genome:
    """Swap how two values combine (``+`` -> ``*``, ``-`` -> ``+`` ...)."""
    return attempt("change_combination", genome, rng, limits,
                   lambda d, r: _change(d, r, "change_combination", sorted(BINARY)))


def _change(d: Draft, rng: random.Random, name: str, pool: list[str]) -> None:
    cands = [i for i in sorted(d.live()) if d.nodes[i].op in pool]
    if not cands or len(pool) < 2:
        raise VariationError(name, f"the genome has no {'activation' if 'add' not in pool else 'combination'}")
    n = d.nodes[rng.choice(cands)]
    d.nodes[n.id] = Node(n.id, rng.choice([o for o in pool if o != n.op]), n.args)


def zero_init_nodes(parent: Genome, child: Genome) -> set[int]:
    """Ids of the child's *identity inserts*: weighted call sites that are new (id not in
    ``parent``), read once, by a new ``add`` (either operand) or ``sub`` (right operand) whose other
    operand is a node of ``parent``. With their weights and biases at zero the new combination
    equals that node, so a morphism's child computes what its parent computed."""
    old, out = set(parent.nodes), set[int]()
    for n in child.nodes.values():
        if n.id in old or n.op not in ("add", "sub"):
            continue
        a, b = n.args
        for w, other, ok in ((a, b, n.op == "add"), (b, a, True)):
            if (ok and w not in old and other in old and child.nodes[w].op in WEIGHTED
                    and child.parents[w] == [n.id] and w not in child.outputs.values()):
                out.add(w)
    return out


#: The morphisms by name (all registered in growrnn.search.variation.operators.OPERATORS).
MORPHISMS: dict[str, Callable[[Genome, random.Random, Limits], Genome]] = {
    "add_unit": add_unit,
    "remove_unit": remove_unit,
    "add_connection": add_connection,
    "add_recurrent_connection": add_recurrent_connection,
    "remove_connection": remove_connection,
    "change_activation": change_activation,
    "change_combination": change_combination,
}
