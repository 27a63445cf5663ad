"""The settling structure signals: the proximal group step against its closed form, exact zeros
under Adam, hard-concrete gates and their folding, and the need rule."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from growrnn.errors import ArgumentError
from growrnn.growth import GrowableRNN, NeedRule, fold_gates, fold_unit_scales, need_step
from growrnn.growth.gates import gate_closed_below, hard_concrete, open_probability
from growrnn.growth.signals import HELD_OUT_WEIGHT, Ablation, GroupLasso, L0Gate, make_signal, unit_members
from growrnn.growth.stack import input_weights, outgoing_weights, recurrent_weights
from growrnn.growth.surgery import UnitMap


def _stack(cell: str = "lstm", sizes: tuple[int, ...] = (3,), seed: int = 0,
           **kw: object) -> tuple[GrowableRNN, nn.Linear]:
    gen = torch.Generator().manual_seed(seed)
    rnn = GrowableRNN(cell, 4, list(sizes), generator=gen, dtype=torch.float64, **kw)  # type: ignore[arg-type]
    decoder = nn.Linear(sizes[-1], 5, dtype=torch.float64)
    with torch.no_grad():
        decoder.weight.copy_(torch.randn(decoder.weight.shape, generator=gen, dtype=torch.float64))
    return rnn, decoder


def _groups(rnn: GrowableRNN, decoder: nn.Linear, k: int, group: str) -> list[torch.Tensor]:
    """Each unit's group as one flat vector, gathered by hand (not through unit_members)."""
    layer = rnn.layers[k]
    H = layer.hidden_size
    out = []
    for j in range(H):
        parts = [decoder.weight[:, j]] if k == rnn.num_layers - 1 else []
        if k + 1 < rnn.num_layers:
            parts += [w[:, j] for _, w in input_weights(rnn.layers[k + 1])]
        parts += [w[:, j] for _, w in recurrent_weights(layer)]
        if group == "units":
            for n, w in layer.named_parameters():
                if n.startswith(("weight_", "bias_")) and n != "weight_diag_l0":
                    parts.append(w.view(-1, H, *w.shape[1:]).transpose(0, 1)[j].flatten())
        out.append(torch.cat([p.detach().flatten() for p in parts]))
    return out


@pytest.mark.parametrize("group", ["outgoing"])
@pytest.mark.parametrize("cell, sizes", [("lstm", (3,)), ("gru", (2, 3))])
def test_the_proximal_step_is_the_group_lasso_closed_form(group: str, cell: str, sizes: tuple[int, ...]) -> None:
    rnn, decoder = _stack(cell, sizes)
    lam = 0.05
    before = [_groups(rnn, decoder, k, group) for k in range(len(sizes))]
    GroupLasso(lam=lam, group=group, preconditioned=False, relative=False).after_step(rnn, decoder, None, None)
    for k in range(len(sizes)):
        for j, g in enumerate(before[k]):
            factor = max(0.0, 1.0 - lam * math.sqrt(g.numel()) / float(g.norm()))
            torch.testing.assert_close(_groups(rnn, decoder, k, group)[j], g * factor)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_iss_groups_shrink_a_units_rows_and_columns_together_and_zero_them_together(cell: str) -> None:
    """ISS groups overlap (entry (i, j) of a recurrent weight is in unit i's rows and unit j's
    columns): a unit's decoder column shrinks by its group's factor, and a unit whose factor is 0
    loses every row and column."""
    rnn, decoder = _stack(cell, (3,))
    with torch.no_grad():
        decoder.weight[:, 1] *= 1e-3  # unit 1: weak everywhere -> zeroed
        for _, w in rnn.layers[0].named_parameters():
            w.view(-1, 3, *w.shape[1:])[:, 1] *= 1e-3
        for _, w in recurrent_weights(rnn.layers[0]):
            w[:, 1] *= 1e-3
    dec = decoder.weight.detach().clone()
    GroupLasso(lam=0.02, group="units", preconditioned=False, relative=False).after_step(rnn, decoder, None, None)
    layer = rnn.layers[0]
    assert torch.count_nonzero(decoder.weight[:, 1]) == 0
    for n, w in layer.named_parameters():
        assert torch.count_nonzero(w.view(-1, 3, *w.shape[1:])[:, 1]) == 0, n
    for n, w in recurrent_weights(layer):
        assert torch.count_nonzero(w[:, 1]) == 0, n
    ratio = decoder.weight.detach()[:, 0] / dec[:, 0]
    assert 0 < float(ratio[0]) < 1 and torch.allclose(ratio, ratio[0].expand_as(ratio))


