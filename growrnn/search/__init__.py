"""Evolutionary cell search (issue [D]): variation (its own package,
:mod:`growrnn.search.variation`: the draft editor and ``Limits``, operators, network morphisms,
weight inheritance), multi-objective selection, the SQLite archive, the
learning-curve predictor, multi-fidelity rungs, novelty, speciation, the generation loop,
confirmation from scratch, TensorBoard reports and export. Jobs run on the executors of
:mod:`growrnn.executors`.

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
    **dict.fromkeys(("OBJECTIVES", "Objective", "crowding_distances", "hypervolume", "nondominated_ranks",
                     "objective_matrix", "spearman", "survive", "tournament", "survive_in_niches", "niche_ranks"),
                    "selection"),
    **dict.fromkeys(("speciate", "select_in_niches", "adapt_threshold"), "species"),
    **dict.fromkeys(("Archive", "CandidateRow", "ConfirmationRow", "GenerationRow", "RungRow", "STATUSES",
                     "decode_state", "encode_state"), "storage"),
    **dict.fromkeys(("promote", "rung_budgets", "tiered_survival"), "rungs"),
    **dict.fromkeys(("CurvePredictor", "EarlyStopRule", "PredictorStop", "holdout_report"), "predictor"),
    **dict.fromkeys(("behaviour", "NoveltyArchive"), "novelty"),
    **dict.fromkeys(("ConfirmedCell", "confirm_search", "confirm_seed", "confirmed_cells", "run_confirmation"),
                    "confirm"),
    **dict.fromkeys(("SearchConfig", "ConfirmConfig", "RungConfig", "NoveltyConfig", "PredictorConfig",
                     "SpeciationConfig", "load_config",
                     "check_config", "config_from_dict", "config_to_dict"), "config"),
    **dict.fromkeys(("run_search", "SearchResult", "candidate_seed"), "loop"),
    "run_candidate": "job",
    **dict.fromkeys(("log_confirmation", "log_generation", "first_front", "pareto_figure"), "report"),
    "export_front": "export",
}

__all__ = ["Archive", "CandidateRow", "ConfirmConfig", "ConfirmationRow", "ConfirmedCell", "CurvePredictor",
           "EarlyStopRule", "GenerationRow", "NoveltyArchive", "NoveltyConfig", "OBJECTIVES", "Objective",
           "PredictorConfig", "PredictorStop", "RungConfig", "RungRow", "STATUSES", "SearchConfig", "SearchResult",
           "SpeciationConfig", "adapt_threshold", "behaviour", "candidate_seed", "check_config", "config_from_dict",
           "config_to_dict", "confirm_search", "confirm_seed", "confirmed_cells", "crowding_distances",
           "decode_state", "encode_state", "export_front", "first_front", "holdout_report", "hypervolume",
           "load_config", "log_confirmation", "log_generation", "niche_ranks", "nondominated_ranks",
           "objective_matrix", "pareto_figure", "promote", "run_candidate", "run_confirmation", "run_search",
           "rung_budgets", "select_in_niches", "speciate", "spearman", "survive", "survive_in_niches",
           "tiered_survival", "tournament"]

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.search.config import (
        ConfirmConfig,
        NoveltyConfig,
        PredictorConfig,
        RungConfig,
        SearchConfig,
        SpeciationConfig,
        check_config,
        config_from_dict,
        config_to_dict,
        load_config,
    )
    from growrnn.search.confirm import ConfirmedCell, confirm_search, confirm_seed, confirmed_cells, run_confirmation
    from growrnn.search.export import export_front
    from growrnn.search.job import run_candidate
    from growrnn.search.loop import SearchResult, candidate_seed, run_search
    from growrnn.search.novelty import NoveltyArchive, behaviour
    from growrnn.search.predictor import CurvePredictor, EarlyStopRule, PredictorStop, holdout_report
    from growrnn.search.report import first_front, log_confirmation, log_generation, pareto_figure
    from growrnn.search.rungs import promote, rung_budgets, tiered_survival
    from growrnn.search.selection import (
        OBJECTIVES,
        Objective,
        crowding_distances,
        hypervolume,
        niche_ranks,
        nondominated_ranks,
        objective_matrix,
        spearman,
        survive,
        survive_in_niches,
        tournament,
    )
    from growrnn.search.species import adapt_threshold, select_in_niches, speciate
    from growrnn.search.storage import (
        STATUSES,
        Archive,
        CandidateRow,
        ConfirmationRow,
        GenerationRow,
        RungRow,
        decode_state,
        encode_state,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"growrnn.search.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'growrnn.search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
