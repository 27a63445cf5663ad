"""``growrnn bench cells``: training-step time of every library genome on both paths, as ratios to
``nn.LSTM``/``nn.GRU`` timed in the same run, and achieved GFLOP/s against the machine's measured
matmul GFLOP/s. Entries are timed round-robin (one step of each per round) so that machine noise
hits them alike; each figure is the median over rounds."""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from growrnn.cells import gemm
from growrnn.cells.rnn import GenomeRNN
from growrnn.genome.complexity import complexity
from growrnn.genome.library import LIBRARY, library_cell
from growrnn.genome.text import parse

__all__ = ["HandDualLSTM", "BenchRow", "bench_cells", "matmul_gflops", "format_table", "EVOLVED", "SEARCH_SIZES"]
log = logging.getLogger(__name__)


class HandDualLSTM(nn.Module):
    """A hand-written PyTorch implementation of the library's ``dual_lstm`` cell, written the way
    a careful user would: the input projection of all gates for the whole sequence as one matmul,
    then one ``addmm`` per step and layer."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        k = hidden_size ** -0.5
        self.w_ih = nn.ParameterList()
        self.w_hh = nn.ParameterList()
        self.b = nn.ParameterList()
        for layer in range(num_layers):
            d = input_size if layer == 0 else hidden_size
            self.w_ih.append(nn.Parameter(torch.empty(5 * hidden_size, d).uniform_(-k, k)))
            self.w_hh.append(nn.Parameter(torch.empty(5 * hidden_size, hidden_size).uniform_(-k, k)))
            self.b.append(nn.Parameter(torch.empty(5 * hidden_size).uniform_(-k, k)))

    def forward(self, x: Tensor) -> Tensor:
        T, B, _ = x.shape
        for layer in range(self.num_layers):
            xp = torch.addmm(self.b[layer], x.reshape(T * B, -1), self.w_ih[layer].t()).view(T, B, -1)
            h = c = m = x.new_zeros(B, self.hidden_size)
            w_hh_t = self.w_hh[layer].t()
            outs = []
            for t in range(T):
                gi, gf, gg, go, gk = torch.addmm(xp[t], h, w_hh_t).chunk(5, 1)
                i, f, o, k = torch.sigmoid(gi), torch.sigmoid(gf), torch.sigmoid(go), torch.sigmoid(gk)
                c = f * c + i * torch.tanh(gg)
                m = k * m + (1 - k) * c
                h = o * torch.tanh(c + m)
                outs.append(h)
            x = torch.stack(outs)
        return x


@dataclass
class BenchRow:
    hidden: int
    cell: str
    path: str
    ms: float
    flops: float  # training FLOPs per step (forward x 3)
    ratio_lstm: float = float("nan")
    ratio_gru: float = float("nan")
    ratio_hand: float = float("nan")
    gflops: float = float("nan")
    peak_pct: float = float("nan")


def matmul_gflops(n: int = 1024, repeats: int = 10) -> dict[str, float]:
    """The machine's float32 matmul throughput (GFLOP/s, best of ``repeats``) on n x n matrices,
    through torch.mm (MKL on CPU) and through oneDNN where torch has it."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    kernels: dict[str, Callable[[], object]] = {"torch.mm": lambda: a @ b}
    if gemm.onednn_available():
        kernels["oneDNN"] = lambda: gemm._lp(a, b, None)
    out = {}
    for name, run in kernels.items():
        for _ in range(2):
            run()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * n ** 3 / best / 1e9
    return out


