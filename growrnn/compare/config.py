"""A comparison's configuration: a tree of dataclasses read from YAML through jsonargparse.

Every shipped comparison is a YAML file in ``configs/compare/`` (plus ``configs/debug/compare.yaml``);
its top-level keys are the fields of :class:`CompareConfig`, and unknown keys are errors::

    task: jsb
    task_options: {batch_size: 8}
    model: {dropout: 0.2, optimizer: adam}        # shared by every entry
    budget: {epochs: 40}                           # the same for every entry
    seeds: [0, 1, 2]
    tuning: {lr: [0.001, 0.003, 0.01]}             # the same grid for every entry
    entries:
      - {name: lstm_64, family: baseline, cell: lstm, hidden_size: 64}
      - {name: lstm_grown, family: grown, cell: lstm, hidden_size: [16], grow: {max_units: 512}}
      - {name: evolved, family: evolved, search_db: runs/search/jsb.db, front: true, hidden_size: 64}

Fairness is built into the shape: the budget, the seeds, the shared model and trainer options and
the tuning grid are top-level, so no entry can have more of them than another. An entry adds only
what makes it that entry: its cell, its size, its growth options, and the few model options its
family needs (the L1 decrement that drives the v3 growth signal, say), which the results name.

:func:`load_config` reads and checks a file; :func:`growrnn.compare.entries.resolve_entries`
turns the entries into the runnable list. The budget, the keys a comparison owns, the loader and
the parse-error translation are the config layer it shares with ``growrnn search``
(:mod:`growrnn.evaluation.config`); this module imports only the standard library and that layer
at module level.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from growrnn.errors import ArgumentError, check_int
from growrnn.evaluation.config import (
    MODEL_OWNED,
    Budget,
    check_grow,
    check_keys,
    check_options,
    check_sizes,
    check_value,
    config_parser,
    load_cell,
    read_config,
)
from growrnn.evaluation.config import (
    parse_command as parse,
)

__all__ = ["FAMILIES", "CompareConfig", "EntryConfig", "check_config", "compare_parser", "load_config", "parse_command",
           "tuning_grid"]

#: The families of a comparison, in the order the plot's legend lists them.
FAMILIES = ("baseline", "grown", "evolved", "evolved_grown")
_GROWN = ("grown", "evolved_grown")
_EVOLVED = ("evolved", "evolved_grown")
#: An entry name is a folder name under runs/ and tb/, so keep it to safe characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class EntryConfig:
    """One line of the comparison (or, with ``search_db``, one per cell of a search's front).

    Args:
        name: the entry's name (a folder name; for a search archive, the prefix of its cells'
            names ``<name>_<candidate id>``).
        family: ``baseline`` (a fixed-size cell), ``grown`` (a cell whose layers size themselves),
            ``evolved`` (a cell found by ``growrnn search``) or ``evolved_grown`` (one, grown).
        cell: a library cell name, genome text, or a ``.txt``/``.json`` genome file.
        hidden_size: units per layer; for grown families the start size (an int for one layer, a
            list for a growable stack). Default: the shared ``model.hidden_size``.
        grow: ``StructureController`` options (grown families only; ``{}`` for the defaults). The
            controller's seed is the run's seed.
        model: ``SequenceModel`` options of this entry only, on top of the shared ones (e.g. the
            ``l1`` decrement the v3 growth signal needs).
        search_db: evolved families: a search archive whose last generation supplies the cells.
        front: with ``search_db``: only the first Pareto front (else the whole last population).
        top: with ``search_db``: only the ``top`` of those cells best on validation (default:
            all), to bound a comparison's cost when a front is long.
        match_params: the name of a fixed-size entry (family ``baseline`` or ``evolved``, not
            itself matched): this entry's cells take the layer size (the same in every layer)
            whose model has the parameter count closest to that entry's, so they compare at
            equal parameters (``hidden_size`` then must not be given; not for grown families).
    """

    name: str
    family: str = "baseline"
    cell: str | None = None
    hidden_size: int | list[int] | None = None
    grow: dict[str, Any] | None = None
    model: dict[str, Any] = field(default_factory=dict)
    search_db: str | None = None
    front: bool = True
    top: int | None = None
    match_params: str | None = None


@dataclass(frozen=True)
class CompareConfig:
    """A comparison: every entry trained with the same budget, seeds and tuning grid.

    Args:
        task: the task's name (``growrnn tasks`` lists them).
        budget: each run's training budget (the same for every entry).
        entries: what to compare (see :class:`EntryConfig`).
        task_options: options of the task; its ``seed`` is the run's seed, so it cannot be set.
        model: ``SequenceModel`` options shared by every entry.
        trainer: extra ``lightning.Trainer`` options shared by every run.
        seeds: every entry runs once per seed; each seed sets the weights, the data order and
            the growth controller's random numbers.
        tuning: a grid of ``SequenceModel`` options (name -> values; the grid is their product).
            Every entry trains each setting once at the first seed, and its best setting on
            validation is used for all its seeds. Empty: no tuning, one setting.
        workers: runs in parallel (processes); 0 runs them one after the other in this process.
        threads: torch threads per run, so that training times per step compare.
        checkpoint_every: each run trains in parts of this much budget, ``{epochs: k}`` or
            ``{steps: k}``, with a checkpoint after each part, so
            that an interrupted comparison goes on from its runs' last checkpoints (a resumed
            run reaches the uninterrupted one's result). Default: a part per epoch when the
            budget counts epochs, else one piece; ``{}``: each run in one piece. A ``seconds``
            budget trains in one piece.
    """

    task: str
    budget: Budget
    entries: list[EntryConfig]
    task_options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    tuning: dict[str, list[Any]] = field(default_factory=dict)
    workers: int = 0
    threads: int = 1
    checkpoint_every: dict[str, int] | None = None


def compare_parser(prog: str = "growrnn compare", *, out: bool = False) -> Any:
    """The jsonargparse parser of :class:`CompareConfig` (``--config FILE`` plus one option per
    field, e.g. ``--workers 2``, ``--seeds [0,1]``); with ``out``, also ``--out DIR`` and
    ``--dry-run``."""
    parser = config_parser(CompareConfig, prog, "Train baselines, self-sizing and evolved cells side by side with the "
                           "same budget, seeds and tuning; write results.csv, results.md, pareto.png and TensorBoard "
                           "runs.", "a comparison YAML (configs/compare/*.yaml)")
    if out:
        parser.add_argument("--out", type=str, required=True,
                            help="the comparison's folder; an existing one is resumed (finished runs are skipped)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be trained, and train nothing")
    return parser


def parse_command(argv: list[str]) -> tuple[CompareConfig, Any]:
    """``growrnn compare``'s arguments -> the (checked) config and the namespace (``out``,
    ``dry_run``)."""
    return parse(CompareConfig, compare_parser(out=True), argv, "growrnn compare",
                 "--config FILE --out DIR and config keys as options", check_config)


def load_config(path: str | Path, overrides: list[str] | None = None) -> CompareConfig:
    """Read a comparison YAML (unknown keys are errors), apply command-line style ``overrides``
    (``["--workers", "2"]``) and run :func:`check_config`."""
    config = read_config(CompareConfig, path, compare_parser(), overrides=overrides, what="a comparison YAML",
                         example="configs/debug/compare.yaml")
    check_config(config)
    return config


def tuning_grid(tuning: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The settings of the grid, in a fixed order (keys sorted, values as listed); ``[{}]`` for
    no tuning."""
    keys = sorted(tuning)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(tuning[k] for k in keys))]


