"""What a search shows in TensorBoard after each generation: hypervolume, best validation metric,
front size and evaluation count as scalars, a Pareto plot (validation metric vs parameters, with
the LSTM/GRU/Elman baselines marked), the first front's equations as text and pictures of a few
front cells' DAGs.

**The hypervolume reference point.** Hypervolumes of different generations can only be compared
against one reference point, so :func:`log_generation` computes it once and hands it back:

1. Generation 0: the loop calls ``log_generation(..., ref=None)``. The reference is built from
   that population (:func:`reference_point`: per objective, in minimised units, the worst finite
   value ``w`` pushed out to ``w + 0.1 * |w| + 1e-9`` -- that is ``1.1 * w`` for a positive ``w``,
   and still worse than ``w`` for a negative one, e.g. a negated accuracy) and returned as
   ``stats["ref"]`` (a list of floats, JSON-ready).
2. The loop stores ``stats["ref"]`` in its generation state (``Archive.save_generation``) and
   passes it back as ``ref=`` for every later generation, also after a resume. Candidates worse
   than the reference in some objective then add nothing to the hypervolume.
3. While no candidate has finite objectives, ``stats["ref"]`` is ``None``; pass it back as is and
   the next generation builds it.

Every objective is minimised after the signs of :func:`growrnn.search.selection.objective_matrix`
(``direction`` is the task metric's, for ``val``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from growrnn.errors import ArgumentError, check_choice, check_int
from growrnn.genome.graph import Genome
from growrnn.genome.library import LIBRARY, library_cell, library_equivalent
from growrnn.search.selection import OBJECTIVES, hypervolume, nondominated_ranks, objective_matrix
from growrnn.search.storage import Archive, CandidateRow

__all__ = ["BASELINE_LABELS", "confirmation_figure", "confirmation_markdown", "find_baselines", "first_front",
           "log_confirmation", "log_generation", "pareto_figure", "reference_point", "same_as", "values_of"]

log = logging.getLogger(__name__)

#: Legend labels of library cells used as baselines (other names are shown as they are).
BASELINE_LABELS = {"lstm": "LSTM", "gru": "GRU", "elman": "Elman", "mgu": "MGU", "indrnn": "IndRNN"}
_MARKERS = ("s", "^", "D", "P", "X", "v", "*", "h")
#: How many front cells get a diagram each generation (more would flood the images tab).
MAX_DIAGRAMS = 4

Point = CandidateRow | Mapping[str, Any]


def values_of(row: Point) -> dict[str, Any]:
    """A candidate's figures in one dict: :attr:`CandidateRow.values` for an archive row (metrics
    overlaid with objectives), a mapping as a dict."""
    return row.values if isinstance(row, CandidateRow) else dict(row)


def _check_direction(direction: str) -> None:
    check_choice("direction", direction, ("min", "max"), hint="the task metric's direction, e.g. task.spec.direction")


def _matrix(rows: Sequence[Point], objectives: Sequence[str], direction: str) -> np.ndarray:
    _check_direction(direction)
    return objective_matrix([values_of(r) for r in rows], list(objectives), {"val": direction})


def first_front(rows: Sequence[Point], objectives: Sequence[str], direction: str = "min") -> list[int]:
    """Indices into ``rows`` of the first Pareto front over ``objectives``, best ``val`` first.

    Rows that failed (diverged, or a non-finite objective) are never on it, so the list is empty
    when no row has finite objectives."""
    if not rows:
        return []
    F = _matrix(rows, objectives, direction)
    finite = np.isfinite(F).all(axis=1)
    ranks = nondominated_ranks(F)
    front = [i for i in range(len(rows)) if ranks[i] == 0 and finite[i]]
    col = list(objectives).index("val") if "val" in objectives else 0
    return sorted(front, key=lambda i: (F[i, col], i))


def reference_point(F: np.ndarray) -> list[float] | None:
    """Hypervolume reference for the minimised matrix ``F`` ``(n, m)``: per objective, the worst
    finite value ``w`` moved out to ``w + 0.1 * |w| + 1e-9``. ``None`` when no row is finite."""
    F = np.asarray(F, dtype=float)
    finite = F[np.isfinite(F).all(axis=1)] if F.ndim == 2 else F[:0]
    if len(finite) == 0:
        return None
    worst = finite.max(axis=0)
    return [float(w + 0.1 * abs(w) + 1e-9) for w in worst]


def find_baselines(archive: Archive, names: Sequence[str]) -> dict[str, CandidateRow]:
    """Legend label -> the first finished candidate of the archive (any generation) that is the
    library cell ``name`` up to renaming (matched by canonical key). Cells not in the archive are
    left out."""
    found: dict[str, CandidateRow] = {}
    for name in names:
        if name not in LIBRARY:
            raise ArgumentError("baselines", allowed=", ".join(sorted(LIBRARY)), received=name,
                                hint="baselines are library cell names")
        row = archive.find_done(library_cell(name).key)
        if row is None:
            log.debug("baseline %s is not among the archive's finished candidates", name)
        else:
            found[BASELINE_LABELS.get(name, name)] = row
    return found


def _value(values: Mapping[str, Any], name: str) -> float:
    aliases = OBJECTIVES[name].aliases if name in OBJECTIVES else ()
    for key in (name, *aliases):
        if values.get(key) is not None:
            return float(values[key])
    return math.nan


def pareto_figure(rows: Sequence[Point], objectives: Sequence[str], direction: str = "min",
                  baselines: Mapping[str, Point] | None = None, *, x: str = "params", y: str = "val",
                  title: str | None = None) -> Any:
    """A ``matplotlib.figure.Figure``: ``y`` (default the validation metric) against ``x``
    (default parameters) for every row (faded), the first front over ``objectives`` highlighted
    and joined in order of ``x``, and each baseline as its own labelled marker.

    Args:
        rows: candidates (:class:`CandidateRow` or mappings of metric name -> value).
        objectives: the objectives defining the front (names of :data:`OBJECTIVES`).
        direction: ``"min"`` or ``"max"``, the direction of ``val``.
        baselines: legend label -> a candidate (see :func:`find_baselines`); ones whose ``x`` or
            ``y`` is not finite are left out.
        x, y: the figures on the axes (objective names or any metric key).
        title: the axes' title.
    """
    from matplotlib.figure import Figure  # no pyplot: no global figure manager, no GUI backend
    front = first_front(rows, objectives, direction)
    pts = np.array([[_value(values_of(r), x), _value(values_of(r), y)] for r in rows]).reshape(-1, 2)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    shown = np.isfinite(pts).all(axis=1)
    ax.scatter(pts[shown, 0], pts[shown, 1], s=16, color="#999999", alpha=0.35, label="population")
    if front:
        fp = pts[front]
        fp = fp[np.isfinite(fp).all(axis=1)]
        fp = fp[np.argsort(fp[:, 0], kind="stable")]
        ax.plot(fp[:, 0], fp[:, 1], "-o", color="C0", ms=6, lw=1.2, label="first front")
    xs = list(pts[shown, 0])
    for k, (label, row) in enumerate((baselines or {}).items()):
        bx, by = _value(values_of(row), x), _value(values_of(row), y)
        if math.isfinite(bx) and math.isfinite(by):
            ax.scatter([bx], [by], marker=_MARKERS[k % len(_MARKERS)], s=70, color=f"C{k + 1}",
                       edgecolors="black", linewidths=0.6, zorder=3, label=label)
            xs.append(bx)
    if xs and min(xs) > 0 and max(xs) / min(xs) > 50:  # parameter counts span decades
        ax.set_xscale("log")
    better = "lower" if direction == "min" else "higher"
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} ({better} is better)" if y == "val" else y)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value)


def same_as(row: CandidateRow) -> str:
    """The library cell ``row``'s genome is up to the values of its weights, when it is not that
    cell as written (:func:`~growrnn.genome.library_equivalent`: a search that evolves an LSTM with
    a negated matrix has found the LSTM again), else ``""``."""
    return library_equivalent(Genome.from_json(row.genome_json), rewritten=True) or ""


def _front_markdown(gen: int, front: Sequence[CandidateRow], objectives: Sequence[str], direction: str) -> str:
    columns = [*objectives, *(c for c in ("test", "params", "macs") if c not in objectives)]
    names = ", ".join(f"{o} ({direction if o == 'val' else 'min'})" for o in objectives)
    parts = [f"**Generation {gen}: {len(front)} cell(s) on the first front** (objectives: {names})"]
    for row in front:
        values = values_of(row)
        cells = [_fmt(v) if not math.isnan(v := _value(values, c)) else "-" for c in columns]
        same = f"; the library's {name} up to its weights" if (name := same_as(row)) else ""
        parts.append(f"### cell {row.id} (key `{row.key}`, {row.operator}, parents {list(row.parents)}{same})\n\n"
                     f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n| {' | '.join(cells)} |\n\n"
                     + "    " + row.genome_text.strip().replace("\n", "\n    "))
    return "\n\n".join(parts)


def _spread(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)``, both ends included."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, k))}) if n else []


def log_generation(writer_dir: Path, archive: Archive, gen: int, population: Sequence[int], objectives: Sequence[str],
                   direction: str = "min", baselines: Sequence[str] = ("lstm", "gru", "elman"),
                   ref: Sequence[float] | None = None, scalars: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Write generation ``gen``'s summary to TensorBoard in ``writer_dir`` and return it.

    Over the population's finished (``done``) candidates: the first front over ``objectives``,
    its hypervolume against ``ref`` (see the module docstring: pass ``None`` at generation 0 and
    the returned ``"ref"`` afterwards), the best ``val``, and counts. Writes, at step ``gen``:
    scalars ``search/hypervolume``, ``search/best_val`` (when some ``val`` is finite),
    ``search/front_size``, ``search/evaluated``; figure ``search/pareto`` (:func:`pareto_figure`
    with ``baselines``, library cell names, found among all the archive's finished candidates);
    text ``search/front`` (each front cell's equations and metrics); figures
    ``search/front_cell_<k>`` (the DAGs of up to four front cells, from best ``val`` to smallest).
    ``scalars`` (name -> number, e.g. the number of species) are written as ``search/<name>`` and
    added to the returned stats.

    Returns:
        ``{"hypervolume": float, "best_val": float | None, "front_size": int, "evaluated": int,
        "ref": list[float] | None, "front": [candidate ids, best val first]}`` (JSON values), plus
        ``scalars``.
    """
    from torch.utils.tensorboard import SummaryWriter

    from growrnn.genome.figures import draw_genome
    from growrnn.genome.graph import Genome
    _check_direction(direction)
    check_int("gen", gen, 0)
    done = [row for row in (archive.get(i) for i in population) if row.status == "done" and row.objectives is not None]
    F = _matrix(done, objectives, direction) if done else np.zeros((0, len(objectives)))
    if ref is None:
        ref_used = reference_point(F)
    else:
        ref_used = [float(r) for r in ref]
        if len(ref_used) != len(objectives) or not all(math.isfinite(r) for r in ref_used):
            raise ArgumentError("ref", allowed=f"{len(objectives)} finite numbers (one per objective) or None",
                                received=list(ref), hint="pass back the 'ref' that generation 0 returned")
    volume = hypervolume(F, np.array(ref_used)) if ref_used is not None and len(F) else 0.0
    front = [done[i] for i in first_front(done, objectives, direction)]
    # a row with finite objectives did not fail (objective_matrix makes failed rows +inf)
    ok = set(np.flatnonzero(np.isfinite(F).all(axis=1)).tolist())
    vals = [v for k, r in enumerate(done) if k in ok and math.isfinite(v := _value(values_of(r), "val"))]
    best = (min(vals) if direction == "min" else max(vals)) if vals else None
    stats: dict[str, Any] = {"hypervolume": float(volume), "best_val": best, "front_size": len(front),
                             "evaluated": len(done), "ref": ref_used, "front": [r.id for r in front]}
    extra = {str(k): float(v) for k, v in (scalars or {}).items()}
    if clash := sorted(extra.keys() & stats.keys()):
        raise ArgumentError("scalars", allowed=f"names other than {', '.join(stats)}", received=clash)
    stats.update(extra)
    writer = SummaryWriter(str(writer_dir))
    try:
        writer.add_scalar("search/hypervolume", stats["hypervolume"], gen)
        if best is not None:
            writer.add_scalar("search/best_val", best, gen)
        writer.add_scalar("search/front_size", len(front), gen)
        writer.add_scalar("search/evaluated", len(done), gen)
        for name, value in extra.items():
            writer.add_scalar(f"search/{name}", value, gen)
        found = find_baselines(archive, baselines)
        writer.add_figure("search/pareto", pareto_figure(done, objectives, direction, found,
                                                         title=f"generation {gen}"), gen)
        writer.add_text("search/front", _front_markdown(gen, front, objectives, direction), gen)
        for k, i in enumerate(_spread(len(front), MAX_DIAGRAMS)):
            row = front[i]
            values = values_of(row)
            title = f"cell {row.id}: val {_fmt(_value(values, 'val'))}, params {_fmt(_value(values, 'params'))}"
            writer.add_figure(f"search/front_cell_{k}", draw_genome(Genome.from_json(row.genome_json), title), gen)
        writer.flush()
    finally:
        writer.close()
    log.info("generation %d: hypervolume %.4g, best val %s, %d on the front of %d evaluated", gen, volume,
             _fmt(best), len(front), len(done))
    return stats


