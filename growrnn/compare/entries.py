"""The entries of a comparison, resolved into what runs: each with its genome text, its merged
model options and its size; an evolved entry with a ``search_db`` becomes one entry per cell of
that search's last generation (its first front, by default).

Cells from a search are exported once into ``DIR/cells/<name>/`` (``cell_<id>.txt`` and
``.json``, via :func:`growrnn.search.export.export_front`) and read from there afterwards, so a
resumed comparison keeps the cells it started with even if the search has gone on since.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from growrnn.compare.config import CompareConfig
from growrnn.errors import ArgumentError

__all__ = ["ResolvedEntry", "matching_size", "resolve_entries"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedEntry:
    """An entry ready to run: ``cell`` is genome text, ``label`` what the config named (a library
    name or a file path), ``model`` the shared options overlaid with the entry's own."""

    name: str
    family: str
    cell: str
    label: str
    hidden_size: int | list[int]
    grow: dict[str, Any] | None
    model: dict[str, Any]


def resolve_entries(config: CompareConfig, out: Path) -> list[ResolvedEntry]:
    """The runnable entries, in config order. An entry with a ``search_db`` becomes one entry per
    cell of the archive's last generation (its first front with ``front: true``), named
    ``<name>_<candidate id>``; the cells are exported once to ``out/cells/<name>/`` and read from
    there afterwards, so a resumed comparison keeps its cells even if the search went on."""
    from growrnn.evaluation.config import load_cell
    from growrnn.task import get_task

    resolved: list[ResolvedEntry] = []
    spec = None  # the task's, read once if an entry matches another's parameter count
    for i, entry in enumerate(config.entries):
        size: Any = entry.hidden_size if entry.hidden_size is not None else config.model.get("hidden_size")
        model = {k: v for k, v in {**config.model, **entry.model}.items() if k != "hidden_size"}
        cells: list[tuple[str, str, str]] = []  # (name, genome text, label)
        if entry.search_db is not None:
            for path in _front_cells(Path(entry.search_db), out / "cells" / entry.name, entry.front, entry.top):
                genome = load_cell(str(path), f"entries[{i}].search_db")
                cells.append((f"{entry.name}_{path.stem.removeprefix('cell_')}", genome.to_text(),
                              str(path.relative_to(out))))  # the table names it as a path inside DIR
        elif entry.cell is not None:  # check_config: an entry without a search_db has a cell
            genome = load_cell(entry.cell, f"entries[{i}].cell")
            label = entry.cell if "\n" not in entry.cell and "=" not in entry.cell else f"key {genome.key}"
            cells.append((entry.name, genome.to_text(), label))
        for name, text, label in cells:
            if entry.match_params is not None:  # check_config: it names a fixed-size entry with one cell
                spec = spec or get_task(config.task, **config.task_options).spec
                target = next(e for e in config.entries if e.name == entry.match_params)
                target_size = target.hidden_size if target.hidden_size is not None else config.model["hidden_size"]
                size, params, wanted = matching_size(
                    spec, text, model, load_cell(str(target.cell), "match_params").to_text(), target_size,
                    {k: v for k, v in {**config.model, **target.model}.items() if k != "hidden_size"})
                log.info("%s: %d units per layer, %d parameters (%s: %d, %+.1f %%)", name, size, params,
                         target.name, wanted, 100 * (params / wanted - 1))
            resolved.append(ResolvedEntry(name, entry.family, text, label, size,
                                          dict(entry.grow) if entry.grow is not None else None, model))
    seen: set[str] = set()
    for r in resolved:
        if r.name in seen:
            raise ArgumentError("entries", allowed="distinct names after expanding search archives",
                                received=r.name, hint="rename the entry whose name clashes with <name>_<id>")
        seen.add(r.name)
    return resolved


def _front_cells(db: Path, folder: Path, front: bool, top: int | None) -> list[Path]:
    """The ``cell_<id>.txt`` files of the archive's cells, exported into ``folder`` the first time
    (``front.csv`` marks a finished export; a half-written folder is exported again); with
    ``top``, only the ``top`` best (on confirmed validation when the search was confirmed)."""
    import csv

    from growrnn.search.export import export_front

    listing = folder / "front.csv"
    if not listing.is_file():
        export_front(db, folder, front_only=front)
    with listing.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [row["id"] for row in rows][:top]  # export_front lists the best first (confirmed val when confirmed)
    return [folder / f"cell_{i}.txt" for i in ids]


def matching_size(spec: Any, cell: str, model: dict[str, Any], target_cell: str, target_size: int | list[int],
                  target_model: dict[str, Any]) -> tuple[int, int, int]:
    """The layer size (every layer) at which ``cell``'s model (``SequenceModel`` options ``model``)
    has the parameter count closest to that of ``target_cell`` at ``target_size`` (options
    ``target_model``), for the task ``spec``: ``(size, its parameter count, the target's)``. The
    count is the model's own (:meth:`~growrnn.training.model.SequenceModel.complexity`: embedding,
    recurrent layers and decoder), which grows with the size, so a bisection finds it."""
    from growrnn.training.model import SequenceModel

    def params(cell_text: str, size: int | list[int], options: dict[str, Any]) -> int:
        return int(SequenceModel(spec, cell=cell_text, **{**options, "hidden_size": size}).complexity()["params"])

    wanted = params(target_cell, target_size, target_model)
    lo, hi = 1, 2
    while params(cell, hi, model) < wanted:  # the smallest power of two at or above the target
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # params(lo) < wanted <= params(hi), or lo = 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if params(cell, mid, model) < wanted else (lo, mid)
    best = min((lo, hi), key=lambda h: abs(params(cell, h, model) - wanted))
    return best, params(cell, best, model), wanted
