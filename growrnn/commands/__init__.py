"""The commands that orchestrate runs or benchmarks, each the ``main(argv)`` of one ``growrnn``
subcommand; :mod:`growrnn.cli` dispatches to them and prints their errors.

- :mod:`~growrnn.commands.search`: ``growrnn search`` (run, resume, ``export``);
- :mod:`~growrnn.commands.compare`: ``growrnn compare``;
- :mod:`~growrnn.commands.grow`: ``growrnn grow seeds|plot`` (one growth config over many seeds,
  on the executors of :mod:`growrnn.executors`);
- :mod:`~growrnn.commands.bench_cells` and :mod:`~growrnn.commands.bench_growth`: ``growrnn bench
  cells|growth``.

They sit above every library package (they may import any of them); no library package imports
them.
"""
