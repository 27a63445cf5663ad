"""Weight inheritance: a child network starts from its parent's weights, call site by call site, and
an identity-insert morphism's child computes exactly what its parent computed."""

from __future__ import annotations

import doctest
import random

import pytest
import torch

import growrnn as gr
from growrnn.cells.rnn import GenomeRNN
from growrnn.errors import ArgumentError
from growrnn.genome import Genome, library_cell
from growrnn.genome.validate import value_spaces
from growrnn.search.variation import inherit
from growrnn.search.variation.inherit import inherit_weights
from growrnn.search.variation.operators import OPERATORS, Limits

IN, H = 3, 4


def nets(cell: str, op: str, seed: int, layers: int = 1) -> tuple[GenomeRNN, GenomeRNN]:
    parent = GenomeRNN(library_cell(cell), IN, H, num_layers=layers, generator=torch.Generator().manual_seed(seed))
    child_genome = OPERATORS[op](parent.genome, random.Random(seed), Limits())
    child = GenomeRNN(child_genome, IN, H, num_layers=layers, generator=torch.Generator().manual_seed(seed + 1))
    return parent, child


def run(rnn: GenomeRNN) -> tuple[torch.Tensor, torch.Tensor]:
    out, state = rnn(torch.randn(6, 2, IN, generator=torch.Generator().manual_seed(7)))
    return out, state[0]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "mgu", "dual_lstm", "elman"])
@pytest.mark.parametrize("op", ["add_connection", "add_recurrent_connection", "add_unit", "add_state"])
def test_identity_inserts_preserve_the_function(op: str, cell: str, layers: int) -> None:
    parent, child = nets(cell, op, seed=layers, layers=layers)
    report = inherit_weights(child, parent)
    assert report.inherited == len(parent.genome.weighted) and report.zeroed >= 1
    assert report.new == len(child.genome.weighted) - len(parent.genome.weighted)
    assert report.zeroed == report.new or op in ("add_unit", "add_state")  # a unit's input weights stay random
    for got, want in zip(run(child), run(parent), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_without_zeroing_the_insert_changes_the_function() -> None:
    parent, child = nets("gru", "add_connection", seed=0)
    report = inherit_weights(child, parent, zero_new=False)
    assert (report.inherited, report.new, report.zeroed) == (6, 1, 0)
    assert not torch.allclose(run(child)[0], run(parent)[0])


@pytest.mark.parametrize("op", ["point_mutation", "shrink", "remove_connection", "insert_branch", "remove_unit"])
def test_surviving_call_sites_keep_their_weights(op: str) -> None:
    for seed in range(3):
        parent, child = nets("lstm", op, seed=seed, layers=2)
        report = inherit_weights(child, parent)
        pg, cg = parent.genome, child.genome
        ps, cs = value_spaces(pg), value_spaces(cg)  # affine(x) -> affine(tanh(affine(x))) is a new call
        same = {i for i in cg.weighted if i in pg.nodes and pg.nodes[i].op == cg.nodes[i].op
                and ps[pg.nodes[i].args[0]] == cs[cg.nodes[i].args[0]]}
        assert report.inherited_ids == same and report.new == len(cg.weighted) - len(same)
        assert set(report.names) <= dict(child.named_parameters()).keys()
        for layer in range(2):
            mine, theirs = child.cell_weights(layer), parent.cell_weights(layer)
            for k, nid in enumerate(cg.weighted):
                if nid in same:
                    (_, w, b), (_, pw, pb) = mine[k], theirs[pg.weighted.index(nid)]
                    assert torch.equal(w, pw) and (b is None or (pb is not None and torch.equal(b, pb)))


def test_a_weighted_kind_change_is_a_new_call_site() -> None:
    for seed in range(20):
        parent, child = nets("elman", "point_mutation", seed=seed)
        if [child.genome.nodes[i].op for i in child.genome.weighted] != ["affine", "affine"]:
            break
    else:
        pytest.fail("no seed in 0..19 changed a weighted kind")
    report = inherit_weights(child, parent)
    assert (report.inherited, report.new, report.zeroed) == (1, 1, 0)


@pytest.mark.parametrize(("parent", "stored", "inherited"), [
    ("h' = tanh(affine(x) + linear(h))", "h' = tanh(linear(h) + affine(x))", 2),
    ("f = sigmoid(affine(x) + linear(h))\nh' = f * h + (1 - f) * tanh(affine(x) + linear(f * h))",
     "f = sigmoid(linear(h) + affine(x))\nh' = (1 - f) * tanh(linear(h * f) + affine(x)) + h * f", 4),
])
def test_weights_of_an_equivalent_cell_map_through_the_canonical_form(parent: str, stored: str,
                                                                       inherited: int) -> None:
    pg, sg = gr.parse(parent), gr.parse(stored)
    trained = GenomeRNN(sg, IN, H, num_layers=2, generator=torch.Generator().manual_seed(0))
    child = GenomeRNN(pg, IN, H, num_layers=2, generator=torch.Generator().manual_seed(1))
    report = inherit.inherit_state(child, pg, trained.state_dict(), stored=sg)
    assert report.inherited == inherited == len(pg.weighted)
    for got, want in zip(run(child), run(trained), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ArgumentError, match="'stored'.*the parent's canonical form"):
        inherit.inherit_state(child, pg, trained.state_dict(), stored=library_cell("gru"))


def test_ids_travel_through_json() -> None:
    parent, child = nets("lstm", "add_connection", seed=3)
    again = GenomeRNN(Genome.from_json(child.genome.to_json()), IN, H)
    assert inherit_weights(again, parent) == inherit_weights(child, parent)


@pytest.mark.parametrize(("sizes", "match"), [
    ((IN, H + 1, 1), "child.hidden_size.*HINT"),
    ((IN + 1, H, 1), "child.input_size"),
    ((IN, H, 2), "child.num_layers"),
    (None, "'child'.*GenomeRNN"),
])
def test_sizes_must_match(sizes: tuple[int, int, int] | None, match: str) -> None:
    gen = torch.Generator().manual_seed(0)
    child = torch.nn.LSTM(IN, H) if sizes is None else GenomeRNN("lstm", *sizes, generator=gen)
    with pytest.raises(ArgumentError, match=match):
        inherit_weights(child, GenomeRNN("lstm", IN, H, generator=gen))  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    assert doctest.testmod(inherit).failed == 0
