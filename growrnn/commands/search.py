"""``growrnn search``: run or resume a search, or export its cells.

::

    growrnn search --config configs/search/jsb.yaml --db runs/jsb_search.db [--workers 2] ...
    growrnn search --db runs/jsb_search.db                 # resume with the stored config
    growrnn search export --db runs/jsb_search.db --front --out front/

Every config key is also an option (``--population 8``, ``--model.lr 0.01``); options override
the file. ``growrnn.cli`` hands over the arguments after the word ``search``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from growrnn.errors import ArgumentError

__all__ = ["main"]
log = logging.getLogger(__name__)


def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="growrnn search export",
                                     description="Write a search's cells as genome files (.txt and .json) that "
                                     "GenomeRNN and `growrnn fit --model.cell FILE` take.")
    parser.add_argument("--db", required=True, help="the search's SQLite database")
    parser.add_argument("--out", required=True, help="the folder to write the cells to")
    parser.add_argument("--front", action="store_true",
                        help="only the first Pareto front of the last population (default: the whole population)")
    args = parser.parse_args(argv)
    from growrnn.search.export import export_front

    export_front(Path(args.db), Path(args.out), front_only=args.front)
    import csv

    with (Path(args.out) / "front.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    print(f"wrote {len(table)} cells to {args.out} (best validation first):")
    for row in table:
        print(f"  {row['path']}: val {float(row['val']):.4g}, {float(row['params']):,.0f} parameters")
    if table:
        print(f"next: growrnn show {table[0]['path']}   |   growrnn fit --config <the task's config> "
              f"--model.cell {table[0]['path']}")
    return 0


def _run(argv: list[str]) -> int:
    from growrnn.search.config import parse_command, search_parser
    from growrnn.search.loop import run_search
    from growrnn.search.storage import Archive

    if "-h" in argv or "--help" in argv:
        search_parser(db=True).print_help()
        return 0
    db = _db_of(argv)
    if "--config" not in argv and not any(a.startswith("--config=") for a in argv):
        if db is None or not Path(db).is_file():
            raise ArgumentError("--config", allowed="a search YAML (required unless --db names an existing search)",
                                received=None, hint="growrnn search --config configs/debug/search.yaml --db x.db")
        with Archive.open(db, read_only=True) as archive:  # resume with the stored config, options on top
            argv = ["--config", json.dumps(archive.config), *argv]
    config, db = parse_command(argv)
    result = run_search(config, db)
    print(f"search done: generation {result.generation}, population {list(result.population)}; "
          f"archive {result.db}, TensorBoard {result.tensorboard}\n"
          f"next: growrnn search export --db {result.db} --front --out {Path(str(result.db)).with_suffix('')}_front")
    return 0


def _db_of(argv: list[str]) -> str | None:
    for k, arg in enumerate(argv):
        if arg == "--db" and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith("--db="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``growrnn search`` (``argv`` without the word ``search``); returns the exit
    code. Errors are :class:`~growrnn.errors.GrowRNNError` s, which ``growrnn.cli`` prints."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # the search's own progress lines (one per generation) are worth seeing
    logging.getLogger("growrnn.search").setLevel(logging.INFO)
    if argv and argv[0] == "export":
        return _export(argv[1:])
    return _run(argv)
