"""The fused native layer against the generic path (the reference), and its fallback."""

import logging
import random
import stat
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

import growrnn as gr
from growrnn.cells import fused
from growrnn.errors import DoubleBackwardError
from growrnn.genome import LIBRARY, GenomeSpace, random_genome
from tests.cells.reference import reference_forward

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
needs_fused = pytest.mark.skipif(not fused.available(), reason="no C++ compiler: the fused layer is not built")
CELL_156 = "h' = sigmoid(affine(x) + linear(relu(h)))"


def _both(genome, layers: int = 2, dtype=torch.float64, seed: int = 0, **kw):
    gen = torch.Generator().manual_seed(seed)
    a = gr.GenomeRNN(genome, 3, 5, num_layers=layers, fast_path=False, dtype=dtype, generator=gen, **kw)
    b = gr.GenomeRNN(genome, 3, 5, num_layers=layers, fast_path=False, fused=False, dtype=dtype, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def _run(rnn, x, state):
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in state) if state is not None else None
    out, final = rnn(x, state)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    ((out * w).sum() + sum((s * s.tanh()).sum() for s in final)).backward()
    grads = {n: p.grad for n, p in rnn.named_parameters()}
    return out, final, x.grad, [s.grad for s in state] if state else [], grads


def _assert_same(a, b, tol, scaled=False):
    """Equal within ``tol``; with ``scaled``, ``atol`` is ``tol`` times the largest entry of each
    tensor when that exceeds 1 (random genomes without squashing reach gradients of 1e4, where
    float32 rounding in another summation order exceeds 1e-5 in absolute terms)."""
    out, final, gx, gs, grads = a
    out2, final2, gx2, gs2, grads2 = b

    def close(u, v, msg=None):
        atol = tol * max(1.0, v.abs().max().item()) if scaled else tol
        torch.testing.assert_close(u, v, rtol=tol, atol=atol, msg=msg)

    close(out, out2)
    for u, v in zip(final, final2, strict=True):
        close(u, v)
    close(gx, gx2)
    for u, v in zip(gs, gs2, strict=True):  # a state nothing reads: zeros on one path, None on the other
        if u is None or v is None:
            assert all(w is None or not w.any() for w in (u, v))
        else:
            close(u, v)
    for n in grads:
        if grads[n] is None or grads2[n] is None:
            assert grads[n] is None and grads2[n] is None, n
        else:
            close(grads[n], grads2[n], msg=n)


@needs_fused
@pytest.mark.parametrize("cell", [*sorted(LIBRARY), CELL_156, "h' = tanh(h) * 0.5 + affine(x)",
                                  "c' = c * 0.9 + affine(x)\nh' = tanh(linear(c') + diag(h)) * relu(c)",
                                  "h' = tanh(linear(h))"])  # reads no input: T must come from x
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch_first", [False, True])
def test_fused_equals_generic(cell: str, dtype: torch.dtype, batch_first: bool) -> None:
    fast, ref = _both(cell, dtype=dtype, batch_first=batch_first)
    assert fast.uses_fused_path and not ref.uses_fused_path
    assert "generic-fused" in repr(fast)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 7, 3, dtype=dtype, generator=g)  # (B, T, I) or (T, B, I)
    B = 4 if batch_first else 7
    state = tuple(0.5 * torch.randn(2, B, 5, dtype=dtype, generator=g) for _ in fast.genome.states)
    _assert_same(_run(fast, x, state), _run(ref, x, state), TOL[dtype])
    _assert_same(_run(fast, x, None), _run(ref, x, None), TOL[dtype])


@needs_fused
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), layers=st.integers(1, 2),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       space=st.builds(GenomeSpace, max_memory_states=st.integers(0, 3), max_depth=st.integers(1, 5),
                       p_share=st.sampled_from([0.0, 0.15, 0.4])))
def test_random_genomes_fused_equal_generic(seed: int, layers: int, dtype: torch.dtype, space) -> None:
    g = random_genome(random.Random(seed), space)
    fast, ref = _both(g, layers=layers, dtype=dtype, seed=seed % 1000)
    assert fast.uses_fused_path
    x = 0.5 * torch.randn(5, 2, 3, dtype=dtype, generator=torch.Generator().manual_seed(seed % 997))
    state = tuple(0.3 * torch.ones(layers, 2, 5, dtype=dtype) for _ in g.states)
    _assert_same(_run(fast, x, state), _run(ref, x, state), TOL[dtype], scaled=dtype == torch.float32)


