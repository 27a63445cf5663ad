"""``growrnn compare``: train every entry of a comparison config and write its report.

::

    growrnn compare --config configs/compare/jsb.yaml --out runs/compare/jsb [--workers 2]
    growrnn compare --config configs/debug/compare.yaml --out /tmp/cmp --dry-run

Every config key is also an option (``--workers 2``, ``--seeds [0,1,2,3,4]``); options override
the file. Run the same command again to resume: finished runs are skipped.
``growrnn.cli`` hands over the arguments after the word ``compare``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``growrnn compare`` (``argv`` without the word ``compare``); returns the exit
    code: 0, or 1 when some runs failed (the report then holds the others; rerun to retry them).
    Errors are :class:`~growrnn.errors.GrowRNNError` s, which ``growrnn.cli`` prints."""
    from growrnn.compare.config import compare_parser, parse_command

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # one line per run (trained, skipped, failed) is the progress a comparison shows
    logging.getLogger("growrnn.compare").setLevel(logging.INFO)
    if "-h" in argv or "--help" in argv:
        compare_parser(out=True).print_help()
        return 0
    config, namespace = parse_command(argv)
    from growrnn.compare.report import write_report
    from growrnn.compare.runner import run_comparison

    out = Path(namespace.out)
    comparison = run_comparison(config, out, dry_run=bool(namespace.dry_run))
    if namespace.dry_run:
        print(f"dry run: {len(comparison.entries)} entries, {len(comparison.skipped)} runs finished, "
              f"{len(comparison.pending)} to train")
        return 0
    write_report(comparison, config)
    trained = len(comparison.trained)
    print(f"comparison in {out}: {trained} run{'' if trained == 1 else 's'} trained, {len(comparison.skipped)} "
          "finished before"
          + (f", {len(comparison.adopted)} the best tuning run's" if comparison.adopted else "")
          + (f", {len(comparison.failed)} FAILED ({', '.join(comparison.failed)}; rerun to retry)"
             if comparison.failed else "")
          + (f", {len(comparison.pending)} waiting" if comparison.pending else "")
          + f". See {out / 'results.md'}, {out / 'pareto.png'}; tensorboard --logdir {out / 'tb'}")
    return 1 if comparison.failed else 0
