"""Evaluation: train a cell on a task for a budget and score it -- the one candidate runner,
:func:`evaluate`, shared by search and compare -- and the config layer of the commands that run it
(:mod:`growrnn.evaluation.config`).

Names are loaded lazily (PEP 562): ``from growrnn.evaluation.config import Budget`` does not
import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {"Budget": "config", "Result": "runner", "evaluate": "runner"}

__all__ = ["Budget", "Result", "evaluate"]

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.evaluation.config import Budget
    from growrnn.evaluation.runner import Result, evaluate


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"growrnn.evaluation.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'growrnn.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
