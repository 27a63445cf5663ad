"""Miconi (2016)'s character tasks, faithful to the generator of ``ThomasMiconi/DiffRNN``.

Alphabet ``( ) a b``. One stream, read in 40-character windows with the hidden state carried
(batch 1 in the paper). The metric is the loss in nats summed over 40 characters, the paper's
unit; the floors (the entropy of the generators) are 9.61 (easy) and 8.96 (hard).

- easy: groups ``(ab…ab)``: after each ``ab`` another ``ab`` follows with probability ``p``;
- hard: groups of 6 letters in parentheses, each the previous group reversed with one uniformly
  chosen position flipped (the first is ``abbaab``, as in the authors' generator);
- switch: easy, then hard from 1/3 of training, then easy again from 2/3 (``EASYHARDEASY``).
"""

from __future__ import annotations

import math
import random

import torch

from growrnn.errors import ArgumentError, is_number
from growrnn.task import TaskSpec
from tasks.base import SimpleTask, StreamData, check_positive

__all__ = ["ALPHABET", "easy_text", "hard_text", "easy", "hard", "switch", "FLOORS"]

ALPHABET = "()ab"
_IDX = {c: i for i, c in enumerate(ALPHABET)}
#: Entropy of the generators in nats per 40 characters (p = 0.6 for easy).
FLOORS = {"easy": 40 * (-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)) * 2.5) / 7, "hard": 40 * math.log(6) / 8}


def easy_text(rng: random.Random, n_chars: int, p: float = 0.6) -> str:
    out: list[str] = []
    size = 0
    while size < n_chars:
        group = "(ab"
        while rng.random() < p:
            group += "ab"
        group += ")"
        out.append(group)
        size += len(group)
    return "".join(out)[:n_chars]


def hard_text(rng: random.Random, n_chars: int) -> str:
    group, out, size = list("abbaab"), [], 0
    while size < n_chars:
        group = group[::-1]
        k = rng.randrange(len(group))
        group[k] = "b" if group[k] == "a" else "a"
        out.append("(" + "".join(group) + ")")
        size += 8
    return "".join(out)[:n_chars]


def switch_text(rng: random.Random, n_chars: int, p: float = 0.6) -> str:
    """Miconi's EASYHARDEASY stream: easy, hard from a third of it, easy again from two thirds."""
    third = n_chars // 3
    return easy_text(rng, third, p) + hard_text(rng, third) + easy_text(rng, n_chars - 2 * third, p)


def _encode(text: str) -> torch.Tensor:
    return torch.tensor([_IDX[c] for c in text], dtype=torch.long)


def _task(kind: str, train_windows: int, eval_windows: int, batch_size: int, seed: int, p: float) -> SimpleTask:
    check_positive(train_windows=train_windows, eval_windows=eval_windows, batch_size=batch_size)
    if not is_number(p) or not 0.0 < p < 1.0:
        raise ArgumentError("p", allowed="a probability in (0, 1)", received=p,
                            hint="the chance that an easy group goes on with another 'ab'; 0.6 is Miconi's")
    window = 40

    def stream(rng: random.Random, windows: int) -> torch.Tensor:
        n = windows * window * batch_size + 1
        if kind == "easy":
            return _encode(easy_text(rng, n, p))
        if kind == "hard":
            return _encode(hard_text(rng, n))
        # EASYHARDEASY in each of the batch_size streams the batches read side by side (batchify
        # cuts the stream into that many contiguous rows): every row switches at 1/3 and 2/3 of
        # training, as one stream of batch 1 does
        return _encode("".join(switch_text(rng, n // batch_size, p) for _ in range(batch_size)))

    def splits() -> dict[str, torch.Tensor]:
        return {"train": stream(random.Random(seed), train_windows),
                "valid": stream(random.Random(seed + 1_000_003), eval_windows),
                "test": stream(random.Random(seed + 2_000_006), eval_windows)}

    spec = TaskSpec(name=f"miconi_{kind}", input_kind="tokens", input_size=4, output_kind="tokens",
                    output_size=4, metric="nats_per_40", direction="min", stateful=True,
                    description=f"Miconi (2016) {kind} task: next character, 40-char windows, state carried")
    floor = {"easy": FLOORS["easy"], "hard": FLOORS["hard"]}.get(kind)
    return SimpleTask(spec, lambda: StreamData(splits, batch_size, window), floor=floor)


def easy(train_windows: int = 100_000, eval_windows: int = 500, batch_size: int = 1, seed: int = 0,
         p: float = 0.6) -> SimpleTask:
    """Miconi (2016) easy task: (ab…ab) groups, 40-char windows. Metric: nats per 40 chars."""
    return _task("easy", train_windows, eval_windows, batch_size, seed, p)


def hard(train_windows: int = 100_000, eval_windows: int = 500, batch_size: int = 1, seed: int = 0,
         p: float = 0.6) -> SimpleTask:
    """Miconi (2016) hard task: reversed 6-letter groups with one flip. Metric: nats per 40 chars.

    (``p`` is unused; kept so that the three tasks share options.)"""
    return _task("hard", train_windows, eval_windows, batch_size, seed, p)


def switch(train_windows: int = 100_000, eval_windows: int = 500, batch_size: int = 1, seed: int = 0,
           p: float = 0.6) -> SimpleTask:
    """Miconi (2016) switch task: easy -> hard -> easy at 1/3 and 2/3 of training. Metric: nats per 40."""
    return _task("switch", train_windows, eval_windows, batch_size, seed, p)