# ------------------------------------------------------------------------------------------ checks
def _keys(name: str, given: dict[str, Any], target: Any, owned: tuple[str, ...], hint: str, *,
          values: bool = True) -> None:
    check_keys(name, given, target, owned, hint, owner="the comparison", values=values)


def check_config(config: CompareConfig) -> None:
    """Checks a YAML schema cannot express; raises :class:`~growrnn.errors.ArgumentError` naming
    the key. Imports the task registry, ``SequenceModel``, Lightning and the growth controller to
    check their options; a search archive is only checked to exist (it is read when the
    comparison runs)."""
    from growrnn.training.model import SequenceModel

    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ArgumentError("seeds", allowed="a non-empty list of distinct ints >= 0", received=config.seeds)
    for k, seed in enumerate(config.seeds):
        check_int(f"seeds[{k}]", seed, 0)
    check_int("workers", config.workers, 0)
    check_int("threads", config.threads, 1)
    _check_parts(config)
    check_options(config, "the comparison", whole_model=False, task_owned=("seed",),
                  task_hint="each run's seed seeds the task's data",
                  trainer_hint="the budget sets how long each run trains")
    if "hidden_size" in config.model:
        check_sizes("model.hidden_size", config.model["hidden_size"])
    tuning_hint = "tune shared SequenceModel options such as lr; sizes are the entries'"
    _keys("tuning", config.tuning, SequenceModel, (*MODEL_OWNED, "hidden_size"), tuning_hint, values=False)
    for key, values in config.tuning.items():
        if not isinstance(values, list) or not values:
            raise ArgumentError(f"tuning.{key}", allowed="a non-empty list of values", received=values,
                                hint="e.g. tuning: {lr: [0.001, 0.003]}")
        for j, value in enumerate(values):
            check_value(f"tuning.{key}[{j}]", SequenceModel, key, value, tuning_hint)
    if not config.entries:
        raise ArgumentError("entries", allowed="a non-empty list of entries", received=config.entries)
    names: set[str] = set()
    for i, entry in enumerate(config.entries):
        where = f"entries[{i}]"
        _check_entry(where, entry, config, SequenceModel)
        if entry.cell is not None:
            load_cell(entry.cell, f"{where}.cell")
        if entry.name in names:
            raise ArgumentError(f"{where}.name", allowed="a name no other entry has", received=entry.name)
        names.add(entry.name)
    fixed = {e.name for e in config.entries
             if e.family not in _GROWN and e.search_db is None and e.match_params is None}
    for i, entry in enumerate(config.entries):
        if entry.match_params is not None and entry.match_params not in fixed:
            raise ArgumentError(f"entries[{i}].match_params", allowed=f"the name of a fixed-size entry with one cell: "
                                f"{', '.join(sorted(fixed)) or 'none in this config'}", received=entry.match_params,
                                hint="name a baseline (e.g. lstm_200) whose parameter count this entry should have")


