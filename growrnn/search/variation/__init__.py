"""Variation: how a search makes children from parents, and how a child starts from its parent's
trained weights.

- :mod:`~growrnn.search.variation.draft`: the draft editor every operator edits a genome through,
  and the bloat :class:`Limits` every child respects;
- :mod:`~growrnn.search.variation.operators`: tree genetic programming (mutations, crossovers) and
  :func:`vary`, which picks one;
- :mod:`~growrnn.search.variation.morphisms`: network morphisms (add a unit, a connection, ...);
- :mod:`~growrnn.search.variation.inherit`: weight inheritance, call site by call site, through the
  stable node ids the operators keep (needs torch; the other three are standard library only).

Weight inheritance loads on first use (PEP 562), so ``import growrnn.search.variation`` imports no
torch.

>>> import random, growrnn as gr
>>> from growrnn.search.variation import Limits, vary
>>> child, name = vary([gr.cells.gru()], random.Random(0), Limits())
>>> child.key != gr.cells.gru().key
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from growrnn.search.variation.draft import Draft, Limits, attempt, measure
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

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.search.variation.inherit import InheritReport, inherit_state, inherit_weights

__all__ = ["CROSSOVERS", "Crossover", "Draft", "InheritReport", "Limits", "MORPHISMS", "OPERATORS", "Operator",
           "add_connection", "add_recurrent_connection", "add_state", "add_unit", "attempt", "change_activation",
           "change_combination", "homologous_crossover", "inherit_state", "inherit_weights", "insert_branch",
           "measure", "point_mutation", "remove_connection", "remove_state", "remove_unit", "shrink",
           "subtree_crossover", "vary", "zero_init_nodes"]


def __getattr__(name: str) -> Any:
    if name in ("InheritReport", "inherit_state", "inherit_weights"):  # they need torch: loaded on first use
        from growrnn.search.variation import inherit

        return getattr(inherit, name)
    raise AttributeError(f"module 'growrnn.search.variation' has no attribute {name!r}")