@needs_fused
def test_dropout_no_grad_unbatched_and_frozen_weights_on_the_fused_path() -> None:
    torch.manual_seed(0)
    rnn = gr.GenomeRNN("mgu", 3, 8, num_layers=2, dropout=0.5, fast_path=False)
    assert rnn.uses_fused_path
    x = torch.randn(5, 2, 3)
    rnn.train()
    assert not torch.allclose(rnn(x)[0], rnn(x)[0])
    rnn.eval()
    with torch.no_grad():
        quiet = rnn(x)[0]
    torch.testing.assert_close(rnn(x)[0], quiet)
    out, (h,) = rnn(x[:, 0])
    assert out.shape == (5, 8) and h.shape == (2, 8)
    rnn.requires_grad_(False)
    xg = x.clone().requires_grad_()
    rnn(xg)[0].sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_registered_activation_runs_on_the_generic_path() -> None:
    from growrnn.cells import register_activation
    register_activation("softsign", torch.nn.functional.softsign)
    rnn = gr.GenomeRNN("h' = softsign(affine(x) + affine(h))", 3, 4)
    assert rnn.plan.program is None and not rnn.uses_fused_path


def test_without_a_compiler_the_generic_path_runs_after_one_log_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler-growrnn")
    monkeypatch.setenv("GROWRNN_CACHE", str(tmp_path))
    fused.available.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="growrnn.cells.fused"):
            rnn = gr.GenomeRNN("gru", 3, 4, fast_path=False)
            assert not rnn.uses_fused_path
            out, _ = rnn(torch.randn(4, 2, 3))
            rnn(torch.randn(4, 2, 3))
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "no C++ compiler (no-such-compiler-growrnn)" in lines[0]
        assert "generic path" in lines[0] and out.shape == (4, 2, 4)
    finally:
        fused.available.cache_clear()


def test_concurrent_first_builds_compile_once(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # a stand-in compiler: counts its calls, takes a moment, writes the output file
    calls = tmp_path / "calls"
    cxx = tmp_path / "fake-cxx"
    cxx.write_text(f"#!/bin/sh\necho x >> {calls}\nsleep 0.3\n"
                   'while [ "$1" != "-o" ]; do shift; done\necho lib > "$2"\n')
    cxx.chmod(cxx.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(cxx))
    monkeypatch.setenv("GROWRNN_CACHE", str(tmp_path / "cache"))
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(fused.library_path())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and paths[0] is not None and paths[0].read_text() == "lib\n"
    assert calls.read_text().count("x") == 1


@pytest.mark.parametrize("cell", ["gru", CELL_156])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_cpu_autocast_a_cell_runs_on_plain_torch_ops(cell: str, dtype: torch.dtype) -> None:
    """Under ``torch.autocast`` (Lightning's bf16-mixed/16-mixed on a CPU) neither the fused layer
    nor oneDNN's direct products run -- they compute in one dtype where autocast's products come
    in another (the fused layer failed on a mix of float32 and bf16 inputs whenever the per-process
    kernel race picked torch's products) -- so the layer is the plain ops' layer, the same in every
    process: equal to the unfused, per-op layer's result under the same autocast."""
    from growrnn.cells import gemm
    a, b = _both(cell, dtype=torch.float32)
    x = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=dtype):
        assert not a._fused_for(x.device, x.dtype) and not gemm._onednn(x)
        ran = [_run(rnn, x, None) for rnn in (a, b)]
    for got, want in zip(ran[0][:3], ran[1][:3], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(("cell", "fast_path"), [
    ("elman", True), ("elman", False),  # the hand-written Elman backward; the generic path
    ("lstm", True), ("lstm", False),    # under float16 on a CPU the LSTM takes the generic path
    ("gru", True), ("gru", False), (CELL_156, False),
])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.bfloat16, 0.08), (torch.float16, 0.01)])
def test_every_path_trains_under_cpu_autocast_as_lightning_runs_it(cell: str, fast_path: bool, dtype: torch.dtype,
                                                                    tol: float) -> None:
    """Lightning's bf16-mixed/16-mixed run the forward under autocast and the backward outside it.
    The library's own autograd Functions compute their backward in the forward's precision (it
    failed with "expected m1 and m2 to have the same dtype" on every path but the GRU's), and
    oneDNN has no float16 LSTM on most CPUs (``nn.LSTM`` itself fails there). Every float32
    parameter gets a float32 gradient within the autocast dtype's rounding of the float32 run's
    (``tol`` of the largest entry)."""
    rnn = gr.GenomeRNN(cell, 4, 6, num_layers=2, fast_path=fast_path, generator=torch.Generator().manual_seed(0))
    x = torch.randn(7, 3, 4, generator=torch.Generator().manual_seed(1))
    w = torch.linspace(-1, 1, 7 * 3 * 6).view(7, 3, 6)

    def grads(amp: bool) -> dict[str, torch.Tensor]:
        rnn.zero_grad()
        with torch.autocast("cpu", dtype=dtype, enabled=amp):
            out, _ = rnn(x)
        (out.float() * w).sum().backward()
        return {n: p.grad.clone() for n, p in rnn.named_parameters()}
    mixed, full = grads(True), grads(False)
    for name, g in full.items():
        assert mixed[name].dtype == torch.float32
        torch.testing.assert_close(mixed[name], g, rtol=0, atol=tol * float(g.abs().max().clamp_min(1e-3)), msg=name)


