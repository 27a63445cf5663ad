"""Multi-objective selection for the search: NSGA-II ranks, crowding, survival, tournaments and
hypervolume, with pymoo doing the hard parts (non-dominated sorting, crowding, hypervolume).

Every objective is **minimised**. ``F`` is always an ``(n, m)`` float array: ``n`` candidates,
``m`` objectives. Build it with :func:`objective_matrix`, which negates maximised objectives and
makes failed rows worst (``+inf``) in every objective. The selection functions reject NaN.

>>> import numpy as np
>>> F = np.array([[0.0, 3.0], [1.0, 1.0], [3.0, 0.0], [2.0, 2.0]])
>>> nondominated_ranks(F).tolist()
[0, 0, 0, 1]
>>> survive(F, 2).tolist()  # the two boundary points of the first front
[0, 2]

Not implemented: MOE/RNAS's "paper crowding" variants; this is textbook NSGA-II as in pymoo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.misc import find_duplicates
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from growrnn.errors import ArgumentError, check_choice, check_int

__all__ = ["OBJECTIVES", "Objective", "crowding_distances", "distinct", "hypervolume", "nondominated_ranks",
           "niche_ranks", "objective_matrix", "spearman", "survive", "survive_in_niches", "tournament"]


@dataclass(frozen=True)
class Objective:
    """One objective the search can optimise.

    ``direction`` is ``"min"``, ``"max"`` or ``"task"`` (taken from the task's metric direction,
    which the caller passes to :func:`objective_matrix`). ``aliases`` are other row keys that hold
    the same figure (e.g. :class:`growrnn.evaluation.Result` calls MACs ``macs_per_step``)."""

    name: str
    direction: str
    description: str
    aliases: tuple[str, ...] = ()


#: The objectives a search may name, by name.
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("val", "task", "the task's validation metric after the training budget"),
    Objective("params", "min", "trainable parameters of the whole model"),
    Objective("macs", "min", "multiply-accumulates per time step", ("macs_per_step",)),
    Objective("weighted_nodes", "min", "weighted call sites of the cell (affine/linear/diag)",
              ("weighted_calls",)),
    Objective("latency", "min", "measured seconds per forward step"),
)}


def _check_F(F: np.ndarray, name: str = "F") -> np.ndarray:
    F = np.asarray(F, dtype=float)
    if F.ndim != 2:
        raise ArgumentError(name, allowed="a 2-D array (candidates, objectives)", received=f"shape {F.shape}",
                            hint="a single objective is a column: F.reshape(-1, 1)")
    if np.isnan(F).any():
        raise ArgumentError(name, allowed="numbers or +inf (NaN is not ordered)", received="NaN values",
                            hint="build F with objective_matrix, which turns NaN into +inf")
    return F


def nondominated_ranks(F: np.ndarray) -> np.ndarray:
    """Pareto front index of each row of ``F`` ``(n, m)`` (0 = non-dominated), shape ``(n,)`` int.

    Identical rows do not dominate each other, so they share a front."""
    F = _check_F(F)
    ranks = np.zeros(len(F), dtype=int)
    if len(F):
        fronts = NonDominatedSorting().do(F)
        for k, front in enumerate(fronts):
            ranks[front] = k
    return ranks


def _front_crowding(F: np.ndarray) -> np.ndarray:
    """Crowding distance of the points of one front ``(k, m)``."""
    out = np.zeros(len(F))
    finite = np.flatnonzero(np.isfinite(F).all(axis=1))
    # failed rows (+inf) carry no position on the front: they get 0 and do not bound the others
    G = F[finite]
    # only the first copy of duplicated points is spread out; the copies get 0 so they go first
    unique = finite[~find_duplicates(G, epsilon=1e-32)] if len(G) else finite
    if len(unique) <= 2:
        out[unique] = math.inf
    else:
        out[unique] = calc_crowding_distance(F[unique])
    return out


def crowding_distances(F: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of ``F`` ``(n, m)``, computed within its front.

    Per objective, a point's gap between its two neighbours is divided by the objective's range
    within the front; the distance is the mean of those gaps over objectives (pymoo's convention:
    Deb's sum divided by ``m``, which orders points identically). Boundary points of any objective,
    and every point of a front with at most two distinct points, get ``inf``. Of duplicated points
    only the lowest-index copy gets a distance; the others get 0. Rows with ``+inf`` objectives
    get 0. An objective constant within a front adds 0. Returns shape ``(n,)`` float."""
    F = _check_F(F)
    ranks = np.asarray(ranks)
    if ranks.shape != (len(F),):
        raise ArgumentError("ranks", allowed=f"shape ({len(F)},), one rank per row of F", received=ranks.shape,
                            hint="use nondominated_ranks(F)")
    out = np.zeros(len(F))
    for r in np.unique(ranks):
        front = np.flatnonzero(ranks == r)
        out[front] = _front_crowding(F[front])
    return out


def _order(ranks: np.ndarray, crowding: np.ndarray) -> np.ndarray:
    """Indices best first: lower rank, then larger crowding, then lower index."""
    return np.lexsort((np.arange(len(ranks)), -crowding, ranks))


