"""Random valid genomes: the generator the property tests and the search's initial population use.

Randomness is an argument (a ``random.Random``), so a seed reproduces a genome in any process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from growrnn.genome.graph import Genome, Node, make_genome
from growrnn.genome.validate import reachable

__all__ = ["GenomeSpace", "random_genome"]

MEMORY_NAMES = ("c", "m", "k", "q", "u", "v")


@dataclass(frozen=True)
class GenomeSpace:
    """What :func:`random_genome` may produce (also the search's bloat limits)."""

    max_memory_states: int = 2
    max_depth: int = 4
    activations: tuple[str, ...] = ("sigmoid", "tanh", "relu", "identity")
    weighted: tuple[str, ...] = ("affine", "linear", "diag")
    constants: tuple[float, ...] = (1.0, 0.5)
    p_share: float = 0.15


class _Builder:
    def __init__(self, rng: random.Random, space: GenomeSpace, memory: tuple[str, ...]):
        self.rng, self.space, self.memory = rng, space, memory
        self.nodes: dict[int, Node] = {}
        self.pool: list[int] = []  # hidden-size, non-terminal nodes available for sharing
        self.terminals: dict[tuple, int] = {}

    def add(self, op: str, *args: int, name: str | None = None, value: float | None = None) -> int:
        key = (op, name, value)
        if not args and key in self.terminals:
            return self.terminals[key]
        nid = len(self.nodes)
        self.nodes[nid] = Node(nid, op, tuple(args), name, value)
        if args:
            self.pool.append(nid)
        else:
            self.terminals[key] = nid
        return nid

    def state(self) -> int:
        return self.add("state", name=self.rng.choice(("h", *self.memory)))

    def leaf(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            return self.add(rng.choice([w for w in self.space.weighted if w != "diag"] or ["affine"]),
                            self.add("x"))
        if roll < 0.8:
            return self.add(rng.choice(self.space.weighted), self.state())
        return self.state()

    def hidden(self, depth: int, root: bool = False) -> int:
        rng = self.rng
        if not root and self.pool and rng.random() < self.space.p_share:
            return rng.choice(self.pool)
        if depth <= 0 or (not root and rng.random() < 0.3):
            return self.leaf()
        roll = rng.random()
        if roll < 0.3:
            return self.add(rng.choice(self.space.activations), self.hidden(depth - 1))
        if roll < 0.75:
            op = rng.choice(("add", "add", "mul", "sub"))
            return self.add(op, self.hidden(depth - 1), self.hidden(depth - 1))
        if roll < 0.85 and self.space.constants:
            const = self.add("const", value=rng.choice(self.space.constants))
            other = self.hidden(depth - 1)
            op = rng.choice(("sub", "mul"))
            return self.add(op, const, other) if op == "sub" else self.add(op, other, const)
        weighted = [w for w in self.space.weighted if w != "diag"] or ["affine"]
        return self.add(rng.choice(weighted), self.hidden(depth - 1))


def random_genome(rng: random.Random, space: GenomeSpace | None = None) -> Genome:
    """A random valid genome: every memory state is read, ``h'`` depends on ``x``.

    >>> g = random_genome(random.Random(0))
    >>> g == random_genome(random.Random(0))
    True
    """
    space = space or GenomeSpace()
    n_mem = rng.randint(0, space.max_memory_states)
    memory = MEMORY_NAMES[:n_mem]
    b = _Builder(rng, space, memory)
    roots: dict[str, int] = {}
    for s in (*memory, "h"):  # memory first, so h' may read the new memory values
        roots[s] = b.hidden(space.max_depth, root=True)
    reach = reachable(b.nodes, list(roots.values()))
    for s in memory:
        if not any(b.nodes[i].op == "state" and b.nodes[i].name == s for i in reach):
            roots[s] = b.add("add", roots[s], b.add("diag", b.add("state", name=s)))
            reach = reachable(b.nodes, list(roots.values()))
    if not any(b.nodes[i].op == "x" for i in reachable(b.nodes, [roots["h"]])):
        roots["h"] = b.add("add", roots["h"], b.add("affine", b.add("x")))
    live = reachable(b.nodes, list(roots.values()))
    nodes = [n for i, n in b.nodes.items() if i in live]
    bindings = [(f"{s}'", roots[s]) for s in memory] + [("h'", roots["h"])]
    return make_genome(nodes, bindings)
