"""The loop's work after a generation's evaluations (see :mod:`growrnn.search.loop`): the
objective matrix, the novelty column, the predictor refit and the pruning of saved weights.
Plain functions of the archive, the config and the loop's state, so that a resumed run computes
exactly what the uninterrupted one did."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from growrnn.genome.graph import Genome
from growrnn.search import selection
from growrnn.search.config import NoveltyConfig, PredictorConfig
from growrnn.search.storage import Archive, CandidateRow

__all__ = ["fit_predictor", "novelty_column", "objective_matrix", "one_thread", "prune_weights"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch work in the main process (novelty, predictor fits) on one thread, like the workers,
    so that its floating-point results do not depend on the machine's core count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def objective_matrix(rows: Sequence[CandidateRow], names: Sequence[str], direction: str) -> np.ndarray:
    """The minimised objectives of ``rows`` ``(len(rows), len(names))``; rows that failed or
    diverged are ``+inf`` everywhere (worst in every objective)."""
    values: list[dict[str, Any]] = []
    for r in rows:
        if r.status == "done" and r.objectives is not None:
            values.append({**r.objectives, "diverged": bool((r.metrics or {}).get("diverged"))})
        else:
            values.append(dict.fromkeys(names, math.nan))
    return selection.objective_matrix(values, list(names), {"val": direction})


def novelty_column(rows: Sequence[CandidateRow], gen: int, F: np.ndarray, config: NoveltyConfig, seed: int,
                   archive_state: dict[str, Any], cache: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    """Minus each row's novelty against the other rows and the archive (failed rows: ``+inf``),
    and the archive's state after generation ``gen``'s rows joined it. ``cache`` maps genome
    text to behaviour (a behaviour depends on the text only)."""
    from growrnn.search.novelty import NoveltyArchive, behaviour

    archive = NoveltyArchive(config.k, config.add_threshold, config.max_size, seed)
    archive.load_state_dict(archive_state)
    with one_thread():
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


def fit_predictor(archive: Archive, config: PredictorConfig, seed: int, population: Sequence[int], F: np.ndarray,
                  n_objectives: int, direction: str) -> tuple[dict[str, Any] | None, float | None]:
    """Refit the curve predictor on every candidate that trained to its end (not stopped early,
    not a reused result, not diverged) and return its state with the next generation's threshold:
    the worst ``val`` on the population's front (over the first ``n_objectives`` columns of ``F``;
    ``inf`` when none is finite, which stops nothing). ``(None, None)`` below two curves."""
    from growrnn.search.predictor import CurvePredictor

    curves, finals = [], []
    for r in archive.rows("done"):
        m = r.metrics or {}
        final = float(m.get("val", math.nan))
        if m.get("reused_from") is None and not m.get("stopped_early") and not m.get("diverged") \
                and r.curve is not None and len(r.curve) >= config.k and math.isfinite(final):
            curves.append([float(point["val"]) for point in r.curve])
            finals.append(final)
    if len(curves) < 2:
        return None, None
    with one_thread():
        predictor = CurvePredictor(config.k, hidden_size=config.hidden_size, epochs=config.epochs, seed=seed)
        predictor.fit(curves, finals)
    front = selection.nondominated_ranks(F[:, :n_objectives]) == 0
    objectives = [archive.get(i).objectives for i, on in zip(population, front, strict=True) if on]
    finite = [float(o["val"]) for o in objectives if o is not None and math.isfinite(float(o["val"]))]
    if not finite:
        return predictor.state_dict(), math.inf
    return predictor.state_dict(), (min(finite) if direction == "max" else max(finite))


def prune_weights(folder: Path | None, archive: Archive, gen: int, population: Sequence[int]) -> None:
    """After generation ``gen`` is saved, delete the weights of candidates outside its population:
    in (mu + lambda) a candidate that left the population never returns, so only the
    population's weights can be inherited (the disk holds about mu files). The weights of the
    next generation's candidates that a killed run had finished stay. Called while no evaluation
    is in flight, so leftover temporary files are a killed worker's."""
    if folder is None or not folder.is_dir():
        return
    keep = {f"{i}.pt" for i in population} | {f"{r.id}.pt" for r in archive.rows(generation=gen + 1)}
    for path in [*folder.glob("*.pt"), *folder.glob("*.tmp")]:
        if path.name not in keep:
            path.unlink(missing_ok=True)
