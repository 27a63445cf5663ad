"""The search's configuration: a tree of dataclasses read from YAML through jsonargparse.

Every shipped search is a YAML file in ``configs/search/`` (and ``configs/debug/search.yaml``); its
top-level keys are the fields of :class:`SearchConfig`, and unknown keys are errors::

    task: jsb
    budget: {epochs: 3}
    model: {hidden_size: 64, lr: 0.003}
    population: 20
    offspring: 20
    generations: 10

:func:`load_config` reads such a file, :func:`config_from_dict` rebuilds a config from the dict
that :func:`config_to_dict` wrote into a search archive, and :func:`check_config` runs the checks
that need the rest of growrnn (task names, ``SequenceModel`` and ``Trainer`` options, objective and
operator names). This module imports only the standard library, jsonargparse and
:mod:`growrnn.search.variation.operators` at module level, so reading a config stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from growrnn.errors import ArgumentError, check_choice, check_int, is_number
from growrnn.evaluation.config import (
    RESUMABLE,
    Budget,
    check_grow,
    check_options,
    check_sizes,
    config_parser,
    load_cell,
    neutral_keys,
    read_config,
)
from growrnn.evaluation.config import (
    parse_command as parse,
)
from growrnn.search.variation.draft import Limits
from growrnn.search.variation.operators import CROSSOVERS, OPERATORS

__all__ = ["ConfirmConfig", "NoveltyConfig", "PredictorConfig", "RungConfig", "SearchConfig", "SpeciationConfig",
           "NEUTRAL", "check_config",
           "config_from_dict", "config_to_dict", "load_config", "parse_command", "search_parser"]


@dataclass(frozen=True)
class NoveltyConfig:
    """Novelty as an extra objective, maximised (see :mod:`growrnn.search.novelty`).

    ``k`` neighbours, ``add_threshold``/``max_size`` of the archive; the behaviour is the cell's
    outputs (``hidden_size`` units) on a fixed random sequence of ``steps`` steps of
    ``input_size`` features."""

    k: int = 10
    add_threshold: float | None = None
    max_size: int = 500
    steps: int = 20
    input_size: int = 4
    hidden_size: int = 8


@dataclass(frozen=True)
class SpeciationConfig:
    """Species of similar cells, and selection within them (see :mod:`growrnn.search.species`).

    A cell joins the species of the nearest representative closer than ``threshold`` (a
    :func:`~growrnn.genome.genome_distance`, in (0, 1]; one variation is about 0.04-0.25 away,
    the library cells 0.23-0.89 apart) or founds a new one. Each species keeps its ``elites``
    best cells in the population, and parents win tournaments on their standing within their
    species. With ``target_species``, the threshold moves by ``threshold_step`` after each
    generation toward that many species (``threshold_rule: step``, NEAT's), or is solved for
    each generation as the smallest that splits the pool into at most that many species
    (``threshold_rule: solve``); ``target_species: null`` keeps it fixed."""

    threshold: float = 0.3
    target_species: int | None = None
    threshold_step: float = 0.02
    elites: int = 1
    threshold_rule: str = "step"


@dataclass(frozen=True)
class PredictorConfig:
    """The learning-curve predictor that stops hopeless candidates early (see
    :mod:`growrnn.search.predictor`).

    After each generation a :class:`~growrnn.search.predictor.CurvePredictor` reading the first
    ``k`` validation points is refit on every candidate that trained to the end; in the next
    generation a candidate whose predicted final validation metric is worse than the worst one on
    the current front by more than ``margin`` stops there, and its prediction stands in for its
    metric. Nothing stops before ``min_train`` finished curves exist. The budget needs more than
    ``k`` validations (set ``budget.val_every``) for this to save anything."""

    k: int = 3
    margin: float = 0.0
    min_train: int = 8
    hidden_size: int = 16
    epochs: int = 300


@dataclass(frozen=True)
class RungConfig:
    """Multi-fidelity evaluation (see :mod:`growrnn.search.rungs`): from generation 1 on, each
    generation's children train in ``count`` rungs whose budgets are ``1 / reduction_factor **
    (count - 1)``, ..., ``1 / reduction_factor``, ``1`` of ``budget`` (steps and epochs scaled),
    and only the best ``ceil(n / reduction_factor)`` of a rung's ``n`` go on to the next, from
    where they stopped."""

    reduction_factor: int = 2
    count: int = 3


@dataclass(frozen=True)
class ConfirmConfig:
    """Confirmation (see :mod:`growrnn.search.confirm`): when the last generation ends, the final
    front and the seeded baselines (generation 0's ``initial`` cells) are retrained from fresh
    weights -- no inheritance, no early stop -- on the candidates' budget, ``seeds`` times each
    (the same ``seeds`` training seeds for every cell), and what the search hands out is ranked by
    the confirmed metric."""

    seeds: int = 3


@dataclass(frozen=True)
class SearchConfig:
    """A (mu + lambda) NSGA-II search over cell genomes.

    Args:
        task: the task's name (``growrnn tasks`` lists them).
        budget: each candidate's training budget.
        task_options: options of the task (``batch_size``, ...).
        model: ``SequenceModel`` options (``hidden_size``, ``optimizer``, ``lr``, ``dropout``, ...);
            the search sets ``cell`` and ``seed``. With ``grow``, ``hidden_size`` is the start size,
            a list with one size per layer.
        trainer: extra ``lightning.Trainer`` options (``gradient_clip_val``, ...).
        population: mu, the candidates kept each generation.
        offspring: lambda, the children made each generation.
        generations: generations of offspring after generation 0 (the initial population), so a
            search evaluates at most ``population + generations * offspring`` candidates.
        objectives: minimised/maximised together, names from
            :data:`growrnn.search.selection.OBJECTIVES` (``val`` follows the task's direction).
        initial: generation 0: library cell names, genome texts or genome files; the rest of the
            population is filled with mutants of them.
        operators: the variation operators to use (names from ``OPERATORS`` and ``CROSSOVERS`` of
            :mod:`growrnn.search.variation.operators`); ``None`` for all.
        limits: bloat limits every child respects.
        p_crossover: probability that a child is a crossover of two parents.
        novelty: turn novelty on as an extra objective (``{}`` for the defaults).
        speciation: group cells into species by structure and select within them (``{}`` for
            the defaults); ``null`` (the default) leaves selection as it is.
        predictor: turn the early-stopping predictor on (``{}`` for the defaults).
        inherit: a child starts from its first parent's trained weights (every weighted call site
            that survived the variation; encoder, decoder and multipliers where shapes match). The
            population's weights are kept beside the database (``<db>_weights/``), so on a
            multi-node Ray cluster that folder must be on a file system every node shares.
        grow: ``StructureController`` options: each candidate trains with growth on, starting from
            ``model.hidden_size``, and the ``params`` objective is the grown parameter count.
        rungs: evaluate each generation's children in rungs of growing budget (successive
            halving), promoting the best by NSGA-II rank and crowding on the predicted final or
            observed metric; ``null`` (the default) trains every candidate on the whole budget.
        confirm: retrain the final front and the baselines from scratch with ``seeds`` seeds when
            the last generation ends (on by default; ``null`` turns it off, and ``growrnn search
            confirm`` runs it on demand).
        test: also score each candidate on the test set (recorded, never used for selection).
        executor: ``local`` (a process pool on this machine) or ``ray``.
        workers: parallel evaluations (local: processes, 0 runs them inline; ray: CPUs of a
            private local Ray when ``address`` is not given).
        address: a Ray cluster to join (``auto`` or ``HOST:PORT``).
        timeout_s: seconds one evaluation may take before it is killed.
        retries: further attempts for an evaluation that failed, crashed or timed out.
        seed: seeds everything; the same seed gives the same search.
        tensorboard: TensorBoard folder (default: the database path without suffix, plus ``_tb``).
        progress: show a progress bar on the console.

    ``generations``, ``executor``, ``workers``, ``address``, ``timeout_s``, ``tensorboard``,
    ``progress`` and ``confirm`` may change when a search resumes (:data:`NEUTRAL`): they change
    how long it runs and where and how it computes, or how many seeds check what it found, not
    what it finds.
    """

    task: str
    budget: Budget
    task_options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    population: int = 20
    offspring: int = 20
    generations: int = field(default=10, metadata=RESUMABLE)
    objectives: list[str] = field(default_factory=lambda: ["val", "params"])
    initial: list[str] = field(default_factory=lambda: ["lstm", "gru", "elman", "mgu"])
    operators: list[str] | None = None
    limits: Limits = field(default_factory=Limits)
    p_crossover: float = 0.2
    novelty: NoveltyConfig | None = None
    speciation: SpeciationConfig | None = None
    predictor: PredictorConfig | None = None
    rungs: RungConfig | None = None
    inherit: bool = True
    grow: dict[str, Any] | None = None
    confirm: ConfirmConfig | None = field(default_factory=ConfirmConfig, metadata=RESUMABLE)
    test: bool = True
    executor: Literal["local", "ray"] = field(default="local", metadata=RESUMABLE)
    workers: int = field(default=2, metadata=RESUMABLE)
    address: str | None = field(default=None, metadata=RESUMABLE)
    timeout_s: float | None = field(default=None, metadata=RESUMABLE)
    retries: int = 1
    seed: int = 0
    tensorboard: str | None = field(default=None, metadata=RESUMABLE)
    progress: bool = field(default=True, metadata=RESUMABLE)


#: Config keys that may change when a search resumes (the fields marked ``RESUMABLE``).
NEUTRAL = neutral_keys(SearchConfig)


def search_parser(prog: str = "growrnn search", *, db: bool = False) -> Any:
    """The jsonargparse parser of :class:`SearchConfig` (``--config FILE`` plus one option per
    field, ``--budget.steps``-style for nested ones); with ``db``, also ``--db PATH``."""
    parser = config_parser(SearchConfig, prog, "Evolve recurrent cells: a (mu + lambda) NSGA-II search whose every "
                           "candidate is stored in one SQLite database.", "a search YAML (configs/search/*.yaml)")
    if db:
        parser.add_argument("--db", type=str, required=True,
                            help="the search's SQLite database; an existing one is resumed")
    return parser


def parse_command(argv: list[str]) -> tuple[SearchConfig, str]:
    """``growrnn search``'s arguments -> the (checked) config and the ``--db`` path."""
    config, namespace = parse(SearchConfig, search_parser(db=True), argv, "growrnn search",
                              "--config FILE --db PATH and config keys as options", check_config)
    return config, namespace.db


def load_config(path: str | Path, overrides: list[str] | None = None) -> SearchConfig:
    """Read a search YAML (unknown keys are errors), apply command-line style ``overrides``
    (``["--population", "8"]``) and run :func:`check_config`."""
    config = read_config(SearchConfig, path, search_parser(), overrides=overrides, what="a search YAML",
                         example="configs/debug/search.yaml")
    check_config(config)
    return config


def config_to_dict(config: SearchConfig) -> dict[str, Any]:
    """The config as JSON values (what a search archive stores and compares on resume)."""
    return dataclasses.asdict(config)


def config_from_dict(values: dict[str, Any]) -> SearchConfig:
    """Rebuild (and check) a config from :func:`config_to_dict`'s dict."""
    config = read_config(SearchConfig, values, search_parser(), what="a search config",
                         example="configs/debug/search.yaml")
    check_config(config)
    return config


def check_config(config: SearchConfig) -> None:
    """Checks a YAML schema cannot express; raises :class:`~growrnn.errors.ArgumentError` naming
    the key. Imports the task registry, ``SequenceModel`` and Lightning to check their options."""
    for name, low in (("population", 1), ("offspring", 1), ("generations", 0), ("workers", 0), ("retries", 0)):
        check_int(name, getattr(config, name), low)
    check_int("seed", config.seed, 0)
    if not 0.0 <= config.p_crossover <= 1.0:
        raise ArgumentError("p_crossover", allowed="a float in [0, 1]", received=config.p_crossover)
    if config.timeout_s is not None and not 0 < config.timeout_s < math.inf:
        raise ArgumentError("timeout_s", allowed="a positive number of seconds, or null", received=config.timeout_s)
    from growrnn.search.selection import OBJECTIVES

    if not config.objectives or len(set(config.objectives)) != len(config.objectives) \
            or any(o not in OBJECTIVES for o in config.objectives):
        raise ArgumentError("objectives", allowed=f"a list of distinct names from {', '.join(OBJECTIVES)}",
                            received=config.objectives, hint="e.g. [val, params]; novelty is switched on by novelty:")
    names = [*OPERATORS, *CROSSOVERS]
    if config.operators is not None and (not config.operators or any(o not in names for o in config.operators)):
        raise ArgumentError("operators", allowed=f"null (all) or names from {', '.join(names)}",
                            received=config.operators)
    if not config.initial or len(config.initial) > config.population:
        raise ArgumentError("initial", allowed=f"1 to population ({config.population}) cells", received=config.initial,
                            hint="library names (lstm, gru, elman, mgu, indrnn), genome texts or genome files")
    for i, cell in enumerate(config.initial):
        load_cell(cell, f"initial[{i}]")
    if config.predictor is not None:
        p = config.predictor
        check_int("predictor.k", p.k, 1)
        check_int("predictor.min_train", p.min_train, 2)
        check_int("predictor.hidden_size", p.hidden_size, 1, hint="the predictor network's hidden units")
        check_int("predictor.epochs", p.epochs, 1, hint="the predictor network's training epochs at each refit")
        if not 0.0 <= p.margin < math.inf:
            raise ArgumentError("predictor.margin", allowed="a finite float >= 0", received=p.margin)
    if config.novelty is not None:
        n = config.novelty
        check_int("novelty.k", n.k, 1)
        for name in ("max_size", "steps", "input_size", "hidden_size"):
            check_int(f"novelty.{name}", getattr(n, name), 1,
                      hint="the novelty archive's size, and the fixed random sequence (steps, features) and "
                           "units a cell's behaviour is read on")
        if n.add_threshold is not None and not (is_number(n.add_threshold) and math.isfinite(n.add_threshold)):
            raise ArgumentError("novelty.add_threshold", allowed="null or a finite number", received=n.add_threshold)
    if config.speciation is not None:
        _check_speciation(config.speciation, config.population)
    if config.rungs is not None:
        from growrnn.search.rungs import rung_budgets

        check_int("rungs.reduction_factor", config.rungs.reduction_factor, 2,
                  hint="2 halves each rung, 3 keeps a third")
        check_int("rungs.count", config.rungs.count, 1, hint="3 rungs: 1/4, 1/2 and all of the budget with factor 2")
        rung_budgets(config.budget, config.rungs)  # the budget must split into growing rungs
    if config.speciation is not None and config.rungs is not None:
        raise ArgumentError("speciation, rungs", allowed="one of them (or neither)", received="both set",
                            hint="survival within niches does not yet weigh rung fidelity: set rungs: null or "
                                 "speciation: null")
    if config.confirm is not None:
        check_int("confirm.seeds", config.confirm.seeds, 1,
                  hint="3 or more seeds give a mean and a spread; null turns confirmation off")
    if config.executor == "local" and config.address is not None:
        raise ArgumentError("address", allowed="null with executor: local", received=config.address,
                            hint="use executor: ray to join a cluster")
    _check_components(config)


def _check_speciation(sp: SpeciationConfig, population: int) -> None:
    for name, value in (("threshold", sp.threshold), ("threshold_step", sp.threshold_step)):
        if not is_number(value) or not 0.0 < value <= 1.0:
            raise ArgumentError(f"speciation.{name}", allowed="a number in (0, 1]", received=value,
                                hint="genome distances lie in [0, 1]; one variation is about 0.04-0.25 away")
    check_int("speciation.elites", sp.elites, 1, hint="each species keeps this many of its best cells")
    check_choice("speciation.threshold_rule", sp.threshold_rule, ("step", "solve"),
                 hint="step: NEAT's threshold_step a generation toward target_species; solve: the "
                      "threshold that gives target_species, found for each generation")
    if sp.target_species is not None:
        check_int("speciation.target_species", sp.target_species, 1, allowed=f"null or an int in [1, {population}]",
                  hint="at most one species per cell of the population")
        if sp.target_species > population:
            raise ArgumentError("speciation.target_species", allowed=f"null or an int in [1, {population}]",
                                received=sp.target_species, hint="at most one species per cell of the population")


def _check_components(config: SearchConfig) -> None:
    check_options(config, "the search", task_hint="options of the task's constructor",
                  trainer_hint="the budget sets how long each candidate trains")
    if config.model.get("hidden_size") is not None:
        check_sizes("model.hidden_size", config.model["hidden_size"])
    if config.grow is not None:
        size = config.model.get("hidden_size")
        if not isinstance(size, list):
            raise ArgumentError("model.hidden_size", allowed="a list of start sizes, one per layer, with grow",
                                received=size, hint="e.g. hidden_size: [16]")
        check_grow("grow", config.grow, "the search", "StructureController options, e.g. {max_units: 64}; each "
                   "run's seed seeds the controller", owned=("seed",), model=config.model,
                   sizes=check_sizes("model.hidden_size", size))
