"""A new unit's head start (growrnn.growth.signals.HeadStart): each optimizer's own against a
simulation of the optimizer itself, Adam's given to a fresh entry under RMSprop and SGD, its step
count moved by the unit surgery and kept exactly through a checkpoint's load."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from growrnn.errors import ArgumentError
from growrnn.growth.signals import FRESH_STEPS, MAX_FRESH_STEPS, HeadStart, Paired, fresh_step_ratios, fresh_steps
from growrnn.growth.surgery import remap_parameter

ADAM = torch.optim.Adam


def _pair(optimizer: type[torch.optim.Optimizer], warm: int, **hp: Any) -> tuple[torch.nn.Parameter, Any]:
    """A parameter of one settled entry, warmed ``warm`` steps on a constant gradient."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = optimizer([p], lr=1e-3, **hp)
    for _ in range(warm):
        p.grad = torch.ones_like(p)
        opt.step()
    return p, opt


def _steps(p: torch.nn.Parameter, opt: Any, n: int, head: HeadStart | None = None) -> torch.Tensor:
    """Each entry's change over ``n`` steps on a constant gradient (shape ``(n, entries)``)."""
    out = []
    for _ in range(n):
        before = p.detach().clone()
        p.grad = torch.ones_like(p)
        if head is not None:
            head.before(opt)
        opt.step()
        if head is not None:
            head.after(opt)
        out.append((p.detach() - before).abs())
    return torch.stack(out)


@pytest.mark.parametrize("optimizer, hp, warm", [
    (torch.optim.Adam, {}, 12000), (torch.optim.Adam, {"betas": (0.8, 0.99)}, 2000),
    (torch.optim.AdamW, {"weight_decay": 0.0}, 12000), (torch.optim.RMSprop, {}, 2000),
    (torch.optim.RMSprop, {"alpha": 0.999, "momentum": 0.5}, 12000), (torch.optim.SGD, {"momentum": 0.9}, 400),
    (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, 400), (torch.optim.SGD, {"momentum": 0.5, "dampening": 0.3},
                                                                   400),
    (torch.optim.SGD, {}, 1),
])
def test_each_optimizers_own_head_start_is_what_it_does(optimizer: Any, hp: dict, warm: int) -> None:
    """A settled entry and a fresh one (its state zeroed as the surgery zeroes a new unit's) on
    the same constant gradient: the fresh one's steps over the settled one's, step by step."""
    p, opt = _pair(optimizer, warm, **hp)
    remap_parameter(p, {0: torch.tensor([0, -1])}, opt)  # entry 1: fresh, state at zero
    moved = _steps(p, opt, 300)
    expected = fresh_step_ratios(optimizer, opt.param_groups[0], 300)
    assert expected is not None
    torch.testing.assert_close(moved[:, 1] / moved[:, 0], expected, rtol=2e-3, atol=0)


@pytest.mark.parametrize("optimizer, hp", [(torch.optim.Adagrad, {}), (torch.optim.RMSprop, {"centered": True}),
                                           (torch.optim.Adamax, {})])
def test_an_unknown_head_start_is_none(optimizer: Any, hp: dict) -> None:
    opt = optimizer([torch.nn.Parameter(torch.zeros(1))], **hp)
    assert fresh_step_ratios(optimizer, opt.param_groups[0], 5) is None
    assert not HeadStart(opt).known


@pytest.mark.parametrize("optimizer, hp, warm", [(torch.optim.RMSprop, {}, 3000), (torch.optim.SGD, {"momentum": 0.9},
                                                                                     400),
                                                 (torch.optim.Adam, {"betas": (0.9, 0.99)}, 3000),
                                                 (torch.optim.SGD, {}, 2)])  # no state of its own
def test_a_fresh_entry_travels_as_under_adam(optimizer: Any, hp: dict, warm: int) -> None:
    """With the head start a fresh entry's steps over a settled one's follow Adam's default curve,
    whatever the optimizer, until they end within 1e-3 of it (the settled entry's steps untouched)."""
    p, opt = _pair(optimizer, 0, **hp)
    bare, bare_opt = _pair(optimizer, 0, **hp)
    head = HeadStart(opt)
    for _ in range(warm):
        _steps(p, opt, 1, head)
        _steps(bare, bare_opt, 1)
    assert torch.equal(p, bare)  # the first entries count as settled: nothing moved them
    remap_parameter(p, {0: torch.tensor([0, -1])}, opt)
    table = head.tables[0]
    assert table is not None
    young = len(table)
    assert 5000 < young < 7000
    assert fresh_steps(opt.state[p], p).tolist() == [young, 0]  # settled; the surgery zeroed the new one's
    moved = _steps(p, opt, 7000, head)
    adam = fresh_step_ratios(ADAM, {"betas": (0.9, 0.999)}, 7000)
    assert adam is not None
    assert fresh_steps(opt.state[p], p).tolist() == [young, young]  # counted while young
    torch.testing.assert_close(moved[:young, 1] / moved[:young, 0], adam[:young], rtol=2e-3, atol=0)
    assert torch.equal(moved[:, 0], _steps(bare, bare_opt, 7000)[:, 0])  # bit for bit


