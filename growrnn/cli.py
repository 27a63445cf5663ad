"""The ``growrnn`` command line. Heavy imports happen inside the subcommands so that
``growrnn --help`` stays fast."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from growrnn.errors import GrowRNNError

log = logging.getLogger("growrnn")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 200,650; received {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1; received {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="growrnn", description="Recurrent networks whose structure is learned.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    show = sub.add_parser("show", help="print a cell's equations and complexity figures")
    show.add_argument("cell", help="a library cell name (lstm, gru, ...) or a genome file (.txt or .json)")
    show.add_argument("--input-size", type=int, default=650)
    show.add_argument("--hidden-size", type=int, default=650)
    show.add_argument("--layers", type=int, default=1)
    show.add_argument("--json", action="store_true", help="print the genome's JSON form too")
    show.add_argument("--out", type=Path, help="write the cell's diagram to OUT.png and OUT.svg")

    for name, what in (("fit", "train a model from a config"), ("validate", "score a checkpoint on valid"),
                       ("test", "score a checkpoint on test")):
        sub.add_parser(name, help=f"{what} (LightningCLI: growrnn {name} --config FILE; --help for all options)",
                       add_help=False)
    for name, what in (("search", "evolve cells: growrnn search --config FILE --db PATH; search confirm|export ..."),
                       ("grow", "growth runs over seeds and their figures: growrnn grow seeds|plot ..."),
                       ("compare", "baselines vs grown vs evolved cells: growrnn compare --config FILE --out DIR")):
        sub.add_parser(name, help=f"{what} (--help for all options)", add_help=False)
    sub.add_parser("tasks", help="list the registered tasks")
    data = sub.add_parser("data", help="benchmark data sets")
    data_sub = data.add_subparsers(dest="data", metavar="ACTION", required=True)
    dl = data_sub.add_parser("download", help="fetch a data set into $GROWRNN_DATA and verify its sha256")
    dl.add_argument("name", help="ptb, wikitext2, jsb, nottingham, piano_midi, musedata or imdb")
    dl.add_argument("--mirror", help="a base URL with the same layout as the data folder")
    dl.add_argument("--force", action="store_true", help="fetch even if a verified copy is present")

    bench = sub.add_parser("bench", help="benchmarks (recorded in docs/benchmarks.md)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    cells = bench_sub.add_parser("cells", help="training-step time of the library cells vs nn.LSTM/nn.GRU")
    cells.add_argument("--sizes", type=_sizes, default=(200, 650), help="hidden sizes, e.g. 200,650")
    cells.add_argument("--batch", type=int, default=20)
    cells.add_argument("--steps", type=int, default=35, help="sequence length T")
    cells.add_argument("--layers", type=int, default=2)
    cells.add_argument("--rounds", type=int, default=20,
                       help="timed steps per entry (median taken; the reference goes first in even rounds: "
                            "an even count balances the order)")
    cells.add_argument("--input", type=int, default=None, help="input size I (default: H)")
    cells.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    cells.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                       help="cpu: the calling thread's CPU time (with --threads 1, robust on a shared machine)")
    cells.add_argument("--search", action="store_true",
                       help="the sizes a CPU search trains: B 8, T 100, I 88, H 32/64/128, one layer")
    cells.add_argument("--quick", action="store_true", help="H=64, 6 rounds: a smoke run in seconds")
    cells.add_argument("--out", type=Path, help="also write the markdown table to this file")
    growth = bench_sub.add_parser("growth", help="training step of a growable layer vs a fixed one; resize cost")
    growth.add_argument("--steps", type=int, default=300, help="timed steps per run")
    growth.add_argument("--rounds", type=int, default=4,
                        help="A/B rounds per case (median taken; the fixed layer goes first in even rounds: "
                             "an even count balances the order)")
    growth.add_argument("--quick", action="store_true", help="30 steps, 1 round: a smoke run")
    growth.add_argument("--case", help="only the cases whose name contains this (e.g. ablation)")
    growth.add_argument("--device", default="cpu",
                        help="cpu (the process's CPU time) or cuda (the wall clock, device synchronized)")
    growth.add_argument("--out", type=Path, help="also write the markdown table to this file")
    return parser


def cmd_show(args: argparse.Namespace) -> int:
    from growrnn.genome import complexity, library_equivalent, load
    g = load(args.cell, "cell")
    print(g.to_text(), end="")
    print(f"# states: {', '.join(g.states)}; canonical key {g.key}; equivalence key {g.equivalence_key}")
    if (same := library_equivalent(g, rewritten=True)) is not None:
        print(f"# the library's {same} up to the values of its weights (growrnn show {same})")
    c = complexity(g, args.input_size, args.hidden_size, args.layers)
    print(f"# I={args.input_size}, H={args.hidden_size}, layers={args.layers} (--input-size, --hidden-size, "
          "--layers): " + ", ".join(f"{k}={v:,}" for k, v in c.as_dict().items()))
    if args.json:
        print(g.to_json(indent=1))
    if args.out:
        from growrnn.genome.figures import draw_genome
        fig = draw_genome(g, title=Path(args.cell).stem)
        for suffix in (".png", ".svg"):
            path = args.out.with_suffix(suffix)
            _writable("--out", path)
            fig.savefig(path, dpi=120)
            print(f"# diagram: {path}")
    return 0


def _writable(option: str, path: Path) -> None:
    """Create ``path``'s folder; an error naming ``option`` if it cannot be (e.g. a file is in the way)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
    except OSError as e:
        from growrnn.errors import ArgumentError
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        raise ArgumentError(option, allowed="a path whose folder exists or can be created", received=str(path),
                            hint=f"{blocker} is a file, not a folder" if blocker is not None
                            else f"it cannot be written: {e.strerror or e}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench == "growth":
        from growrnn.commands.bench_growth import run
        if args.out:
            _writable("--out", args.out)
        table = run(args.steps, args.rounds, args.quick, args.case, args.device) + "\n"
        print(table, end="")
        if args.out:
            args.out.write_text(table)
        return 0
    return cmd_bench_cells(args)


def cmd_bench_cells(args: argparse.Namespace) -> int:
    from growrnn.commands.bench_cells import SEARCH_SIZES, bench_cells, format_table
    if args.out:
        _writable("--out", args.out)
    shape = {"sizes": args.sizes, "batch": args.batch, "steps": args.steps, "layers": args.layers,
             "input_size": args.input}
    if args.search:
        shape.update(SEARCH_SIZES)
    rounds = args.rounds
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.quick:
        shape["sizes"], rounds = (64,), 6
    log.info("timing %d rounds per entry at H=%s", rounds, shape["sizes"])
    rows, peak = bench_cells(rounds=rounds, clock=args.clock, **shape)
    table = format_table(rows, peak, shape["batch"], shape["steps"], shape["layers"], shape["input_size"])
    print(table, end="")
    if args.out:
        args.out.write_text(table)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    """List the registered tasks from their factories' docstrings: nothing is built or read."""
    import inspect
    import textwrap

    from growrnn.task import task_factory, task_names
    for name in task_names():  # each factory's first paragraph, whole (a first line may stop mid-sentence)
        paragraph = inspect.cleandoc(task_factory(name).__doc__ or "").split("\n\n")[0]
        print(textwrap.fill(" ".join(paragraph.replace("``", "`").split()), width=100,
                            initial_indent=f"{name:14s} ", subsequent_indent=" " * 15))
    print("# options: the factory's arguments, e.g. growrnn fit ... --data.task ptb --data.options '{bptt: 35}'")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Download through the `growrnn.datasets` entry points (growrnn never imports tasks statically)."""
    from importlib.metadata import entry_points
    sets = {ep.name: ep for ep in entry_points(group="growrnn.datasets")}
    if args.name not in sets:
        from growrnn.errors import ArgumentError
        raise ArgumentError("name", allowed=", ".join(sorted(sets)), received=args.name,
                            hint="the other tasks generate their data, or read a file you give (char_stream)")
    for path in sets[args.name].load()(args.name, mirror=args.mirror, force=args.force):
        print(path)
    return 0


#: subcommands with their own argument parsers, imported only when used
DELEGATED = {name: f"growrnn.commands.{name}" for name in ("search", "grow", "compare")}
#: subcommands parsed elsewhere (LightningCLI's and the delegated ones), which the global ``-v`` precedes
SUBCOMMANDS = ("fit", "validate", "test", *DELEGATED)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``growrnn``; returns the exit status. Output piped into a reader that stops
    early (``growrnn tasks | head -1``) ends quietly, as other command-line tools do. Started by a
    job that asked for it (``growrnn grow seeds``), it ends when that job's process does."""
    from growrnn.executors.local import die_with_parent_from_env

    die_with_parent_from_env()
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader is gone: send what is still buffered nowhere, so the interpreter's own flush at
        # exit does not raise again (the recipe of the Python docs on SIGPIPE)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None = None) -> int:
    """Run one command; a :class:`~growrnn.errors.GrowRNNError` from any of them is printed here,
    the one place that prints command-line errors, and exits with status 2. A Ctrl-C that reaches
    here ends with one line and status 130, as shells report SIGINT (``growrnn search`` says how
    to resume itself)."""
    try:
        return _dispatch(argv)
    except GrowRNNError as e:
        print(f"growrnn: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        # jsonargparse builds a config's callbacks (a StructureController's options) while it
        # parses, and wraps what their constructor raised in a ValueError of its own that lists
        # every type it tried, under a traceback: the error growrnn raised is the one to print
        inner = e.__cause__ or e.__context__
        if not isinstance(inner, GrowRNNError):
            raise
        print(f"growrnn: error: {inner}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("growrnn: interrupted", file=sys.stderr)
        return 130


def _dispatch(argv: list[str] | None) -> int:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):  # the global option, before any subcommand
        verbose = True
        argv.pop(0)
    if verbose and argv and argv[0] in SUBCOMMANDS:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    elif verbose:
        argv.insert(0, "--verbose")  # growrnn's own parser reads it
    if argv and argv[0] in ("fit", "validate", "test"):
        from growrnn.files import config_files
        from growrnn.training.cli import run
        config_files(argv)  # a --config that is not there: one line, as every command's
        # None: LightningCLI reads sys.argv itself (unless a global option had to be taken off it)
        return run(None if from_shell and not verbose else argv)
    if argv and argv[0] in DELEGATED:
        import importlib
        return int(importlib.import_module(DELEGATED[argv[0]]).main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.version:
        from growrnn import __version__
        print(__version__)
        return 0
    handlers = {"show": cmd_show, "bench": cmd_bench, "tasks": cmd_tasks, "data": cmd_data}
    if args.command is None:
        parser.print_help()
        return 0
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
