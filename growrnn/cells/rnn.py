"""``GenomeRNN``: a multi-layer recurrent network built from any genome; a drop-in for
``torch.nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (same constructor arguments, parameter names and
state layout, the state always a tuple with ``h`` first)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from growrnn.cells import fused, gemm
from growrnn.cells.elman import elman_layer
from growrnn.cells.native import NativeMatch, match_native
from growrnn.cells.plan import Plan, WeightGroup, plan_for
from growrnn.cells.program import M_BIAS
from growrnn.errors import ArgumentError, ShapeError, check_choice, check_int
from growrnn.genome.graph import Genome
from growrnn.genome.library import library_cell
from growrnn.genome.source import load
from growrnn.genome.text import parse

__all__ = ["GenomeRNN", "as_genome", "layer_weights", "register_activation"]
log = logging.getLogger(__name__)
State = tuple[Tensor, ...]


def as_genome(cell: Genome | str) -> Genome:
    """A Genome from a Genome (returned as it is, node ids included), a library cell name
    (``"lstm"``), genome text or a genome file: :func:`growrnn.genome.load`, naming ``genome``."""
    return load(cell, "genome")


def layer_weights(genome: Genome, plan: Plan, hidden_size: int,
                  tensor: Callable[[str], Tensor]) -> list[tuple[str, Tensor, Tensor | None]]:
    """``[(kind, weight, bias_or_None), ...]`` of one layer's weighted calls in weight order, as
    views of the stacked tensors that ``tensor(name)`` returns for the layer's parameter names
    without their ``_l<k>`` suffix (``"weight_ih"``, ``"bias_hh"``, ``"weight_diag"``).
    Weights are ``(H, d)`` for affine/linear on a size-d value, ``(H,)`` for diag.

    A module's own layer (:meth:`GenomeRNN.cell_weights`) and a saved state dict read alike, so
    weights move between two genomes without building a module for either."""
    H = hidden_size
    out: list[tuple[str, Tensor, Tensor | None]] = []
    where = {w: grp for grp in plan.groups for w in grp.members}
    for w, nid in enumerate(genome.weighted):
        kind = genome.nodes[nid].op
        if kind == "diag":
            out.append((kind, tensor("weight_diag")[plan.diags.index(w)], None))
            continue
        grp = where[w]
        pos = grp.members.index(w)
        weight = tensor(f"weight_{grp.tag}").narrow(0, pos * H, H)
        bias = None
        if grp.affine[pos]:
            row = sum(grp.affine[:pos])
            bias = tensor(f"bias_{grp.tag}").narrow(0, row * H, H)
        out.append((kind, weight, bias))
    return out


class _SeqWeightGrad(torch.autograd.Function):
    """Identity on ``carrier`` (T, B, ·) in forward. In backward it also returns the gradient of
    ``weight`` (n*H, d) for the per-step matmuls ``carrier[t][:, cols] + a_t @ weight.T`` (which
    ran with a detached weight): one GEMM over all T*B rows, ``grad[:, cols].T @ A`` with ``A``
    the stacked arguments ``a_t`` that the time loop appends to ``holder`` when it ends. This is
    what fused RNN kernels do, and it replaces T small GEMMs and T gradient accumulations.
    First-order gradients only: the weights' part of any second derivative is not in the graph
    (the products ran with them detached); :class:`_FirstOrderOnly` guards the layer's outputs."""

    @staticmethod
    def forward(ctx: Any, carrier: Tensor, weight: Tensor, holder: list[Tensor], col0: int,
                ncols: int) -> Tensor:
        ctx.holder, ctx.col0, ctx.ncols, ctx.amp = holder, col0, ncols, gemm.autocast_of(carrier)
        return carrier.view_as(carrier)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        g = grad.narrow(-1, ctx.col0, ctx.ncols).reshape(-1, ctx.ncols)
        with gemm.replayed(ctx.amp):  # the per-step products' precision (autograd casts to the weight's dtype)
            return grad, gemm.matmul_tn(g, ctx.holder[0]), None, None, None


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on a generic-path layer's outputs while its weights want gradients. Its per-step
    products run with detached weights (:class:`_SeqWeightGrad`), so a ``create_graph=True``
    backward (a gradient penalty) would return second derivatives without the weights' part,
    silently wrong; here it raises :class:`~growrnn.errors.DoubleBackwardError` instead."""

    @staticmethod
    def forward(ctx: Any, genome: Genome, layer: int, *tensors: Tensor) -> tuple[Tensor, ...]:
        ctx.genome, ctx.layer = genome, layer
        # copies, not views: a view out of a custom Function may not be changed in place, and
        # users change nn.LSTM's outputs in place (ReLU(inplace=True), out[-1] = 0)
        return tuple(t.clone() for t in tensors)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # on in a backward exactly under create_graph=True
            raise fused.double_backward_error(ctx.genome, ctx.layer, fused=False)
        return (None, None, *grads)


def _carrier(bias: Tensor | None, x: Tensor, T: int, B: int, width: int) -> Tensor:
    """The matmul input of a step group: its bias (or zeros) broadcast to (T, B, width)."""
    base = bias if bias is not None else x.new_zeros(width)
    return base.expand(T, B, width)


#: Activations registered at run time: name -> torch function (see register_activation).
CUSTOM_ACTIVATIONS: dict[str, Any] = {}


def register_activation(name: str, fn: Any, description: str = "") -> None:
    """Make ``name`` usable in genomes and compiled modules, computed by ``fn`` (element-wise,
    differentiable), e.g. ``register_activation("softsign", torch.nn.functional.softsign)``."""
    from growrnn.cells.plan import ACTIVATION_CODE
    from growrnn.genome.graph import register_activation as register_name
    if not callable(fn):
        raise ArgumentError("fn", allowed="a callable tensor -> tensor", received=type(fn).__name__)
    register_name(name, description or getattr(fn, "__name__", name))
    CUSTOM_ACTIVATIONS[name] = fn
    ACTIVATION_CODE[name] = f"_act[{name!r}]"


@lru_cache(maxsize=4096)
def _functions(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"torch": torch, "_seq_wgrad": _SeqWeightGrad.apply, "_act": CUSTOM_ACTIVATIONS,
                                 "_carrier": _carrier, "_lin": gemm.linear, "_rmm": gemm.recurrent_mm}
    exec(compile(source, "<growrnn plan>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace


class GenomeRNN(nn.Module):
    """A stack of ``num_layers`` recurrent layers whose cell is ``genome``.

    Args:
        genome: a :class:`~growrnn.Genome`, genome text, or a library name (``"lstm"``).
        input_size: features I of the input.
        hidden_size: units H of every layer.
        num_layers: stacked layers; layer k > 0 reads the output of layer k-1.
        batch_first: input and output are ``(B, T, ·)`` instead of ``(T, B, ·)``.
        dropout: dropout on the outputs of every layer but the last (training only).
        fast_path: run canonically LSTM/GRU/Elman genomes on torch's own kernels: ``True``
            always, ``False`` never (the generic path), ``"auto"`` (default) where torch's kernel is
            the fastest exact option: LSTM everywhere; GRU and Elman off CPU, or on CPUs where
            neither the fused layer nor oneDNN is available (there, torch's GRU/RNN kernels lose
            to the generic path; see docs/benchmarks.md).
        compile: wrap the generic path's step function in ``torch.compile``.
        fused: run the generic path's time loop in the fused native layer (one library call per
            layer, forward and backward; CPU, float32/float64, outside ``torch.autocast``) where it is
            available. ``False``: the per-op Python loop, the reference. See ``growrnn.cells.fused``.
        generator: the ``torch.Generator`` that initialises the weights (default: torch's global).

    Shapes: input ``(T, B, I)`` (or ``(B, T, I)``, or unbatched ``(T, I)``); state a tuple of
    ``(num_layers, B, H)`` tensors in ``genome.states`` order (``h`` first); output ``(T, B, H)``.

    >>> import torch, growrnn as gr
    >>> rnn = gr.GenomeRNN(gr.cells.lstm(), input_size=3, hidden_size=5, num_layers=2)
    >>> out, (h, c) = rnn(torch.zeros(7, 2, 3))
    >>> tuple(out.shape), tuple(h.shape)
    ((7, 2, 5), (2, 2, 5))
    """

    def __init__(self, genome: Genome | str, input_size: int, hidden_size: int, num_layers: int = 1,
                 batch_first: bool = False, dropout: float = 0.0, *, fast_path: bool | str = "auto",
                 compile: bool = False, fused: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.genome = as_genome(genome)
        self.input_size = check_int("input_size", input_size, 1)
        self.hidden_size = check_int("hidden_size", hidden_size, 1)
        self.num_layers = check_int("num_layers", num_layers, 1)
        if not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
            raise ArgumentError("dropout", allowed="a float in [0, 1)", received=dropout)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        self.plan: Plan = plan_for(self.genome)
        check_choice("fast_path", fast_path, (True, False, "auto"))
        self.fast_path = fast_path
        self.native: NativeMatch | None = match_native(self.genome) if fast_path else None
        self.compiled = bool(compile)
        fns = _functions(self.plan.source)
        self._layer_fn = fns["layer"]
        self.fused = bool(fused)
        self._step_fn = torch.compile(fns["step"], dynamic=False) if compile else fns["step"]
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        H = self.hidden_size
        for k in range(self.num_layers):
            d_in = self.input_size if k == 0 else H
            for grp in self.plan.groups:
                cols = d_in if grp.input_sized else H
                if hasattr(self, f"weight_{grp.tag}_l{k}"):
                    raise ArgumentError("genome", allowed="one node per terminal (x, h, each state)",
                                        received=f"two groups named {grp.tag}")
                self.register_parameter(f"weight_{grp.tag}_l{k}",
                                        nn.Parameter(torch.empty(len(grp.members) * H, cols, **kw)))
                if grp.has_bias:
                    self.register_parameter(f"bias_{grp.tag}_l{k}",
                                            nn.Parameter(torch.empty(sum(grp.affine) * H, **kw)))
            if self.plan.diags:
                self.register_parameter(f"weight_diag_l{k}",
                                        nn.Parameter(torch.empty(len(self.plan.diags), H, **kw)))
        self.reset_parameters(generator)

    def __getstate__(self) -> dict[str, Any]:
        # the plan's generated functions cannot be pickled (ddp_spawn sends the model to its
        # workers by pickle): they are rebuilt from the plan's source
        return {k: v for k, v in self.__dict__.items() if k not in ("_layer_fn", "_step_fn")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        fns = _functions(self.plan.source)
        self._layer_fn = fns["layer"]
        self._step_fn = torch.compile(fns["step"], dynamic=False) if self.compiled else fns["step"]

    # ------------------------------------------------------------------------------ weights
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) as torch's RNNs; diag scales uniform(0, 1) (IndRNN)."""
        k = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("weight_diag"):
                    nn.init.uniform_(p, 0.0, 1.0, generator=generator)
                else:
                    nn.init.uniform_(p, -k, k, generator=generator)

    @property
    def uses_fast_path(self) -> bool:
        """Whether an input on the parameters' device and dtype runs on torch's own kernel."""
        p = next(self.parameters(), None)
        if p is None:  # a cell without weights
            return False
        return self._native_for(p.device, p.dtype)

    def _native_for(self, device: torch.device, dtype: torch.dtype) -> bool:
        if self.native is None:
            return False
        if self.native.kernel == "lstm" and device.type == "cpu" and torch.is_autocast_enabled("cpu") \
                and torch.get_autocast_dtype("cpu") == torch.float16:
            return False  # oneDNN has no float16 LSTM on most CPUs: nn.LSTM itself fails there
        if self.fast_path is True or self.native.kernel == "lstm":
            return True
        if self._fused_for(device, dtype):  # the fused layer beats torch's CPU GRU/RNN kernels
            return False
        return not (device.type == "cpu" and dtype == torch.float32 and gemm.onednn_available())

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.genome.states

    def cell_weights(self, layer: int) -> list[tuple[str, Tensor, Tensor | None]]:
        """``[(kind, weight, bias_or_None), ...]`` of ``layer``'s weighted calls in weight order
        (the genome text's reading order). Weights are views of the stacked parameters:
        ``(H, d)`` for affine/linear on a size-d value, ``(H,)`` for diag."""
        check_int("layer", layer, 0)
        if layer >= self.num_layers:
            raise ArgumentError("layer", allowed=f"0..{self.num_layers - 1}", received=layer)
        return layer_weights(self.genome, self.plan, self.hidden_size, lambda name: getattr(self, f"{name}_l{layer}"))

    # ------------------------------------------------------------------------------ forward
    def forward(self, input: Tensor, state: State | Tensor | None = None) -> tuple[Tensor, State]:
        """Run the sequence. Returns ``(output, state)``: output ``(T, B, H)`` (``(B, T, H)`` if
        batch_first) of the last layer, state the tuple of final ``(num_layers, B, H)`` tensors."""
        if isinstance(input, PackedSequence):
            raise ArgumentError("input", allowed="a padded (T, B, I) tensor", received="PackedSequence",
                                hint="pad it with torch.nn.utils.rnn.pad_packed_sequence and mask the loss")
        if not isinstance(input, Tensor) or input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            got = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ShapeError(f"input must have shape {layout} or (T, I) with I={self.input_size}; "
                             f"received {got}. HINT: check input_size and batch_first")
        if input.numel() == 0:
            raise ShapeError(f"input has no time steps or no batch: received shape {tuple(input.shape)}. "
                             "HINT: pass at least one step of at least one sequence")
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        states = self._initial_state(state, x, unbatched)
        if self._native_for(x.device, x.dtype):
            out, new = self._native_forward(x, states)
        else:
            out, new = self._generic_forward(x, states)
        if unbatched:
            return out.squeeze(1), tuple(s.squeeze(1) for s in new)
        return (out.transpose(0, 1) if self.batch_first else out), new

    def _initial_state(self, state: State | Tensor | None, x: Tensor, unbatched: bool) -> State:
        n, L, B, H = len(self.genome.states), self.num_layers, x.shape[1], self.hidden_size
        if state is None:
            zeros = x.new_zeros(L, B, H)
            return tuple(zeros for _ in range(n))
        if isinstance(state, Tensor):
            state = (state,)
        if not isinstance(state, Sequence) or len(state) != n:
            got = len(state) if isinstance(state, Sequence) else type(state).__name__
            raise ShapeError(f"state must be a tuple of {n} tensors {self.genome.states}; received "
                             f"{got}. HINT: pass None for zeros, or the state a previous call returned")
        shape = (L, H) if unbatched else (L, B, H)
        for name, s in zip(self.genome.states, state, strict=True):
            if not isinstance(s, Tensor) or tuple(s.shape) != shape:
                received = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ShapeError(f"state '{name}' must have shape (num_layers, B, H)={shape}; "
                                 f"received {received}")
        return tuple(s.unsqueeze(1) for s in state) if unbatched else tuple(state)

    def _native_params(self) -> list[Tensor]:
        """The native path's parameters in cuDNN's order: per layer w_ih, w_hh, b_ih, b_hh."""
        return [getattr(self, f"{kind}_{tag}_l{k}") for k in range(self.num_layers)
                for kind, tag in (("weight", "ih"), ("weight", "hh"), ("bias", "ih"), ("bias", "hh"))]

    def flatten_parameters(self) -> None:
        """On CUDA, lay the native path's weights out as cuDNN's one flat buffer, as
        ``nn.LSTM.flatten_parameters`` does (the parameters become views of it; names and values
        are unchanged), so cuDNN reads them in place instead of copying them at every call. A
        no-op on CPU, without cuDNN, on the generic path, and for genomes whose gates are written
        in another order than torch's (their weights are permuted per call anyway). Runs after
        ``.to()``/``.cuda()`` and again before a call whose weights were replaced (growth)."""
        m = self.native
        if m is None or not m.identity or not self.uses_fast_path:
            return
        params = self._native_params()
        first = params[0]
        if (first.device.type != "cuda" or any(p.dtype != first.dtype for p in params)
                or not torch._use_cudnn_rnn_flatten_weight()):
            return
        mode = {"rnn_relu": 0, "rnn_tanh": 1, "lstm": 2, "gru": 3}[m.kernel]  # cudnnRNNMode_t
        with torch.no_grad():
            torch._cudnn_rnn_flatten_weight(params, 4, self.input_size, mode, self.hidden_size, 0,
                                            self.num_layers, self.batch_first, False)
        self._flat_key = tuple(p.data_ptr() for p in params)

    def _apply(self, fn: Any, recurse: bool = True) -> GenomeRNN:
        ret = super()._apply(fn, recurse)
        self.flatten_parameters()
        return ret

    def _native_forward(self, x: Tensor, states: State) -> tuple[Tensor, State]:
        m = self.native
        assert m is not None
        if x.device.type == "cuda" and m.identity and getattr(self, "_flat_key", None) != tuple(
                p.data_ptr() for p in self._native_params()):
            self.flatten_parameters()  # new weights since the last call (a resize, load_state_dict)
        ordered = [t for k in range(self.num_layers) for t in self._torch_ordered(k, m)]
        args = (ordered, True, self.num_layers, self.dropout, self.training, False, False)
        if m.kernel == "lstm":
            out, h, c = torch._VF.lstm(x, states, *args)  # the kernel nn.LSTM calls
            return out, (h, c)
        if m.kernel == "rnn_tanh" and x.device.type == "cpu" and x.shape[0] > 0:
            return self._elman_forward(x, states[0], ordered)
        kernel = getattr(torch._VF, m.kernel)
        out, h = kernel(x, states[0], *args)
        return out, (h,)

    def _torch_ordered(self, k: int, m: NativeMatch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Layer ``k``'s weights in the gate order of ``m``'s torch kernel: w_ih, w_hh, b_ih, b_hh
        (the parameters themselves where the genome writes its gates in torch's order, else
        permuted copies)."""
        H = self.hidden_size
        pairs = []
        for tag, perm in (("ih", m.perm_ih), ("hh", m.perm_hh)):
            w, b = getattr(self, f"weight_{tag}_l{k}"), getattr(self, f"bias_{tag}_l{k}")
            if perm != tuple(range(m.gates)):  # gates written in another order than torch's
                w = torch.cat([w.narrow(0, p * H, H) for p in perm])
                b = torch.cat([b.narrow(0, p * H, H) for p in perm])
            pairs.append((w, b))
        (w_ih, b_ih), (w_hh, b_hh) = pairs
        return w_ih, w_hh, b_ih, b_hh

    def _elman_forward(self, x: Tensor, h0: Tensor, ordered: list[Tensor]) -> tuple[Tensor, State]:
        """The Elman stack on CPU through a hand-written backward (see ``growrnn.cells.elman``)."""
        finals = []
        for k in range(self.num_layers):
            if k > 0 and self.dropout > 0.0 and self.training:
                x = nn.functional.dropout(x, self.dropout, True)
            x, h = elman_layer(x, h0[k], *ordered[4 * k: 4 * k + 4])
            finals.append(h)
        return x, (torch.stack(finals),)

    @property
    def uses_fused_path(self) -> bool:
        """Whether an input on the parameters' device and dtype runs on the fused native layer
        (the generic path's time loop in one library call; see ``growrnn.cells.fused``)."""
        p = next(self.parameters(), None)
        return p is not None and not self.uses_fast_path and self._fused_for(p.device, p.dtype)

    def _fused_for(self, device: torch.device, dtype: torch.dtype) -> bool:
        # not under autocast (bf16-mixed/16-mixed): the library computes in its inputs' one dtype,
        # and the generic path's products then come in the autocast dtype
        return (getattr(self, "fused", True) and not self.compiled and self.plan.program is not None
                and device.type == "cpu" and not torch.is_autocast_enabled("cpu")
                and dtype in (torch.float32, torch.float64) and fused.available())

    def _fused_layer(self, x: Tensor, states: State, k: int) -> tuple[Tensor, State]:
        prog = self.plan.program
        assert prog is not None
        P, _ = self._prepared(k, x.shape[1], False, raw=True)
        seq = _functions(self.plan.source)["seq"]  # cached by source
        slots = list(seq(x, P, self.hidden_size)) if prog.num_slots else []
        weights = [P[2 * j].contiguous() for j in prog.step_groups]
        biases = [P[2 * j + 1] for j, m in zip(prog.step_groups, prog.modes, strict=True) if m == M_BIAS]
        diags = list(P[2 * len(self.plan.groups):])
        return fused.fused_layer(prog, x.shape[0], slots, list(states), weights, biases, diags, self.hidden_size,
                                 genome=self.genome, layer=k)

    def _generic_forward(self, x: Tensor, states: State) -> tuple[Tensor, State]:
        finals: list[State] = []
        H = self.hidden_size
        fused_ok = self._fused_for(x.device, x.dtype)
        for k in range(self.num_layers):
            if k > 0 and self.dropout > 0.0 and self.training:
                x = nn.functional.dropout(x, self.dropout, True)
            if fused_ok:
                x, final = self._fused_layer(x, tuple(s[k] for s in states), k)
            else:
                track = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
                P, R = self._prepared(k, x.shape[1], track)
                x, final = self._layer_fn(x, tuple(s[k] for s in states), P, R, H, track,
                                          step=self._step_fn)
                if track:
                    x, *rest = _FirstOrderOnly.apply(self.genome, k, x, *final)
                    final = tuple(rest)
            finals.append(final)
        return x, tuple(torch.stack([f[i] for f in finals], 0) for i in range(len(states)))

    def _prepared(self, k: int, batch: int, track: bool,
                  raw: bool = False) -> tuple[tuple[Any, ...], tuple[Tensor | None, ...]]:
        """Layer k's parameters in the plan's order. ``P`` holds per group its weight (a sequence
        group's plan-ordered W; a step group's :class:`~growrnn.cells.gemm.RecurrentWeight`, or with
        ``raw`` its plan-ordered W) and bias, then the diag vectors. A step group's weight gradient
        comes through ``R``, which holds its plan-ordered weight (``None`` for sequence groups)."""
        H, groups = self.hidden_size, self.plan.groups
        params: list[Any] = []
        recurrent: list[Tensor | None] = []
        plan_bias = {grp.index: self._plan_bias(grp, k) for grp in groups}
        for grp in groups:
            w = getattr(self, f"weight_{grp.tag}_l{k}")
            if grp.plan_order != tuple(range(len(grp.members))):
                w = torch.cat([w.narrow(0, p * H, H) for p in grp.plan_order])
            bias = None if grp.fused else plan_bias[grp.index]
            for off, s in grp.fold:
                folded = plan_bias[s]
                assert folded is not None
                n = len(grp.members)
                pad = (off * H, (n - off) * H - folded.shape[0])
                folded = nn.functional.pad(folded, pad) if any(pad) else folded
                bias = folded if bias is None else bias + folded
            # pack the input-gradient weight whenever autograd is on: the input may want a gradient
            # even when the weights are frozen
            params += [w if grp.seq or raw else
                       gemm.RecurrentWeight(w, batch, torch.is_grad_enabled(), not self.compiled), bias]
            recurrent.append(None if grp.seq else w)
        if self.plan.diags:
            params += list(getattr(self, f"weight_diag_l{k}").unbind(0))
        return tuple(params), tuple(recurrent)

    def _plan_bias(self, grp: WeightGroup, k: int) -> Tensor | None:
        if not grp.has_bias:
            return None
        b, H = getattr(self, f"bias_{grp.tag}_l{k}"), self.hidden_size
        if all(grp.affine) and grp.plan_order == tuple(range(len(grp.members))):
            return b
        rows = [sum(grp.affine[:p]) for p in range(len(grp.members))]
        return torch.cat([b.narrow(0, rows[p] * H, H) if grp.affine[p] else b.new_zeros(H)
                          for p in grp.plan_order])

    # ------------------------------------------------------------------------------ torch import
    @classmethod
    def from_torch(cls, module: nn.LSTM | nn.GRU | nn.RNN, **kwargs: Any) -> GenomeRNN:
        """A GenomeRNN with the cell, sizes and weights of a torch ``nn.LSTM``/``nn.GRU``/``nn.RNN``
        (parameter names and layouts are the same, so the state dict loads as it is)."""
        if isinstance(module, nn.LSTM):
            genome = library_cell("lstm")
        elif isinstance(module, nn.GRU):
            genome = library_cell("gru")
        elif isinstance(module, nn.RNN):
            genome = (library_cell("elman") if module.nonlinearity == "tanh"
                      else parse("h' = relu(affine(x) + affine(h))"))
        else:
            raise ArgumentError("module", allowed="torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN",
                                received=type(module).__name__)
        for attr, ok, hint in (("bidirectional", False, "run two GenomeRNNs, one on the reversed input"),
                               ("bias", True, "write the genome with linear(...) instead of affine(...)"),
                               ("proj_size", 0, "projections are not supported")):
            if getattr(module, attr, ok) != ok:
                raise ArgumentError(f"module.{attr}", allowed=repr(ok),
                                    received=getattr(module, attr), hint=hint)
        p = next(module.parameters())
        rnn = cls(genome, module.input_size, module.hidden_size, module.num_layers,
                  batch_first=module.batch_first, dropout=module.dropout, device=p.device,
                  dtype=p.dtype, **kwargs)
        rnn.load_state_dict(module.state_dict())
        return rnn

    def to_torch(self) -> nn.LSTM | nn.GRU | nn.RNN:
        """The ``nn.LSTM``/``nn.GRU``/``nn.RNN`` this module computes, with a copy of its weights
        (the inverse of :meth:`from_torch`): same sizes, ``batch_first`` and dropout between
        layers (none for one layer, which applies none), on the same
        device and dtype, outputs and states equal to this module's. For a cell that is canonically
        one of torch's (a library LSTM, GRU or Elman cell, or an evolved genome equal to one up to
        local names and operand order; its gates are put in torch's order).

        >>> lstm = GenomeRNN("lstm", 3, 5).to_torch()
        >>> type(lstm).__name__, lstm.hidden_size
        ('LSTM', 5)
        """
        m = match_native(self.genome)
        if m is None:
            raise ArgumentError("genome", allowed="a cell torch has a module for (canonically LSTM, GRU or "
                                "Elman with tanh or relu)",
                                received="; ".join(self.genome.to_text().strip().splitlines()),
                                hint="other cells run as a GenomeRNN only; save its state_dict and genome text")
        kinds = {"lstm": (nn.LSTM, {}), "gru": (nn.GRU, {}), "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
                 "rnn_relu": (nn.RNN, {"nonlinearity": "relu"})}
        cls, extra = kinds[m.kernel]
        p = next(self.parameters())
        module = cls(self.input_size, self.hidden_size, self.num_layers, batch_first=self.batch_first,
                     dropout=self.dropout if self.num_layers > 1 else 0.0,  # torch warns of dropout it never applies
                     device=p.device, dtype=p.dtype, **extra)
        with torch.no_grad():
            for k in range(self.num_layers):
                for name, t in zip((f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}"),
                                   self._torch_ordered(k, m), strict=True):
                    getattr(module, name).copy_(t)
        module.train(self.training)
        return module

    def extra_repr(self) -> str:
        eqs = "; ".join(self.genome.to_text().strip().splitlines())
        path = (f"native {self.native.kernel}" if self.uses_fast_path and self.native
                else "generic-fused" if self.uses_fused_path else "generic")
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, path={path}, cell=[{eqs}]")