def test_under_adams_own_rates_it_moves_nothing() -> None:
    for optimizer in (torch.optim.Adam, torch.optim.AdamW):
        head = HeadStart(optimizer([torch.nn.Parameter(torch.zeros(1))]))
        assert head.known and not head.moves


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_step_counts_load_exactly_in_any_float_type(dtype: torch.dtype) -> None:
    """A checkpoint's load casts every state tensor to the parameter's float type: the two bytes
    of a count are exact in each, so the counts come back to the step."""
    steps = torch.tensor([0, 1, 255, 256, 257, 6211, 40000, MAX_FRESH_STEPS])
    p = torch.nn.Parameter(torch.zeros(len(steps), dtype=dtype))
    opt = torch.optim.RMSprop([p])
    p.grad = torch.ones_like(p)
    opt.step()
    opt.state[p][FRESH_STEPS[0]], opt.state[p][FRESH_STEPS[1]] = (steps % 256).byte(), (steps // 256).byte()
    again = torch.optim.RMSprop([p])
    again.load_state_dict(opt.state_dict())
    assert again.state[p][FRESH_STEPS[0]].dtype == dtype
    assert torch.equal(fresh_steps(again.state[p], p), steps)


@pytest.mark.parametrize("value, optimizer, rule", [
    (None, torch.optim.Adam, None), (None, torch.optim.RMSprop, HeadStart), (None, torch.optim.AdamW, None),
    (None, torch.optim.SGD, None), (None, torch.optim.Adagrad, None), ("optimizer", torch.optim.RMSprop, None),
    ("adam", torch.optim.RMSprop, HeadStart), ("adam", torch.optim.SGD, HeadStart),
    ("adam", torch.optim.Adam, None), ("adam", torch.optim.Adagrad, ArgumentError), ("fast", None, ArgumentError),
    (0.9999, torch.optim.Adam, HeadStart), (0.999, torch.optim.Adam, None), (0.99, torch.optim.RMSprop, HeadStart),
    (1.0, None, ArgumentError), (0, None, ArgumentError), (True, None, ArgumentError),
])
def test_paired_head_start_option(value: str | None, optimizer: Any, rule: Any) -> None:
    """Unset: the family's recipe -- Adam's head start under an adaptive optimizer whose own is
    known (none to give under Adam itself), SGD's own under SGD; ``optimizer``: the optimizer's
    own; a number b: Adam's with beta2 b (0.999 is Adam's own: nothing to give under Adam); ``adam``
    where the optimizer's own is not known, or another value: an error naming ``paired_head_start``."""
    def make() -> Paired:
        signal = Paired(head_start=value)
        signal.for_optimizer(optimizer([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
        return signal
    if rule is ArgumentError:
        with pytest.raises(ArgumentError, match="paired_head_start"):
            make()
    elif rule is None:
        assert make().head_start_rule is None
    else:
        assert isinstance(make().head_start_rule, rule)


def test_a_first_step_a_loss_scaler_skips_leaves_the_state_to_the_optimizer() -> None:
    """A loss scaler skips a step whose gradients are not finite: on the first one the optimizer
    has no state yet, and the head start must not make one (RMSprop and Adam set theirs up only
    while it is empty)."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.RMSprop([p], lr=1e-3)
    head, scaler = HeadStart(opt), torch.amp.GradScaler("cpu")
    for g in (float("inf"), 1.0, 1.0):
        opt.zero_grad()
        scaler.scale((p * g).sum()).backward()
        head.before(opt)
        scaler.step(opt)
        scaler.update()
        head.after(opt)
    assert set(opt.state[p]) >= {"square_avg", "step", *FRESH_STEPS} and torch.isfinite(p).all()


def test_a_deep_copy_reads_its_own_counts() -> None:
    """A trial's copy of the model deep-copies its head start: the copy shares the factors, not the
    counts it read from the network's optimizer (nor their state tensors)."""
    import copy
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.RMSprop([p], lr=1e-3)
    head = HeadStart(opt)
    for _ in range(2):
        p.grad = torch.ones_like(p)
        head.before(opt)
        opt.step()
        head.after(opt)
    twin = copy.deepcopy(head)
    assert head._counts and not twin._counts and twin.tables[0] is head.tables[0]
    head.forget()
    assert not head._counts


def test_a_longer_head_start_lengthens_adams_own() -> None:
    """``paired_head_start`` 0.9999 under Adam: a new entry's steps follow Adam's curve with beta2
    0.9999, longer than its own (the factor sqrt((1 - 0.999^k) / (1 - 0.9999^k)))."""
    signal = Paired(head_start=0.9999)
    signal.for_optimizer(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3))
    rule = signal.head_start_rule
    assert rule is not None and rule.tables[0] is not None
    k = torch.tensor([1.0, 100.0, 1000.0], dtype=torch.float64)
    expected = torch.sqrt((1 - 0.999 ** k) / (1 - 0.9999 ** k))
    torch.testing.assert_close(rule.tables[0][[0, 99, 999]], expected.float(), rtol=1e-5, atol=0)
