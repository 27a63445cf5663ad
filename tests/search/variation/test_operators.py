"""Variation operators: every child is a valid genome within the limits, surviving nodes keep their
ids, new nodes get fresh ones, and an operator that cannot apply says so with VariationError."""

from __future__ import annotations

import doctest
import random
import subprocess
import sys
from collections import Counter

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from growrnn.cells.rnn import GenomeRNN
from growrnn.errors import ArgumentError, VariationError
from growrnn.genome import Genome, library_cell, parse
from growrnn.search.variation import morphisms, operators
from growrnn.search.variation.draft import constant_expressions, dead_states, measure
from growrnn.search.variation.morphisms import zero_init_nodes
from growrnn.search.variation.operators import CROSSOVERS, OPERATORS, Limits, subtree_crossover, vary

CELLS = ("lstm", "gru", "elman", "mgu", "dual_lstm")
#: (operator, cell) pairs where the operator cannot apply, with the reason it gives.
INAPPLICABLE = {
    ("remove_state", "gru"): "no memory state",
    ("remove_state", "elman"): "no memory state",
    ("remove_state", "mgu"): "no memory state",
    ("remove_unit", "elman"): "no named value or activation",
}


def ops(g: Genome) -> Counter:
    return Counter((n.op, n.value) for n in g.nodes.values())


def ids(g: Genome) -> set[int]:
    return set(g.nodes)


def one_swap(p: Genome, c: Genome) -> bool:
    return ids(p) == ids(c) and sum((ops(p) - ops(c)).values()) == 1 == sum((ops(c) - ops(p)).values())


#: What each operator does to the node ids and the shape of the genome.
SHAPE = {
    "point_mutation": lambda p, c: len(c.nodes) == len(p.nodes) and sum((ops(p) - ops(c)).values()) == 1,
    "insert_branch": lambda p, c: ids(p) < ids(c),
    "shrink": lambda p, c: ids(c) <= ids(p),  # a shared node shrunk at one place stays elsewhere
    "add_state": lambda p, c: (ids(p) < ids(c) and len(c.memory_states) == len(p.memory_states) + 1
                               and len(zero_init_nodes(p, c)) >= 1),
    "remove_state": lambda p, c: ids(c) < ids(p) and len(c.memory_states) == len(p.memory_states) - 1,
    "add_unit": lambda p, c: (ids(p) < ids(c) and len(c.locals) == len(p.locals) + 1
                              and len(zero_init_nodes(p, c)) == 1),
    "remove_unit": lambda p, c: ids(c) < ids(p),
    "add_connection": lambda p, c: (ids(p) < ids(c) and len(c.weighted) == len(p.weighted) + 1
                                    and zero_init_nodes(p, c) == set(c.weighted) - set(p.weighted)),
    "add_recurrent_connection": lambda p, c: (ids(p) < ids(c) and len(c.weighted) == len(p.weighted) + 1
                                              and zero_init_nodes(p, c) == set(c.weighted) - set(p.weighted)),
    "remove_connection": lambda p, c: ids(c) < ids(p) and len(c.weighted) < len(p.weighted),
    "change_activation": one_swap,
    "change_combination": one_swap,
}


def check_child(parent: Genome | tuple[Genome, ...], child: Genome, limits: Limits) -> None:
    parents = parent if isinstance(parent, tuple) else (parent,)
    first = parents[0]
    assert isinstance(child, Genome) and all(child != p for p in parents)
    assert parse(child.to_text()) == child
    assert Genome.from_json(child.to_json()).nodes == child.nodes  # ids survive the JSON form
    assert limits.violation(child) is None and not dead_states(child) and not constant_expressions(child)
    top = max(max(p.nodes) for p in parents)
    assert all(i > top for i in ids(child) - ids(first))
    for i in ids(child) & ids(first):  # a surviving weighted call site is the same kind of call
        if first.nodes[i].op in ("affine", "linear", "diag"):
            assert child.nodes[i].op == first.nodes[i].op


def test_registries() -> None:
    assert set(morphisms.MORPHISMS) <= set(OPERATORS)
    assert set(OPERATORS) >= {"point_mutation", "insert_branch", "shrink", "add_state", "remove_state",
                              "add_unit", "remove_unit", "add_connection", "add_recurrent_connection",
                              "remove_connection", "change_activation", "change_combination"}
    assert set(CROSSOVERS) == {"subtree_crossover", "homologous_crossover"}
    assert set(SHAPE) == set(OPERATORS)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_operator_on_library_cell(name: str, cell: str) -> None:
    g, limits = library_cell(cell), Limits()
    if (name, cell) in INAPPLICABLE:
        with pytest.raises(VariationError, match=INAPPLICABLE[name, cell]):
            OPERATORS[name](g, random.Random(0), limits)
        return
    for seed in range(3):
        child = OPERATORS[name](g, random.Random(seed), limits)
        check_child(g, child, limits)
        assert SHAPE[name](g, child), (name, cell, seed, child.to_text())
        assert OPERATORS[name](g, random.Random(seed), limits) == child  # one seed, one child