def test_the_preconditioned_step_uses_the_optimizers_metric() -> None:
    """Under Adam: W_g * max(0, 1 - eta * lam * sqrt(|g|) / ||D W_g||), D = sqrt(v_hat) + eps."""
    rnn, decoder = _stack("elman", (2,))
    params = list(rnn.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    lam, eta = 0.3, 0.1
    d = {id(p): (opt.state[p]["exp_avg_sq"] / (1 - 0.999)).sqrt() + 1e-8 for p in params}
    w_dec, w_hh = decoder.weight.detach().clone(), rnn.layers[0].weight_hh_l0.detach().clone()
    GroupLasso(lam=lam, preconditioned=True, relative=False).after_step(rnn, decoder, opt, None)
    for j in range(2):
        g = torch.cat([w_dec[:, j], w_hh[:, j]])
        dg = torch.cat([d[id(decoder.weight)][:, j], d[id(rnn.layers[0].weight_hh_l0)][:, j]])
        factor = max(0.0, 1.0 - eta * lam * math.sqrt(g.numel()) / float((dg * g).norm()))
        torch.testing.assert_close(decoder.weight[:, j], w_dec[:, j] * factor)
        torch.testing.assert_close(rnn.layers[0].weight_hh_l0[:, j], w_hh[:, j] * factor)


def test_a_useless_unit_reaches_exactly_zero_under_adam_and_a_useful_one_lives() -> None:
    """Unit 0's outgoing weights have a target; unit 1's see only noise. Adam + the preconditioned
    proximal step: unit 1's group becomes exactly 0 and stays there, unit 0 stays alive."""
    torch.manual_seed(0)
    rnn, decoder = _stack("elman", (2,))
    signal = GroupLasso(lam=0.6, relative=False, preconditioned=True)
    opt = torch.optim.Adam(list(decoder.parameters()) + list(rnn.parameters()), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    dead_at = []
    for _ in range(400):
        opt.zero_grad()
        target = torch.ones(5, dtype=torch.float64)
        loss = (decoder.weight[:, 0] - target).square().sum()
        noise = torch.randn(5, generator=gen, dtype=torch.float64)
        loss = loss + (noise * decoder.weight[:, 1]).sum() + 0 * rnn.layers[0].weight_hh_l0.sum()
        loss.backward()
        opt.step()
        signal.after_step(rnn, decoder, opt, float(loss.detach()))
        dead_at.append(signal.dead(rnn, decoder, 0).tolist())
    assert dead_at[-1] == [False, True] and all(d == [False, True] for d in dead_at[-100:])
    assert torch.count_nonzero(decoder.weight[:, 1]) == 0 and torch.count_nonzero(rnn.layers[0].weight_hh_l0[:, 1]) == 0
    assert float(decoder.weight.detach()[:, 0].mean()) > 0.5


def test_a_relative_penalty_scales_with_the_running_loss() -> None:
    signal = GroupLasso(lam=0.01, relative=True)
    assert signal.strength(None) == 0.0  # no loss seen yet: no shrink
    assert signal.strength(10.0) == pytest.approx(0.1)
    ramped = GroupLasso(lam=1.0, relative=False, warmup_steps=4)
    assert [ramped.strength(None) for _ in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    restored = GroupLasso(lam=0.01)
    restored.load_state_dict(signal.state_dict())
    assert restored.strength(10.0) == signal.strength(10.0)


def test_hard_concrete_gates_are_exactly_zero_when_closed_and_their_cost_is_the_open_probability() -> None:
    edge = gate_closed_below()
    a = torch.tensor([edge - 1.0, edge, edge + 0.5, 10.0])
    z = hard_concrete(a, sample=False)
    assert z[0] == 0 and z[1] == 0 and 0 < z[2] < 1 and z[3] == 1
    gen = torch.Generator().manual_seed(0)
    samples = torch.stack([hard_concrete(a, gen) for _ in range(4000)])
    torch.testing.assert_close((samples > 0).double().mean(0), open_probability(a).double(), atol=0.03, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_a_fresh_gate_is_closed_in_its_own_dtype(dtype: torch.dtype) -> None:
    """A new unit's gate, held in the gates' dtype, evaluates to exactly 0 and counts as closed
    (bfloat16 rounds the threshold itself up, to a gate a little open: it counted as closed)."""
    fresh = torch.tensor([L0Gate().fresh_gate(dtype)], dtype=dtype)
    assert float(hard_concrete(fresh, sample=False)[0]) == 0.0
    assert float(hard_concrete(fresh.float(), sample=False)[0]) == 0.0
    assert float(fresh[0]) <= gate_closed_below()
    rnn = SimpleNamespace(gates=[torch.tensor([float(torch.tensor(gate_closed_below(), dtype=dtype)), float(fresh[0])],
                                              dtype=dtype)])
    closed = L0Gate().dead(rnn, None, 0)  # type: ignore[arg-type]
    rounded_up = float(torch.tensor(gate_closed_below(), dtype=dtype)) > gate_closed_below()
    assert closed.tolist() == [not rounded_up, True]


@pytest.mark.parametrize("scale", ["gates", "multipliers"])
@pytest.mark.parametrize("cell, sizes", [("lstm", (3,)), ("gru", (3, 2)), ("elman", (4,))])
def test_unit_scales_fold_into_the_outgoing_weights_without_changing_outputs(cell: str, sizes: tuple[int, ...],
                                                                             scale: str) -> None:
    rnn, decoder = _stack(cell, sizes, **{scale: True})
    with torch.no_grad():
        for g in getattr(rnn, scale):
            # gates closed, partly open and open; multipliers of either sign
            g.copy_(torch.linspace(-4.0, 2.0, g.numel(), dtype=g.dtype))
    rnn.eval()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    before = decoder(rnn(x)[0])
    fold_gates(rnn, decoder)  # folds gates only
    assert (rnn.multipliers is None) == (scale == "gates")
    fold_unit_scales(rnn, decoder)
    assert rnn.gates is None and rnn.multipliers is None
    assert not any(scale in n for n, _ in rnn.named_parameters())
    torch.testing.assert_close(decoder(rnn(x)[0]), before)


def test_the_gate_cost_pushes_log_alpha_down() -> None:
    rnn, decoder = _stack("elman", (3,), gates=True)
    signal = L0Gate(lam=0.5, relative=False)
    signal.before_step(rnn, decoder, None)
    grad = rnn.gates[0].grad  # type: ignore[index]
    assert grad is not None and bool((grad > 0).all())  # gradient descent lowers log_alpha


@pytest.mark.parametrize("dead, streak, rule, kept, added, new_streak", [
    # nothing spare: one unit is added (dead on arrival, on trial)
    ([0, 0, 0], [0, 0, 0], NeedRule(reserve=1), [0, 1, 2], 1, [0, 0, 0, 0]),
    # one unit spare: nothing happens, its streak grows
    ([0, 1, 0], [0, 4, 0], NeedRule(reserve=1, dead_steps=10), [0, 1, 2], 0, [0, 5, 0]),
    # dead for dead_steps: deleted, and a fresh unit takes the reserve's place
    ([0, 1, 0], [0, 9, 0], NeedRule(reserve=1, dead_steps=10), [0, 2], 1, [0, 0, 0]),
    # a unit that came back to life loses its streak
    ([0, 0, 1], [0, 7, 2], NeedRule(reserve=1, dead_steps=10), [0, 1, 2], 0, [0, 0, 3]),
    # shrink only (reserve 0), never below min_units
    ([1, 1, 1], [5, 5, 6], NeedRule(reserve=0, dead_steps=6, min_units=2), [0, 1], 0, [6, 6]),
    # every unit failed: the floor keeps one, which is not a spare, so a new unit is tried beside it
    ([1, 1], [3, 3], NeedRule(reserve=1, dead_steps=1), [0], 1, [4, 0]),
    # at max_units nothing is added
    ([0, 0], [0, 0], NeedRule(reserve=1, max_units=2), [0, 1], 0, [0, 0]),
    # a reserve fraction: ceil(0.25 * 5) = 2 spare wanted, none spare
    ([0] * 5, [0] * 5, NeedRule(reserve=1, reserve_fraction=0.25), [0, 1, 2, 3, 4], 2, [0] * 7),
])
def test_the_need_rule(dead: list[int], streak: list[int], rule: NeedRule, kept: list[int], added: int,
                       new_streak: list[int]) -> None:
    units, s = need_step(torch.tensor(dead, dtype=torch.bool), torch.tensor(streak), rule)
    assert units.index.tolist() == kept + [-1] * added and s.tolist() == new_streak


def test_units_on_trial_are_spare_without_being_dead() -> None:
    """Unit 1 is on trial (spare, not dead): nothing is added, nothing deleted."""
    units, s = need_step(torch.tensor([False, False, False]), torch.zeros(3, dtype=torch.long),
                         NeedRule(reserve=1, dead_steps=1), spare=torch.tensor([False, True, False]))
    assert units.index.tolist() == [0, 1, 2] and s.tolist() == [0, 0, 0]


def _probe(rnn: GrowableRNN, decoder: nn.Linear, x: torch.Tensor, y: torch.Tensor):  # type: ignore[no-untyped-def]
    return torch.no_grad()(lambda: float((decoder(rnn(x)[0]) - y).square().mean()))


def _useless_unit_1() -> tuple[GrowableRNN, nn.Linear, torch.Tensor, torch.Generator]:
    """A 3-unit Elman layer whose unit 1 nobody reads, an input batch, and the generator that drew it."""
    rnn, decoder = _stack("elman", (3,))
    with torch.no_grad():
        decoder.weight[:, 1] = 0
        rnn.layers[0].weight_hh_l0[:, 1] = 0
    gen = torch.Generator().manual_seed(3)
    return rnn, decoder, torch.randn(4, 6, 4, generator=gen, dtype=torch.float64), gen


@pytest.mark.parametrize("cell, sizes, baseline", [("lstm", (3,), "zero"), ("gru", (2, 3), "zero"),
                                                    ("lstm", (3,), "mean"), ("lstm", (3,), "regress")])
def test_ablation_worth_is_the_loss_without_the_unit(cell: str, sizes: tuple[int, ...], baseline: str) -> None:
    """Each unit's worth is the loss with its outgoing weights zeroed by hand (with ``mean``: and
    its mean output added to the decoder's and the recurrent product's biases; with ``regress``:
    its least-squares estimate from the other units' outputs and a constant, moved into the
    readers' other columns and biases) minus the loss; measuring leaves the weights as they were."""
    rnn, decoder = _stack(cell, sizes)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 5, 5, generator=gen, dtype=torch.float64)
    probe = _probe(rnn, decoder, x, y)
    signal = Ablation(lam=0.0, trial_steps=1, rate=100.0, check_every=1, baseline=baseline)
    signal.bar = lambda: -math.inf  # type: ignore[method-assign]  # every unit lives: measured, not removed
    signal.check(rnn, {})
    params = list(rnn.parameters()) + list(decoder.parameters())
    before = [p.detach().clone() for p in params]
    signal.after_step(rnn, decoder, None, None)  # one step old: due
    signal.measure(rnn, decoder, probe, step=0)
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, params, strict=True))
    base = probe()
    out = rnn(x)[0].detach().reshape(-1, sizes[-1])
    for k in range(len(sizes)):
        expected = []
        for j in range(sizes[k]):
            ahead, recurrent = outgoing_weights(rnn, decoder, k)
            others = torch.cat([out[:, :j], out[:, j + 1:], torch.ones_like(out[:, :1])], 1)
            fit = torch.linalg.lstsq(others, out[:, j:j + 1]).solution.flatten()
            coef = torch.cat([fit[:j], fit.new_zeros(1), fit[j:-1]]) if baseline == "regress" else out.new_zeros(3)
            const = {"mean": out[:, j].mean(), "regress": fit[-1]}.get(baseline, 0.0)
            with torch.no_grad():
                for w, b in ((decoder.weight, decoder.bias),  # one LSTM layer: the decoder and W_hh read h
                             (rnn.layers[0].weight_hh_l0, rnn.layers[0].bias_hh_l0)) if baseline != "zero" else ():
                    b += w[:, j] * const
                    w += torch.outer(w[:, j], coef)
                for w in ahead + recurrent:
                    w[:, j] = 0
            expected.append(probe() - base)
            with torch.no_grad():
                for p, v in zip(params, before, strict=True):
                    p.copy_(v)
        torch.testing.assert_close(signal.worth[k].double(), torch.tensor(expected, dtype=torch.float64),
                                   rtol=1e-5, atol=1e-5 if baseline == "regress" else 1e-6)  # regress: a tiny ridge


@pytest.mark.parametrize("baseline, folded", [("regress", True), ("zero", False)])
def test_a_dead_units_removal_is_kept_and_the_next_unit_is_measured_without_it(baseline: str, folded: bool) -> None:
    """Of two twin units (the same rows, so the same output), ``regress`` finds the first
    replaceable by the second: it is dead, its outgoing weights are moved onto its twin (the
    function is unchanged), and the twin, measured next without it, lives. ``zero`` finds neither
    replaceable: both live and the weights are as they were."""
    rnn, decoder = _stack("lstm", (3,))
    layer = rnn.layers[0]
    with torch.no_grad():
        for w in (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0):
            w.view(4, 3, -1)[:, 1] = w.view(4, 3, -1)[:, 0]  # unit 1 is unit 0's twin
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, 4, generator=gen, dtype=torch.float64)
    y = decoder(rnn(x)[0]).detach() + 0.1 * torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    probe = _probe(rnn, decoder, x, y)
    base = probe()
    outgoing = decoder.weight[:, :2].detach().clone()
    signal = Ablation(lam=1e-3, relative=False, trial_steps=1, rate=100.0, check_every=1, baseline=baseline)
    signal.check(rnn, {})
    signal.after_step(rnn, decoder, None, None)
    signal.measure(rnn, decoder, probe, step=0)
    assert signal.dead(rnn, decoder, 0).tolist() == [folded, False, False]
    if folded:
        assert decoder.weight[:, 0].abs().max() == 0 and layer.weight_hh_l0[:, 0].abs().max() == 0
        torch.testing.assert_close(decoder.weight[:, 1], outgoing.sum(1), rtol=1e-3, atol=1e-3)
    else:
        torch.testing.assert_close(decoder.weight[:, :2], outgoing, rtol=0, atol=0)
    assert probe() == pytest.approx(base, rel=1e-4)  # the function is kept


