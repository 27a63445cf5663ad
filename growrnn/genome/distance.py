"""A structural distance between cells, cheap enough to compare every pair of a search's pool:
the species of :mod:`growrnn.search.species` are formed by it.

**The profile.** A genome's :func:`structure_profile` is the multiset of its *shallow subtrees*:
for every node of the canonical DAG (:func:`~growrnn.genome.canonical.flatten`: names dropped,
``+``/``*`` chains flattened, commutative operands sorted) its label alone, and the node with its
operands down to ``depth`` levels (default 2; a subtree shallower than that once, at its own
height), plus each output ``s<k>'`` over its value to the
same depth. ``h' = tanh(affine(x) + affine(h))`` has, among others, the grams ``0:tanh``,
``1:tanh(add)`` and ``2:tanh(add(affine,affine))``.

**The distance.** :func:`genome_distance` is the Bray-Curtis dissimilarity of two profiles: the
grams one genome has and the other lacks (counted with multiplicity), over all grams of both. It
lies in ``[0, 1]``: 0 for genomes with one canonical form (so for renamed or reordered copies,
whose :attr:`~growrnn.genome.Genome.key` is equal), 1 for genomes without a gram in common (which
never quite happens: every cell has the gram ``0:s0'``).

**Why shallow subtrees.** This is the pq-gram idea (Augsten, Böhlen & Gamper 2010), which
approximates tree edit distance in near-linear time: a node's gram of depth ``d`` changes only
when something within ``d`` levels below it changes, so one point edit touches the grams of the
edited node and of its ancestors up to ``depth`` levels above it, never the rest of a deep cell.
Whole-subtree hashes (the canonical key's own signatures) would change on every path to the
root, making one edit deep in an LSTM look like a new cell; exact tree or DAG edit distance is
cubic per pair and ill-defined for shared nodes. A profile costs one pass over the nodes and a
distance one pass over the grams, so 100 cells of 30 nodes take milliseconds. It is a
*pseudo*-distance: two different cells can share a profile (e.g. the same grams arranged
differently far apart), and Bray-Curtis does not satisfy the triangle inequality; speciation
needs neither.

>>> from growrnn.genome import parse
>>> a = parse("h' = tanh(affine(x) + affine(h))")
>>> genome_distance(a, parse("h' = tanh(affine(h) + affine(x))"))
0.0
>>> round(genome_distance(a, parse("h' = sigmoid(affine(x) + affine(h))")), 3)
0.333

Standard library only.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from growrnn.errors import ArgumentError, check_int
from growrnn.genome.canonical import flatten
from growrnn.genome.nodes import COMMUTATIVE

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.genome.graph import Genome

__all__ = ["PROFILE_DEPTH", "genome_distance", "profile_distance", "structure_profile"]

#: Default depth of the subtrees in a profile: a node, its operands and theirs.
PROFILE_DEPTH = 2


def structure_profile(genome: Genome, depth: int = PROFILE_DEPTH) -> Counter[str]:
    """The multiset of ``genome``'s shallow subtrees, ``"<d>:<subtree>"`` -> count, for ``d`` in
    ``0..depth`` (see the module docstring). Equal for genomes with one canonical form.

    >>> from growrnn.genome import parse
    >>> sorted(structure_profile(parse("h' = relu(diag(h))"), depth=1))
    ['0:diag', '0:relu', '0:s0', "0:s0'", '1:diag(s0)', '1:relu(diag)', "1:s0'(relu)"]
    """
    depth = check_int("depth", depth, 0, hint="2 (the default) compares a node with two levels below it")
    flat = flatten(genome)
    nodes = [nid for nid in genome.topological if nid not in flat.absorbed]
    outputs = list(genome.outputs.values())
    sig = dict(flat.labels)  # each node's subtree cut at depth d - 1
    out = [f"s{k}'" for k in range(len(outputs))]  # the same for the outputs
    grams: Counter[str] = Counter(f"0:{sig[nid]}" for nid in nodes)
    grams.update(f"0:{o}" for o in out)
    for d in range(1, depth + 1):
        deeper: dict[int, str] = {}
        for nid in nodes:
            kids = [sig[a] for a in flat.operands[nid]]
            if genome.nodes[nid].op in COMMUTATIVE:
                kids.sort()
            deeper[nid] = f"{flat.labels[nid]}({','.join(kids)})" if kids else flat.labels[nid]
        out_deeper = [f"s{k}'({sig[nid]})" for k, nid in enumerate(outputs)]
        # a subtree shallower than d is the same cut at d - 1: counted once, at its own height
        grams.update(f"{d}:{deeper[nid]}" for nid in nodes if deeper[nid] != sig[nid])
        grams.update(f"{d}:{o}" for o, before in zip(out_deeper, out, strict=True) if o != before)
        sig, out = deeper, out_deeper
    return grams


def profile_distance(a: Counter[str], b: Counter[str]) -> float:
    """Bray-Curtis dissimilarity of two profiles: ``sum |a - b| / sum (a + b)``, in ``[0, 1]``
    (0 when both are empty)."""
    for name, p in (("a", a), ("b", b)):
        if not isinstance(p, Counter):
            raise ArgumentError(name, allowed="a Counter (the output of structure_profile)",
                                received=type(p).__name__, hint="structure_profile(genome)")
    total = sum(a.values()) + sum(b.values())
    if total == 0:
        return 0.0
    return (sum((a - b).values()) + sum((b - a).values())) / total


def genome_distance(a: Genome, b: Genome, depth: int = PROFILE_DEPTH) -> float:
    """The structural distance of two genomes, in ``[0, 1]``: :func:`profile_distance` of their
    :func:`structure_profile` s (compute profiles once and compare those when one genome meets many)."""
    return profile_distance(structure_profile(a, depth), structure_profile(b, depth))
