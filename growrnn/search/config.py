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
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from growrnn.errors import ArgumentError
from growrnn.search.variation.operators import CROSSOVERS, OPERATORS, Limits

__all__ = ["BudgetConfig", "NoveltyConfig", "PredictorConfig", "SearchConfig", "NEUTRAL", "check_config",
           "build_config", "parse_command", "config_from_dict", "config_parser", "config_to_dict", "initial_genome",
           "load_config"]

#: Config keys that may change when a search resumes, because they change where and how it
#: computes or how long it runs, not what it finds (with storage.NEUTRAL_KEYS added in the loop).
NEUTRAL = frozenset({"generations", "workers", "executor", "address", "timeout_s", "progress", "tensorboard"})
#: SequenceModel arguments the search sets itself (per candidate).
_MODEL_OWNED = ("spec", "cell", "seed")
#: Trainer arguments the search sets itself: callbacks carry inheritance, the predictor and growth;
#: the budget sets the length of training; evaluate() turns logging and checkpoints off.
_TRAINER_OWNED = ("callbacks", "logger", "max_steps", "max_epochs", "max_time", "enable_checkpointing",
                  "val_check_interval", "check_val_every_n_epoch")


@dataclass(frozen=True)
class BudgetConfig:
    """The per-candidate training budget: the fields of :class:`growrnn.evaluation.Budget` (the
    first of ``steps``, ``epochs``, ``seconds`` reached stops; ``val_every`` steps between points of
    the learning curve, default once per epoch). A ``seconds`` budget makes results depend on the
    machine's speed, so two runs with one seed may then differ."""

    steps: int | None = None
    epochs: int | None = None
    seconds: float | None = None
    val_every: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


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
        predictor: turn the early-stopping predictor on (``{}`` for the defaults).
        inherit: a child starts from its first parent's trained weights (every weighted call site
            that survived the variation; encoder, decoder and multipliers where shapes match). The
            population's weights are kept beside the database (``<db>_weights/``), so on a
            multi-node Ray cluster that folder must be on a file system every node shares.
        grow: ``StructureController`` options: each candidate trains with growth on, starting from
            ``model.hidden_size``, and the ``params`` objective is the grown parameter count.
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
    """

    task: str
    budget: BudgetConfig
    task_options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    population: int = 20
    offspring: int = 20
    generations: int = 10
    objectives: list[str] = field(default_factory=lambda: ["val", "params"])
    initial: list[str] = field(default_factory=lambda: ["lstm", "gru", "elman", "mgu"])
    operators: list[str] | None = None
    limits: Limits = field(default_factory=Limits)
    p_crossover: float = 0.2
    novelty: NoveltyConfig | None = None
    predictor: PredictorConfig | None = None
    inherit: bool = True
    grow: dict[str, Any] | None = None
    test: bool = True
    executor: Literal["local", "ray"] = "local"
    workers: int = 2
    address: str | None = None
    timeout_s: float | None = None
    retries: int = 1
    seed: int = 0
    tensorboard: str | None = None
    progress: bool = True


def config_parser(prog: str = "growrnn search", *, db: bool = False) -> Any:
    """The jsonargparse parser of :class:`SearchConfig` (``--config FILE`` plus one option per
    field, ``--model.lr``-style for nested ones); with ``db``, also ``--db PATH``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Evolve recurrent cells: a (mu + lambda) "
                            "NSGA-II search whose every candidate is stored in one SQLite database.")
    parser.add_argument("--config", action=ActionConfigFile, help="a search YAML (configs/search/*.yaml)")
    if db:
        parser.add_argument("--db", type=str, required=True,
                            help="the search's SQLite database; an existing one is resumed")
    parser.add_class_arguments(SearchConfig, fail_untyped=True)
    return parser


def build_config(parser: Any, namespace: Any, cls: type = SearchConfig) -> Any:
    """The ``cls`` (a config dataclass: :class:`SearchConfig` by default, or the comparison's) in a
    namespace that its parser returned; keys that are not its fields (``--db``, ``--out``) are left out."""
    values = parser.instantiate(namespace)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(values).items() if k in fields})


def parse_command(parser: Any, argv: list[str], command: str, allowed: str) -> Any:
    """``parser.parse_args(argv)``, with a parse failure turned into an ArgumentError naming the
    command (``growrnn search``, ``growrnn compare``) and pointing at its ``--help``."""
    from jsonargparse import ArgumentError as ParseError

    try:
        return parser.parse_args(argv)
    except ParseError as err:
        raise ArgumentError(command, allowed=allowed, received=str(err).strip(),
                            hint=f"{command} --help lists them") from None


