"""A picture of a genome's DAG, drawn with matplotlib alone (no graphviz or other binaries;
matplotlib is imported only when a picture is drawn, so the genome package stays standard library
only at import)."""

from __future__ import annotations

from typing import Any

from growrnn.genome.graph import BINARY, Genome, format_number

__all__ = ["draw_genome", "layout"]

_COLORS = {"x": "#9ecae1", "state": "#a1d99b", "const": "#eeeeee", "affine": "#fdae6b", "linear": "#fdae6b",
           "diag": "#fdd0a2"}


def layout(g: Genome) -> dict[int, tuple[float, float]]:
    """Node id -> (x, y): x is the longest path from a terminal, y spreads each column."""
    depth: dict[int, int] = {}
    for nid in g.topological:
        args = g.nodes[nid].args
        depth[nid] = 1 + max((depth[a] for a in args), default=-1)
    columns: dict[int, list[int]] = {}
    for nid in sorted(depth, key=lambda i: (depth[i], i)):
        columns.setdefault(depth[nid], []).append(nid)
    pos = {}
    for d, ids in columns.items():
        for k, nid in enumerate(ids):
            pos[nid] = (float(d), (len(ids) - 1) / 2.0 - k)
    return pos


def _label(g: Genome, nid: int) -> str:
    n = g.nodes[nid]
    if n.op == "state":
        return str(n.name)
    if n.op == "const":
        return format_number(float(n.value or 0.0))
    return BINARY.get(n.op, n.op)


def draw_genome(g: Genome, title: str | None = None) -> Any:
    """A ``matplotlib.figure.Figure`` of the DAG: terminals left, outputs (``h'``, ``c'``…) right."""
    from matplotlib.figure import Figure
    pos = layout(g)
    width = max(x for x, _ in pos.values()) + 1
    height = max(abs(y) for _, y in pos.values()) * 2 + 1
    fig = Figure(figsize=(1.4 + 1.3 * width, 1.0 + 0.6 * height))
    ax = fig.add_subplot()
    outputs = {nid: f"{s}'" for s, nid in g.outputs.items()}
    for nid, node in g.nodes.items():
        for a in node.args:
            (x0, y0), (x1, y1) = pos[a], pos[nid]
            ax.annotate("", xy=(x1 - 0.18, y1), xytext=(x0 + 0.18, y0),
                        arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.8})
    for nid, (x, y) in pos.items():
        op = g.nodes[nid].op
        color = _COLORS.get(op, "#dadaeb" if op in BINARY else "#bcbddc")
        ax.text(x, y, _label(g, nid), ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.3", "fc": color, "ec": "#333333", "lw": 0.6})
        if nid in outputs:
            ax.text(x, y + 0.32, outputs[nid], ha="center", va="bottom", fontsize=9, fontweight="bold")
    ax.set_xlim(-0.6, width + 0.2)
    ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
