"""Library cells: the standard gated and ungated cells as genomes, with torch semantics where
torch has the cell (so weights import exactly; see ``GenomeRNN.from_torch``)."""

from __future__ import annotations

from functools import cache

from growrnn.errors import ArgumentError
from growrnn.genome.graph import Genome
from growrnn.genome.text import parse

__all__ = ["LIBRARY", "lstm", "gru", "elman", "mgu", "indrnn", "dual_lstm", "library_cell", "library_equivalent"]

LIBRARY: dict[str, str] = {
    "lstm": """\
# LSTM, with torch.nn.LSTM semantics (gate order i, f, g, o)
i = sigmoid(affine(x) + affine(h))
f = sigmoid(affine(x) + affine(h))
g = tanh(affine(x) + affine(h))
o = sigmoid(affine(x) + affine(h))
c' = f * c + i * g
h' = o * tanh(c')
""",
    "gru": """\
# GRU, with torch.nn.GRU semantics (gate order r, z, n)
r = sigmoid(affine(x) + affine(h))
z = sigmoid(affine(x) + affine(h))
n = tanh(affine(x) + r * affine(h))
h' = (1 - z) * n + z * h
""",
    "elman": """\
# Elman network, with torch.nn.RNN(nonlinearity='tanh') semantics
h' = tanh(affine(x) + affine(h))
""",
    "mgu": """\
# Minimal gated unit (Zhou et al. 2016): one forget gate does the work of GRU's r and z
f = sigmoid(affine(x) + affine(h))
n = tanh(affine(x) + linear(f * h))
h' = (1 - f) * h + f * n
""",
    "indrnn": """\
# IndRNN (Li et al. 2018): each unit sees only its own past value
h' = relu(affine(x) + diag(h))
""",
    "dual_lstm": """\
# LSTM with a second, slow memory m: a gated running average of the fast memory c
i = sigmoid(affine(x) + affine(h))
f = sigmoid(affine(x) + affine(h))
g = tanh(affine(x) + affine(h))
o = sigmoid(affine(x) + affine(h))
k = sigmoid(affine(x) + affine(h))
c' = f * c + i * g
m' = k * m + (1 - k) * c'
h' = o * tanh(c' + m')
""",
}


@cache
def library_cell(name: str) -> Genome:
    """The library genome called ``name`` (see :data:`LIBRARY`)."""
    if name not in LIBRARY:
        raise ArgumentError("name", allowed=", ".join(sorted(LIBRARY)), received=name,
                            hint="or write the equations yourself and call growrnn.parse")
    return parse(LIBRARY[name])


def library_equivalent(g: Genome, *, rewritten: bool = False) -> str | None:
    """The name of the library cell ``g`` is up to the values of its weights (the same
    :attr:`~growrnn.genome.Genome.equivalence_key`: ``"lstm"`` for an LSTM written with a negated
    recurrent matrix or one bias per gate), or None. With ``rewritten``, None also when ``g`` is
    that cell as written (the same canonical key): a search that evolves an LSTM with a negated
    matrix has found the LSTM again, one that keeps its seeded LSTM has not found anything."""
    name = _by_equivalence().get(g.equivalence_key)
    if rewritten and name is not None and library_cell(name).key == g.key:
        return None
    return name


@cache
def _by_equivalence() -> dict[str, str]:
    return {library_cell(name).equivalence_key: name for name in sorted(LIBRARY, reverse=True)}


def lstm() -> Genome:
    """LSTM cell (torch.nn.LSTM semantics; 4 gates, memory state ``c``)."""
    return library_cell("lstm")


def gru() -> Genome:
    """GRU cell (torch.nn.GRU semantics)."""
    return library_cell("gru")


def elman() -> Genome:
    """Elman cell (torch.nn.RNN with tanh)."""
    return library_cell("elman")


def mgu() -> Genome:
    """Minimal gated unit (Zhou et al. 2016)."""
    return library_cell("mgu")


def indrnn() -> Genome:
    """IndRNN (Li et al. 2018) with ReLU."""
    return library_cell("indrnn")


def dual_lstm() -> Genome:
    """An LSTM with a second, slow memory state (two memory states, five gates)."""
    return library_cell("dual_lstm")
