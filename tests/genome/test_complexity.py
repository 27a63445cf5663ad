"""Complexity figures, cross-checked against the modules the compiler builds."""

import random

import pytest
import torch

import growrnn as gr
from growrnn.genome import LIBRARY, complexity, library_cell


@pytest.mark.parametrize(("cell", "weighted", "states", "macs_per_layer"), [
    ("elman", 2, 1, lambda i, h: h * i + h * h),
    ("lstm", 8, 2, lambda i, h: 4 * (h * i + h * h) + 3 * h),
    ("gru", 6, 1, lambda i, h: 3 * (h * i + h * h) + 3 * h),
    ("indrnn", 2, 1, lambda i, h: h * i + h),
])
def test_known_cells(cell: str, weighted: int, states: int, macs_per_layer) -> None:
    c = complexity(library_cell(cell), 7, 5, num_layers=2)
    assert (c.weighted_calls, c.states) == (weighted, states)
    assert c.macs == macs_per_layer(7, 5) + macs_per_layer(5, 5)


def test_lstm_params_equal_torch() -> None:
    lstm = torch.nn.LSTM(7, 5, num_layers=3)
    assert complexity(library_cell("lstm"), 7, 5, 3).params == sum(p.numel() for p in lstm.parameters())


@pytest.mark.parametrize("cell", [*sorted(LIBRARY), *[f"random:{s}" for s in range(8)]])
def test_params_equal_the_compiled_module(cell: str) -> None:
    g = gr.random_genome(random.Random(int(cell[7:]))) if cell.startswith("random:") else library_cell(cell)
    rnn = gr.GenomeRNN(g, 6, 4, num_layers=2)
    assert complexity(g, 6, 4, 2).params == sum(p.numel() for p in rnn.parameters())


@pytest.mark.parametrize(("arg", "value"), [("input_size", 0), ("hidden_size", -1), ("num_layers", 1.5)])
def test_bad_sizes(arg: str, value: object) -> None:
    sizes = {"input_size": 3, "hidden_size": 3, "num_layers": 1, arg: value}
    with pytest.raises(gr.ArgumentError, match=f"'{arg}'.*an int >= 1"):
        complexity(library_cell("gru"), **sizes)