# ---------------------------------------------------------------------------------- backward twice
CELL_199 = str(Path(__file__).resolve().parents[2] / "configs" / "cells" / "jsb" / "cell_199.txt")
#: cells on the fused layer on a CPU: GRU and Elman by default (it beats torch's kernels there),
#: an evolved JSB cell, a gated cell with a diag call and a memory state, the LSTM when asked
FUSED_CELLS = [("gru", {}), ("elman", {}), pytest.param(CELL_199, {}, id="cell_199"), ("indrnn", {}), ("mgu", {}),
               ("c' = c * 0.9 + affine(x)\nh' = tanh(linear(c') + diag(h)) * relu(c)", {}),
               ("lstm", {"fast_path": False})]


def _fused_rnn(cell: str, dtype: torch.dtype = torch.float64, layers: int = 2, **kw) -> gr.GenomeRNN:
    rnn = gr.GenomeRNN(cell, 3, 4, num_layers=layers, dtype=dtype, generator=torch.Generator().manual_seed(0), **kw)
    assert rnn.uses_fused_path
    return rnn


def _inputs(rnn: gr.GenomeRNN, dtype: torch.dtype) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, 3, dtype=dtype, generator=g).requires_grad_()
    return x, tuple((0.5 * torch.randn(rnn.num_layers, 2, 4, dtype=dtype, generator=g)).requires_grad_()
                    for _ in rnn.genome.states)


