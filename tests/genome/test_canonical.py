"""The canonical key: invariant to names and commutative order, blind to nothing else."""

import pytest

from growrnn.genome import LIBRARY, parse

# An LSTM with other names, another line order and swapped operands.
PERMUTED_LSTM = """\
forget = sigmoid(affine(h) + affine(x))
inp = sigmoid(affine(x) + affine(h))
out = sigmoid(affine(x) + affine(h))
cand = tanh(affine(x) + affine(h))
mem' = inp * cand + forget * mem
h' = tanh(mem') * out
"""

SAME = [
    ("i = sigmoid(affine(x))\nh' = i * tanh(affine(h))", "gate = sigmoid(affine(x))\nh' = gate * tanh(affine(h))"),
    ("h' = tanh(affine(x) + affine(h))", "h' = tanh(affine(h) + affine(x))"),
    ("h' = tanh(affine(x) + (affine(h) + diag(h)))", "h' = tanh((diag(h) + affine(x)) + affine(h))"),
    ("h' = relu(linear(x)) * sigmoid(affine(h))", "h' = sigmoid(affine(h)) * relu(linear(x))"),
    ("c' = c * sigmoid(affine(x))\nh' = tanh(c' + affine(h))",
     "m' = sigmoid(affine(x)) * m\nh' = tanh(affine(h) + m')"),
    (LIBRARY["lstm"], PERMUTED_LSTM),
]
DIFFERENT = [
    ("t = affine(x)\nh' = tanh(t) * sigmoid(t)", "h' = tanh(affine(x)) * sigmoid(affine(x))"),
    ("h' = tanh(affine(x) - affine(h))", "h' = tanh(affine(h) - affine(x))"),
    ("h' = tanh(affine(x) + affine(h))", "h' = tanh(linear(x) + affine(h))"),
    ("h' = tanh(affine(x) + affine(h))", "h' = sigmoid(affine(x) + affine(h))"),
    ("h' = tanh(affine(x)) * 0.5 + h", "h' = tanh(affine(x)) * 0.25 + h"),
    (LIBRARY["lstm"], LIBRARY["gru"]),
    ("c' = c + affine(x)\nm' = m * affine(h)\nh' = tanh(c' + m')",
     "c' = c * affine(h)\nm' = m + affine(x)\nh' = tanh(c' + m')"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_equal_cells_share_a_key(a: str, b: str) -> None:
    assert parse(a).key == parse(b).key


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_cells_have_different_keys(a: str, b: str) -> None:
    assert parse(a).key != parse(b).key


def test_equality_compares_text_not_ids() -> None:
    a = parse("h' = tanh(affine(x) + affine(h))")
    b = parse("h' = tanh(affine(h) + affine(x))")
    assert a != b and a.key == b.key
    assert len({a, parse(a.to_text())}) == 1
