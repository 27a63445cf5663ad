"""The canonical key: invariant to names and commutative order, blind to nothing else."""

from pathlib import Path

import pytest

from growrnn.genome import LIBRARY, library_equivalent, parse

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


# Cells that differ only in how their weights are written: a subtracted weighted call, a sum's biases.
EQUIVALENT = [
    ("h' = tanh(affine(x) - affine(h))", "h' = tanh(affine(h) + affine(x))"),
    ("h' = tanh(affine(x) - affine(h))", "h' = tanh(affine(h) - affine(x))"),
    ("h' = tanh(affine(x) + affine(h))", "h' = tanh(linear(x) + affine(h))"),
    ("h' = tanh(affine(x) + affine(h) + 1)", "h' = tanh(affine(x) + linear(h))"),
    ("h' = tanh(affine(x) + 1)", "h' = tanh(affine(x) + 2)"),
    ("h' = tanh(h - (linear(x) + diag(h)))", "h' = tanh(h + linear(x) + diag(h))"),
    ("h' = tanh(affine(x) - affine(h) - affine(h))", "h' = tanh(linear(x) + linear(h) + affine(h))"),
    (LIBRARY["lstm"], (Path(__file__).parents[2] / "configs/cells/ptb/confirmed/cell_121.txt").read_text()),
]
NOT_EQUIVALENT = [
    ("h' = tanh(affine(x) * affine(h))", "h' = tanh(affine(x) * linear(h))"),  # a product's biases are not one
    ("h' = tanh(affine(x))", "h' = tanh(linear(x))"),  # no sum: the bias is the only one
    ("h' = h - sigmoid(affine(x))", "h' = h + sigmoid(affine(x))"),  # not a weighted call subtracted
    ("h' = tanh(affine(x) + h)", "h' = tanh(affine(x) - h)"),
    ("t = affine(h)\nh' = tanh(affine(x) - t) * sigmoid(t)",  # t is shared: its sign is not its own
     "t = affine(h)\nh' = tanh(affine(x) + t) * sigmoid(t)"),
    ("h' = tanh(affine(x) + affine(h))", "h' = tanh(linear(x) + linear(h))"),  # one bias is not none
    (LIBRARY["lstm"], LIBRARY["gru"]),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_cells_equal_up_to_their_weights_share_an_equivalence_key(a: str, b: str) -> None:
    assert parse(a).equivalence_key == parse(b).equivalence_key


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT + DIFFERENT[:1] + DIFFERENT[3:])
def test_cells_that_compute_other_functions_do_not(a: str, b: str) -> None:
    assert parse(a).equivalence_key != parse(b).equivalence_key


@pytest.mark.parametrize(("a", "b"), SAME)
def test_one_canonical_key_is_one_equivalence_key(a: str, b: str) -> None:
    assert parse(a).equivalence_key == parse(b).equivalence_key


@pytest.mark.parametrize(("text", "name", "rewritten"), [
    (EQUIVALENT[-1][1], "lstm", "lstm"),
    (LIBRARY["gru"], "gru", None),
    ("h' = tanh(affine(x) - affine(h))", "elman", "elman"),
    ("h' = tanh(affine(x) * affine(h))", None, None),
])
def test_a_library_cell_is_recognised_up_to_its_weights(text: str, name: str | None, rewritten: str | None) -> None:
    assert library_equivalent(parse(text)) == name
    assert library_equivalent(parse(text), rewritten=True) == rewritten  # not the cell as written
