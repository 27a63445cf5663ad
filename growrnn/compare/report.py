"""A comparison's report: ``results.csv``, ``results.md``, ``pareto.png`` and a TensorBoard
summary (``tb/_comparison``: the table as text, the plot as a figure).

One row per entry, aggregated over its finished seeds: the test metric's mean and sample standard
deviation over the seeds that did not diverge (diverged seeds are counted, not averaged: their
metric is the worst possible, which would swamp the mean), the validation mean, and the cost
figures averaged over seeds -- parameters (for grown families the count after growth), recurrent
multiply-accumulates per time step, training time per step, and the final units per layer -- and,
for grown families, what growth did (units added and deleted, and with ``paired`` trials the share
of the steps a copy trained beside the network: the part of the training time they cost).

The plot is drawn here rather than with :func:`growrnn.search.report.pareto_figure`: that one
marks a population and one point per baseline, while a comparison needs one marker style per
*family* with several entries each, and error bars over seeds.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from growrnn.compare.config import FAMILIES, CompareConfig
from growrnn.compare.runner import Comparison

__all__ = ["COLUMNS", "pareto_plot", "summarise", "to_markdown", "write_report"]

log = logging.getLogger(__name__)

#: Columns of ``results.csv``; ``mean``/``std`` are of the test ``metric``.
COLUMNS = ("family", "name", "cell", "metric", "direction", "mean", "std", "n_seeds", "n_diverged", "val_mean",
           "params", "macs_per_step", "train_ms_per_step", "final_units", "growth", "setting")
_MARKERS = {"baseline": "o", "grown": "^", "evolved": "s", "evolved_grown": "D"}


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _units(sizes: list[list[int]]) -> str:
    """Per layer, the mean final units over seeds ("54.3"; an int when every seed agrees; "/"
    between layers)."""
    if not sizes:
        return "-"
    layers = []
    for per_layer in zip(*sizes, strict=False):
        m = _mean([float(s) for s in per_layer])
        layers.append(str(per_layer[0]) if len(set(per_layer)) == 1 else f"{m:.1f}")
    return "/".join(layers)


def _growth(records: list[dict[str, Any]]) -> str:
    """What growth did, mean over seeds: units added and deleted over the layers ("+87 -58") and,
    with paired trials, the share of the steps a copy trained beside the network ("; trials 62%");
    "-" for an entry that did not grow (or records written before growrnn kept it)."""
    if not records:
        return "-"
    added = _mean([float(sum(g["added"])) for g in records])
    deleted = _mean([float(sum(g["deleted"])) for g in records])
    shares = [float(g["trial_share"]) for g in records if g.get("trial_share") is not None]
    counts = [f"{x:.0f}" if x == round(x) else f"{x:.1f}" for x in (added, deleted)]  # a mean over seeds: 1.5
    return f"+{counts[0]} -{counts[1]}" + (f"; trials {_mean(shares):.0%}" if shares else "")


def summarise(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per entry with at least one finished seed (keys :data:`COLUMNS`), in config order."""
    rows = []
    for entry in comparison.entries:
        records = comparison.records.get(entry.name, [])
        if not records:
            continue
        results = [r["result"] for r in records]
        tests = [float(r["test"]) for r in results if r["test"] is not None and not r["diverged"]
                 and math.isfinite(float(r["test"]))]
        # the sizes of the networks the scores are of: a diverged seed's grown width is not one
        # (every seed's where all diverged)
        sized = [r for r in records if not r["result"]["diverged"]] or records
        vals = [float(r["val"]) for r in results if not r["diverged"] and math.isfinite(float(r["val"]))]
        per_step = [1000.0 * r["train_seconds"] / r["train_steps"] for r in records if r.get("train_steps")]
        rows.append({
            "family": entry.family, "name": entry.name, "cell": entry.label, "metric": results[0]["metric"],
            "direction": results[0]["direction"], "mean": _mean(tests),
            "std": statistics.stdev(tests) if len(tests) >= 2 else math.nan, "n_seeds": len(records),
            "n_diverged": len(records) - len(tests), "val_mean": _mean(vals),
            "params": round(_mean([float(r["result"]["params"]) for r in sized])),
            "macs_per_step": round(_mean([float(r["result"]["macs_per_step"]) for r in sized])),
            "train_ms_per_step": _mean(per_step),
            "final_units": _units([r["hidden_sizes"] for r in sized if r.get("hidden_sizes")]),
            "growth": _growth([r["result"]["growth"] for r in sized if r["result"].get("growth")]),
            "setting": ", ".join(f"{k}={v}" for k, v in records[0]["setting"].items()) or "-"})
    return rows


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row: dict[str, Any]) -> tuple[bool, float]:
        m = row["mean"]
        return math.isnan(m), (m if row["direction"] == "min" else -m) if not math.isnan(m) else 0.0
    return sorted(rows, key=key)


def _g(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}g}"


