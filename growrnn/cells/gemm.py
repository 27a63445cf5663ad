"""Matrix products of the generic path, on the fastest kernel torch offers for them.

On CPU, ``torch.mm`` in float32 goes to MKL, which on some processors (AMD's, for one) runs at
half the speed of the oneDNN kernels that ``nn.LSTM`` itself uses there. Where torch was built
with oneDNN, float32 CPU products call it directly through ``torch.ops.mkldnn._linear_pointwise``
(the op torch's inductor emits for linear layers), with weights packed once per forward for the
per-step products. Everywhere else (CUDA, float64, ``torch.compile``) plain torch ops run. Set
``GROWRNN_ONEDNN=0`` to force plain torch ops.

Which kernel a whole-sequence product takes decides the last bits of its result, so the choice
must not change from one process to the next on the same machine: oneDNN is taken only where it
wins its race by a clear margin (:data:`MARGIN`), and the processes of a distributed run agree on
one choice (:func:`agree_kernels`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import Tensor

__all__ = ["onednn_available", "autocast_of", "replayed", "linear", "RecurrentWeight", "recurrent_mm", "matmul_tn",
           "prefers_onednn", "agree_kernels", "MARGIN"]

#: a whole-sequence product goes to oneDNN only where oneDNN takes at most this share of torch's
#: time: the cases it is for are 2x apart (MKL at half oneDNN's speed on some AMD processors, ``mm``
#: twice as fast for weight gradients on Intel ones), and a near tie would go either way from one
#: process to the next (a resumed run, each process of a DDP run), and with it the products' last bits
MARGIN = 0.8
#: the kernels chosen in this process, by kind (see prefers_onednn)
_CHOSEN: dict[str, bool] = {}
KINDS = ("linear", "tn")


@cache
def onednn_available() -> bool:
    """Whether oneDNN's float32 linear op is present and agrees with torch.addmm."""
    if os.environ.get("GROWRNN_ONEDNN", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w, c = (torch.randn(3, 5, generator=g), torch.randn(4, 5, generator=g),
                   torch.randn(3, 4, generator=g))
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 3)
        got = torch.ops.mkldnn._linear_pointwise.binary(x, c, packed, None, "add")
        return bool(torch.allclose(got, torch.addmm(c, x, w.t()), atol=1e-5))
    except (RuntimeError, AttributeError):
        return False


def autocast_of(t: Tensor) -> tuple[str, torch.dtype, bool]:
    """The autocast state that products on ``t``'s device run under now: (device type, dtype,
    enabled). A custom autograd Function records it in forward and computes its backward under
    it again (:func:`replayed`), as torch's own ops do: Lightning's ``bf16-mixed``/``16-mixed``
    run the backward outside the autocast context, where a product of a low-precision gradient
    and a float32 weight would fail."""
    device = t.device.type
    return device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device)


def replayed(state: tuple[str, torch.dtype, bool]) -> torch.autocast:
    """The autocast context of a state :func:`autocast_of` recorded."""
    device, dtype, enabled = state
    return torch.autocast(device, dtype=dtype, enabled=enabled)


def _onednn(t: Tensor) -> bool:
    # not under autocast: oneDNN's ops have no autocast rule (they would run in float32 where the
    # plain ops run in the autocast dtype, and which one runs is a per-process speed race)
    return (t.device.type == "cpu" and t.dtype == torch.float32 and onednn_available()
            and not torch.compiler.is_compiling() and not torch.is_autocast_enabled("cpu"))


