"""Synthetic sequence tasks, generated from a seed.

- ``anbncn``: next-symbol-set prediction on ``S a^n b^n c^n T`` (Gers & Schmidhuber 2001; the
  MOE/RNAS sequence task). Each step's target is the set of symbols that may come next; the
  metric is the fraction of steps whose thresholded prediction equals that set exactly.
- ``adding``: Hochreiter & Schmidhuber (1997)'s adding problem in Le et al. (2015)'s form: two
  channels, values U(0, 1) and a marker on one step in each half; the target is the sum of the
  two marked values, read at the last step. Metric: MSE (predicting 1 scores about 0.167).
- ``copy``: the copy-memory task (Arjovsky et al. 2016): 10 symbols from 8, ``delay`` blanks,
  a delimiter, and the 10 symbols must be reproduced. Metric: cross-entropy per step (the
  memoryless baseline is ``10 ln 8 / (delay + 20)``).
- ``teacher``: the outputs of a random recurrent *teacher* network with ``units`` tanh units,
  driven by random tokens: at every step the target is a token drawn from the teacher's softmax.
  Meant as a task of known width, but an LSTM student keeps gaining from units well past the
  teacher's (docs/reproductions/settling.md); ``flipflop`` is the one whose width is set by
  construction. Metric: cross-entropy per step; its floor (the teacher's mean entropy on the
  validation split) is in ``task.info["floor"]``.
- ``flipflop``: the *k*-bit flip-flop (Sussillo & Barak 2013): each step may carry a pulse that
  sets or clears one of ``bits`` bits, and the target is every bit's state after the step. A
  network must hold ``bits`` independent bits for as long as no pulse touches them, so the width
  it needs grows with ``bits`` (one unit latches one bit). Metric: the binary cross-entropy per
  step, summed over the bits; its floor is 0 (the targets follow from the inputs).
"""

from __future__ import annotations

import math

import torch

from growrnn.errors import ArgumentError, is_number
from growrnn.task import TaskSpec
from tasks.base import SequenceData, SimpleTask, check_positive

__all__ = ["anbncn", "adding", "copy", "flipflop", "teacher"]

S, A, B, C, T_END = range(5)


