"""Unit surgery leaves the function unchanged where it should, and the optimizer state exact."""

import pytest
import torch
from torch import nn

import growrnn as gr
from growrnn.growth import UnitMap, remap_state, resize_readers, resize_units

CELLS = ["lstm", "gru", "dual_lstm", "indrnn", "mgu"]


def _net(cell: str, H: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rnn = gr.GenomeRNN(cell, 3, H, fast_path=False, dtype=torch.float64, generator=g)
    decoder = nn.Linear(H, 2, dtype=torch.float64)
    return rnn, decoder


def _run(rnn, decoder, x):
    out, state = rnn(x)
    return decoder(out), state


@pytest.mark.parametrize("cell", CELLS)
def test_adding_units_with_zero_outgoing_weights_changes_nothing(cell: str) -> None:
    rnn, decoder = _net(cell)
    x = torch.randn(6, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # not the global RNG
    before, _ = _run(rnn, decoder, x)
    units = UnitMap.of(5, range(5), add=2)
    resize_units(rnn, units, generator=torch.Generator().manual_seed(1), init_std=0.5)
    resize_readers([decoder.weight], units)
    after, state = _run(rnn, decoder, x)
    assert rnn.hidden_size == 7 and state[0].shape == (1, 2, 7)
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)
    assert state[0][..., 5:].abs().sum() > 0  # the new units do compute something


@pytest.mark.parametrize("cell", CELLS)
def test_deleting_units_whose_outgoing_weights_are_zero_changes_nothing(cell: str) -> None:
    rnn, decoder = _net(cell)
    dead = [1, 3]
    with torch.no_grad():  # zero every weight that reads units 1 and 3
        for name, p in rnn.named_parameters():
            if p.dim() == 2 and p.shape[1] == 5 and not name.startswith("weight_ih"):
                p[:, dead] = 0.0
        decoder.weight[:, dead] = 0.0
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    before, _ = _run(rnn, decoder, x)
    units = UnitMap.of(5, [0, 2, 4])
    resize_units(rnn, units)
    resize_readers([decoder.weight], units)
    after, _ = _run(rnn, decoder, x)
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("opt", [torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop, torch.optim.Adagrad])
def test_optimizer_state_of_retained_units_is_kept_exactly(opt) -> None:
    rnn, decoder = _net("gru")
    params = [*rnn.parameters(), *decoder.parameters()]
    kw = {"momentum": 0.9} if opt in (torch.optim.SGD, torch.optim.RMSprop) else {}
    optimizer = opt(params, lr=0.01, **kw)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    for _ in range(3):
        optimizer.zero_grad()
        _run(rnn, decoder, x)[0].sum().backward()
        optimizer.step()
    w = rnn.weight_hh_l0
    old = {k: v.clone() for k, v in optimizer.state[w].items() if torch.is_tensor(v) and v.shape == w.shape}
    assert old, "the optimizer keeps per-weight state"
    units = UnitMap.of(5, [4, 0, 2], add=1)
    resize_units(rnn, units, optimizer)
    resize_readers([decoder.weight], units, optimizer)
    rows = torch.cat([torch.tensor([4, 0, 2]) + 5 * b for b in range(3)])
    for key, value in old.items():
        new = optimizer.state[w][key]
        assert new.shape == (12, 4)
        torch.testing.assert_close(new[[0, 1, 2, 4, 5, 6, 8, 9, 10]][:, :3], value[rows][:, [4, 0, 2]])
        assert new[[3, 7, 11]].abs().sum() == 0 and new[:, 3].abs().sum() == 0
    assert any(p is w for p in optimizer.param_groups[0]["params"])  # the same Parameter object: references hold
    optimizer.zero_grad()
    _run(rnn, decoder, x)[0].sum().backward()
    optimizer.step()  # and the optimizer keeps working


def test_carried_state_follows_the_units() -> None:
    h = torch.arange(10.0).view(1, 2, 5)
    (new,) = remap_state((h,), UnitMap.of(5, [3, 1], add=1))
    assert new.tolist() == [[[3.0, 1.0, 0.0], [8.0, 6.0, 0.0]]]


@pytest.mark.parametrize(("keep", "add", "match"), [([5], 0, "'keep'.*0..4"), ([1, 1], 0, "distinct"),
                                                    ([], 0, "'add'.*at least one unit"),
                                                    ([True, False, True, False, True], 0, "'keep'.*bool mask.*nonzero"),
                                                    (torch.ones(5, dtype=torch.bool), 0, "'keep'.*bool mask")])
def test_bad_unit_maps(keep, add, match) -> None:
    with pytest.raises(gr.ArgumentError, match=match):
        UnitMap.of(5, keep, add)


def test_only_one_layer_at_a_time() -> None:
    with pytest.raises(gr.ArgumentError, match="one-layer GenomeRNN"):
        resize_units(gr.GenomeRNN("gru", 3, 4, num_layers=2), UnitMap.of(4, [0, 1]))
