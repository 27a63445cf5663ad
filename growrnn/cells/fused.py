"""The fused layer: a genome's whole time loop in ONE native library shared by every genome.

``csrc/fused.cpp`` is compiled once per machine and torch version with the system's C++ compiler
(about a minute), cached on disk under ``$GROWRNN_CACHE`` (default ``~/.cache/growrnn``) and
loaded by every later process; a file lock makes concurrent first builds (a search's workers)
wait for one build. Each genome's step is then a small int program (``growrnn.cells.program``)
that the library interprets, so a new genome costs no compile at all.

Without a C++ compiler (or with ``GROWRNN_FUSED=0``) the generic path runs, after one log line.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from growrnn.cells.native import match_native
from growrnn.cells.program import M_BIAS, Program
from growrnn.errors import DoubleBackwardError
from growrnn.genome.graph import Genome

__all__ = ["available", "library_path", "fused_layer", "SOURCE"]
log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "fused.cpp"
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC", "-w")


def _cache_root() -> Path:
    return Path(os.environ.get("GROWRNN_CACHE", Path.home() / ".cache" / "growrnn")) / "fused"


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _command(cxx: str, out: Path) -> list[str]:
    from torch.utils import cpp_extension
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [cxx, *FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", str(SOURCE), "-o", str(out)]
    cmd += [f"-I{p}" for p in cpp_extension.include_paths()]
    for lib in cpp_extension.library_paths():
        cmd += [f"-L{lib}", f"-Wl,-rpath,{lib}"]
    cmd += ["-lc10", "-ltorch_cpu"]
    return cmd


def library_path() -> Path | None:
    """The compiled library, built (once, under a file lock) if it is not cached yet; ``None``
    without a C++ compiler or when the build fails (the reason is logged once)."""
    cxx = _compiler()
    if cxx is None:
        log.warning("growrnn: no C++ compiler (%s) found: cells run on the generic path, several times "
                    "slower at small sizes. HINT: install g++ or set CXX", os.environ.get("CXX", "g++"))
        return None
    key = hashlib.sha256("\n".join([SOURCE.read_text(), torch.__version__, sys.version, cxx, *FLAGS,
                                    _cpu_id()]).encode()).hexdigest()[:16]
    folder = _cache_root() / key
    lib = folder / "growrnn_fused.so"
    if lib.exists():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent first builds: one compiles, the others wait
        if lib.exists():
            return lib
        log.info("growrnn: compiling the fused cell library once for this machine (about a minute) "
                 "into %s", folder)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        proc = subprocess.run(_command(cxx, Path(tmp)), capture_output=True, text=True)
        if proc.returncode != 0:
            os.unlink(tmp)
            log.warning("growrnn: compiling the fused cell library failed: cells run on the generic path. "
                        "%s", proc.stderr.strip()[-2000:])
            return None
        os.replace(tmp, lib)
    return lib


@cache
def available() -> bool:
    """Whether the fused library is loaded (building it on first use)."""
    if os.environ.get("GROWRNN_FUSED", "1") == "0":
        return False
    lib = library_path()
    if lib is None:
        return False
    try:
        torch.ops.load_library(str(lib))
    except (OSError, RuntimeError) as e:
        log.warning("growrnn: loading the fused cell library %s failed (%s): cells run on the generic path",
                    lib, e)
        return False
    return True


_TORCH_MODULES = {"lstm": "nn.LSTM", "gru": "nn.GRU", "rnn_tanh": "nn.RNN", "rnn_relu": "nn.RNN"}


def double_backward_error(genome: Genome | None, layer: int, fused: bool = True) -> DoubleBackwardError:
    """The error for a ``create_graph=True`` backward through layer ``layer`` of a GenomeRNN of
    ``genome``, on the fused layer (its native backward is not differentiable) or, with ``fused``
    false, on the generic path (its weight gradients are first order only). The hint names the
    path that computes second derivatives (the native one: torch's kernels, and the Elman cell's
    backward written in torch ops) and how to get the inputs' alone."""
    cell = "; ".join(genome.to_text().strip().splitlines()) if genome is not None else "?"
    match = match_native(genome) if genome is not None else None
    if match is not None:
        native = (f"this cell is canonically torch's {_TORCH_MODULES[match.kernel]}: GenomeRNN(..., fast_path=True) "
                  "runs it on the native path, whose backward supports second derivatives")
    else:
        native = ("GenomeRNN computes second derivatives only on its native path (cells that are canonically "
                  "LSTM, GRU or Elman, with fast_path=True)")
    inputs = ("; for derivatives in the inputs only, freeze the weights (requires_grad_(False))"
              + (" and pass fused=False" if fused else "") + ": the generic path computes those exactly")
    what = ("runs on the fused native layer, whose backward is not differentiable" if fused else
            "runs on the generic (per-op) path, whose weight gradients are first order only")
    return DoubleBackwardError(f"layer {layer} of a GenomeRNN (cell: {cell}) {what}", hint=native + inputs)


