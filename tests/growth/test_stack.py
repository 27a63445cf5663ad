"""The growable stack: per-layer sizes, multipliers, and surgery that keeps the function."""

import pytest
import torch
from torch import nn

from growrnn.errors import ArgumentError
from growrnn.growth import UnitMap
from growrnn.growth.stack import GrowableRNN, layers_of, outgoing_weights, resize_layer, resize_to

CELLS = ["lstm", "gru", "dual_lstm"]


def _net(cell: str, sizes=(4, 3), multipliers: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rnn = GrowableRNN(cell, 3, list(sizes), multipliers=multipliers, fast_path=False, generator=g,
                      dtype=torch.float64)
    if multipliers:
        with torch.no_grad():
            for m in rnn.multipliers:
                m.uniform_(0.5, 1.5, generator=g)
    decoder = nn.Linear(sizes[-1], 2, dtype=torch.float64)
    return rnn, decoder


def _run(rnn, decoder, x):
    out, state = rnn(x)
    return decoder(out), state


@pytest.mark.parametrize("multipliers", [False, True])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k", [0, 1])
def test_adding_then_deleting_a_silent_unit_keeps_the_function(cell: str, k: int, multipliers: bool) -> None:
    rnn, decoder = _net(cell, multipliers=multipliers)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    before, _ = _run(rnn, decoder, x)
    H = rnn.hidden_sizes[k]
    # a fresh unit: random incoming weights, zero outgoing weights (next layer / decoder, recurrent)
    resize_layer(rnn, decoder, k, UnitMap.of(H, range(H), add=1), generator=torch.Generator().manual_seed(3),
                 init_std=0.5, fresh_multiplier=0.7)
    grown, state = _run(rnn, decoder, x)
    torch.testing.assert_close(grown, before, rtol=1e-12, atol=1e-12)
    assert rnn.hidden_sizes[k] == H + 1 and state[k][0].shape[-1] == H + 1
    assert state[k][0][..., H].abs().sum() > 0  # the new unit computes something nobody reads
    # silence unit 0 (zero every weight that reads it), then delete it: nothing changes either
    ahead, recurrent = outgoing_weights(rnn, decoder, k)
    with torch.no_grad():
        for w in ahead + recurrent:
            w[:, 0] = 0.0
    silenced, _ = _run(rnn, decoder, x)
    resize_layer(rnn, decoder, k, UnitMap.of(H + 1, range(1, H + 1)))
    shrunk, _ = _run(rnn, decoder, x)
    torch.testing.assert_close(shrunk, silenced, rtol=1e-12, atol=1e-12)


def test_the_multiplier_gradient_matches_finite_differences() -> None:
    rnn, decoder = _net("gru", sizes=(3, 2), multipliers=True)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    weights = torch.randn(2, 5, 2, dtype=torch.float64)
    m0, m1 = rnn.multipliers

    def loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            m0.copy_(a)
            m1.copy_(b)
        out, _ = _run(rnn, decoder, x)
        return (out * weights).sum()

    a, b = m0.detach().clone(), m1.detach().clone()
    rnn.zero_grad()
    loss(a, b).backward()
    analytic = torch.cat([m0.grad, m1.grad])
    eps, numeric = 1e-6, []
    for i in range(5):
        da = torch.zeros(5, dtype=torch.float64)
        da[i] = eps
        plus = loss(a + da[:3], b + da[3:]).item()
        minus = loss(a - da[:3], b - da[3:]).item()
        numeric.append((plus - minus) / (2 * eps))
    torch.testing.assert_close(analytic, torch.tensor(numeric, dtype=torch.float64), rtol=1e-6, atol=1e-8)


def test_multipliers_scale_what_the_readers_see() -> None:
    rnn, decoder = _net("elman", sizes=(3,), multipliers=True)
    plain = GrowableRNN("elman", 3, [3], fast_path=False, dtype=torch.float64)
    plain.load_state_dict({k: v for k, v in rnn.state_dict().items() if "multipliers" not in k})
    with torch.no_grad():  # fold m into the recurrent weights' columns; the output is h * m
        plain.layers[0].weight_hh_l0.mul_(rnn.multipliers[0])
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    out, _ = rnn(x)
    ref, _ = plain(x)
    torch.testing.assert_close(out, ref * rnn.multipliers[0].detach())


def test_resize_to_rebuilds_sizes_and_checks_them() -> None:
    rnn, decoder = _net("lstm")
    resize_to(rnn, decoder, [2, 5])
    assert rnn.hidden_sizes == [2, 5] and rnn.layers[1].input_size == 2 and decoder.weight.shape == (2, 5)
    with pytest.raises(ArgumentError, match="one size per layer"):
        resize_to(rnn, decoder, [2])
    with pytest.raises(ArgumentError, match="hidden_sizes"):
        GrowableRNN("lstm", 3, [])
    with pytest.raises(ArgumentError, match="hidden_size as a list"):
        layers_of(nn.LSTM(3, 4, 2))


@pytest.mark.parametrize("cell, sizes, dropout", [
    ("lstm", (4,), 0.0), ("lstm", (4, 4), 0.3), ("gru", (5, 5, 5), 0.0), ("elman", (3,), 0.0),
    ("h' = relu(affine(x) + affine(h))", (4, 4), 0.0),
    # an evolved cell equal to a GRU with its gates written in another order
    ("z = sigmoid(affine(h) + affine(x))\nr = sigmoid(affine(x) + affine(h))\n"
     "n = tanh(affine(x) + r * affine(h))\nh' = (1 - z) * n + z * h", (4,), 0.0),
])
def test_a_grown_stack_converts_to_the_torch_module_it_computes(cell: str, sizes, dropout: float) -> None:
    rnn, decoder = _net(cell, sizes)
    rnn.dropout = dropout
    # surgery first: the first layer loses its unit 0 and gains a fresh one
    H = sizes[0]
    resize_layer(rnn, decoder, 0, UnitMap.of(H, range(1, H), add=1), generator=torch.Generator().manual_seed(1),
                 init_std=0.3)
    module = rnn.to_torch()
    assert (module.num_layers, module.hidden_size, module.batch_first, module.dropout) == \
        (len(sizes), sizes[0], True, dropout if len(sizes) > 1 else 0.0)
    rnn.eval(), module.eval()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    out, state = rnn(x)
    out_t, state_t = module(x)
    state_t = state_t if isinstance(state_t, tuple) else (state_t,)
    torch.testing.assert_close(out_t, out)
    for i, s in enumerate(state_t):  # torch's (L, B, H) against one (1, B, H) per layer
        torch.testing.assert_close(s, torch.cat([layer_state[i] for layer_state in state]))


@pytest.mark.parametrize("kwargs, sizes, match", [
    ({}, (4, 3), r"rnn.hidden_sizes.*one unit count.*Received: \[4, 3\].*layer.to_torch\(\) for layer"),
    ({"multipliers": True}, (4,), "rnn.*without multipliers or gates.*Received: multipliers.*fold_unit_scales"),
    ({"cell": "dual_lstm"}, (4,), "genome.*a cell torch has a module for"),
])
def test_to_torch_refuses_what_torch_cannot_hold(kwargs, sizes, match: str) -> None:
    rnn, _ = _net(kwargs.pop("cell", "lstm"), sizes, **kwargs)
    with pytest.raises(ArgumentError, match=match):
        rnn.to_torch()
