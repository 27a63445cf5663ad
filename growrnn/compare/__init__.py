"""Compare self-sizing RNNs, evolved cells, evolved cells that grow, and the standard cells on one
task, fairly: the same training budget, seeds and tuning grid for every entry.

``growrnn compare --config configs/compare/jsb.yaml --out DIR`` (:mod:`growrnn.commands.compare`) trains every
(entry, seed) with :func:`growrnn.evaluation.evaluate`, stores each finished run at once (so an
interrupted comparison resumes), and writes ``DIR/results.csv``, ``DIR/results.md``,
``DIR/pareto.png`` and one TensorBoard run per (entry, seed) under ``DIR/tb/``. From Python::

    from growrnn.compare import load_config, run_comparison, write_report
    config = load_config("configs/debug/compare.yaml")
    write_report(run_comparison(config, "runs/compare_debug"), config)

Names resolve lazily (PEP 562), so ``growrnn --help`` does not pay for torch or Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CompareConfig", "EntryConfig", "FAMILIES", "load_config", "run_comparison", "summarise", "write_report"]

_WHERE = {"CompareConfig": "config", "EntryConfig": "config", "FAMILIES": "config", "load_config": "config",
          "run_comparison": "runner", "summarise": "report", "write_report": "report"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'growrnn.compare' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"growrnn.compare.{_WHERE[name]}"), name)

