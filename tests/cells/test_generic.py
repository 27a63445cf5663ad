"""The generic path against the node-by-node reference, and the module's other behaviours."""

import pytest
import torch

import growrnn as gr
from growrnn.cells.native import match_native
from growrnn.genome import LIBRARY
from tests.cells.reference import reference_forward
from tests.genome.test_canonical import PERMUTED_LSTM


def _loss(out, state):
    return out.sin().sum() + sum(s.cos().sum() for s in state)


@pytest.mark.parametrize("cell", sorted(LIBRARY))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [True, False])
def test_library_cells_match_the_reference(cell: str, dtype: torch.dtype, fused: bool) -> None:
    torch.manual_seed(0)
    rnn = gr.GenomeRNN(cell, 3, 4, num_layers=2, fast_path=False, fused=fused, dtype=dtype)
    x = torch.randn(6, 2, 3, dtype=dtype)
    state = tuple(0.5 * torch.randn(2, 2, 4, dtype=dtype) for _ in rnn.genome.states)
    out, final = rnn(x, state)
    _loss(out, final).backward()
    grads = {n: p.grad.clone() for n, p in rnn.named_parameters()}
    rnn.zero_grad()
    ref_out, ref_final = reference_forward(rnn, x, state)
    _loss(ref_out, ref_final).backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out, ref_out, rtol=tol, atol=tol)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    for n, p in rnn.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=tol, atol=tol, msg=n)


