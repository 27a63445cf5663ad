"""``growrnn search``: run or resume a search, confirm its cells from scratch, or export them.

::

    growrnn search --config configs/search/jsb.yaml --db runs/jsb_search.db [--workers 2] ...
    growrnn search --db runs/jsb_search.db                 # resume with the stored config
    growrnn search confirm --db runs/jsb_search.db [--confirm.seeds 5] [--workers 2]
    growrnn search export --db runs/jsb_search.db --front --out front/

Every config key is also an option (``--population 8``, ``--model.lr 0.01``); options override
the file. ``growrnn.cli`` hands over the arguments after the word ``search``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
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
    confirmed = any(row["confirmed_runs"] not in ("", "0") for row in table)
    order = "best confirmed validation first (mean ± std over the from-scratch seeds), the search's score beside it" \
        if confirmed else "best validation first; not confirmed: growrnn search confirm --db retrains them from scratch"
    print(f"wrote {len(table)} cells to {args.out} ({order}):")
    for row in table:
        search = f"val {float(row['val']):.4g}"
        if row["confirmed_val"] != "":
            spread = f" ± {float(row['confirmed_val_std']):.2g}" \
                if row["confirmed_val_std"] != "" and int(row["confirmed_runs"]) > 1 else ""  # no spread of one
            search = f"confirmed val {float(row['confirmed_val']):.4g}{spread} ({row['confirmed_runs']} seeds), " \
                     f"search {search}"
        print(f"  {row['path']}: {search}, {float(row['params']):,.0f} parameters")
    if table:
        print(f"next: growrnn show {table[0]['path']}   |   growrnn fit --config <the task's config> "
              f"--model.cell {table[0]['path']}")
    return 0


def _run(argv: list[str]) -> int:
    from growrnn.search.config import parse_command
    from growrnn.search.loop import run_search
    from growrnn.search.storage import Archive

    if "-h" in argv or "--help" in argv:
        _print_help()
        return 0
    db = _db_of(argv)
    if "--config" not in argv and not any(a.startswith("--config=") for a in argv):
        if db is None or not Path(db).is_file():
            raise ArgumentError("--config", allowed="a search YAML (required unless --db names an existing search)",
                                received=None, hint="growrnn search --config configs/debug/search.yaml --db x.db")
        with Archive.open(db, read_only=True) as archive:  # resume with the stored config, options on top
            argv = ["--config", json.dumps(archive.config), *argv]
    config, db = parse_command(argv)
    try:
        result = run_search(config, db)
    except KeyboardInterrupt:
        return _interrupted(db, "growrnn search")
    print(f"search done: generation {result.generation}, population {list(result.population)}; "
          f"archive {result.db}, TensorBoard {result.tensorboard}")
    if result.confirmation is not None:
        _print_confirmation(result.confirmation)
    print(f"next: growrnn search export --db {result.db} --front --out {Path(str(result.db)).with_suffix('')}_front")
    return 0


def _confirm(argv: list[str]) -> int:
    from growrnn.search.config import parse_command
    from growrnn.search.confirm import confirm_search
    from growrnn.search.storage import Archive

    if "-h" in argv or "--help" in argv:
        print("growrnn search confirm --db PATH [options]: retrain the last saved generation's front and the "
              "seeded baselines from scratch on confirm.seeds seeds (resumable; runs already stored are not "
              "repeated). Options are the search's config keys; only those that may change on resume "
              "(confirm.seeds, workers, executor, ...) may differ from the stored config.\n")
        _print_help()
        return 0
    db = _db_of(argv)
    if db is None or not Path(db).is_file():
        raise ArgumentError("--db", allowed="the database of an existing search", received=db,
                            hint="growrnn search confirm --db runs/search/jsb.db")
    with Archive.open(db, read_only=True) as archive:  # the stored config, options on top
        argv = ["--config", json.dumps(archive.config), *argv]
    config, db = parse_command(argv)
    try:
        report = confirm_search(config, db)
    except KeyboardInterrupt:
        return _interrupted(db, "growrnn search confirm")
    _print_confirmation(report)
    print(f"next: growrnn search export --db {db} --front --out {Path(str(db)).with_suffix('')}_front")
    return 0


def _print_help() -> None:
    """The search parser's help, saying that ``--task`` (which the parser needs) is required for
    a new search only: ``--db`` naming an existing search brings the stored config, task and all."""
    from argparse import SUPPRESS

    from growrnn.search.config import NEUTRAL, SearchConfig, search_parser

    parser = search_parser(db=True)
    resumable = [f.name for f in dataclasses.fields(SearchConfig) if f.name in NEUTRAL]
    parser.description = (f"{parser.description} New search: growrnn search --config FILE --db PATH [options]. "
                          "Resume: growrnn search --db PATH [options], with the config stored in the database "
                          f"(options may change only {', '.join(resumable)}).")
    for action in parser._actions:
        if action.dest == "task":
            action.required, action.default = False, SUPPRESS  # the usage line brackets it; no "required"
            action.help = ("the task's name (``growrnn tasks`` lists them); required for a new search, in the "
                           "--config file or as this option (a resumed search has its stored config's)")
    parser.print_help()


def _interrupted(db: str, command: str) -> int:
    """Ctrl-C: say how to go on instead of printing a traceback; exit status 130 (128 + SIGINT),
    as shells report a command stopped by Ctrl-C."""
    print(f"\n{command}: interrupted. What had finished is stored in {db}; what was training will train "
          f"again.\nResume with: {command} --db {shlex.quote(str(db))}", file=sys.stderr)
    return 130


def _print_confirmation(report: dict) -> None:
    rho = report.get("spearman")
    print(f"confirmation of generation {report['generation']}: {len(report['cells'])} cells retrained from scratch "
          f"on {report['seeds']} seeds ({report['failed']} failed runs); Spearman rho(search score, confirmed mean) "
          f"= {'n/a' if rho is None else f'{rho:.3f}'} over {report['compared']} cells")

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    for k, cell in enumerate(report["cells"], 1):
        spread = "" if cell["val_std"] is None else f" ± {cell['val_std']:.2g}"
        print(f"  {k:2d}. cell {cell['id']} ({'+'.join(cell['roles'])}): confirmed val {show(cell['val_mean'])}"
              f"{spread} ({cell['done']} runs), search val {show(cell['search_val'])}, "
              f"{show(cell['params'])} parameters")


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
    if argv and argv[0] == "confirm":
        return _confirm(argv[1:])
    return _run(argv)
