"""An obviously-correct (slow) evaluator of a genome, node by node and step by step, using the
weights ``GenomeRNN.cell_weights`` exposes. The compiled plans are checked against it."""

from __future__ import annotations

import torch

from growrnn.cells import GenomeRNN


def reference_forward(rnn: GenomeRNN, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None):
    """x: (T, B, I) -> output (T, B, H), tuple of (L, B, H) final states."""
    g = rnn.genome
    T, B, _ = x.shape
    L, H = rnn.num_layers, rnn.hidden_size
    if state is None:
        state = tuple(x.new_zeros(L, B, H) for _ in g.states)
    finals = []
    acts = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v}
    for layer in range(L):
        weights = dict(zip(g.weighted, rnn.cell_weights(layer), strict=True))
        cur = {s: state[k][layer] for k, s in enumerate(g.states)}
        outs = []
        for t in range(T):
            val: dict[int, torch.Tensor | float] = {}
            for nid in g.topological:
                n = g.nodes[nid]
                if n.op == "x":
                    val[nid] = x[t]
                elif n.op == "state":
                    val[nid] = cur[n.name]
                elif n.op == "const":
                    val[nid] = torch.tensor(float(n.value), dtype=x.dtype)  # a 0-d tensor: torch ops take it
                elif n.op in ("affine", "linear"):
                    _, w, b = weights[nid]
                    val[nid] = val[n.args[0]] @ w.t() + (b if b is not None else 0.0)
                elif n.op == "diag":
                    val[nid] = weights[nid][1] * val[n.args[0]]
                elif n.op in acts:
                    val[nid] = acts[n.op](val[n.args[0]])
                else:
                    a, b = val[n.args[0]], val[n.args[1]]
                    val[nid] = a + b if n.op == "add" else a - b if n.op == "sub" else a * b
            cur = {s: val[g.outputs[s]] for s in g.states}
            outs.append(cur["h"])
        x = torch.stack(outs)
        finals.append(cur)
    return x, tuple(torch.stack([f[s] for f in finals]) for s in g.states)
