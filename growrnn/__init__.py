"""growrnn: recurrent networks whose structure is learned.

Public names are loaded lazily (PEP 562) so that ``import growrnn`` and ``growrnn --help`` stay
fast and ``import growrnn.genome`` does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Genome": "growrnn.genome",
    "parse": "growrnn.genome",
    "complexity": "growrnn.genome",
    "Complexity": "growrnn.genome",
    "random_genome": "growrnn.genome",
    "GenomeSpace": "growrnn.genome",
    "GenomeRNN": "growrnn.cells",
    "GrowRNNError": "growrnn.errors",
    "GenomeError": "growrnn.errors",
    "ShapeError": "growrnn.errors",
    "ArgumentError": "growrnn.errors",
}
_SUBMODULES = {"cells", "genome", "errors"}

__all__ = [
    "ArgumentError", "Complexity", "Genome", "GenomeError", "GenomeRNN", "GenomeSpace", "GrowRNNError",
    "ShapeError", "__version__", "cells", "complexity", "errors", "genome", "parse", "random_genome",
]

if TYPE_CHECKING:  # pragma: no cover
    from growrnn import cells, errors, genome
    from growrnn.cells import GenomeRNN
    from growrnn.errors import ArgumentError, GenomeError, GrowRNNError, ShapeError
    from growrnn.genome import Complexity, Genome, GenomeSpace, complexity, parse, random_genome


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"growrnn.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'growrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