def distinct(keys: Sequence[str], F: np.ndarray) -> np.ndarray:
    """Indices of one row per distinct key (a cell's canonical key), ascending, shape ``(k,)``:
    of the rows that share a key, the first whose objectives in ``F`` ``(n, m)`` are all finite,
    else (every copy failed) the first.

    The search selects from its pool's distinct cells only: copies of one cell have the same
    results, share a place on a front, and would fill the population with one cell.

    >>> F = np.array([[1.0, 2.0], [1.0, 2.0], [np.inf, np.inf], [0.5, 3.0]])
    >>> distinct(["a", "a", "b", "b"], F).tolist()  # "b": its copy with results
    [0, 3]
    """
    F = _check_F(F)
    if isinstance(keys, str) or len(keys) != len(F):
        raise ArgumentError("keys", allowed=f"{len(F)} keys, one per row of F", received=keys,
                            hint="the candidates' canonical keys, in the rows' order")
    finite = np.isfinite(F).all(axis=1)
    chosen: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key not in chosen or (finite[i] and not finite[chosen[key]]):
            chosen[key] = i
    return np.array(sorted(chosen.values()), dtype=int)


def survive(F: np.ndarray, mu: int) -> np.ndarray:
    """(mu + lambda) NSGA-II survival: indices of the ``mu`` rows of ``F`` ``(n, m)`` that survive.

    Fronts are taken whole while they fit; the front that does not fit is cut by crowding distance
    (descending, computed over that whole front), ties going to the lower index. The result,
    shape ``(min(mu, n),)``, is sorted best first (rank, then crowding, then index), so it is the
    same for the same ``F``."""
    F = _check_F(F)
    check_int("mu", mu, 0, hint="the population size to keep")
    ranks = nondominated_ranks(F)
    return _order(ranks, crowding_distances(F, ranks))[: int(mu)]


def _check_niches(niches: object, n: int) -> np.ndarray:
    labels = np.asarray(niches)
    if labels.shape != (n,) or (n and not np.issubdtype(labels.dtype, np.integer)):
        raise ArgumentError("niches", allowed=f"{n} ints, one niche (species id) per row of F",
                            received=f"shape {labels.shape}, dtype {labels.dtype}",
                            hint="use growrnn.search.species.speciate")
    return labels.astype(int)


def survive_in_niches(F: np.ndarray, niches: Sequence[int] | np.ndarray, mu: int, elites: int = 1) -> np.ndarray:
    """(mu + lambda) survival that keeps every niche alive: indices of the ``mu`` rows of ``F``
    ``(n, m)`` that survive, best first in :func:`survive`'s order.

    First each niche (``niches``: one label per row) keeps its ``elites`` best rows with finite
    objectives, best meaning first in the NSGA-II order of all of ``F`` (rank, crowding, index):
    every niche's best, then every niche's second best, ..., niches taken in the order of their
    best row, while room is left. The rest of the ``mu`` places go by that same order. With one
    niche, or ``elites`` of 0, this is :func:`survive`.

    >>> F = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    >>> survive_in_niches(F, [0, 0, 0, 1], 2).tolist()   # niche 1's only row beats rows 1 and 2
    [0, 3]
    """
    F = _check_F(F)
    labels = _check_niches(niches, len(F))
    check_int("mu", mu, 0, hint="the population size to keep")
    check_int("elites", elites, 0, hint="the rows each niche keeps before the rest are ranked together")
    ranks = nondominated_ranks(F)
    order = _order(ranks, crowding_distances(F, ranks))
    finite = np.isfinite(F).all(axis=1)
    ranked: dict[int, list[int]] = {}  # niche -> its finite rows best first; niches by their best row
    for i in order:
        if finite[i]:
            ranked.setdefault(int(labels[i]), []).append(int(i))
    protected = [rows[level] for level in range(int(elites)) for rows in ranked.values() if level < len(rows)]
    chosen = set(protected[: int(mu)])
    for i in order:
        if len(chosen) >= mu:
            break
        chosen.add(int(i))
    return np.array([i for i in order if i in chosen], dtype=int)