def _anbncn_example(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([S] + [A] * n + [B] * n + [C] * n)
    y = torch.zeros(3 * n + 1, 5)
    y[0, A] = 1
    y[1:n + 1, A] = y[1:n + 1, B] = 1             # after an a: another a, or the first b
    y[n + 1:2 * n, B] = 1
    y[2 * n, C] = 1
    y[2 * n + 1:3 * n, C] = 1
    y[3 * n, T_END] = 1
    return x, y


def anbncn(max_n: int = 10, test_max_n: int | None = None, n_train: int = 1000, n_eval: int = 200,
           batch_size: int = 32, seed: int = 0) -> SimpleTask:
    """aⁿbⁿcⁿ next-symbol-set prediction; n in 1..max_n (test: 1..test_max_n). Metric: step accuracy."""
    test_max_n = max_n if test_max_n is None else test_max_n
    check_positive(max_n=max_n, test_max_n=test_max_n, n_train=n_train, n_eval=n_eval, batch_size=batch_size)

    def draw(count: int, top: int, offset: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed + offset)
        return [_anbncn_example(int(n)) for n in torch.randint(1, top + 1, (count,), generator=g)]

    def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        return {"train": draw(n_train, max_n, 0), "valid": draw(n_eval, max_n, 1), "test": draw(n_eval, test_max_n, 2)}

    spec = TaskSpec(name="anbncn", input_kind="tokens", input_size=5, output_kind="multi_hot", output_size=5,
                    metric="accuracy", direction="max",
                    description="a^n b^n c^n: predict the set of possible next symbols (step accuracy)")
    return SimpleTask(spec, lambda: SequenceData(splits, batch_size, per_step=True, seed=seed))


def adding(length: int = 50, n_train: int = 10000, n_eval: int = 1000, batch_size: int = 50,
           seed: int = 0) -> SimpleTask:
    """Adding problem over ``length`` steps; one regression target per sequence. Metric: MSE."""
    check_positive(length=length, n_train=n_train, n_eval=n_eval, batch_size=batch_size)
    if length < 2:
        raise ArgumentError("length", allowed="an int >= 2", received=length)

    def draw(count: int, offset: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed + offset)
        values = torch.rand(count, length, generator=g)
        half = length // 2
        first = torch.randint(0, half, (count,), generator=g)
        second = torch.randint(half, length, (count,), generator=g)
        marks = torch.zeros(count, length)
        rows = torch.arange(count)
        marks[rows, first] = 1.0
        marks[rows, second] = 1.0
        x = torch.stack([values, marks], dim=-1)
        y = (values * marks).sum(1, keepdim=True)
        return list(zip(x.unbind(0), y.unbind(0), strict=True))

    def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        return {"train": draw(n_train, 0), "valid": draw(n_eval, 1), "test": draw(n_eval, 2)}

    spec = TaskSpec(name="adding", input_kind="features", input_size=2, output_kind="real", output_size=1,
                    metric="mse", direction="min", per_step=False,
                    description=f"adding problem, T={length} (MSE; 0.167 for a constant guess)")
    return SimpleTask(spec, lambda: SequenceData(splits, batch_size, per_step=False, seed=seed))


def copy(delay: int = 50, n_train: int = 10000, n_eval: int = 1000, batch_size: int = 50, seed: int = 0) -> SimpleTask:
    """Copy memory (Arjovsky et al.'s layout): 10 symbols, ``delay - 1`` blanks, the delimiter, then
    10 blanks during which the symbols are recalled (targets blank until then). Metric:
    cross-entropy per step."""
    check_positive(delay=delay, n_train=n_train, n_eval=n_eval, batch_size=batch_size)
    blank, delim, n_sym = 0, 9, 10

    def draw(count: int, offset: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed + offset)
        symbols = torch.randint(1, 9, (count, n_sym), generator=g)
        x = torch.full((count, delay + 2 * n_sym), blank, dtype=torch.long)
        y = torch.full_like(x, blank)
        x[:, :n_sym] = symbols
        x[:, delay + n_sym - 1] = delim
        y[:, delay + n_sym:] = symbols
        return list(zip(x.unbind(0), y.unbind(0), strict=True))

    def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        return {"train": draw(n_train, 0), "valid": draw(n_eval, 1), "test": draw(n_eval, 2)}

    spec = TaskSpec(name="copy", input_kind="tokens", input_size=10, output_kind="tokens", output_size=10,
                    metric="nll", direction="min",
                    description=f"copy memory, delay {delay} (cross-entropy per step)")
    return SimpleTask(spec, lambda: SequenceData(splits, batch_size, per_step=True, seed=seed))


def teacher(units: int = 16, vocab: int = 8, length: int = 50, n_train: int = 2000, n_eval: int = 400,
            batch_size: int = 32, gain: float = 1.5, sharpness: float = 3.0, seed: int = 0) -> SimpleTask:
    """Targets drawn from a random tanh RNN of ``units`` units (its recurrent weights scaled to
    spectral gain ``gain``, its readout to ``sharpness``) on random token inputs. The teacher is
    drawn from ``seed`` alone; the splits' inputs and samples from ``seed`` and the split."""
    check_positive(units=units, vocab=vocab, length=length, n_train=n_train, n_eval=n_eval, batch_size=batch_size)
    for name, value in (("gain", gain), ("sharpness", sharpness)):
        if not is_number(value) or not 0 < value < math.inf:
            raise ArgumentError(name, allowed="a finite number > 0", received=value,
                                hint="gain scales the teacher's recurrent weights, sharpness its readout")
    g = torch.Generator().manual_seed(seed)
    w_in = torch.randn(units, vocab, generator=g)
    w_hh = torch.randn(units, units, generator=g) / units ** 0.5 * gain
    w_out = torch.randn(vocab, units, generator=g) / units ** 0.5 * sharpness
    entropy: dict[str, float] = {}

    def draw(count: int, offset: int, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gs = torch.Generator().manual_seed(seed * 1_000_003 + offset)
        x = torch.randint(0, vocab, (count, length), generator=gs)
        h = torch.zeros(count, units)
        ys, ent = [], torch.zeros(())
        for t in range(length):  # generating the data, once per task: not a training hot path
            h = torch.tanh(w_in[:, x[:, t]].T + h @ w_hh.T)
            logp = torch.log_softmax(h @ w_out.T, -1)
            ys.append(torch.multinomial(logp.exp(), 1, generator=gs).squeeze(1))
            ent = ent - (logp.exp() * logp).sum()
        entropy[split] = float(ent) / (count * length)
        y = torch.stack(ys, 1)
        return list(zip(x.unbind(0), y.unbind(0), strict=True))

    def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        return {"train": draw(n_train, 0, "train"), "valid": draw(n_eval, 1, "valid"),
                "test": draw(n_eval, 2, "test")}

    spec = TaskSpec(name="teacher", input_kind="tokens", input_size=vocab, output_kind="tokens", output_size=vocab,
                    metric="nll", direction="min",
                    description=f"outputs of a random {units}-unit tanh teacher RNN (cross-entropy per step)")
    draw(n_eval, 1, "valid")  # the floor is known before training (a few ms)
    return SimpleTask(spec, lambda: SequenceData(splits, batch_size, per_step=True, seed=seed),
                      floor=entropy["valid"])


def flipflop(bits: int = 4, length: int = 50, rate: float = 0.5, n_train: int = 2000, n_eval: int = 400,
             batch_size: int = 32, seed: int = 0) -> SimpleTask:
    """The ``bits``-bit flip-flop on token inputs: token 0 is no pulse, ``1 + 2i`` sets bit ``i``
    and ``2 + 2i`` clears it; at each step a pulse comes with probability ``rate``, on a bit drawn
    uniformly. Targets: the bits after each step (all clear before the first). Metric: binary
    cross-entropy per step, summed over the bits (floor 0)."""
    check_positive(bits=bits, length=length, n_train=n_train, n_eval=n_eval, batch_size=batch_size)
    if not is_number(rate) or not 0 < rate <= 1:
        raise ArgumentError("rate", allowed="a number in (0, 1]", received=rate,
                            hint="the probability of a pulse at each step; 0.5 touches each bit about "
                                 "every 2 * bits steps")
    vocab = 1 + 2 * bits

    def draw(count: int, offset: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + offset)
        pulse = torch.rand(count, length, generator=g) < rate
        bit = torch.randint(0, bits, (count, length), generator=g)
        on = torch.rand(count, length, generator=g) < 0.5
        x = torch.where(pulse, 1 + 2 * bit + (~on).long(), torch.zeros((), dtype=torch.long))
        # each bit's state: the last pulse on it so far (cumulative over steps, no per-step loop)
        hits = pulse.unsqueeze(-1) & (bit.unsqueeze(-1) == torch.arange(bits))          # (count, length, bits)
        steps = torch.arange(length).view(1, length, 1).expand_as(hits)
        last = torch.cummax(torch.where(hits, steps, torch.full_like(steps, -1)), dim=1).values
        value = torch.gather(on.unsqueeze(-1).expand_as(hits), 1, last.clamp(min=0))
        y = (value & (last >= 0)).float()
        return list(zip(x.unbind(0), y.unbind(0), strict=True))

    def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        return {"train": draw(n_train, 0), "valid": draw(n_eval, 1), "test": draw(n_eval, 2)}

    spec = TaskSpec(name="flipflop", input_kind="tokens", input_size=vocab, output_kind="multi_hot",
                    output_size=bits, metric="nll", direction="min",
                    description=f"{bits}-bit flip-flop (binary cross-entropy per step, summed over the bits)")
    return SimpleTask(spec, lambda: SequenceData(splits, batch_size, per_step=True, seed=seed), floor=0.0)