def test_no_unit_is_removed_during_the_warm_up() -> None:
    """A useless unit measured during the warm-up is spare but not dead, and keeps its weights;
    measured after it, it is dead."""
    rnn, decoder, x, gen = _useless_unit_1()
    probe = _probe(rnn, decoder, x, decoder(rnn(x)[0]).detach())
    signal = Ablation(lam=0.01, relative=False, trial_steps=1, rate=100.0, check_every=1, warmup_steps=2,
                      baseline="regress")
    signal.check(rnn, {})
    for step, dead in ((1, [False] * 3), (2, [False, True, False])):
        signal.after_step(rnn, decoder, None, None)
        signal.measure(rnn, decoder, probe, step=step)
        assert signal.dead(rnn, decoder, 0).tolist() == dead
        assert signal.spare(rnn, decoder, 0).tolist() == [False, True, False]
    assert decoder.weight[:, 1].abs().max() == 0  # removed (its outgoing weights were zero already)
    restored = Ablation(warmup_steps=2)
    restored.load_state_dict(signal.state_dict())
    assert restored.removing(0)


def test_a_unit_below_a_bar_that_rose_since_its_measurement_is_spare_not_dead() -> None:
    """Dead means removed by a measurement (its removal measured and kept): a unit kept by its
    last measurement, whose stored worth a later, higher bar exceeds, keeps its weights and is
    spare until measured again; the controller does not delete it unmeasured."""
    rnn, decoder, x, gen = _useless_unit_1()
    probe = _probe(rnn, decoder, x, decoder(rnn(x)[0]).detach() + torch.randn(4, 6, 5, generator=gen,
                                                                               dtype=torch.float64))
    signal = Ablation(lam=0.0, relative=False, trial_steps=1, rate=100.0, check_every=1, baseline="zero")
    signal.check(rnn, {})
    signal.after_step(rnn, decoder, None, None)
    signal.measure(rnn, decoder, probe, step=0)
    assert not signal.dead(rnn, decoder, 0).any()
    weights = decoder.weight.detach().clone()
    signal.lam = 1e9  # the bar rises above every stored worth
    assert signal.spare(rnn, decoder, 0).all() and not signal.dead(rnn, decoder, 0).any()
    torch.testing.assert_close(decoder.weight, weights, rtol=0, atol=0)
    signal.after_step(rnn, decoder, None, None)
    signal.measure(rnn, decoder, probe, step=1)  # measured again: removed as measured
    assert signal.dead(rnn, decoder, 0).all()