def _parse(args: list[str], where: str) -> SearchConfig:
    from jsonargparse import ArgumentError as ParseError

    parser = config_parser()
    try:
        return build_config(parser, parser.parse_args(args))
    except ParseError as err:
        raise ArgumentError(where, allowed="a search config with the fields of growrnn.search.SearchConfig",
                            received=str(err).strip(), hint="see configs/debug/search.yaml") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> SearchConfig:
    """Read a search YAML (unknown keys are errors), apply command-line style ``overrides``
    (``["--population", "8"]``) and run :func:`check_config`."""
    path = Path(path)
    if not path.is_file():
        raise ArgumentError("config", allowed="a search YAML file", received=str(path),
                            hint="the shipped ones are in configs/search/ and configs/debug/search.yaml")
    config = _parse(["--config", str(path), *(overrides or [])], str(path))
    check_config(config)
    return config


def config_to_dict(config: SearchConfig) -> dict[str, Any]:
    """The config as JSON values (what a search archive stores and compares on resume)."""
    return dataclasses.asdict(config)


def config_from_dict(values: dict[str, Any]) -> SearchConfig:
    """Rebuild (and check) a config from :func:`config_to_dict`'s dict."""
    import json

    config = _parse(["--config", json.dumps(values)], "config")
    check_config(config)
    return config


def check_int(name: str, value: object, low: int) -> None:
    """An int option ``>= low`` (bools are not ints here), or an ArgumentError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArgumentError(name, allowed=f"an int >= {low}", received=value)


def check_keys(name: str, given: dict[str, Any], target: Any, owned: tuple[str, ...], hint: str,
               owner: str = "the search") -> None:
    """Every key of the options dict ``given`` is a parameter of ``target``, and none is one that
    ``owner`` sets itself (``owned``); else an ArgumentError naming ``name.key``."""
    params = inspect.signature(target).parameters
    known = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    for key in given:
        if key in owned:
            raise ArgumentError(f"{name}.{key}", allowed=f"not set: {owner} sets {', '.join(owned)}",
                                received=given[key], hint=hint)
        if key not in known:
            raise ArgumentError(f"{name}.{key}", allowed=", ".join(sorted(known - set(owned))), received=key,
                                hint=hint)


def check_config(config: SearchConfig) -> None:
    """Checks a YAML schema cannot express; raises :class:`~growrnn.errors.ArgumentError` naming
    the key. Imports the task registry, ``SequenceModel`` and Lightning to check their options."""
    for name, low in (("population", 1), ("offspring", 1), ("generations", 0), ("workers", 0), ("retries", 0)):
        check_int(name, getattr(config, name), low)
    check_int("seed", config.seed, 0)
    from growrnn.evaluation import Budget

    Budget(**dataclasses.asdict(config.budget))  # the one budget check: every value, at least one limit
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
        initial_genome(cell, f"initial[{i}]")
    if config.predictor is not None:
        p = config.predictor
        check_int("predictor.k", p.k, 1)
        check_int("predictor.min_train", p.min_train, 2)
        if not 0.0 <= p.margin < math.inf:
            raise ArgumentError("predictor.margin", allowed="a finite float >= 0", received=p.margin)
    if config.novelty is not None:
        check_int("novelty.k", config.novelty.k, 1)
    if config.executor == "local" and config.address is not None:
        raise ArgumentError("address", allowed="null with executor: local", received=config.address,
                            hint="use executor: ray to join a cluster")
    _check_components(config)


def _check_components(config: SearchConfig) -> None:
    import lightning as L

    from growrnn.task import task_factory, task_names
    from growrnn.training.growth import StructureController
    from growrnn.training.model import SequenceModel

    if config.task not in task_names():
        raise ArgumentError("task", allowed=", ".join(task_names()), received=config.task,
                            hint="growrnn tasks lists the registered tasks")
    check_keys("task_options", config.task_options, task_factory(config.task), (), "options of the task's constructor")
    check_keys("model", config.model, SequenceModel, _MODEL_OWNED,
               "SequenceModel options, as under model: in a fit config")
    check_keys("trainer", config.trainer, L.Trainer, _TRAINER_OWNED, "the budget sets how long each candidate trains")
    if config.grow is not None:
        check_keys("grow", config.grow, StructureController, (), "StructureController options, e.g. {max_units: 64}")
        size = config.model.get("hidden_size")
        if not isinstance(size, list):
            raise ArgumentError("model.hidden_size", allowed="a list of start sizes, one per layer, with grow",
                                received=size, hint="e.g. hidden_size: [16]")


def initial_genome(cell: str, where: str = "initial") -> Any:
    """The genome an ``initial`` entry names: a library cell, genome text, or a ``.txt``/``.json``
    genome file."""
    from growrnn.errors import GenomeError
    from growrnn.genome import load

    try:
        return load(cell, where)
    except GenomeError as err:
        raise ArgumentError(where, allowed="a valid genome", received=cell, hint=str(err)) from None
