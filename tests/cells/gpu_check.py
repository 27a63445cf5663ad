"""GPU checks for the cell compiler: run by hand on a machine with CUDA (CI never needs a GPU).

    python tests/cells/gpu_check.py            # a few minutes on one GPU
    python tests/cells/gpu_check.py checks     # 1 and 2 only; "timing": 3 only (alone on the GPU)

1. The native path hands cuDNN flattened weights: no "not part of single contiguous chunk" warning,
   and outputs, states and gradients equal ``nn.LSTM``/``nn.GRU`` on CUDA (1e-5 float32, 1e-10 float64).
2. The generic path on CUDA, eager and with ``compile=True`` (inductor: the step's element-wise ops
   as one Triton kernel per step, the products on cuBLAS), equals the CPU reference; the number of
   kernels launched per time step is printed.
3. Training-step time against ``nn.LSTM`` on CUDA, one run, at the search's and the PTB sizes.

Exit status 0 when every check passes. Written without a GPU at hand: unverified until run.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import torch
from torch import nn

import growrnn as gr

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name} {detail}")
    if not ok:
        FAILED.append(name)


def _grads(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out, state = model(x)
    state = state if isinstance(state, tuple) else (state,)
    (out.square().sum() + sum(s.sum() for s in state)).backward()
    return out, list(state), {n: p.grad for n, p in model.named_parameters()} | {"x": x.grad}


def native_matches_torch() -> None:
    for cls in (nn.LSTM, nn.GRU):
        for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
            ref = cls(16, 32, num_layers=2).to("cuda", dtype)
            rnn = gr.GenomeRNN.from_torch(ref, fast_path=True)
            x = torch.randn(20, 8, 16, device="cuda", dtype=dtype)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                o1, s1, g1 = _grads(rnn, x)
            copied = [w for w in caught if "contiguous chunk" in str(w.message)]
            check(f"native {cls.__name__} {dtype}: weights flattened for cuDNN", not copied,
                  f"({len(copied)} copy warnings)")
            o2, s2, g2 = _grads(ref, x)
            err = max([(o1 - o2).abs().max().item()] + [(a - b).abs().max().item() for a, b in zip(s1, s2, strict=True)]
                      + [(g1[k] - g2[k]).abs().max().item() for k in g2])
            check(f"native {cls.__name__} {dtype} equals torch", err <= tol * 10, f"(max abs diff {err:.2e})")


def generic_matches_cpu() -> None:
    cells = ["lstm", "gru", "dual_lstm", "h' = sigmoid(affine(x) + linear(relu(h)))", "mgu", "indrnn"]
    for cell in cells:
        for compiled in (False, True):
            cpu = gr.GenomeRNN(cell, 16, 32, num_layers=2, fast_path=False, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0))
            gpu = gr.GenomeRNN(cell, 16, 32, num_layers=2, fast_path=False, dtype=torch.float64,
                               compile=compiled).cuda()
            torch._dynamo.reset()  # a fresh recompile budget per cell (dynamo's limit is per process function)
            gpu.load_state_dict(cpu.state_dict())
            x = torch.randn(12, 4, 16, dtype=torch.float64)
            o1, s1, g1 = _grads(cpu, x)
            o2, s2, g2 = _grads(gpu, x.cuda())
            err = max([(o1 - o2.cpu()).abs().max().item()]
                      + [(a - b.cpu()).abs().max().item() for a, b in zip(s1, s2, strict=True)]
                      + [(g1[k] - g2[k].cpu()).abs().max().item() for k in g1])
            check(f"generic {'compiled' if compiled else 'eager'} {cell[:24]!r} on CUDA equals CPU",
                  err <= 1e-9, f"(max abs diff {err:.2e})")
    from torch.profiler import ProfilerActivity, profile
    for compiled in (False, True):
        torch._dynamo.reset()  # else the cells compiled above have spent the recompile limit: eager, silently
        rnn = gr.GenomeRNN("gru", 88, 64, fast_path=False, compile=compiled).cuda()
        x = torch.randn(50, 8, 88, device="cuda")
        rnn(x)[0].sum().backward()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            rnn(x)[0].sum().backward()
            torch.cuda.synchronize()
        kernels = sum(e.count for e in prof.key_averages() if e.device_type.name == "CUDA")
        print(f"INFO  gru generic {'compiled' if compiled else 'eager'}: {kernels / 50:.1f} CUDA kernels per "
              "time step (forward + backward)")


def timing() -> None:
    def step(m: nn.Module, x: torch.Tensor):
        def run() -> None:
            m.zero_grad(set_to_none=True)
            m(x)[0].sum().backward()
        return run

    for B, T, d_in, H, L in ((8, 100, 88, 64, 1), (20, 35, 650, 650, 2)):
        torch._dynamo.reset()
        x = torch.randn(T, B, d_in, device="cuda")
        ref = nn.LSTM(d_in, H, L).cuda()
        entries = {"lstm native": gr.GenomeRNN("lstm", d_in, H, L).cuda(),
                   "gru native": gr.GenomeRNN("gru", d_in, H, L, fast_path=True).cuda(),
                   "cell 156 compiled": gr.GenomeRNN("h' = sigmoid(affine(x) + linear(relu(h)))", d_in, H, L,
                                                     compile=True).cuda(),
                   "dual_lstm compiled": gr.GenomeRNN("dual_lstm", d_in, H, L, compile=True).cuda()}
        r0 = step(ref, x)
        for name, m in entries.items():
            run = step(m, x)
            for _ in range(3):
                run(), r0()
            ratios = []
            for _ in range(10):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                r0()
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                run()
                torch.cuda.synchronize()
                ratios.append((time.perf_counter() - t1) / (t1 - t0))
            print(f"INFO  B{B} T{T} I{d_in} H{H} L{L}: {name}: {statistics.median(ratios):.2f}x nn.LSTM")


def main(argv: list[str]) -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing checked")
        return 2
    if "timing" not in argv:
        native_matches_torch()
        generic_matches_cpu()
    if "checks" not in argv:
        timing()
    print("FAILED: " + ", ".join(FAILED) if FAILED else "all GPU checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