def niche_ranks(F: np.ndarray, niches: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NSGA-II ranks and crowding distances of the rows of ``F`` ``(n, m)``, each computed among
    the rows of its own niche only: for :func:`tournament`, so that a cell competes on its
    standing in its niche (the best of a small niche wins as often as the best of a large one;
    the multi-objective counterpart of NEAT's fitness sharing). Two arrays of shape ``(n,)``.

    >>> F = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    >>> niche_ranks(F, [0, 0, 1])[0].tolist()
    [0, 1, 0]
    """
    F = _check_F(F)
    labels = _check_niches(niches, len(F))
    ranks, crowding = np.zeros(len(F), dtype=int), np.zeros(len(F))
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        ranks[rows] = nondominated_ranks(F[rows])
        crowding[rows] = crowding_distances(F[rows], ranks[rows])
    return ranks, crowding


def tournament(ranks: np.ndarray, crowding: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` binary-tournament winners (indices into ``ranks``), shape ``(n,)`` int.

    Each tournament draws two distinct candidates uniformly from ``rng`` (one candidate plays
    itself); the lower rank wins, then the larger crowding distance, then the first drawn."""
    ranks, crowding = np.asarray(ranks), np.asarray(crowding, dtype=float)
    if ranks.ndim != 1 or crowding.shape != ranks.shape or len(ranks) == 0:
        raise ArgumentError("crowding", allowed="1-D arrays of the same non-zero length as ranks",
                            received=f"ranks {ranks.shape}, crowding {crowding.shape}",
                            hint="use nondominated_ranks(F) and crowding_distances(F, ranks)")
    check_int("n", n, 0)
    if not isinstance(rng, np.random.Generator):
        raise ArgumentError("rng", allowed="a numpy.random.Generator", received=type(rng).__name__,
                            hint="np.random.default_rng(seed)")
    size = len(ranks)
    a = rng.integers(0, size, size=int(n))
    # a second draw distinct from the first: offset by 1..size-1 around the ring
    b = (a + rng.integers(1, size, size=int(n))) % size if size > 1 else a.copy()
    b_wins = (ranks[b] < ranks[a]) | ((ranks[b] == ranks[a]) & (crowding[b] > crowding[a]))
    return np.where(b_wins, b, a).astype(int)


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by the rows of ``F`` ``(n, m)`` and bounded by the point ``ref`` ``(m,)``.

    Rows that do not strictly dominate ``ref`` in every objective (including ``+inf`` rows) add
    nothing; an empty set has volume 0."""
    F = _check_F(F)
    ref = np.asarray(ref, dtype=float)
    if ref.shape != (F.shape[1],) or not np.isfinite(ref).all():
        raise ArgumentError("ref", allowed=f"{F.shape[1]} finite numbers, one per objective", received=ref.tolist(),
                            hint="a point worse than every candidate worth counting, in minimised units")
    inside = F[(F < ref).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=ref)(inside))


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of ``a`` and ``b`` (shape ``(n,)`` each) over the pairs where both
    are finite: how well one ordering (a predictor's, a search's score) agrees with another (the
    true finals, the confirmed means). NaN, quietly, with fewer than two pairs or a constant side.

    >>> spearman([1.0, 2.0, 3.0, float("nan")], [10.0, 30.0, 20.0, 5.0])
    0.5
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ArgumentError("b", allowed=f"a 1-D sequence as long as a ({x.shape})", received=f"shape {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    # spearmanr warns (an error under pytest) and returns NaN on constant input; say NaN quietly
    if len(y) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def objective_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str],
                     directions: Mapping[str, str]) -> np.ndarray:
    """Build the minimised objective matrix ``F``, shape ``(len(rows), len(names))``.

    Args:
        rows: one mapping per candidate holding each objective under its name (or an alias in
            :data:`OBJECTIVES`); a truthy ``"diverged"`` key marks a failed run, and a truthy
            ``"failed"`` key a candidate without results (it needs no objectives). An archive's
            :attr:`CandidateRow.values <growrnn.search.storage.CandidateRow.values>` is such a mapping.
        names: the objectives, in column order, from :data:`OBJECTIVES`.
        directions: ``"min"`` or ``"max"`` per objective name; required for ``"val"`` (the task's
            direction), optional for the others (their default is ``"min"``).

    Maximised objectives are negated. A row that diverged, or has a NaN or infinite value in any
    objective, is ``+inf`` in every column, so every finite row dominates it.

    >>> objective_matrix([{"val": 0.9, "params": 10}], ["val", "params"], {"val": "max"}).tolist()
    [[-0.9, 10.0]]
    """
    allowed = ", ".join(OBJECTIVES)
    if isinstance(names, str) or not names:
        raise ArgumentError("names", allowed=f"a non-empty list of: {allowed}", received=names)
    signs = []
    for name in names:
        if name not in OBJECTIVES:
            raise ArgumentError("names", allowed=allowed, received=name, hint="objectives are named in OBJECTIVES")
        direction = directions.get(name, OBJECTIVES[name].direction)
        check_choice(f"directions['{name}']", direction, ("min", "max"),
                     hint="pass the task's direction for 'val', e.g. {'val': task.spec.direction}")
        signs.append(1.0 if direction == "min" else -1.0)
    F = np.empty((len(rows), len(names)))
    for i, row in enumerate(rows):
        if row.get("failed"):
            F[i] = math.inf
            continue
        for j, name in enumerate(names):
            key = next((k for k in (name, *OBJECTIVES[name].aliases) if k in row), None)
            if key is None:
                raise ArgumentError(f"rows[{i}]", allowed=f"a mapping holding '{name}'", received=sorted(row),
                                    hint="record every objective for every candidate (a failed one may be NaN)")
            value = row[key]
            F[i, j] = signs[j] * float(value) if value is not None else math.nan
        if row.get("diverged") or not np.isfinite(F[i]).all():
            F[i] = math.inf
    return F