@pytest.mark.parametrize("layer_worth, engaged", [(0.5, False), (0.01, True)])
def test_units_are_removed_once_the_layer_is_worth_a_share_of_the_loss(layer_worth: float, engaged: bool) -> None:
    """A layer whose units, replaced by their mean outputs, raise the loss by less than
    ``layer_worth`` of it keeps its units below the bar (spare, not dead, weights kept); once it
    is worth that much, they are removed."""
    rnn, decoder, x, gen = _useless_unit_1()
    y = decoder(rnn(x)[0]).detach() + torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    probe = _probe(rnn, decoder, x, y)
    base = probe()
    out = rnn(x)[0].detach().reshape(-1, 3)
    params = (decoder.weight, decoder.bias, rnn.layers[0].weight_hh_l0, rnn.layers[0].bias_hh_l0)
    with torch.no_grad():  # the layer's worth, by hand: every unit replaced by its mean output
        saved = [p.clone() for p in params]
        for w, b in (params[:2], params[2:]):
            b += w @ out.mean(0)
            w.zero_()
        share = (probe() - base) / base
        for p, v in zip(params, saved, strict=True):
            p.copy_(v)
    assert 0.01 < share < 0.5
    signal = Ablation(lam=1e-3, trial_steps=1, rate=100.0, check_every=1, layer_worth=layer_worth)
    signal.check(rnn, {})
    signal.after_step(rnn, decoder, None, None)
    signal.measure(rnn, decoder, probe, step=0)
    assert signal.engaged == [engaged] and signal.removing(0) is engaged
    assert signal.dead(rnn, decoder, 0).tolist() == [False, engaged, False]
    assert signal.spare(rnn, decoder, 0).tolist() == [False, True, False]
    restored = Ablation(layer_worth=layer_worth)
    restored.load_state_dict(signal.state_dict())
    assert restored.engaged == [engaged]


