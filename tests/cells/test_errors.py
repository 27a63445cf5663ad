"""Bad arguments and shapes fail with messages that say what was expected and received."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import growrnn as gr

RNN = gr.GenomeRNN("lstm", 3, 4, num_layers=2)


@pytest.mark.parametrize(("args", "cls", "match"), [
    ((torch.zeros(5, 2, 7),), gr.ShapeError, r"\(T, B, I\) or \(T, I\) with I=3; received \(5, 2, 7\)"),
    ((torch.zeros(5, 2, 3, 1),), gr.ShapeError, r"received \(5, 2, 3, 1\)"),
    (("text",), gr.ShapeError, "received str"),
    ((pack_sequence([torch.zeros(2, 3)]),), gr.ArgumentError, "PackedSequence.*pad_packed_sequence"),
    ((torch.zeros(5, 2, 3), (torch.zeros(2, 2, 4),)), gr.ShapeError, r"tuple of 2 tensors \('h', 'c'\); received 1"),
    ((torch.zeros(5, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4))), gr.ShapeError,
     r"state 'c' must have shape \(num_layers, B, H\)=\(2, 2, 4\); received \(1, 2, 4\)"),
])
def test_call_time_shape_errors(args, cls, match) -> None:
    with pytest.raises(cls, match=match):
        RNN(*args)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"hidden_size": 0}, "'hidden_size'.*an int >= 1.*Received: 0"),
    ({"input_size": "3"}, "'input_size'"),
    ({"num_layers": True}, "'num_layers'"),
    ({"dropout": 1.0}, r"'dropout'.*\[0, 1\)"),
    ({"fast_path": "yes"}, "'fast_path'.*Allowed: True, False, auto"),
    ({"genome": "lsmt"}, "'genome'.*dual_lstm, elman, gru.*Received: lsmt"),
    ({"genome": 3}, "'genome'.*Received: int"),
])
def test_constructor_errors(kwargs, match) -> None:
    args = {"genome": "gru", "input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(gr.ArgumentError, match=match):
        gr.GenomeRNN(**args)


def test_cell_weights_layer_out_of_range() -> None:
    with pytest.raises(gr.ArgumentError, match=r"'layer'.*0\.\.1.*Received: 2"):
        RNN.cell_weights(2)
