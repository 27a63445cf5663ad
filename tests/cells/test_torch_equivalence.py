"""Library genomes with weights imported from torch equal torch: outputs, final states, and the
gradients of parameters and input, on both paths, in float32 (1e-5) and float64 (1e-10)."""

import itertools

import pytest
import torch
from torch import nn

import growrnn as gr
from growrnn.cells import fused, gemm

MODULES = {
    "lstm": lambda *a, **k: nn.LSTM(*a, **k),
    "gru": lambda *a, **k: nn.GRU(*a, **k),
    "rnn_tanh": lambda *a, **k: nn.RNN(*a, nonlinearity="tanh", **k),
    "rnn_relu": lambda *a, **k: nn.RNN(*a, nonlinearity="relu", **k),
}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
PATHS = ("native", "fused", "generic")  # torch's kernel, the fused native layer, the per-op loop
CASES = list(itertools.product(MODULES, (1, 2), (False, True), (False, True), PATHS,
                               (torch.float32, torch.float64)))


def _run(model, x, state):
    out, final = model(x, state)
    final = final if isinstance(final, tuple) else (final,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weights).sum() + sum((s * s).sum() for s in final)
    loss.backward()
    return out, final


@pytest.mark.parametrize(("cell", "layers", "batch_first", "with_state", "path", "dtype"), CASES)
def test_equals_torch(cell, layers, batch_first, with_state, path, dtype) -> None:
    torch.manual_seed(0)
    ref = MODULES[cell](3, 5, num_layers=layers, batch_first=batch_first).to(dtype)
    rnn = gr.GenomeRNN.from_torch(ref, fast_path=path == "native", fused=path == "fused")
    assert rnn.uses_fast_path == (path == "native")
    assert rnn.uses_fused_path == (path == "fused" and fused.available())
    x = torch.randn(4, 6, 3, dtype=dtype)  # (B=4, T=6, I=3)
    n_states = 2 if cell == "lstm" else 1
    state = tuple(torch.randn(layers, 4, 5, dtype=dtype) for _ in range(n_states)) \
        if with_state else None
    if not batch_first:
        x = x.transpose(0, 1).contiguous()
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref_state = (state if cell == "lstm" else state[0]) if state else None
    out_ref, final_ref = _run(ref, x_ref, ref_state)
    out, final = _run(rnn, x_ours, state)
    tol = TOL[dtype]
    torch.testing.assert_close(out, out_ref, rtol=tol, atol=tol)
    for a, b in zip(final, final_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=tol, atol=tol)
    ref_params = dict(ref.named_parameters())
    for name, p in rnn.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generic_path_without_onednn(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemm, "_onednn", lambda t: False)
    torch.manual_seed(1)
    ref = MODULES[cell](4, 6, num_layers=2)
    rnn = gr.GenomeRNN.from_torch(ref, fast_path=False)
    x = torch.randn(5, 3, 4)
    out_ref, _ = _run(ref, x, None)
    out, _ = _run(rnn, x, None)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    for name, p in rnn.named_parameters():
        torch.testing.assert_close(p.grad, dict(ref.named_parameters())[name].grad, rtol=1e-5, atol=1e-5)


def test_state_dict_loads_across() -> None:
    ref = nn.LSTM(3, 4, num_layers=2)
    rnn = gr.GenomeRNN("lstm", 3, 4, num_layers=2)
    rnn.load_state_dict(ref.state_dict())
    ref.load_state_dict(rnn.state_dict())


@pytest.mark.parametrize(("cell", "layers", "batch_first"), list(itertools.product(MODULES, (1, 2), (False, True))))
def test_to_torch_gives_back_the_module_from_torch_took(cell: str, layers: int, batch_first: bool) -> None:
    torch.manual_seed(0)
    ref = MODULES[cell](3, 5, num_layers=layers, batch_first=batch_first, dropout=0.25 * (layers - 1))
    back = gr.GenomeRNN.from_torch(ref, fast_path=False).to_torch()
    assert type(back) is type(ref) and repr(back) == repr(ref)
    for (name, p), (ref_name, q) in zip(back.named_parameters(), ref.named_parameters(), strict=True):
        assert name == ref_name and torch.equal(p, q) and p.data_ptr() != q.data_ptr()


def test_a_single_layer_with_dropout_converts_without_torch_warning_of_it() -> None:
    module = gr.GenomeRNN("gru", 3, 5, dropout=0.3).to_torch()  # warnings are errors in the tests
    assert module.dropout == 0.0


def test_to_torch_refuses_a_cell_torch_has_no_module_for() -> None:
    with pytest.raises(gr.ArgumentError, match="genome.*canonically LSTM, GRU or Elman.*Received: .*HINT: other cells"):
        gr.GenomeRNN("mgu", 3, 5).to_torch()


@pytest.mark.parametrize(("module", "match"), [
    (nn.LSTM(3, 4, bidirectional=True), "module.bidirectional.*two GenomeRNNs"),
    (nn.GRU(3, 4, bias=False), "module.bias.*linear"),
    (nn.LSTM(3, 4, proj_size=2), "module.proj_size"),
    (nn.Linear(3, 4), "torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN.*Received: Linear"),
])
def test_from_torch_rejects_what_it_cannot_import(module, match: str) -> None:
    with pytest.raises(gr.ArgumentError, match=match):
        gr.GenomeRNN.from_torch(module)


@pytest.mark.parametrize(("onednn", "plain", "chosen"), [
    (0.5, 1.0, True),    # MKL at half oneDNN's speed (some AMD processors)
    (0.8, 1.0, True),    # the margin itself
    (0.95, 1.0, False),  # a near tie: torch's own kernel, in every process
    (1.3, 1.0, False),   # mm's weight gradient on this project's machines
])
def test_onednn_takes_a_product_only_by_a_clear_margin(onednn: float, plain: float, chosen: bool) -> None:
    assert gemm.wins(onednn, plain) is chosen


@pytest.mark.parametrize(("mine", "others", "agreed"), [
    ({"linear": True, "tn": True}, [1.0, 1.0], {"linear": True, "tn": True}),
    ({"linear": True, "tn": False}, [0.0, 0.0], {"linear": False, "tn": False}),  # the other process's race differed
    ({"linear": False, "tn": False}, [1.0, 1.0], {"linear": False, "tn": False}),
])
def test_the_processes_of_a_run_agree_on_one_kernel(mine: dict, others: list, agreed: dict,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemm, "_CHOSEN", dict(mine))
    assert gemm.agree_kernels(lambda votes: votes + torch.tensor(others), processes=2) == agreed
    assert all(gemm.prefers_onednn(kind) is agreed[kind] for kind in gemm.KINDS)