def test_ablation_judges_old_and_new_units_by_one_bar() -> None:
    """A unit whose outgoing weights are zero is worth nothing and dies; units that carry the
    output live; a unit on trial is spare but not dead until it is measured."""
    rnn, decoder, x, gen = _useless_unit_1()
    y = decoder(rnn(x)[0]).detach()  # the current function is the target: every live unit matters
    signal = Ablation(lam=0.01, relative=False, trial_steps=2, rate=1.5, check_every=2)
    signal.check(rnn, {})
    probe = _probe(rnn, decoder, x, y)
    opt = torch.optim.SGD(decoder.parameters(), lr=0.1)
    signal.after_step(rnn, decoder, opt, None)
    signal.measure(rnn, decoder, probe, step=1)  # too young: not measured
    assert signal.spare(rnn, decoder, 0).tolist() == [True] * 3 and not signal.dead(rnn, decoder, 0).any()
    opt.param_groups[0]["lr"] = 0.05  # a halved rate: units age half a step
    signal.after_step(rnn, decoder, opt, None)
    assert signal.age[0].tolist() == [1.5] * 3
    signal.measure(rnn, decoder, probe, step=2)  # 1.5 steps old at the first rate: too young
    opt.param_groups[0]["lr"] = 0.1
    signal.after_step(rnn, decoder, opt, None)
    signal.measure(rnn, decoder, probe, step=2)  # 3 units due, budget 3: all measured
    assert signal.dead(rnn, decoder, 0).tolist() == [False, True, False]
    assert signal.spare(rnn, decoder, 0).tolist() == [False, True, False]
    signal.resized(0, UnitMap.of(3, [0, 2], add=1))
    assert signal.spare(rnn, decoder, 0).tolist() == [False, False, True]  # the new unit is on trial
    assert signal.age[0].tolist() == [2.5, 2.5, 0.0] and signal.seen[0].tolist() == [2, 2, -1]
    restored = Ablation(lam=0.01)
    restored.load_state_dict(signal.state_dict())
    assert torch.equal(restored.worth[0].nan_to_num(-1.0), signal.worth[0].nan_to_num(-1.0))
    assert torch.equal(restored.age[0], signal.age[0]) and torch.equal(restored.seen[0], signal.seen[0])
    assert restored.budget == signal.budget and restored.base == signal.base