def _lp(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def prefers_onednn(kind: str) -> bool:
    """Whether oneDNN beats torch's own kernel (MKL on x86) on this machine for ``kind``:
    ``"linear"`` (``x @ w.T + b``) or ``"tn"`` (a weight gradient ``a.T @ b``, for which oneDNN's
    op needs two transposed copies that ``mm`` avoids) by :data:`MARGIN`. On some AMD processors
    MKL runs at half oneDNN's speed; on Intel ones ``mm`` wins, by about 2x for weight gradients.
    Decided once per process on a typical shape (best of five runs each), on one thread: with more
    threads than idle cores both kernels read as the same wait, and oneDNN's thread team then costs
    milliseconds per call."""
    if kind not in _CHOSEN:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            onednn, plain = _race(kind)
        finally:
            torch.set_num_threads(threads)
        _CHOSEN[kind] = wins(onednn, plain)
    return _CHOSEN[kind]


def wins(onednn: float, plain: float) -> bool:
    """Whether oneDNN's time ``onednn`` beats torch's ``plain`` by :data:`MARGIN` (seconds).

    >>> wins(0.5, 1.0), wins(0.95, 1.0), wins(1.3, 1.0)
    (True, False, False)
    """
    return onednn <= MARGIN * plain


def agree_kernels(votes: Callable[[Tensor], Tensor], processes: int) -> dict[str, bool]:
    """Make every process of a distributed run take the same kernels: oneDNN for a kind only where
    every process's own race chose it. ``votes`` sums a tensor over the processes (a collective:
    every process calls this, at the same point). Returns the kernels chosen, by kind."""
    mine = torch.tensor([float(prefers_onednn(kind)) for kind in KINDS])
    every = votes(mine)
    _CHOSEN.update({kind: bool(every[i].item() == processes) for i, kind in enumerate(KINDS)})
    return {kind: _CHOSEN[kind] for kind in KINDS}


def _race(kind: str) -> tuple[float, float]:
    """The best of five times of oneDNN's kernel and torch's on a typical shape, in seconds."""
    import time
    g = torch.Generator().manual_seed(0)
    if kind == "tn":
        a, b = torch.randn(1024, 256, generator=g), torch.randn(1024, 128, generator=g)
        kernels = {True: lambda: _lp(a.t().contiguous(), b.t().contiguous()), False: lambda: a.t().mm(b)}
    else:
        x, w, bias = (torch.randn(1024, 256, generator=g), torch.randn(512, 256, generator=g),
                      torch.randn(512, generator=g))
        kernels = {True: lambda: _lp(x, w, bias), False: lambda: torch.nn.functional.linear(x, w, bias)}
    best = {}
    for key, run in kernels.items():
        run()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        best[key] = min(times)
    return best[True], best[False]


def matmul_tn(a: Tensor, b: Tensor) -> Tensor:
    """``a.T @ b`` for ``a`` (M, N) and ``b`` (M, K): the weight gradient of a linear map."""
    if _onednn(a) and prefers_onednn("tn"):
        return _lp(a.t().contiguous(), b.t().contiguous())
    return a.t().mm(b)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _lp(x, w, b)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        g = g.contiguous()
        dx = _lp(g, w.t().contiguous()) if ctx.needs_input_grad[0] else None
        dw = matmul_tn(g, x) if ctx.needs_input_grad[1] else None
        db = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """``x @ w.T + b`` for x (N, d), w (n, d), b (n,) or None."""
    if _onednn(x) and prefers_onednn("linear"):
        return _Linear.apply(x, w, b)
    return torch.nn.functional.linear(x, w, b)


class RecurrentWeight:
    """A step group's weight prepared once per forward for T per-step products: the detached
    weight (its gradient is computed over the whole sequence elsewhere), and on oneDNN the weight
    packed for the forward product and, when gradients are wanted, its transpose packed for the
    input gradient."""

    def __init__(self, w: Tensor, batch: int, need_grad: bool, allow_onednn: bool = True):
        w = w.detach()
        self.wt = w.t()
        self.onednn = allow_onednn and _onednn(w)
        self.fwd = self.bwd = None
        if self.onednn:
            self.fwd = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), batch)
            if need_grad:
                self.bwd = torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous(), batch)


class _RecurrentMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inp: Tensor, s: Tensor, k: RecurrentWeight) -> Tensor:
        ctx.k = k
        return torch.ops.mkldnn._linear_pointwise.binary(s, inp, k.fwd, None, "add")

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        ds = _lp(g.contiguous(), ctx.k.bwd) if ctx.needs_input_grad[1] else None
        return g, ds, None


def recurrent_mm(inp: Tensor, s: Tensor, k: RecurrentWeight) -> Tensor:
    """``inp + s @ W.T`` for one step: gradients flow to ``inp`` and ``s``, never to W."""
    needs_grad = torch.is_grad_enabled() and (inp.requires_grad or s.requires_grad)
    if not k.onednn or torch.compiler.is_compiling() or (needs_grad and k.bwd is None):
        return torch.addmm(inp, s, k.wt)
    if needs_grad:
        return _RecurrentMM.apply(inp, s, k)
    return torch.ops.mkldnn._linear_pointwise.binary(s, inp, k.fwd, None, "add")