def to_markdown(rows: list[dict[str, Any]], config: CompareConfig) -> str:
    """The rows as a markdown table, best first in the task's direction, under a line saying what
    was measured and how."""
    if not rows:
        return f"# Comparison on {config.task}\n\nNo run has finished yet.\n"
    metric, direction = rows[0]["metric"], rows[0]["direction"]
    budget = ", ".join(f"{k} {v}" for k, v in config.budget.as_dict().items())
    tuning = "; ".join(f"{k} in {v}" for k, v in sorted(config.tuning.items()))
    lines = [f"# Comparison on {config.task}", "",
             f"Test {metric} ({'lower' if direction == 'min' else 'higher'} is better): mean ± sample std over "
             f"seeds {', '.join(map(str, config.seeds))}. Budget per run: {budget}. "
             + (f"Tuning grid ({tuning}), best on validation at seed {config.seeds[0]}, then used for every seed."
                if tuning else "No tuning: every entry trains with the shared options."),
             "Parameters, MACs (recurrent multiply-accumulates per time step) and final units are means over "
             "seeds, after growth for grown families; growth: units added and deleted (mean over seeds) and, with "
             "paired trials, the share of the steps a copy trained beside the network (part of the training "
             "time per step).", "",
             f"| family | entry | cell | test {metric} | seeds | parameters | MACs/step | train ms/step "
             "| final units | growth | tuned |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for row in _sorted(rows):
        if math.isnan(row["mean"]):
            score = "diverged"
        elif math.isnan(row["std"]):
            score = _g(row["mean"])
        else:
            score = f"{_g(row['mean'])} ± {_g(row['std'], 2)}"
        seeds = str(row["n_seeds"]) + (f" ({row['n_diverged']} diverged)" if row["n_diverged"] else "")
        cell = str(row["cell"]).replace("|", "\\|")
        lines.append(f"| {row['family']} | {row['name']} | {cell} | {score} | {seeds} | {row['params']:,} | "
                     f"{row['macs_per_step']:,} | {_g(row['train_ms_per_step'], 3)} | {row['final_units']} | "
                     f"{row['growth']} | {row['setting']} |")
    return "\n".join(lines) + "\n"


def pareto_plot(rows: list[dict[str, Any]], title: str | None = None) -> Any:
    """A ``matplotlib.figure.Figure``: each entry's test metric (mean, with ± std bars) against its
    parameters, one marker style per family, and the entries no other beats on both joined by a
    dashed line (the Pareto front of the comparison)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure manager, no GUI backend

    fig = Figure(figsize=(7.0, 4.6))
    ax = fig.add_subplot()
    shown = [r for r in rows if not math.isnan(r["mean"]) and r["params"] > 0]
    for k, family in enumerate(FAMILIES):
        mine = [r for r in shown if r["family"] == family]
        if not mine:
            continue
        ax.errorbar([r["params"] for r in mine], [r["mean"] for r in mine],
                    yerr=[0.0 if math.isnan(r["std"]) else r["std"] for r in mine], fmt=_MARKERS[family],
                    color=f"C{k}", ms=7, capsize=3, lw=1, mec="black", mew=0.5, label=family)
    if shown:
        sign = 1.0 if shown[0]["direction"] == "min" else -1.0
        front = [r for r in shown if not any(o["params"] <= r["params"] and sign * o["mean"] <= sign * r["mean"]
                                             and (o["params"], o["mean"]) != (r["params"], r["mean"]) for o in shown)]
        front.sort(key=lambda r: r["params"])
        ax.plot([r["params"] for r in front], [r["mean"] for r in front], "--", color="#777777", lw=1, zorder=0,
                label="Pareto front")
        xs = [r["params"] for r in shown]
        if max(xs) / min(xs) > 8:  # sizes span an order of magnitude
            ax.set_xscale("log")
        better = "lower" if shown[0]["direction"] == "min" else "higher"
        ax.set_ylabel(f"test {shown[0]['metric']} ({better} is better)")
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("parameters (after growth for grown families)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _place_labels(fig, ax, shown)
    return fig


#: where a point's label may go, in points from the marker, tried in this order
_OFFSETS = ((5, 4, "left"), (5, -11, "left"), (-5, 4, "right"), (-5, -11, "right"), (5, 13, "left"),
            (5, -20, "left"), (-5, 13, "right"), (-5, -20, "right"))


def _place_labels(fig: Any, ax: Any, rows: list[dict[str, Any]]) -> None:
    """Name every point, at the first offset whose label overlaps no label placed before it (the
    last offset tried if none is free): entries of similar size and score otherwise print their
    names over each other."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(fig).get_renderer()
    frame = ax.get_window_extent(renderer)
    # the markers are obstacles too: a box of about the marker's size around each point
    points = [ax.transData.transform((r["params"], r["mean"])) for r in rows]
    placed: list[Any] = [Bbox.from_extents(x - 5, y - 5, x + 5, y + 5) for x, y in points]
    for r in sorted(rows, key=lambda r: (r["params"], r["mean"])):
        for dx, dy, align in _OFFSETS:
            text = ax.annotate(r["name"], (r["params"], r["mean"]), textcoords="offset points", xytext=(dx, dy),
                               fontsize=7, ha=align)
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if (inside and not any(box.overlaps(other) for other in placed)) or (dx, dy, align) == _OFFSETS[-1]:
                placed.append(box)
                break
            text.remove()


def write_report(comparison: Comparison, config: CompareConfig) -> list[Path]:
    """Write ``results.csv``, ``results.md``, ``pareto.png`` and ``tb/_comparison`` into the
    comparison's folder; returns the paths written."""
    from torch.utils.tensorboard import SummaryWriter

    out = comparison.out
    rows = summarise(comparison)
    csv_path, md_path, png_path = out / "results.csv", out / "results.md", out / "pareto.png"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    md = to_markdown(rows, config)
    md_path.write_text(md)
    fig = pareto_plot(rows, title=f"{config.task}: test metric vs parameters, mean ± std over seeds")
    fig.savefig(png_path, dpi=120)
    summary = out / "tb" / "_comparison"  # "_" cannot begin an entry name, so no clash
    shutil.rmtree(summary, ignore_errors=True)  # one summary, the latest, not one per rerun
    tb = SummaryWriter(str(summary))
    try:
        tb.add_text("comparison/results", md)
        tb.add_figure("comparison/pareto", fig)
    finally:
        tb.close()
    log.info("wrote %s, %s, %s and %s", csv_path, md_path, png_path, summary)
    return [csv_path, md_path, png_path, summary]