@pytest.mark.parametrize("ages, retried", [(2, True), (1, False)])
def test_an_old_unit_worth_little_is_removed_and_tried_again(ages: int, retried: bool) -> None:
    """With ``retrial``, the least worthy live unit (below ``retrial`` times the bar, above the
    bar) is removed as a dead one is and put back on trial: no outgoing weights, its worth unknown,
    spare but not dead, measured first when its trial ends. A unit younger than two trials is not
    retried; the worthier unit and the dead one are judged as without ``retrial``."""
    rnn, decoder, x, gen = _useless_unit_1()
    probe = _probe(rnn, decoder, x, decoder(rnn(x)[0]).detach())  # loss 0: every read unit is worth > 0
    plain = Ablation(lam=0.0, relative=False, trial_steps=1, rate=100.0, check_every=1, baseline="zero")
    plain.check(rnn, {})
    plain.after_step(rnn, decoder, None, None)
    plain.measure(rnn, decoder, probe, step=0)
    worth = plain.worth[0].tolist()
    low, high = sorted((0, 2), key=lambda j: worth[j])
    lam = worth[low] / 2
    signal = Ablation(lam=lam, relative=False, trial_steps=1, rate=100.0, check_every=1, baseline="zero",
                      retrial=(worth[low] + worth[high]) / 2 / lam)
    signal.check(rnn, {})
    for _ in range(ages):
        signal.after_step(rnn, decoder, None, None)
    signal.measure(rnn, decoder, probe, step=5)
    assert signal.dead(rnn, decoder, 0).tolist() == [False, True, False]
    assert bool(signal.spare(rnn, decoder, 0)[low]) is retried and not bool(signal.spare(rnn, decoder, 0)[high])
    assert bool(decoder.weight[:, low].abs().max() == 0) is retried
    assert probe() == pytest.approx(worth[low] if retried else 0.0, rel=1e-6, abs=1e-12)  # the removal is kept
    if retried:
        assert math.isnan(signal.worth[0][low]) and signal.age[0][low] == 0 and signal.seen[0][low] == -1


@pytest.mark.parametrize(("bound", "expected"), [
    (None, [0.0, 3.0, -2.0, 0.5]),  # the least-squares stand-in of unit 0: 3 h1 - 2 h2 + 0.5
    (1.0, [0.0, 1.0, -1.0, 0.5]),   # each coefficient clipped, the constant free
    (2.5, [0.0, 2.5, -2.0, 0.5]),
])
def test_regress_stand_ins_coefficients_are_bounded_and_the_constant_is_not(bound: float | None,
                                                                           expected: list[float]) -> None:
    from growrnn.growth.signals import _stand_ins

    g = torch.Generator().manual_seed(0)
    others = torch.randn(200, 2, generator=g, dtype=torch.float64)
    h = torch.cat([others @ torch.tensor([3.0, -2.0], dtype=torch.float64)[:, None] + 0.5, others], 1)
    x = torch.cat([h, torch.ones(200, 1, dtype=torch.float64)], 1)
    coef = _stand_ins(x.T @ x / 200, ridge=0.0, bound=bound)
    assert torch.allclose(coef[0], torch.tensor(expected, dtype=torch.float64), atol=1e-8)
    assert bound is None or coef[:, :3].abs().max() <= bound


def test_held_out_stand_ins_are_fitted_on_earlier_batches_and_follow_the_units() -> None:
    """With ``held_out`` the moments a stand-in is fitted on are the running mean of the earlier
    batches' (each entry over the batches in which both its units existed): the first batch is
    fitted on itself, later ones never; a deletion drops the unit's row and column, a new unit
    starts with none (its entries fall back to the batch's), and the state round-trips."""
    rnn, decoder = _stack("lstm", (2,))
    signal = Ablation(held_out=True)
    signal.check(rnn, {})
    m = [torch.full((3, 3), float(i)) + torch.eye(3) for i in (1, 2, 3)]
    a = HELD_OUT_WEIGHT
    assert torch.equal(signal._held_out(0, m[0]), m[0])  # nothing earlier: the batch itself
    assert torch.allclose(signal._held_out(0, m[1]), m[0])  # only the first batch
    assert torch.allclose(signal._held_out(0, m[2]), ((1 - a) * a * m[0] + a * m[1]) / ((1 - a) * a + a))
    signal.resized(0, UnitMap.of(2, [1], add=1))  # unit 0 deleted, one added: [old 1, new, constant]
    assert signal.weights[0][1].abs().sum() == 0 and signal.weights[0][:, 1].abs().sum() == 0
    kept = [0, 2]  # old unit 1 and the constant: their running means, as before the deletion
    expected = (((1 - a) * a * m[0] + a * m[1]) * (1 - a) + a * m[2]) / (((1 - a) * a + a) * (1 - a) + a)
    batch = torch.full((3, 3), 9.0)
    fit = signal._held_out(0, batch)
    assert torch.equal(fit[1], batch[1]) and torch.equal(fit[:, 1], batch[:, 1])  # the new unit: the batch's
    assert torch.allclose(fit[kept][:, kept], expected[[1, 2]][:, [1, 2]])
    restored = Ablation(held_out=True)
    restored.load_state_dict(signal.state_dict())
    assert torch.equal(restored.sums[0], signal.sums[0]) and torch.equal(restored.weights[0], signal.weights[0])