@pytest.mark.parametrize(("name", "cell", "limits", "match"), [
    ("insert_branch", "lstm", Limits(max_nodes=24), "max_nodes=24"),
    ("add_connection", "lstm", Limits(max_weighted=8), "max_weighted=8"),
    ("add_state", "lstm", Limits(max_states=1), "max_states=1"),
    ("insert_branch", "elman", Limits(max_depth=4), "max_depth=4"),
])
def test_limits_are_respected(name: str, cell: str, limits: Limits, match: str) -> None:
    assert measure(library_cell("lstm")) == {"nodes": 24, "depth": 8, "states": 1, "weighted": 8}
    assert measure(library_cell("elman"))["depth"] == 4
    with pytest.raises(VariationError, match=match):
        OPERATORS[name](library_cell(cell), random.Random(0), limits)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_nodes": 0}, "max_nodes"), ({"max_depth": 1.5}, "max_depth"),
    ({"max_states": -1}, "max_states"), ({"max_weighted": True}, "max_weighted"),
])
def test_limits_validate(kwargs: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        Limits(**kwargs)


@pytest.mark.parametrize("homologous", [False, True])
@pytest.mark.parametrize(("a", "b"), [("lstm", "gru"), ("dual_lstm", "mgu"), ("elman", "lstm"), ("gru", "dual_lstm")])
def test_crossover(a: str, b: str, homologous: bool) -> None:
    ga, gb, limits = library_cell(a), library_cell(b), Limits()
    for seed in range(3):
        child = subtree_crossover(ga, gb, random.Random(seed), limits, homologous=homologous)
        check_child((ga, gb), child, limits)
        assert set(child.states) <= set(ga.states)  # b's other states are read as h


def test_homologous_crossover_needs_a_difference() -> None:
    with pytest.raises(VariationError, match="do not differ"):
        CROSSOVERS["homologous_crossover"](library_cell("lstm"), library_cell("lstm"), random.Random(0), Limits())


def test_point_mutation_of_a_weighted_kind_gets_a_fresh_id() -> None:
    g = parse("h' = tanh(affine(x) + affine(h))")
    for seed in range(10):
        child = OPERATORS["point_mutation"](g, random.Random(seed), Limits())
        kinds = Counter(n.op for n in child.nodes.values())
        if kinds["affine"] == 1:  # one weighted call changed kind: it is a new call site
            assert len(set(child.weighted) - set(g.weighted)) == 1
            return
    pytest.fail("no seed in 0..9 changed a weighted kind")


def test_vary_is_reproducible_and_names_its_operator() -> None:
    parents = [library_cell("lstm"), library_cell("gru")]
    a = vary(parents, random.Random(3), Limits())
    assert a == vary(parents, random.Random(3), Limits()) and a[1] in OPERATORS
    child, name = vary(parents, random.Random(3), Limits(), p_crossover=1.0)
    assert name in CROSSOVERS and child not in parents
    child, name = vary(parents[:1], random.Random(3), Limits(), operators=["shrink"])
    assert name == "shrink" and ids(child) < ids(parents[0])


def test_vary_gives_up_with_variation_error() -> None:
    with pytest.raises(VariationError, match="'vary'.*3 tries failed.*remove_state: the genome has no memory"):
        vary([library_cell("elman")], random.Random(0), Limits(), operators=["remove_state"], tries=3)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"parents": []}, "parents"), ({"parents": library_cell("gru")}, "parents"),
    ({"operators": ["nope"]}, "operators.*Received: \\['nope'\\]"),
    ({"operators": ["subtree_crossover"]}, "at least one mutation"),
    ({"tries": 0}, "tries"), ({"p_crossover": 1.5}, "p_crossover"),
])
def test_vary_validates_arguments(kwargs: dict, match: str) -> None:
    args = {"parents": [library_cell("gru")], "rng": random.Random(0), "limits": Limits(), **kwargs}
    with pytest.raises(ArgumentError, match=match):
        vary(**args)


def test_operators_validate_arguments() -> None:
    with pytest.raises(ArgumentError, match="rng"):
        OPERATORS["shrink"](library_cell("gru"), 0, Limits())  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="limits"):
        OPERATORS["shrink"](library_cell("gru"), random.Random(0), None)  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    assert doctest.testmod(operators).failed == 0


def test_operators_need_no_torch() -> None:
    code = "import sys, growrnn.search.variation.operators; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def chain(seed: int, steps: int, limits: Limits, check: bool) -> Genome:
    rng = random.Random(seed)
    g = library_cell(rng.choice(CELLS))
    for _ in range(steps):
        try:
            child, _ = vary([g, library_cell(rng.choice(CELLS))], rng, limits)
        except VariationError:
            continue
        if check:
            assert parse(child.to_text()) == child and limits.violation(child) is None
            assert Genome.from_json(child.to_json()).nodes == child.nodes
            assert all(i > max(g.nodes) for i in ids(child) - ids(g))
        g = child
    return g


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
@example(seed=170319757)  # an edit left `z = 1` beside a literal 1: equal constants are one node
def test_long_chains_stay_valid(seed: int) -> None:
    chain(seed, 50, Limits(), check=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), layers=st.integers(1, 2))
def test_long_chains_compile(seed: int, layers: int) -> None:
    g = chain(seed, 40, Limits(), check=False)
    rnn = GenomeRNN(g, 3, 4, num_layers=layers, generator=torch.Generator().manual_seed(seed))
    out, state = rnn(torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 5, 4) and len(state) == len(g.states) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in rnn.parameters() if p.grad is not None)
