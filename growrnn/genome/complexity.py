"""Complexity figures of a genome at given sizes: what the search minimises and the benchmarks
divide by. Counts are per layer and per time step for one sequence (batch 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from growrnn.errors import check_int
from growrnn.genome.graph import ACTIVATIONS, BINARY, Genome
from growrnn.genome.validate import CONST, HIDDEN, INPUT, value_spaces

__all__ = ["Complexity", "complexity"]


@dataclass(frozen=True)
class Complexity:
    """Complexity of a stack of ``layers`` cells.

    - ``weighted_calls``: weighted call sites per layer (affine, linear, diag);
    - ``nodes``: nodes of the step DAG per layer (terminals included);
    - ``states``: state tensors carried between steps per layer (``h`` included);
    - ``params``: trainable parameters of the whole stack;
    - ``macs``: multiply-accumulates per time step of the whole stack: ``H*d`` per affine or
      linear call on a size-``d`` value, ``H`` per diag call and per element-wise ``*``;
    - ``flops``: forward floating-point operations per time step: ``2*H*d`` per affine or linear
      call on a size-``d`` value, ``2*H`` per diag call, and ``H`` for each element-wise ``*``,
      ``+``/``-``, activation and bias add.
    """

    weighted_calls: int
    nodes: int
    states: int
    params: int
    macs: int
    flops: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def complexity(genome: Genome, input_size: int, hidden_size: int, num_layers: int = 1) -> Complexity:
    """Complexity figures of ``genome`` for the given sizes (layer k>0 reads size ``hidden_size``).

    >>> from growrnn.genome.library import lstm
    >>> complexity(lstm(), 10, 20).params == 4 * (20 * 10 + 20 * 20 + 2 * 20)
    True
    """
    for arg, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        check_int(arg, v, 1)
    space = value_spaces(genome)
    params = macs = flops = 0
    for layer in range(num_layers):
        d_in = input_size if layer == 0 else hidden_size
        H = hidden_size
        width = {INPUT: d_in, HIDDEN: H, CONST: 0}
        for node in genome.nodes.values():
            if node.op in ("affine", "linear"):
                d = d_in if space[node.args[0]] == INPUT else H
                bias = H if node.op == "affine" else 0
                params += H * d + bias
                macs += H * d
                flops += 2 * H * d + bias
            elif node.op == "diag":
                params += H
                macs += H
                flops += 2 * H
            elif node.op == "mul":
                macs += width[space[node.id]]
                flops += width[space[node.id]]
            elif node.op in BINARY or (node.op in ACTIVATIONS and node.op != "identity"):
                flops += width[space[node.id]]
    weighted = len(genome.weighted)
    return Complexity(weighted_calls=weighted, nodes=len(genome.nodes), states=len(genome.states),
                      params=params, macs=macs, flops=flops)