# ------------------------------------------------------------------------------------ confirmation
def _pm(mean: Any, std: Any) -> str:
    if mean is None:
        return "-"
    return f"{_fmt(float(mean))} ± {_fmt(float(std))}" if std is not None else _fmt(float(mean))


def confirmation_markdown(report: Mapping[str, Any]) -> str:
    """A confirmation report (:func:`growrnn.search.confirm.summary`) as a Markdown table, ranked by
    the confirmed ``val`` (mean ± standard deviation over the seeds), the search's score beside it."""
    rho = report.get("spearman")
    head = (f"**Confirmation of generation {report['generation']}**: {len(report['cells'])} cells retrained from "
            f"scratch on {report['seeds']} seeds ({report['failed']} failed runs), ranked by the confirmed val "
            f"({report['direction']}). Spearman ρ(search score, confirmed mean) = "
            f"{'n/a' if rho is None else f'{rho:.3f}'} over {report['compared']} cells.")
    lines = ["| rank | cell | role | confirmed val | search val | confirmed test | params | runs |", "|---" * 8 + "|"]
    for k, c in enumerate(report["cells"], 1):
        lines.append(f"| {k} | {c['id']} | {', '.join(c['roles'])} | {_pm(c['val_mean'], c['val_std'])} | "
                     f"{_pm(c['search_val'], None)} | {_pm(c['test_mean'], c['test_std'])} | "
                     f"{_pm(c['params'], None)} | {c['done']} done, {c['failed']} failed |")
    return head + "\n\n" + "\n".join(lines)