@pytest.mark.parametrize("name, options, match", [
    ("size", {}, "signal"),
    ("group_lasso", {"lam": -1.0}, "lam"),
    ("group_lasso", {"group": "rows"}, "group"),
    ("l0_gate", {"lam": float("nan")}, "lam"),
    ("ablation", {"trial_steps": 0}, "trial_steps"),
    ("ablation", {"rate": 0.0}, "rate"),
    ("ablation", {"memory": 1.5}, "memory"),
    ("ablation", {"baseline": "median"}, "baseline"),
    ("ablation", {"warmup_steps": -1}, "warmup_steps"),
    ("ablation", {"layer_worth": -0.1}, "layer_worth"),
    ("ablation", {"retrial": 0.5}, "retrial"),
    # a string given from Python is named, not a TypeError from the range check
    ("group_lasso", {"lam": "1e-3"}, "lam"),
    ("ablation", {"rate": "0.1"}, "rate"),
    ("ablation", {"memory": "0.5"}, "memory"),
    ("ablation", {"layer_worth": "1"}, "layer_worth"),
])
def test_bad_signal_options_are_named(name: str, options: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        make_signal(name, **options)


def test_unit_members_see_every_weight_of_a_unit_once() -> None:
    rnn, decoder = _stack("lstm", (3, 2))
    out, inc = unit_members(rnn, decoder, 0)
    n_out = sum(m.view[:, 0].numel() for m in out)
    n_in = sum(m.view[:, 0].numel() for m in inc)
    # outgoing: next layer's 4 gates x 2 units, own 4 gates x 3 units; incoming: 4 rows of 4 + 3 cols, 4+4 biases
    assert (n_out, n_in) == (4 * 2 + 4 * 3, 4 * (4 + 3) + 8)


#: a cell whose weight groups mix affine and linear calls on one argument (biases for some blocks only)
MIXED = "a = sigmoid(linear(x) + affine(h))\nh' = tanh(affine(x) + linear(h)) * a\n"


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru", MIXED])
def test_the_weakest_of_two_twins_is_folded_into_the_other_and_the_function_is_kept(cell: str) -> None:
    """Of twin units 0 and 1 (same rows, same output) the paired signal removes one, moves its
    reading weights onto the other, and the outputs do not change; a unit nobody reads is worth 0."""
    from growrnn.growth.signals import _output_moments, fold_units, unit_worth, weakest_units
    rnn, decoder = _stack(cell, (4, 3) if cell == MIXED else (4,))  # MIXED: the next layer reads it too
    layer = rnn.layers[0]
    with torch.no_grad():
        for name, w in layer.named_parameters():
            if name.startswith(("weight_", "bias_")) and w.shape[0] % 4 == 0 and w.shape[0] > 4:
                w.view(-1, 4, *w.shape[1:])[:, 1] = w.view(-1, 4, *w.shape[1:])[:, 0]
            elif cell in ("elman", MIXED) and w.shape[0] == 4:
                w[1] = w[0]
    moments: dict[int, torch.Tensor] = {}
    x = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    hook = layer.register_forward_hook(_output_moments(moments, 0, True))
    before = decoder(rnn(x)[0]).detach()
    hook.remove()
    ahead, recurrent = outgoing_weights(rnn, decoder, 0)
    gone = weakest_units(moments[0], ahead + recurrent, 1)
    assert gone in ([0], [1])
    assert weakest_units(moments[0], ahead + recurrent, 1, kept=gone) != gone  # a kept unit never goes
    assert len(weakest_units(moments[0], ahead + recurrent, 4, kept=[0, 2])) == 2  # only those not kept
    fold_units(rnn, decoder, 0, moments[0], gone)
    assert all(float(w[:, gone[0]].detach().abs().max()) == 0 for w in ahead + recurrent)
    torch.testing.assert_close(decoder(rnn(x)[0]).detach(), before, rtol=1e-3, atol=1e-3)  # a tiny ridge
    assert float(unit_worth(moments[0], ahead + recurrent)[gone[0]]) == 0.0
    assert math.isinf(float(unit_worth(moments[0], ahead + recurrent, gone)[gone[0]]))


@pytest.mark.parametrize("options, argument", [({"fraction": 0.0}, "paired_fraction"), ({"steps": 0}, "paired_steps"),
                                               ({"batches": 0}, "paired_batches"), ({"lam": -1.0}, "lam"),
                                               ({"hold": 1.0}, "paired_hold"), ({"scale": "end"}, "paired_scale"),
                                               ({"floor": 1.5}, "paired_floor"),
                                               ({"scale": "gain", "floor": 0.2}, "paired_floor"),
                                               ({"extend": 0}, "paired_extend"),
                                               ({"horizon": -0.1}, "paired_horizon"),
                                               ({"horizon": math.inf}, "paired_horizon"),
                                               ({"horizon": "0.2"}, "paired_horizon"),
                                               ({"horizon_cap": 0.0}, "paired_horizon_cap"),
                                               ({"horizon_cap": math.inf}, "paired_horizon_cap"),
                                               ({"horizon_cap": "1"}, "paired_horizon_cap"),
                                               ({"reach": -0.1}, "paired_reach"), ({"reach": math.inf}, "paired_reach"),
                                               ({"reach": "0.1"}, "paired_reach"), ({"reach": True}, "paired_reach"),
                                               ({"lam": "3e-5"}, "lam"), ({"fraction": "0.25"}, "paired_fraction"),
                                               ({"hold": "0.01"}, "paired_hold"), ({"floor": "0.5"}, "paired_floor"),
                                               ({"margin": "0.5"}, "paired_margin"),
                                               ({"fraction": True}, "paired_fraction"),
                                               ({"extend": 2, "steps": 1}, "paired_extend"),
                                               ({"margin": -1.0}, "paired_margin"),
                                               ({"margin": math.inf}, "paired_margin"),
                                               ({"margin": math.nan}, "paired_margin"),
                                               ({"margin": 1.0, "batches": 1}, "paired_batches"),
                                               ({"settle": "loop"}, "paired_settle"),
                                               ({"restart": "yes"}, "paired_restart"),
                                               ({"mature": -1}, "paired_mature"),
                                               ({"homing": "yes"}, "paired_homing"),
                                               ({"move": "step"}, "paired_move"),
                                               ({"move": "slope", "margin": 0.5}, "paired_margin"),
                                               ({"move": "slope", "keep": True}, "paired_keep"),
                                               ({"move": "slope", "extend": 2}, "paired_extend"),
                                               ({"move": "slope", "homing": True}, "paired_homing")])
def test_bad_paired_options_are_named(options: dict, argument: str) -> None:
    with pytest.raises(ArgumentError, match=argument):
        make_signal("paired", **options)


@pytest.mark.parametrize("optimizer, given, expected", [
    (None, {}, {"lam": 3.33e-5, "steps": 100, "fraction": 0.25, "homing": False}),
    ("adam", {}, {"lam": 3.33e-5, "steps": 100, "fraction": 0.25, "homing": False}),
    ("rmsprop", {}, {"lam": 3.33e-5, "steps": 100, "fraction": 0.25, "homing": False}),
    ("sgd", {}, {"lam": 1.67e-5, "steps": 400, "fraction": 0.5, "homing": True}),
    ("sgd", {"steps": 50, "lam": 1e-4}, {"lam": 1e-4, "steps": 50, "fraction": 0.5, "homing": True}),
    ("sgd", {"homing": False}, {"lam": 1.67e-5, "steps": 400, "fraction": 0.5, "homing": False}),
    ("sgd", {"move": "slope"}, {"lam": 1.67e-5, "steps": 400, "fraction": 0.5, "homing": False}),  # a rule of the sign
    ("adam", {"fraction": 0.5, "homing": True}, {"lam": 3.33e-5, "steps": 100, "fraction": 0.5, "homing": True}),
])
def test_paired_options_left_unset_take_the_optimizer_familys_recipe(optimizer: str | None, given: dict,
                                                                       expected: dict) -> None:
    """``lam``, ``steps``, ``fraction`` and ``homing`` left unset take the recipe of the
    optimizer's family (SGD, or adaptive: every other); options given keep their values."""
    params = [torch.zeros(2, requires_grad=True)]
    opt = {None: None, "adam": torch.optim.Adam(params), "rmsprop": torch.optim.RMSprop(params),
           "sgd": torch.optim.SGD(params, lr=0.1, momentum=0.9)}[optimizer]
    signal = make_signal("paired", **given)
    signal.for_optimizer(opt)  # type: ignore[attr-defined]
    assert {name: getattr(signal, name) for name in expected} == expected
    assert signal.family == ("sgd" if optimizer == "sgd" else "adaptive")  # type: ignore[attr-defined]


@pytest.mark.parametrize("cell", ["lstm", MIXED])
def test_a_readers_bias_takes_a_constant_on_the_rows_that_have_a_bias(cell: str) -> None:
    """What :class:`ReaderBias` adds to a reading weight's product rows is what the forward pass
    adds to them: the rows of the affine calls, none of a linear call's (a mixed group's bias holds
    its affine blocks only)."""
    from growrnn.growth.stack import reader_biases
    rnn, decoder = _stack(cell, (4, 3))
    ahead, recurrent = outgoing_weights(rnn, decoder, 0)
    biases = reader_biases(rnn, decoder, 0)
    groups = [(rnn.layers[1], g) for g in rnn.layers[1].plan.groups if g.input_sized] + \
             [(rnn.layers[0], g) for g in rnn.layers[0].plan.groups if not g.input_sized]
    assert len(groups) == len(biases) == len(ahead + recurrent)
    checked = 0
    for (layer, g), w, b in zip(groups, ahead + recurrent, biases, strict=True):
        if b is None:
            continue
        H, v = int(layer.hidden_size), torch.randn(w.shape[0], dtype=w.dtype)
        before = layer._plan_bias(g, 0).clone()
        with torch.no_grad():
            b.add_(v)
        expected = torch.cat([v[p * H:(p + 1) * H] if g.affine[p] else torch.zeros(H, dtype=v.dtype)
                              for p in g.plan_order])
        torch.testing.assert_close(layer._plan_bias(g, 0) - before, expected)
        checked += 1
    assert checked >= 2 and (cell != MIXED or any(not all(g.affine) for _, g in groups))
