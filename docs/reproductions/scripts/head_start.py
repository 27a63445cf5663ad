"""How far a new unit's weights travel against an old unit's, under an adaptive optimizer (issue [F]).

A ``paired`` trial's new units start with zero optimizer state (the resize leaves fresh entries at
zero), while the tensor's step count is the run's. A zero second moment divides the entry's first
steps by the root of a mean square that has seen only its first gradients: a head start. This
measures it on the optimizer itself, no model: two parameter tensors fed the same gradients (a
mean of 1, plus Gaussian noise of ``--noise`` standard deviations), the optimizer warmed for
``--warm`` steps, then one tensor's moments zeroed as a resize leaves a new unit's; printed, for
each optimizer, the mean distance the fresh entries travel over the next steps divided by the old
entries' (1: no head start). Deterministic (seeded); a second on one thread. With ``--head-start``
the steps also go through the library's :class:`~growrnn.growth.signals.HeadStart` (what
``paired_head_start: adam``, the default, gives a trial's new units): every optimizer's fresh
entries then travel as Adam's do.

    python docs/reproductions/scripts/head_start.py
    python docs/reproductions/scripts/head_start.py --noise 3 --after 10 100 334 1000
    python docs/reproductions/scripts/head_start.py --optimizers rmsprop sgd --head-start
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch

from growrnn.growth.signals import FRESH_STEPS, HeadStart

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad, "sgd": functools.partial(torch.optim.SGD, momentum=0.9)}  # sgd: momentum 0.9
MOMENTS = ("exp_avg", "exp_avg_sq", "square_avg", "sum", "momentum_buffer")


def head_start(optimizer: str, after: list[int], noise: float = 0.0, warm: int = 3000, lr: float = 1e-3,
               entries: int = 1000, seed: int = 0, library: bool = False) -> dict[int, float]:
    """The fresh entries' travel over the old entries' after each step count in ``after``
    (``library``: the steps go through :class:`HeadStart`)."""
    gen = torch.Generator().manual_seed(seed)
    fresh, old = torch.nn.Parameter(torch.zeros(entries)), torch.nn.Parameter(torch.zeros(entries))
    opt = OPTIMIZERS[optimizer]([fresh, old], lr=lr)
    head = HeadStart(opt) if library else None

    def step() -> None:
        g = 1.0 + noise * torch.randn(entries, generator=gen)
        fresh.grad, old.grad = g.clone(), g.clone()
        if head is not None:
            head.before(opt)
        opt.step()
        if head is not None:
            head.after(opt)

    for _ in range(warm):
        step()
    state = opt.state[fresh]
    for key, value in list(state.items()):
        if key in MOMENTS or key in FRESH_STEPS:  # new tensors at zero, as a resize leaves a new unit's state
            state[key] = torch.zeros_like(value)
    start_fresh, start_old = fresh.detach().clone(), old.detach().clone()
    out: dict[int, float] = {}
    for n in range(1, max(after) + 1):
        step()
        if n in after:
            out[n] = float((fresh.detach() - start_fresh).abs().mean() / (old.detach() - start_old).abs().mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", default=["adam", "rmsprop"], choices=sorted(OPTIMIZERS))
    parser.add_argument("--after", nargs="+", type=int, default=[10, 100, 334, 1000])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 3.0])
    parser.add_argument("--warm", type=int, default=3000)
    parser.add_argument("--head-start", action="store_true", help="also with the library's head start")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.optimizers:
        for noise in args.noise:
            for library in (False, True) if args.head_start else (False,):
                ratios = head_start(name, args.after, noise, args.warm, library=library)
                print(f"{name}{' with the head start' if library else ''}, noise {noise:g}: "
                      + ", ".join(f"after {n}: {r:.2f}x" for n, r in ratios.items()))


if __name__ == "__main__":
    main()
