"""Variation: how a search makes children from parents, and how a child starts from its parent's
trained weights.

- :mod:`~growrnn.search.variation.draft`: the draft editor every operator edits a genome through,
  and the bloat :class:`Limits` every child respects;
- :mod:`~growrnn.search.variation.operators`: tree genetic programming (mutations, crossovers) and
  :func:`vary`, which picks one;
- :mod:`~growrnn.search.variation.morphisms`: network morphisms (add a unit, a connection, ...);
- :mod:`~growrnn.search.variation.inherit`: weight inheritance, call site by call site, through the
  stable node ids the operators keep (needs torch; the other three are standard library only).

Names are loaded lazily (PEP 562), so ``import growrnn.search.variation`` imports no torch.

>>> import random, growrnn as gr
>>> from growrnn.search.variation import Limits, vary
>>> child, name = vary([gr.cells.gru()], random.Random(0), Limits())
>>> child.key != gr.cells.gru().key
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule of growrnn.search.variation that defines it
_LAZY: dict[str, str] = {
    **dict.fromkeys(("Limits", "Draft", "attempt", "measure"), "draft"),
    **dict.fromkeys(("Operator", "Crossover", "point_mutation", "insert_branch", "shrink", "add_state", "remove_state",
                     "subtree_crossover", "homologous_crossover", "OPERATORS", "CROSSOVERS", "vary"), "operators"),
    **dict.fromkeys(("add_unit", "remove_unit", "add_connection", "add_recurrent_connection", "remove_connection",
                     "change_activation", "change_combination", "zero_init_nodes", "MORPHISMS"), "morphisms"),
    **dict.fromkeys(("InheritReport", "inherit_weights", "inherit_state"), "inherit"),
}

__all__ = ["CROSSOVERS", "Crossover", "Draft", "InheritReport", "Limits", "MORPHISMS", "OPERATORS", "Operator",
           "add_connection", "add_recurrent_connection", "add_state", "add_unit", "attempt", "change_activation",
           "change_combination", "homologous_crossover", "inherit_state", "inherit_weights", "insert_branch",
           "measure", "point_mutation", "remove_connection", "remove_state", "remove_unit", "shrink",
           "subtree_crossover", "vary", "zero_init_nodes"]

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.search.variation.draft import Draft, Limits, attempt, measure
    from growrnn.search.variation.inherit import InheritReport, inherit_state, inherit_weights
    from growrnn.search.variation.morphisms import (
        MORPHISMS,
        add_connection,
        add_recurrent_connection,
        add_unit,
        change_activation,
        change_combination,
        remove_connection,
        remove_unit,
        zero_init_nodes,
    )
    from growrnn.search.variation.operators import (
        CROSSOVERS,
        OPERATORS,
        Crossover,
        Operator,
        add_state,
        homologous_crossover,
        insert_branch,
        point_mutation,
        remove_state,
        shrink,
        subtree_crossover,
        vary,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"growrnn.search.variation.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'growrnn.search.variation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
