"""The structural distance: a pseudo-metric in [0, 1] that is 0 on one canonical form, symmetric,
and small for one edit."""

import doctest
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growrnn.errors import ArgumentError
from growrnn.genome import (
    LIBRARY,
    GenomeSpace,
    genome_distance,
    library_cell,
    parse,
    profile_distance,
    random_genome,
    structure_profile,
)
from growrnn.genome import distance as distance_module
from tests.genome.test_canonical import SAME
from tests.genome.test_properties import _rename

GRU_NEAR = "r = sigmoid(affine(x) + affine(h))\nz = sigmoid(affine(x) + affine(h))\n" \
           "n = relu(affine(x) + r * affine(h))\nh' = (1 - z) * n + z * h"  # the GRU, tanh -> relu


def test_docstring_examples() -> None:
    assert doctest.testmod(distance_module).failed == 0


@pytest.mark.parametrize(("a", "b"), SAME)
def test_cells_with_one_key_are_at_distance_zero(a: str, b: str) -> None:
    ga, gb = parse(a), parse(b)
    assert ga.key == gb.key and genome_distance(ga, gb) == 0.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), prefix=st.sampled_from(["n_", "Q"]))
def test_identity_and_renaming_give_zero(seed: int, prefix: str) -> None:
    g = random_genome(random.Random(seed), GenomeSpace(max_memory_states=2, max_depth=4, p_share=0.2))
    assert genome_distance(g, g) == 0.0
    assert genome_distance(g, parse(_rename(g.to_text(), prefix))) == 0.0


@pytest.mark.parametrize("a", sorted(LIBRARY))
@pytest.mark.parametrize("b", sorted(LIBRARY))
def test_symmetric_and_in_the_unit_interval(a: str, b: str) -> None:
    d = genome_distance(library_cell(a), library_cell(b))
    assert d == genome_distance(library_cell(b), library_cell(a))
    assert (d == 0.0) == (a == b) and 0.0 <= d <= 1.0


# exact values: grams in one profile and not the other, over the grams of both
@pytest.mark.parametrize(("a", "b", "expected"), [
    ("h' = relu(diag(h))", "h' = relu(diag(h))", 0.0),
    # each has 4 labels, 3 grams of depth 1 and 2 of depth 2 (diag(s0) is only 1 deep: counted once);
    # in common: s0, diag, s0' and diag(s0)
    ("h' = relu(diag(h))", "h' = tanh(diag(h))", 10 / 18),
    # in common: s0, relu, s0' and s0'(relu)
    ("h' = relu(diag(h))", "h' = relu(linear(h))", 10 / 18),
    ("h' = relu(affine(x))", "h' = tanh(diag(h))", 16 / 18),  # only s0' in common
])
def test_exact_values_on_tiny_cells(a: str, b: str, expected: float) -> None:
    assert genome_distance(parse(a), parse(b)) == pytest.approx(expected)
    assert sum(structure_profile(parse(a)).values()) == 9


def test_one_edit_is_near_and_another_cell_is_far() -> None:
    gru = library_cell("gru")
    near = genome_distance(gru, parse(GRU_NEAR))
    assert 0.0 < near < 0.15
    assert all(genome_distance(gru, library_cell(n)) > 2 * near for n in ("lstm", "elman", "mgu", "indrnn"))


def test_one_edit_deep_in_a_cell_changes_only_nearby_grams() -> None:
    # the edit sits 5 levels below h'; grams of the nodes above its grandparents stay the same
    chain = "h' = tanh(diag(tanh(diag(tanh(diag({})))))) + affine(x)"
    a, b = parse(chain.format("relu(affine(h))")), parse(chain.format("sigmoid(affine(h))"))
    pa, pb = structure_profile(a), structure_profile(b)
    changed = (pa - pb) + (pb - pa)
    assert sorted(changed) == ["0:relu", "0:sigmoid", "1:diag(relu)", "1:diag(sigmoid)", "1:relu(affine)",
                               "1:sigmoid(affine)", "2:diag(relu(affine))", "2:diag(sigmoid(affine))",
                               "2:relu(affine(s0))", "2:sigmoid(affine(s0))", "2:tanh(diag(relu))",
                               "2:tanh(diag(sigmoid))"]


@pytest.mark.parametrize(("depth", "grams"), [(0, 4), (1, 7), (2, 9), (3, 10), (9, 10)])
def test_depth_sets_how_far_a_gram_reaches(depth: int, grams: int) -> None:
    profile = structure_profile(parse("h' = relu(diag(h))"), depth=depth)
    assert sum(profile.values()) == grams


@pytest.mark.parametrize(("call", "match"), [
    (lambda: structure_profile(library_cell("gru"), depth=-1), r"'depth'.*Allowed: an int >= 0.*Received: -1"),
    (lambda: profile_distance({"0:x": 1}, Counter()), r"'a'.*a Counter.*Received: dict.*HINT: structure_profile"),
    (lambda: profile_distance(Counter(), [1]), r"'b'.*Received: list"),
])
def test_bad_arguments_are_argument_errors(call, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        call()


def test_empty_profiles_are_at_distance_zero() -> None:
    assert profile_distance(Counter(), Counter()) == 0.0