def test_lstm_written_in_another_order_runs_natively_and_matches_generic() -> None:
    g = gr.parse(PERMUTED_LSTM)
    match = match_native(g)
    assert match is not None and match.kernel == "lstm" and not match.identity
    fast = gr.GenomeRNN(g, 3, 4, num_layers=2, dtype=torch.float64)
    generic = gr.GenomeRNN(g, 3, 4, num_layers=2, fast_path=False, dtype=torch.float64)
    generic.load_state_dict(fast.state_dict())
    assert fast.uses_fast_path and not generic.uses_fast_path
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for a, b in zip(fast(x)[1], generic(x)[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_auto_fast_path_policy() -> None:
    assert gr.GenomeRNN("lstm", 2, 3).uses_fast_path
    assert gr.GenomeRNN("gru", 2, 3, fast_path=True).uses_fast_path
    assert not gr.GenomeRNN("gru", 2, 3, fast_path=False).uses_fast_path
    assert not gr.GenomeRNN("mgu", 2, 3, fast_path=True).uses_fast_path


def test_dropout_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    rnn = gr.GenomeRNN("mgu", 3, 8, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 3)
    rnn.eval()
    a, b = rnn(x)[0], rnn(x)[0]
    torch.testing.assert_close(a, b)
    rnn.train()
    assert not torch.allclose(rnn(x)[0], a)
    single = gr.GenomeRNN("mgu", 3, 8, num_layers=1, dropout=0.5).train()
    torch.testing.assert_close(single(x)[0], single(x)[0])


def test_unbatched_input_and_bare_tensor_state() -> None:
    torch.manual_seed(0)
    rnn = gr.GenomeRNN("gru", 3, 4, num_layers=2)
    x, h0 = torch.randn(5, 3), torch.randn(2, 4)
    out, (h,) = rnn(x, h0)
    out_b, (h_b,) = rnn(x.unsqueeze(1), h0.unsqueeze(1))
    assert out.shape == (5, 4) and h.shape == (2, 4)
    torch.testing.assert_close(out, out_b.squeeze(1))
    torch.testing.assert_close(h, h_b.squeeze(1))


def test_no_grad_forward_equals_grad_forward() -> None:
    rnn = gr.GenomeRNN("dual_lstm", 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        quiet = rnn(x)[0]
    torch.testing.assert_close(rnn(x)[0], quiet)


def test_cell_weights_are_views_in_reading_order() -> None:
    rnn = gr.GenomeRNN("indrnn", 3, 4, num_layers=2)
    (k0, w0, b0), (k1, u, none) = rnn.cell_weights(1)
    shapes = (k0, tuple(w0.shape), tuple(b0.shape), k1, tuple(u.shape), none)
    assert shapes == ("affine", (4, 4), (4,), "diag", (4,), None)
    with torch.no_grad():
        u.fill_(0.25)
    assert torch.all(rnn.weight_diag_l1 == 0.25)
    kinds = [(k, tuple(w.shape)) for k, w, _ in gr.GenomeRNN("lstm", 3, 4).cell_weights(0)]
    assert kinds == [("affine", (4, 3)), ("affine", (4, 4))] * 4


def test_weights_are_seeded_by_a_generator() -> None:
    a = gr.GenomeRNN("mgu", 3, 4, generator=torch.Generator().manual_seed(7))
    b = gr.GenomeRNN("mgu", 3, 4, generator=torch.Generator().manual_seed(7))
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.slow
# dynamo itself reads .grad of the step's non-leaf inputs while tracing, which warns
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_torch_compile_runs_on_cpu() -> None:
    torch.manual_seed(0)
    compiled = gr.GenomeRNN("dual_lstm", 3, 4, compile=True)
    plain = gr.GenomeRNN("dual_lstm", 3, 4)
    plain.load_state_dict(compiled.state_dict())
    x = torch.randn(5, 2, 3)
    out = compiled(x)[0]
    out.sum().backward()
    torch.testing.assert_close(out, plain(x)[0], rtol=1e-5, atol=1e-5)
    assert all(p.grad is not None for p in compiled.parameters())


@pytest.mark.parametrize("cell", ["mgu", "gru", "dual_lstm"])
def test_frozen_weights_still_give_input_gradients(cell: str) -> None:
    torch.manual_seed(0)
    rnn = gr.GenomeRNN(cell, 3, 4, fast_path=False).requires_grad_(False)
    exact = gr.GenomeRNN(cell, 3, 4, fast_path=False, dtype=torch.float64)
    exact.load_state_dict(rnn.state_dict())
    x = torch.randn(5, 2, 3, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    rnn(x)[0].sum().backward()
    exact(x64)[0].sum().backward()
    torch.testing.assert_close(x.grad, x64.grad.float(), rtol=1e-5, atol=1e-5)


def test_registered_activation_compiles() -> None:
    from growrnn.cells import register_activation
    register_activation("softsign", torch.nn.functional.softsign)
    rnn = gr.GenomeRNN("h' = softsign(affine(x) + affine(h))", 3, 4, fast_path=False, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    out, _ = rnn(x)
    (k, w, b), (_, u, c) = rnn.cell_weights(0)
    h = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(4):
        h = torch.nn.functional.softsign(x[t] @ w.t() + b + h @ u.t() + c)
    torch.testing.assert_close(out[-1], h)


def test_unknown_activation_names_itself() -> None:
    from growrnn.genome.graph import ACTIVATIONS
    ACTIVATIONS["mystery"] = "registered in text only"
    try:
        with pytest.raises(gr.ArgumentError, match="Received: mystery.*register_activation"):
            gr.GenomeRNN("h' = mystery(affine(x))", 3, 4)
    finally:
        del ACTIVATIONS["mystery"]


def test_empty_input_and_weightless_cells() -> None:
    with pytest.raises(gr.ShapeError, match=r"no time steps.*\(0, 2, 3\)"):
        gr.GenomeRNN("gru", 3, 4)(torch.zeros(0, 2, 3))
    rnn = gr.GenomeRNN("h' = tanh(h) * 0.5 + affine(x)", 3, 4)
    assert "generic" in repr(rnn) and not rnn.uses_fast_path


@pytest.mark.parametrize("text", [
    "h' = tanh(affine(x)) * (1 + diag(h))",                      # a constant beside a diag call
    "h' = tanh(affine(x) + affine(h)) * relu(1)",                # an activation of a constant
    "c' = c + 1 * 1\nh' = tanh(affine(x) + affine(h) + c')",     # constant arithmetic feeding a state
    "h' = tanh(affine(x) + affine(h)) * sigmoid(0.5 - 1) + diag(h)",
])
def test_constant_subexpressions_are_folded_and_match_the_reference(text: str) -> None:
    rnn = gr.GenomeRNN(gr.parse(text), 3, 4, fast_path=False, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, final = rnn(x)
    ref_out, ref_final = reference_forward(rnn, x, None)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b)


def test_the_elman_backward_passes_gradcheck() -> None:
    from growrnn.cells.elman import elman_layer
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(*shape, dtype=torch.float64, generator=g).mul_(0.5).requires_grad_()
            for shape in ((5, 2, 3), (2, 4), (4, 3), (4, 4), (4,), (4,))]
    assert torch.autograd.gradcheck(lambda *a: elman_layer(*a), args)


@pytest.mark.parametrize("cell", ["gru", "mgu", "h' = sigmoid(affine(x) + linear(relu(h)))"])
def test_second_derivatives_on_the_generic_path_raise_a_clear_error(cell: str) -> None:
    """The generic path's per-step products run with detached weights (their gradients come from
    one GEMM after the loop), so a gradient penalty's weight gradients through it were silently
    wrong; a create_graph backward now raises, naming the path. With the weights frozen, as the
    hint says, second derivatives in the inputs are exact (against the node-by-node reference)."""
    rnn = gr.GenomeRNN(cell, 3, 4, num_layers=2, fast_path=False, fused=False, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)

    def input_penalty(forward) -> torch.Tensor:
        (gx,) = torch.autograd.grad(_loss(*forward(x)), x, create_graph=True)
        return gx.pow(2).sum()
    with pytest.raises(gr.errors.DoubleBackwardError, match=r"generic \(per-op\) path.*Received: a backward with "
                       r"create_graph=True\..*HINT: .*fast_path=True.*freeze the weights"):
        input_penalty(rnn)
    rnn.requires_grad_(False)
    (got,) = torch.autograd.grad(input_penalty(rnn), x)
    (want,) = torch.autograd.grad(input_penalty(lambda x: reference_forward(rnn, x)), x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("change", [lambda out: out.add_(1.0), lambda out: torch.relu_(out),
                                    lambda out: out[-1].zero_()])
def test_the_generic_paths_outputs_can_be_changed_in_place(change) -> None:
    """As nn.LSTM's can (ReLU(inplace=True), out[-1] = 0): its first-order guard returns copies."""
    rnn = gr.GenomeRNN("mgu", 3, 4, num_layers=2, fast_path=False, fused=False)
    out, final = rnn(torch.randn(5, 2, 3))
    change(out)
    change(final[0])
    (out.sum() + final[0].sum()).backward()
    assert all(p.grad is not None for p in rnn.parameters())
