"""The controller rule, table-driven, and the outgoing-L1 signal."""

import random

import pytest
import torch

import growrnn as gr
from growrnn.growth import GrowthRule, outgoing_l1, structure_step


@pytest.mark.parametrize(("scores", "rule", "kept", "added"), [
    # every unit above threshold: nothing deleted; one added (p_add = 1)
    ([0.2, 0.3, 0.4], GrowthRule(p_add=1.0, p_spontaneous=0.0), [0, 1, 2], 1),
    # one unit below: it is the reserve, kept; a spare unit exists, so nothing is added
    ([0.2, 0.01, 0.4], GrowthRule(p_add=1.0, p_spontaneous=0.0), [0, 1, 2], 0),
    # three below, reserve 1, p_delete 1: two deleted
    ([0.2, 0.01, 0.02, 0.03], GrowthRule(p_delete=1.0, p_add=0.0, p_spontaneous=0.0), None, 0),
    # p_delete 0: nobody is deleted
    ([0.01, 0.01, 0.01], GrowthRule(p_delete=0.0, p_add=0.0, p_spontaneous=0.0), [0, 1, 2], 0),
    # the cap: no addition at max_units - 1 units
    ([0.2] * 9, GrowthRule(p_add=1.0, p_spontaneous=1.0, max_units=10), list(range(9)), 0),
    # the floor: never fewer than min_units
    ([0.01, 0.02], GrowthRule(reserve=0, p_delete=1.0, p_add=0.0, p_spontaneous=0.0, min_units=1), [1], 0),
])
def test_rule_table(scores, rule, kept, added) -> None:
    m = structure_step(torch.tensor(scores), rule, random.Random(0))
    index = m.index.tolist()
    assert index.count(-1) == added
    survivors = [j for j in index if j >= 0]
    if kept is not None:
        assert survivors == kept
    else:  # two of the three sub-threshold units are gone, the strong unit stays
        assert 0 in survivors and len(survivors) == 2


def test_rule_is_seeded() -> None:
    scores = torch.tensor([0.01] * 20 + [0.5] * 5)
    rule = GrowthRule(p_delete=0.5)
    runs = [structure_step(scores, rule, random.Random(7)).index.tolist() for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kwargs, match", [
    ({"p_add": 2.0}, "'p_add'.*probability"),
    ({"threshold": -1.0}, "'threshold'"),
    ({"threshold": "0.01"}, "'threshold'.*Received: '0.01'"),  # a string from Python: named, no TypeError
])
def test_rule_checks_its_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(gr.ArgumentError, match=match):
        GrowthRule(**kwargs)


def test_outgoing_l1_matches_the_papers_normalisation() -> None:
    why = torch.tensor([[1.0, -2.0], [0.5, 0.0]])     # 2 outputs x 2 units
    whh = torch.tensor([[0.1, 0.0], [-0.3, 0.2]])     # 2 units x 2 units
    scores = outgoing_l1([(why, 0.5), (whh, 0.5 * 2 / 2)])
    torch.testing.assert_close(scores, torch.tensor([0.5 * 1.5 + 0.5 * 0.4, 0.5 * 2.0 + 0.5 * 0.2]))