def _loss(out: torch.Tensor, final: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return out.sin().sum() + sum((s * s).sum() for s in final)


def _grads(rnn: gr.GenomeRNN, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return [t.grad.clone() for t in (x, *state, *rnn.parameters())]


@needs_fused
@pytest.mark.parametrize(("cell", "kw"), FUSED_CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_retained_graph_gives_the_same_gradients_twice(cell: str, kw: dict, dtype: torch.dtype) -> None:
    """``backward(retain_graph=True)`` then ``backward()``: the second gives the first's gradients
    exactly, and both equal the per-op generic path's in float64 (it failed with "'_FusedLayerBackward'
    object has no attribute 'tapes'": the first backward deleted the tapes)."""
    rnn = _fused_rnn(cell, dtype, **kw)
    x, state = _inputs(rnn, dtype)
    loss = _loss(*rnn(x, state))
    loss.backward(retain_graph=True)
    first = _grads(rnn, x, state)
    for t in (x, *state, *rnn.parameters()):
        t.grad = None
    loss.backward()
    for a, b in zip(_grads(rnn, x, state), first, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ref = gr.GenomeRNN(cell, 3, 4, num_layers=2, dtype=torch.float64, fused=False, **kw)
    ref.load_state_dict(rnn.state_dict())
    rx, rstate = (x.detach().double().requires_grad_(), tuple(s.detach().double().requires_grad_() for s in state))
    _loss(*ref(rx, rstate)).backward()
    for a, b in zip(first, _grads(ref, rx, rstate), strict=True):
        torch.testing.assert_close(a, b.to(dtype), rtol=TOL[dtype], atol=TOL[dtype])


@needs_fused
@pytest.mark.parametrize("retains", [(False,), (True, False), (True, True, False)])
def test_a_backward_after_the_graph_is_freed_gets_torchs_own_error(retains: tuple[bool, ...]) -> None:
    """Backwards that retain the graph run, the first that does not frees the fused layer's tapes
    with the rest of the graph, and the next one gets torch's error, as for any torch op."""
    rnn = _fused_rnn("gru")
    x, state = _inputs(rnn, torch.float64)
    loss = _loss(*rnn(x, state))
    for retain in retains:
        loss.backward(retain_graph=retain)
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        loss.backward()


@needs_fused
@pytest.mark.parametrize(("cell", "kw"), [("gru", {}), pytest.param(CELL_199, {}, id="cell_199"),
                                         ("lstm", {"fast_path": False})])
def test_gradcheck_passes_on_the_fused_layer_in_float64(cell: str, kw: dict) -> None:
    """``torch.autograd.gradcheck`` with its default options (first derivatives only; it calls
    backward once per output entry on one retained graph) over the input, the states and every
    parameter."""
    rnn = _fused_rnn(cell, **kw)
    x, state = _inputs(rnn, torch.float64)
    names, params = zip(*[(n, p.detach().clone().requires_grad_()) for n, p in rnn.named_parameters()], strict=True)
    n = len(state)

    def f(x: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, final = functional_call(rnn, dict(zip(names, rest[n:], strict=True)), (x, rest[:n]))
        return (out, *final)
    assert torch.autograd.gradcheck(f, (x, *state, *params))


@needs_fused
@pytest.mark.parametrize(("cell", "kw", "hint"), [
    ("gru", {}, r"canonically torch's nn\.GRU: GenomeRNN\(\.\.\., fast_path=True\)"),
    ("elman", {}, r"canonically torch's nn\.RNN: GenomeRNN\(\.\.\., fast_path=True\)"),
    ("lstm", {"fast_path": False}, r"canonically torch's nn\.LSTM: GenomeRNN\(\.\.\., fast_path=True\)"),
    pytest.param(CELL_199, {}, r"freeze the weights \(requires_grad_\(False\)\) and pass fused=False", id="cell_199"),
])
@pytest.mark.parametrize(("linear", "layers"), [(False, 2), (True, 1)])
def test_second_derivatives_through_the_fused_layer_raise_a_clear_error(cell: str, kw: dict, hint: str,
                                                                       linear: bool, layers: int) -> None:
    """A gradient penalty (``create_graph=True``) through the fused layer raises the project's
    error naming the layer and what supports it. Before, torch's ``@once_differentiable`` error
    came only where a gradient reaching the layer itself required grad (a loss nonlinear in the
    output, a layer below another); one layer under a loss linear in its output gave the
    penalty's gradients silently wrong. The hinted native path (torch's kernels; on a CPU the
    Elman cell's own backward) gives the node-by-node reference's second derivatives."""
    rnn = _fused_rnn(cell, layers=layers, **kw)
    x, state = _inputs(rnn, torch.float64)

    def penalty(forward) -> torch.Tensor:
        out, final = forward(x, state)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum() if linear \
            else _loss(out, final)
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        return gx.pow(2).sum()
    match = (rf"layer {layers - 1} of a GenomeRNN \(cell: .*\) runs on the fused native layer, whose backward is "
             r"not differentiable\. Allowed: first-order gradients.*Received: a backward with create_graph=True\. "
             rf"HINT: .*{hint}")
    with pytest.raises(DoubleBackwardError, match=match):
        penalty(rnn).backward()
    assert issubclass(DoubleBackwardError, RuntimeError)  # where torch's own error was caught, this one is
    if "fast_path=True" in hint:
        native = gr.GenomeRNN(cell, 3, 4, num_layers=layers, dtype=torch.float64, fast_path=True)
        native.load_state_dict(rnn.state_dict())
        assert native.uses_fast_path
        got = torch.autograd.grad(penalty(native), list(native.parameters()))
        want = torch.autograd.grad(penalty(lambda *a: reference_forward(native, *a)), list(native.parameters()))
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