def _check_parts(config: CompareConfig) -> None:
    every, budget = config.checkpoint_every, config.budget
    if not every:
        return
    hint = "e.g. checkpoint_every: {epochs: 1} with budget: {epochs: 13}; {} trains each run in one piece"
    units = [u for u in ("epochs", "steps") if getattr(budget, u) is not None]
    if budget.seconds is not None or len(every) != 1 or next(iter(every)) not in units:
        allowed = (f"{' or '.join(f'{{{u}: k}}' for u in units)} (the budget's units), or {{}}"
                   if budget.seconds is None and units else "{} or null (a seconds budget trains in one piece)")
        raise ArgumentError("checkpoint_every", allowed=allowed, received=every, hint=hint)
    (unit, k), = every.items()
    check_int(f"checkpoint_every.{unit}", k, 1, hint=hint)


def _check_entry(where: str, entry: EntryConfig, config: CompareConfig, model_cls: Any) -> None:
    if entry.family not in FAMILIES:
        raise ArgumentError(f"{where}.family", allowed=", ".join(FAMILIES), received=entry.family,
                            hint="baseline and grown take a cell; evolved families a cell or a search_db")
    if not isinstance(entry.name, str) or not _NAME.fullmatch(entry.name):
        raise ArgumentError(f"{where}.name", allowed="letters, digits, '_', '.', '+', '-' (not first)",
                            received=entry.name, hint="the name is a folder under runs/ and tb/")
    _keys(f"{where}.model", entry.model, model_cls, (*MODEL_OWNED, "hidden_size"),
          "the entry's own SequenceModel options; set its size with hidden_size")
    if entry.family in _EVOLVED:
        if (entry.cell is None) == (entry.search_db is None):
            raise ArgumentError(f"{where}.cell/search_db", allowed="exactly one of cell and search_db",
                                received=(entry.cell, entry.search_db),
                                hint="a genome file (growrnn search export writes them) or a search archive")
        if entry.search_db is not None and not Path(entry.search_db).is_file():
            raise ArgumentError(f"{where}.search_db", allowed="an existing search archive", received=entry.search_db,
                                hint="run growrnn search first, or comment the entry out")
    else:
        if entry.cell is None:
            raise ArgumentError(f"{where}.cell", allowed=f"a cell for family {entry.family}", received=None,
                                hint="a library name (lstm, gru, elman, ...) or a genome file")
        if entry.search_db is not None:
            raise ArgumentError(f"{where}.search_db", allowed="only with family evolved or evolved_grown",
                                received=entry.search_db)
    if entry.top is not None:
        if entry.search_db is None:
            raise ArgumentError(f"{where}.top", allowed="only with a search_db", received=entry.top,
                                hint="top picks the best cells of a search archive's front")
        check_int(f"{where}.top", entry.top, 1)
    if entry.family in _GROWN:
        if entry.grow is None:
            raise ArgumentError(f"{where}.grow", allowed=f"StructureController options for family {entry.family} "
                                "({} for the defaults)", received=None)
    elif entry.grow is not None:
        raise ArgumentError(f"{where}.grow", allowed="only with family grown or evolved_grown", received=entry.grow,
                            hint=f"make the family {'evolved_grown' if entry.family == 'evolved' else 'grown'}")
    if entry.match_params is not None:
        if entry.family in _GROWN:
            raise ArgumentError(f"{where}.match_params", allowed=f"only with a fixed-size family (not {entry.family})",
                                received=entry.match_params, hint="a grown entry sizes itself; give its start size")
        if entry.hidden_size is not None:
            raise ArgumentError(f"{where}.hidden_size", allowed="no size with match_params (it sets the size)",
                                received=entry.hidden_size, hint="drop hidden_size or match_params")
        return
    size = entry.hidden_size if entry.hidden_size is not None else config.model.get("hidden_size")
    if size is None:
        raise ArgumentError(f"{where}.hidden_size", allowed="units per layer (or set the shared model.hidden_size)",
                            received="nothing: neither the entry nor model sets a size",
                            hint="add hidden_size: 64 to the entry, or model: {hidden_size: 64} for every entry")
    sizes = check_sizes(f"{where}.hidden_size", size)
    model = {**config.model, **entry.model}
    from growrnn.training.model import check_model_options
    for setting in tuning_grid(config.tuning):  # the options each run is built with, whole: the optimizer's
        try:                                    # decay rates against the optimizer it gets from any part
            check_model_options({**model, **setting}, whole=True)
        except ArgumentError as err:
            raise ArgumentError(f"{where}: {err.argument}", allowed=err.allowed,
                                received=f"{err.received!r} in the options the entry runs with (the shared model:, "
                                f"the entry's model:{' and the tuning setting ' + repr(setting) if setting else ''})",
                                hint=err.hint) from None
    if entry.family in _GROWN:  # the controller's options, and the model it must grow, before any job
        check_grow(f"{where}.grow", entry.grow, "the comparison", "StructureController options; the run's seed "
                   "seeds the controller", owned=("seed",), model=model, sizes=sizes, model_key=f"{where}.model")
    else:
        from growrnn.training.growth import UNIT_SCALES
        for scales, (signal, _) in UNIT_SCALES.items():
            if model.get(f"unit_{scales}"):
                raise ArgumentError(f"{where}.model.unit_{scales}", allowed=f"false for family {entry.family} (true "
                                    f"only for a grown entry with signal {signal})", received=True,
                                    hint=f"set unit_{scales}: true in the grown entry's own model:, not the shared "
                                         "model: every entry gets")
    layers = {**config.model, **entry.model}.get("num_layers")
    if layers is not None and isinstance(size, list) and len(size) != layers:
        raise ArgumentError(f"{where}.hidden_size", allowed=f"a list of {layers} sizes, one per layer "
                            f"(model.num_layers is {layers})", received=size,
                            hint="a list of sizes sets the number of layers")
    if entry.family in _GROWN and not isinstance(size, list) and (layers or 1) != 1:
        raise ArgumentError(f"{where}.hidden_size", allowed=f"a list of {layers} start sizes (model.num_layers "
                            f"is {layers})", received=size, hint="growth needs a growable stack: one size per layer")