def confirmation_figure(report: Mapping[str, Any]) -> Any:
    """A ``matplotlib.figure.Figure``: each confirmed cell's mean ``val`` (± one standard deviation)
    against its parameters, baselines labelled, with the search's score of each cell as a faded
    marker joined to its confirmed mean (how far inheritance had carried it)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    shown_search = False
    for c in report["cells"]:
        if c["val_mean"] is None or c["params"] is None:
            continue
        x, y, err = c["params"], c["val_mean"], c["val_std"] or 0.0
        baseline = "baseline" in c["roles"] and "front" not in c["roles"]
        style = {"fmt": "s", "color": "C1"} if baseline else {"fmt": "o", "color": "C0"}
        ax.errorbar([x], [y], yerr=[err], ms=6, capsize=3, **style)
        ax.annotate(str(c["id"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if c["search_val"] is not None:
            ax.plot([x, x], [c["search_val"], y], ":", color="#999999", lw=0.8)
            ax.scatter([x], [c["search_val"]], marker="x", color="#999999", s=20,
                       label=None if shown_search else "search score")
            shown_search = True
    ax.errorbar([], [], fmt="o", color="C0", label="front cell, confirmed")
    ax.errorbar([], [], fmt="s", color="C1", label="baseline, confirmed")
    better = "lower" if report["direction"] == "min" else "higher"
    ax.set_xlabel("params")
    ax.set_ylabel(f"val ({better} is better), mean ± std over {report['seeds']} seeds")
    ax.set_title(f"confirmation of generation {report['generation']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def log_confirmation(writer_dir: Path, report: Mapping[str, Any], step: int) -> None:
    """Write a confirmation report (:func:`growrnn.search.confirm.summary`) to TensorBoard in
    ``writer_dir`` at ``step`` (the confirmed generation): text ``search/confirmed`` (the ranked
    table, :func:`confirmation_markdown`), figure ``search/confirmed_pareto``
    (:func:`confirmation_figure`), scalars ``search/confirmed_best_val`` and
    ``search/confirmed_spearman`` (when defined)."""
    from torch.utils.tensorboard import SummaryWriter

    check_int("step", step, 0)
    writer = SummaryWriter(str(writer_dir))
    try:
        writer.add_text("search/confirmed", confirmation_markdown(report), step)
        writer.add_figure("search/confirmed_pareto", confirmation_figure(report), step)
        if report["cells"] and report["cells"][0]["val_mean"] is not None:
            writer.add_scalar("search/confirmed_best_val", report["cells"][0]["val_mean"], step)
        if report.get("spearman") is not None:
            writer.add_scalar("search/confirmed_spearman", report["spearman"], step)
        writer.flush()
    finally:
        writer.close()