def _train_step(model: nn.Module, x: Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
    return run


def _time(run: Callable[[], None], clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    run()
    return clock() - t0


#: ``wall``: elapsed time; ``cpu``: the CPU time of the calling thread (with one torch thread,
#: all the work; immune to being preempted on a machine shared with other jobs).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


#: An evolved cell: JSB cell 156 of the search (docs/reproductions/search.md), a quarter of an
#: LSTM's multiply-adds.
EVOLVED = {"evolved_156": "h' = sigmoid(affine(x) + linear(relu(h)))"}

#: ``growrnn bench cells --search``: the sizes a CPU search trains (configs/search/jsb.yaml).
SEARCH_SIZES = {"sizes": (32, 64, 128), "batch": 8, "steps": 100, "layers": 1, "input_size": 88}


def bench_cells(sizes: tuple[int, ...] = (200, 650), batch: int = 20, steps: int = 35,
                layers: int = 2, rounds: int = 20, seed: int = 0,
                input_size: int | None = None, clock: str = "wall") -> tuple[list[BenchRow], dict[str, float]]:
    """Time every entry; return the rows and the measured matmul GFLOP/s by kernel.

    Paths: ``fast`` (torch's own kernel, where the genome is LSTM/GRU/Elman), ``fused`` (the
    fused native layer, ``growrnn.cells.fused``) and ``generic`` (the per-op loop, ``fused=False``).
    ``input_size`` defaults to H. ``clock``: ``"wall"`` or ``"cpu"`` (see :data:`CLOCKS`).

    Every entry is timed in A/B pairs with ``nn.LSTM`` (the reference first in even rounds, second
    in odd ones: the second run of a pair is the faster), in a fresh random order each round;
    ratios are medians of the per-pair ratios, so that drift and cache effects hit both sides of
    a ratio alike. Ratios to ``nn.GRU`` and to the hand-written
    cell are quotients of their own ratios to ``nn.LSTM``."""
    peak = matmul_gflops()
    rows: list[BenchRow] = []
    gen = torch.Generator().manual_seed(seed)
    order_rng = random.Random(seed)
    cells = {name: library_cell(name) for name in LIBRARY}
    cells.update({name: parse(text) for name, text in EVOLVED.items()})
    for H in sizes:
        d_in = input_size or H
        x = torch.randn(steps, batch, d_in, generator=gen)
        entries: dict[tuple[str, str], tuple[nn.Module, float]] = {}

        def flops(cell: str, H: int = H, d_in: int = d_in) -> float:
            return 3.0 * complexity(cells[cell], d_in, H, layers).flops * steps * batch

        reference = nn.LSTM(d_in, H, layers)
        entries[("nn.LSTM", "torch")] = (reference, flops("lstm"))
        entries[("nn.GRU", "torch")] = (nn.GRU(d_in, H, layers), flops("gru"))
        for name, genome in cells.items():
            for path in ("fast", "fused", "generic"):
                m = GenomeRNN(genome, d_in, H, layers, fast_path=path == "fast", fused=path == "fused",
                              generator=gen)
                if (path == "fast" and not m.uses_fast_path) or (path == "fused" and not m.uses_fused_path):
                    continue
                entries[(name, path)] = (m, flops(name))
        entries[("dual_lstm", "hand-written")] = (HandDualLSTM(d_in, H, layers), flops("dual_lstm"))
        ref_run = _train_step(reference, x)
        runs = {k: _train_step(m, x) for k, (m, _) in entries.items()}
        for run in runs.values():  # warm-up
            run()
            run()
        times: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
        ratios: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
        keys = list(runs)
        for r in range(rounds):
            order_rng.shuffle(keys)
            for k in keys:
                if r % 2 == 0:  # the reference goes first in half the pairs, second in the others:
                    t_ref, t = _time(ref_run, CLOCKS[clock]), _time(runs[k], CLOCKS[clock])
                else:  # the second of two runs is the faster (caches, the allocator), by up to ~25 %
                    t, t_ref = _time(runs[k], CLOCKS[clock]), _time(ref_run, CLOCKS[clock])
                times[k].append(t)
                ratios[k].append(t / t_ref)
        med = {k: statistics.median(v) for k, v in times.items()}
        rat = {k: statistics.median(v) for k, v in ratios.items()}
        log.info("H=%d done", H)
        best_peak = max(peak.values())
        for (cell, path), (_, fl) in entries.items():
            k = (cell, path)
            row = BenchRow(H, cell, path, 1e3 * med[k], fl, rat[k], rat[k] / rat[("nn.GRU", "torch")],
                           gflops=fl / med[k] / 1e9)
            row.peak_pct = 100 * row.gflops / best_peak
            if cell == "dual_lstm":
                row.ratio_hand = rat[k] / rat[("dual_lstm", "hand-written")]
            rows.append(row)
    return rows, peak


def format_table(rows: list[BenchRow], peak: dict[str, float], batch: int, steps: int, layers: int,
                 input_size: int | None = None) -> str:
    """A markdown table of the rows."""
    def f(v: float, fmt: str) -> str:
        return "" if v != v else format(v, fmt)

    kernels = ", ".join(f"{k} {v:.0f}" for k, v in peak.items())
    lines = [f"Machine matmul (float32, 1024^3, GFLOP/s): {kernels}; the best is the peak below. "
             f"B={batch}, T={steps}, {layers} layer{'s' if layers > 1 else ''}, input size = "
             f"{input_size or 'H'}; torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads.", "",
             "| H | cell | path | ms / train step | x nn.LSTM | x nn.GRU | x hand-written | GFLOP/s "
             "| % of matmul peak |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.hidden} | {r.cell} | {r.path} | {r.ms:.2f} | {f(r.ratio_lstm, '.2f')} | "
                     f"{f(r.ratio_gru, '.2f')} | {f(r.ratio_hand, '.2f')} | {f(r.gflops, '.1f')} | "
                     f"{f(r.peak_pct, '.0f')} |")
    return "\n".join(lines) + "\n"