class _FusedLayer(torch.autograd.Function):
    """One layer's time loop: inputs are the ``seq`` slots (T, B, ·), the initial states (B, H),
    the step groups' plan-ordered weights and biases (bias-mode groups only), the diag vectors;
    outputs the layer output (T, B, H) and the final states (B, H).

    Everything the backward reads -- the inputs and the forward's tapes (the register file and the
    step groups' pre-activations) -- goes through ``save_for_backward``: autograd frees it after a
    backward (as soon as a ``del ctx.<attr>`` would), keeps it for ``retain_graph=True``, raises
    its own "backward through the graph a second time" error after it is freed, and applies
    saved-tensor hooks (``save_on_cpu``, non-reentrant checkpointing) to it. The native backward
    is first order only: a ``create_graph=True`` backward raises :class:`DoubleBackwardError`."""

    @staticmethod
    def forward(ctx: Any, prog: Program, T: int, H: int, genome: Genome | None, layer: int,
                *tensors: Tensor) -> tuple[Tensor, ...]:
        ns, nst, ng = prog.num_slots, prog.ints[1], len(prog.step_groups)
        nb = sum(m == M_BIAS for m in prog.modes)
        slots, init = tensors[:ns], tensors[ns:ns + nst]
        weights, given = tensors[ns + nst:ns + nst + ng], iter(tensors[ns + nst + ng:ns + nst + ng + nb])
        diags = tensors[ns + nst + ng + nb:]
        empty = init[0].new_empty(0)
        biases = [next(given) if m == M_BIAS else empty for m in prog.modes]
        res = torch.ops.growrnn_fused.forward(list(slots), list(init), list(weights), biases, list(diags),
                                              list(prog.ints), list(prog.consts), T, H)
        ctx.prog, ctx.T, ctx.H, ctx.genome, ctx.layer = prog, T, H, genome, layer
        ctx.num_diags = len(diags)
        ctx.save_for_backward(*slots, *init, *weights, *diags, *res[1 + nst:])  # the tapes last
        return tuple(res[:1 + nst])

    @staticmethod
    def backward(ctx: Any, dout: Tensor, *dfinal: Tensor) -> tuple[Tensor | None, ...]:
        # grad mode is on in a backward exactly when it runs with create_graph=True; checked here
        # rather than by @once_differentiable, which raises only where the incoming gradients
        # require grad and otherwise returns gradients that a second backward takes for constants
        if torch.is_grad_enabled():
            raise double_backward_error(ctx.genome, ctx.layer)
        prog = ctx.prog
        ns, nst, ng, nd = prog.num_slots, prog.ints[1], len(prog.step_groups), ctx.num_diags
        saved = ctx.saved_tensors
        slots, init, weights, diags = (saved[:ns], saved[ns:ns + nst], saved[ns + nst:ns + nst + ng],
                                       saved[ns + nst + ng:ns + nst + ng + nd])
        reg, gtapes = saved[ns + nst + ng + nd], saved[ns + nst + ng + nd + 1:]
        res = torch.ops.growrnn_fused.backward(list(slots), list(init), list(weights), list(diags), reg,
                                               list(gtapes), dout.contiguous(), [d.contiguous() for d in dfinal],
                                               list(prog.ints), list(prog.consts), ctx.T, ctx.H)
        d_slots, d_init = res[:ns], res[ns:ns + nst]
        d_w, d_b = res[ns + nst:ns + nst + ng], res[ns + nst + ng:ns + nst + 2 * ng]
        d_diag = res[ns + nst + 2 * ng]
        d_bias = [b for b, m in zip(d_b, prog.modes, strict=True) if m == M_BIAS]
        return (None, None, None, None, None, *d_slots, *d_init, *d_w, *d_bias, *d_diag.unbind(0)[:nd])


def fused_layer(prog: Program, T: int, slots: list[Tensor], init: list[Tensor], weights: list[Tensor],
                biases: list[Tensor], diags: list[Tensor], H: int, *, genome: Genome | None = None,
                layer: int = 0) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run one layer of ``T`` steps: ``slots`` (T, B, ·) as ``seq`` returned them, ``init`` the
    states (B, H), ``weights``/``biases`` of the step groups (biases of bias-mode groups only),
    ``diags`` (H,). Returns the output (T, B, H) and the final states. ``genome`` and ``layer``
    name the layer in the error a ``create_graph=True`` backward raises."""
    res = _FusedLayer.apply(prog, T, H, genome, layer, *[s.contiguous() for s in slots],
                            *[s.contiguous() for s in init], *weights, *biases, *diags)
    return res[0], tuple(res[1:])
