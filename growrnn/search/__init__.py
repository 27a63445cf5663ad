"""Evolutionary cell search (issue [D]): variation (:mod:`growrnn.search.variation`: operators,
network morphisms, weight inheritance), multi-objective selection, the SQLite archive, the
learning-curve predictor, novelty, the generation loop, TensorBoard reports and export. Jobs run
on the executors of :mod:`growrnn.executors`.

Names are loaded lazily (PEP 562), so ``import growrnn.search`` imports neither torch nor pymoo;
each submodule loads when one of its names is first used.

>>> from growrnn.search import load_config, run_search          # doctest: +SKIP
>>> run_search(load_config("configs/debug/search.yaml"), "runs/debug_search.db")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule of growrnn.search that defines it
_LAZY: dict[str, str] = {
    **dict.fromkeys(("Limits",), "variation.draft"),
    **dict.fromkeys(("Operator", "Crossover", "point_mutation", "insert_branch", "shrink", "add_state",
                     "remove_state", "subtree_crossover", "homologous_crossover", "OPERATORS", "CROSSOVERS",
                     "vary"), "variation.operators"),
    **dict.fromkeys(("add_unit", "remove_unit", "add_connection", "add_recurrent_connection", "remove_connection",
                     "change_activation", "change_combination", "zero_init_nodes", "MORPHISMS"), "variation.morphisms"),
    **dict.fromkeys(("InheritReport", "inherit_weights"), "variation.inherit"),
    **dict.fromkeys(("OBJECTIVES", "Objective", "crowding_distances", "hypervolume", "nondominated_ranks",
                     "objective_matrix", "survive", "tournament"), "selection"),
    **dict.fromkeys(("Archive", "CandidateRow", "GenerationRow", "STATUSES", "decode_state", "encode_state"),
                    "storage"),
    **dict.fromkeys(("CurvePredictor", "EarlyStopRule", "PredictorStop", "holdout_report"), "predictor"),
    **dict.fromkeys(("behaviour", "NoveltyArchive"), "novelty"),
    **dict.fromkeys(("SearchConfig", "NoveltyConfig", "PredictorConfig", "load_config",
                     "check_config", "config_from_dict", "config_to_dict"), "config"),
    **dict.fromkeys(("run_search", "SearchResult", "candidate_seed"), "loop"),
    "run_candidate": "job",
    **dict.fromkeys(("log_generation", "first_front", "pareto_figure"), "report"),
    "export_front": "export",
}

__all__ = ["Archive", "CROSSOVERS", "CandidateRow", "Crossover", "CurvePredictor", "EarlyStopRule",
           "GenerationRow", "InheritReport", "Limits", "MORPHISMS",
           "NoveltyArchive", "NoveltyConfig", "OBJECTIVES", "OPERATORS", "Objective", "Operator",
           "PredictorConfig", "PredictorStop", "STATUSES", "SearchConfig", "SearchResult",
           "add_connection", "add_recurrent_connection", "add_state", "add_unit", "behaviour", "candidate_seed",
           "change_activation", "change_combination", "check_config", "config_from_dict", "config_to_dict",
           "crowding_distances", "decode_state", "encode_state", "export_front", "first_front", "holdout_report",
           "homologous_crossover", "hypervolume", "inherit_weights", "insert_branch", "load_config",
           "log_generation", "nondominated_ranks", "objective_matrix", "pareto_figure",
           "point_mutation", "remove_connection", "remove_state", "remove_unit", "run_candidate", "run_search",
           "shrink", "subtree_crossover", "survive", "tournament", "vary", "zero_init_nodes"]

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.search.config import (
        NoveltyConfig,
        PredictorConfig,
        SearchConfig,
        check_config,
        config_from_dict,
        config_to_dict,
        load_config,
    )
    from growrnn.search.export import export_front
    from growrnn.search.job import run_candidate
    from growrnn.search.loop import SearchResult, candidate_seed, run_search
    from growrnn.search.novelty import NoveltyArchive, behaviour
    from growrnn.search.predictor import CurvePredictor, EarlyStopRule, PredictorStop, holdout_report
    from growrnn.search.report import first_front, log_generation, pareto_figure
    from growrnn.search.selection import (
        OBJECTIVES,
        Objective,
        crowding_distances,
        hypervolume,
        nondominated_ranks,
        objective_matrix,
        survive,
        tournament,
    )
    from growrnn.search.storage import STATUSES, Archive, CandidateRow, GenerationRow, decode_state, encode_state
    from growrnn.search.variation.draft import Limits
    from growrnn.search.variation.inherit import InheritReport, inherit_weights
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
        value = getattr(importlib.import_module(f"growrnn.search.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'growrnn.search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
