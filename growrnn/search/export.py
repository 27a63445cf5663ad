"""Export a search's cells as files growrnn reads back: ``cell_<id>.txt`` (the equations, under a
comment header with the candidate's id, key, lineage and metrics) and ``cell_<id>.json`` (the
JSON form, with its stable node ids), plus ``front.csv`` listing them. Either file can be given
as ``cell=`` to :class:`growrnn.training.SequenceModel` or ``growrnn fit --model.cell``.

When the search was confirmed (:mod:`growrnn.search.confirm`), the cells are ranked by the
confirmed ``val`` (the mean over the from-scratch seeds, with its standard deviation), the
search's own score beside it, and ``confirmed.csv`` lists every confirmed cell -- the front and
the seeded baselines -- the same way. Unconfirmed cells come after the confirmed ones, by the
search's score.

>>> # export_front("runs/search/search.db", "front/")    # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from growrnn.errors import SearchError, check_choice, format_message
from growrnn.files import output_folder
from growrnn.genome import Genome
from growrnn.search.confirm import ConfirmedCell, confirmed_cells, rank_cells
from growrnn.search.report import first_front, same_as, values_of
from growrnn.search.selection import OBJECTIVES
from growrnn.search.storage import Archive, CandidateRow

__all__ = ["CONFIRMED_COLUMNS", "CSV_COLUMNS", "cell_text", "export_front"]

log = logging.getLogger(__name__)

#: Columns of ``front.csv``, one row per exported cell, best first: ``confirmed_val`` and
#: ``confirmed_test`` are means over the confirmation's finished runs (``confirmed_runs`` of them;
#: empty when none), ``*_std`` their sample standard deviations; ``val`` and ``test`` are the
#: search's scores; ``confirmed_front`` says whether the cell is on the first front of the exported
#: cells by confirmed ``val`` (and the search's other objectives); ``path`` is the ``.txt`` file
#: as written (``out`` joined with its name); ``same_as`` names the library cell the cell is up to the
#: values of its weights (:func:`~growrnn.search.report.same_as`; empty for a new cell).
CSV_COLUMNS = ("id", "key", "confirmed_val", "confirmed_val_std", "val", "confirmed_test", "confirmed_test_std", "test",
               "params", "macs", "confirmed_runs", "confirmed_front", "same_as", "path")
#: Columns of ``confirmed.csv``: every confirmed cell (front and baselines), best confirmed first.
CONFIRMED_COLUMNS = ("rank", "id", "key", "role", "confirmed_val", "confirmed_val_std", "val", "confirmed_test",
                     "confirmed_test_std", "test", "params", "confirmed_runs", "failed_runs")
#: Metrics left out of the text header: long (the curve, the genome itself) or already named.
_SKIP = {"curve", "genome", "key"}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and "\n" not in value
                                                                     and len(value) < 80)


def cell_text(row: CandidateRow, confirmed: ConfirmedCell | None = None) -> str:
    """The candidate's genome text under a ``#`` comment header (id, key, parents, operator,
    generation, the confirmed figures when ``confirmed`` has finished runs, objectives and scalar
    metrics); :func:`growrnn.parse` reads it back."""
    head = [f"# growrnn search cell {row.id} (generation {row.generation})", f"# key: {row.key}",
            f"# parents: {', '.join(map(str, row.parents)) or '-'}; operator: {row.operator}; seed: {row.seed}"]
    same = same_as(row)
    if same:
        head.append(f"# the library's {same} up to the values of its weights (equivalence key "
                    f"{Genome.from_json(row.genome_json).equivalence_key})")
    if confirmed is not None and confirmed.done:
        spread = confirmed.done > 1  # no spread of one run
        figures = [f"{name}={mean:.6g}" + (f" +- {std:.2g}" if spread and not math.isnan(std) else "")
                   for name, mean, std in (("val", confirmed.val_mean, confirmed.val_std),
                                           ("test", confirmed.test_mean, confirmed.test_std)) if not math.isnan(mean)]
        head.append(f"# confirmed from scratch ({confirmed.done} seeds, no inheritance): " + ", ".join(figures))
    if row.objectives:
        head.append("# objectives: " + ", ".join(f"{k}={_number(v)}" for k, v in row.objectives.items()))
    metrics = {k: v for k, v in (row.metrics or {}).items() if k not in _SKIP and _scalar(v)}
    if metrics:
        head.append("# metrics: " + ", ".join(f"{k}={_number(v)}" for k, v in metrics.items()))
    return "\n".join(head) + "\n" + row.genome_text.strip() + "\n"


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _names_and_direction(rows: Sequence[CandidateRow], config: Mapping[str, Any], objectives: Sequence[str] | None,
                         direction: str | None) -> tuple[list[str], str]:
    """The objectives the search used (its config's ``objectives``; for an archive without them, the
    keys of its rows' ``objectives``, which may hold more figures than the search selected on) and
    the direction of ``val`` (the task's, as :class:`growrnn.evaluation.Result` records it in
    ``metrics``)."""
    names = list(objectives) if objectives is not None else \
        [k for k in (config.get("objectives") or rows[0].objectives or {}) if k in OBJECTIVES]
    if not names:
        raise SearchError(format_message("the archive's candidates record no known objective",
                                         allowed=", ".join(OBJECTIVES), received=sorted(rows[0].objectives or {}),
                                         hint="pass objectives= to export_front"))
    if direction is None:
        found = sorted({str((r.metrics or {}).get("direction")) for r in rows} - {"None"})
        if len(found) == 1:
            direction = found[0]
        else:
            direction = str(config.get("direction", "min"))
            log.warning("the candidates record %s metric directions; taking %r (pass direction=)",
                        "no" if not found else "several", direction)
    return names, str(direction)


def export_front(db: str | Path, out: str | Path, front_only: bool = True, *, objectives: Sequence[str] | None = None,
                 direction: str | None = None) -> list[Path]:
    """Write the last saved generation's cells to ``out`` (created if needed).

    Args:
        db: the search's archive (SQLite file written by the search loop); only read.
        out: the folder for the files; existing files of the same names are replaced.
        front_only: export the first Pareto front of the last generation's population (its
            finished candidates, over the search's objectives); ``False`` exports every finished
            candidate of that population.
        objectives: the objectives defining the front (default: those the candidates recorded).
        direction: ``"min"``/``"max"`` for ``val`` (default: recorded in the candidates' metrics).

    Returns:
        The written paths: ``cell_<id>.txt`` and ``cell_<id>.json`` per cell (best first: by
        confirmed ``val`` when the search was confirmed, else by the search's ``val``), then
        ``front.csv`` (:data:`CSV_COLUMNS`), then ``confirmed.csv`` (:data:`CONFIRMED_COLUMNS`,
        only when some cell was confirmed).

    Raises:
        SearchError: ``db`` is missing or not an archive, no generation was saved yet, or the
            generation has no finished candidate.
    """
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise SearchError(format_message(f"no search archive at {db}", received=str(db),
                                         hint="pass the --db the search was run with, or run it first: "
                                         "growrnn search --config FILE --db PATH"))
    with Archive.open(db, read_only=True) as archive:
        last = archive.last_generation()
        if last is None:
            raise SearchError(format_message(f"the archive {db} has no saved generation",
                                             hint="let the search finish generation 0 (or resume it) first"))
        rows = [archive.get(i) for i in last.population]
        config = archive.config
        done = [r for r in rows if r.status == "done" and r.objectives is not None]
        if not done:
            raise SearchError(format_message(f"generation {last.gen} of {db} has no finished candidate",
                                             hint="resume the search until some candidates are evaluated"))
        check_choice("direction", direction, ("min", "max", None))
        names, sense = _names_and_direction(done, config, objectives, direction)
        index = first_front(done, names, sense)
        if not front_only:  # every finished one, best val first, the front's order kept at the top
            on_front = set(index)
            rest = [i for i in range(len(done)) if i not in on_front]
            sign = 1.0 if sense == "min" else -1.0
            rest.sort(key=lambda i: (_sort_val(done[i], sign), done[i].id))
            index = index + rest
        targets = {c.candidate.key: c for c in confirmed_cells(archive, names, sense)}
        picked = _one_per_genome([done[i] for i in index])
        exported = [targets.get(r.key) or ConfirmedCell(r, (), tuple(archive.confirmations(key=r.key)), sense)
                    for r in picked]
    confirmed = [c for c in targets.values() if c.done]
    if any(c.done for c in exported):  # rank by the confirmed metric; the search's order breaks no tie
        exported = rank_cells(exported)
    else:
        log.info("the cells of %s are not confirmed: ranked by the search's score (growrnn search confirm --db %s "
                 "retrains them from scratch)", db, db)
    on_confirmed_front = _confirmed_front(exported, names, sense)
    out = output_folder(out, "out")
    written: list[Path] = []
    table = []
    for k, cell in enumerate(exported):
        row = cell.candidate
        txt, js = out / f"cell_{row.id}.txt", out / f"cell_{row.id}.json"
        txt.write_text(cell_text(row, cell))
        js.write_text(json.dumps(json.loads(row.genome_json), indent=2) + "\n")
        written += [txt, js]
        table.append({**_confirmed_columns(cell), "confirmed_front": k in on_confirmed_front, "same_as": same_as(row),
                      "path": str(txt)})
    csv_path = out / "front.csv"
    _write_csv(csv_path, CSV_COLUMNS, table)
    written.append(csv_path)
    if confirmed:
        listing = out / "confirmed.csv"
        _write_csv(listing, CONFIRMED_COLUMNS, [{"rank": k, "role": "+".join(c.roles), **_confirmed_columns(c),
                                                 "failed_runs": c.failed}
                                                for k, c in enumerate(rank_cells(confirmed), 1)])
        written.append(listing)
    log.info("exported %d cells of generation %d from %s to %s", len(table), last.gen, db, out)
    return written


def _one_per_genome(rows: Sequence[CandidateRow]) -> list[CandidateRow]:
    """``rows`` with one candidate per genome (canonical key), the first of each kept: a population
    can hold one genome under several ids (a child the search had already evaluated), and a cell
    is exported, confirmed and ranked by its genome."""
    first: dict[str, CandidateRow] = {}
    for r in rows:
        first.setdefault(r.key, r)
    kept = list(first.values())
    if len(kept) < len(rows):
        log.info("%d candidates of the population repeat a genome exported under another id: left out",
                 len(rows) - len(kept))
    return kept


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _confirmed_columns(cell: ConfirmedCell) -> dict[str, Any]:
    """A cell's figures as CSV values: confirmed means and spreads (empty when unconfirmed), the
    search's scores, its size."""
    values = values_of(cell.candidate)

    def number(value: Any) -> Any:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value

    return {"id": cell.candidate.id, "key": cell.candidate.key, "confirmed_val": number(cell.val_mean),
            "confirmed_val_std": number(cell.val_std), "val": values.get("val"),
            "confirmed_test": number(cell.test_mean), "confirmed_test_std": number(cell.test_std),
            "test": values.get("test"), "params": values.get("params"),
            "macs": values.get("macs", values.get("macs_per_step")), "confirmed_runs": cell.done}


def _confirmed_front(cells: Sequence[ConfirmedCell], names: Sequence[str], direction: str) -> set[int]:
    """Indices of the cells on the first front by confirmed ``val`` (and the search's other
    objectives); unconfirmed cells are never on it."""
    points = [{**values_of(c.candidate), "val": c.val_mean} if c.done else {"failed": True} for c in cells]
    return set(first_front(points, names, direction))


def _sort_val(row: CandidateRow, sign: float) -> float:
    value = values_of(row).get("val")
    try:
        v = sign * float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.inf
    return v if math.isfinite(v) else math.inf
