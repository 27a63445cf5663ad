"""The native fast path: a genome that is canonically LSTM, GRU or Elman runs on torch's own
RNN kernels (the ones ``nn.LSTM``/``nn.GRU``/``nn.RNN`` call), with its weights passed as they are
stored. Matching is by canonical key, so renamed locals or swapped operands still match; the
weighted calls are mapped onto torch's gate order through the canonical visit order."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from growrnn.genome.canonical import canonical_form
from growrnn.genome.graph import Genome
from growrnn.genome.library import library_cell
from growrnn.genome.text import parse

__all__ = ["NativeMatch", "match_native"]

_TEMPLATES = {
    "lstm": ("lstm", 4),
    "gru": ("gru", 3),
    "rnn_tanh": ("elman", 1),
    "rnn_relu": ("h' = relu(affine(x) + affine(h))", 1),
}


@dataclass(frozen=True)
class NativeMatch:
    """``kernel`` names the torch kernel; ``gates`` its gate count; ``perm_ih``/``perm_hh`` give,
    for each torch gate in order, the row block of the genome's stacked weights that holds it."""

    kernel: str
    gates: int
    perm_ih: tuple[int, ...]
    perm_hh: tuple[int, ...]

    @property
    def identity(self) -> bool:
        ident = tuple(range(self.gates))
        return self.perm_ih == ident and self.perm_hh == ident


@cache
def _template(kernel: str) -> Genome:
    src, _ = _TEMPLATES[kernel]
    return parse(src) if "=" in src else library_cell(src)


def match_native(g: Genome) -> NativeMatch | None:
    """Return how ``g`` maps onto a torch kernel, or ``None`` if it is not a native cell."""
    for kernel, (_, gates) in _TEMPLATES.items():
        t = _template(kernel)
        if t.canonical != g.canonical:
            continue
        t_order, g_order = canonical_form(t)[1], canonical_form(g)[1]
        to_g = dict(zip(t_order, g_order, strict=True))
        perms = []
        for arg_op, arg_name in (("x", None), ("state", "h")):
            def members(genome: Genome, op: str = arg_op, name: str | None = arg_name) -> list[int]:
                return [w for w in genome.weighted
                        if genome.nodes[genome.nodes[w].args[0]].op == op
                        and genome.nodes[genome.nodes[w].args[0]].name == name]
            t_members, g_members = members(t), members(g)
            perms.append(tuple(g_members.index(to_g[m]) for m in t_members))
        return NativeMatch(kernel, gates, perms[0], perms[1])
    return None
