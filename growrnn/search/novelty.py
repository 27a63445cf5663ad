"""Novelty search (Lehman & Stanley 2011), an optional search objective: reward cells that
*behave* unlike the cells seen so far, which keeps the population from collapsing onto one design.

The behaviour of a cell is what it computes, not how it is written: its outputs on one fixed random
input sequence, with weights fixed by the seed. Novelty is the mean distance from a behaviour to
its k nearest neighbours among the current population and an archive of past behaviours.

**Weights.** The i-th weighted call site in weight order (the genome text's reading order) gets
weights drawn from a generator seeded by ``(seed, i)`` alone. So the behaviour depends only on the
genome's text (two genomes equal as text behave identically, whatever their node ids), and two
cells whose first call sites agree share those weights, which keeps small edits at small
distances. (Seeding by node id instead would make text-equal genomes with different ids — say a
child rebuilt by an operator and the same cell parsed from text — look different.)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from growrnn.cells.rnn import GenomeRNN
from growrnn.errors import ArgumentError, check_int
from growrnn.executors import torch_threads
from growrnn.genome.graph import Genome
from growrnn.search.storage import CandidateRow

__all__ = ["behaviour", "NoveltyArchive", "BEHAVIOUR_LIMIT", "novelty_column"]

#: Behaviour values are clipped to [-LIMIT, LIMIT] (NaN -> 0) so that an exploding cell has a large
#: but finite distance to the others.
BEHAVIOUR_LIMIT = 1e3
_INPUT_STREAM = 2**31 - 1  # the input sequence's generator is seeded by (seed, this), apart from weights


def _generator(*entropy: int) -> torch.Generator:
    # SeedSequence mixes the ints, so (seed, i) and (seed + 1, i - 1) give unrelated streams
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(entropy)).generate_state(1)[0]))


def behaviour(genome: Genome | str, input_size: int = 4, hidden_size: int = 8, steps: int = 20,
              seed: int = 0) -> np.ndarray:
    """The cell's outputs ``h_1 .. h_steps`` on a fixed standard-normal input sequence, flattened
    to shape ``(steps * hidden_size,)`` (float64, finite).

    Weights are uniform in (-1, 1) — large enough for gates to act non-linearly — and ``diag``
    scales uniform in (0, 1) (IndRNN's stable range); see the module docstring for how they are
    seeded. The state starts at zero.

    >>> import growrnn as gr
    >>> behaviour(gr.cells.gru(), steps=5).shape
    (40,)
    """
    input_size = check_int("input_size", input_size, 1)
    hidden_size = check_int("hidden_size", hidden_size, 1)
    steps = check_int("steps", steps, 1)
    seed = check_int("seed", seed, 0)
    # generator= keeps the constructor off torch's global RNG; the weights are overwritten below
    rnn = GenomeRNN(genome, input_size, hidden_size, fast_path=False, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for i, (kind, weight, bias) in enumerate(rnn.cell_weights(0)):
            gen = _generator(seed, i)
            drawn = torch.rand(weight.shape, generator=gen, dtype=torch.float64)
            weight.copy_(drawn if kind == "diag" else 2.0 * drawn - 1.0)
            if bias is not None:
                bias.copy_(2.0 * torch.rand(bias.shape, generator=gen, dtype=torch.float64) - 1.0)
        x = torch.randn(steps, 1, input_size, generator=_generator(seed, _INPUT_STREAM), dtype=torch.float64)
        out, _ = rnn(x)
    b = out.reshape(-1).numpy()
    return np.clip(np.nan_to_num(b, nan=0.0, posinf=BEHAVIOUR_LIMIT, neginf=-BEHAVIOUR_LIMIT),
                   -BEHAVIOUR_LIMIT, BEHAVIOUR_LIMIT)


class NoveltyArchive:
    """An archive of past behaviours and the novelty score.

    Args:
        k: neighbours averaged in :meth:`score`.
        add_threshold: :meth:`add` keeps a behaviour only if its novelty against the archive
            exceeds this (the first one is always kept); ``None`` keeps every behaviour offered.
        max_size: when full, an added behaviour replaces a random entry (chosen by the seeded rng).
        seed: seeds that choice.
    """

    def __init__(self, k: int = 10, add_threshold: float | None = None, max_size: int = 500, seed: int = 0) -> None:
        self.k = check_int("k", k, 1)
        self.max_size = check_int("max_size", max_size, 1)
        if add_threshold is not None and (isinstance(add_threshold, bool) or not isinstance(add_threshold, (int, float))
                                          or not math.isfinite(add_threshold)):
            raise ArgumentError("add_threshold", allowed="a finite float or None", received=add_threshold)
        self.add_threshold = None if add_threshold is None else float(add_threshold)
        self.rng = random.Random(check_int("seed", seed, 0))
        self.entries: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.entries)

    def _vector(self, b: object, name: str = "b") -> np.ndarray:
        try:
            v: np.ndarray | None = np.asarray(b, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            v = None
        if v is None or v.size == 0 or not np.isfinite(v).all():
            raise ArgumentError(name, allowed="a non-empty finite vector (the output of behaviour())", received=b)
        if self.entries and v.shape != self.entries[0].shape:
            raise ArgumentError(name, allowed=f"a vector of {self.entries[0].size} values like the archive's",
                                received=f"{v.size} values", hint="use the same behaviour() settings throughout")
        return v

    def score(self, b: np.ndarray, population: Sequence[np.ndarray] = ()) -> float:
        """Mean Euclidean distance from ``b`` to its ``k`` nearest neighbours among the archive and
        ``population`` (fewer if there are fewer; 0.0 if there are none). A population entry that
        *is* ``b`` (the same object) is skipped, so the whole population can be passed; an equal
        copy counts, at distance 0."""
        v = self._vector(b)
        others = [self._vector(p, "population") for p in population if p is not b] + self.entries
        if not others:
            return 0.0
        dist = np.linalg.norm(np.stack(others) - v, axis=1)
        return float(np.sort(dist)[: self.k].mean())

    def add(self, b: np.ndarray) -> bool:
        """Offer ``b`` to the archive; returns whether it was kept (see ``add_threshold``)."""
        v = self._vector(b).copy()
        if self.add_threshold is not None and self.entries and self.score(v) <= self.add_threshold:
            return False
        if len(self.entries) < self.max_size:
            self.entries.append(v)
        else:
            self.entries[self.rng.randrange(self.max_size)] = v
        return True

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able dict: settings, entries as lists of floats, and the rng state."""
        version, internal, gauss = self.rng.getstate()
        return {"k": self.k, "add_threshold": self.add_threshold, "max_size": self.max_size,
                "entries": [e.tolist() for e in self.entries], "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (scores and later additions come back identical)."""
        self.k, self.max_size = check_int("k", state["k"], 1), check_int("max_size", state["max_size"], 1)
        self.add_threshold = None if state["add_threshold"] is None else float(state["add_threshold"])
        self.entries = [np.asarray(e, dtype=np.float64) for e in state["entries"]]
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


def novelty_column(rows: Sequence[CandidateRow], gen: int, F: np.ndarray, config: Any, seed: int,
                   archive_state: dict[str, Any], cache: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    """The novelty objective column of a generation (``config``: the search's
    :class:`~growrnn.search.config.NoveltyConfig`): minus each row's novelty against the other
    rows and the archive (failed rows: ``+inf``), and the archive's state after generation
    ``gen``'s rows joined it. ``cache`` maps genome text to behaviour (a behaviour depends on the
    text only)."""
    archive = NoveltyArchive(config.k, config.add_threshold, config.max_size, seed)
    archive.load_state_dict(archive_state)
    with torch_threads(1):  # as in the workers: results do not depend on the core count
        for r in rows:
            if r.genome_text not in cache:
                cache[r.genome_text] = behaviour(Genome.from_json(r.genome_json), config.input_size,
                                                 config.hidden_size, config.steps, seed)
    # copies, so that two rows of one genome are two neighbours at distance 0 (score skips only itself)
    B = [cache[r.genome_text].copy() for r in rows]
    column = np.array([-archive.score(b, B) for b in B])
    column[~np.isfinite(F).all(axis=1)] = math.inf
    for r, b in zip(rows, B, strict=True):
        if r.generation == gen:
            archive.add(b)
    return column, archive.state_dict()
