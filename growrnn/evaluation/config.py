"""The config layer of the commands that train cells through :func:`~growrnn.evaluation.evaluate`
(``growrnn search`` and ``growrnn compare``): the :class:`Budget`, the ``SequenceModel`` and
``Trainer`` keys such a command owns, the one loader and the one parse-error translation of their
YAML files, the checks of the options they pass on, and the config keys that may change when a
run resumes.

A command's config is a dataclass whose fields are typed (nested dataclasses included, like
``budget: Budget``), read through jsonargparse as ``growrnn fit`` reads its config: ``--config
FILE`` plus one option per field (``--budget.steps 50``), unknown keys are errors. The options a
command passes through to ``SequenceModel``, ``lightning.Trainer``, the task's factory and the
growth controller are dicts in the file (``model: {lr: 0.01}``, ``grow: {max_units: 64}``) typed
as ``growrnn fit`` types them: :func:`check_options` and :func:`check_grow` check that every key is
a parameter of the signature it goes to (and not one the command sets itself), and
:func:`check_value` that its value is of the parameter's annotated type as jsonargparse reads it
(``int | list[int]``, a ``Literal``, ``float | None``; an untyped or ``Any`` parameter takes any
value). A mistake is an :class:`~growrnn.errors.ArgumentError` at load time naming the full key
(``model.lr``, ``entries[2].grow.max_units``), the type allowed and the value received. The dicts
passed on stay as written: nothing is converted and no default is added.

Standard library only at module level: jsonargparse and the components checked are imported
when used, so reading a config stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from growrnn.errors import ArgumentError, GenomeError, check_int, is_number
from growrnn.files import config_file, config_files

__all__ = ["Budget", "MODEL_OWNED", "TRAINER_OWNED", "RESUMABLE", "build_config", "check_keys", "check_options",
           "check_grow", "check_value", "config_parser", "joined_curve", "load_cell", "neutral_keys", "parse_args",
           "parse_command", "read_config"]

_C = TypeVar("_C")

#: ``SequenceModel`` arguments a command sets itself, per run: the task's spec, the cell and the seed.
MODEL_OWNED = ("spec", "cell", "seed")
#: ``lightning.Trainer`` arguments a command sets itself: the budget sets how long a run trains,
#: callbacks carry growth, inheritance and the predictor, and evaluate() sets logging and checkpoints.
TRAINER_OWNED = ("callbacks", "logger", "max_steps", "max_epochs", "max_time", "enable_checkpointing",
                 "val_check_interval", "check_val_every_n_epoch")
#: Metadata of a config field that may change when a run resumes, because it changes where and how
#: it computes or how long it runs, not what it finds: ``field(default=..., metadata=RESUMABLE)``.
RESUMABLE: Mapping[str, Any] = {"resumable": True}


@dataclass(frozen=True)
class Budget:
    """How long to train: any of optimizer ``steps``, ``epochs``, wall-clock ``seconds`` (the first
    reached stops), and how often to validate for the learning curve (``val_every`` steps; default
    once per epoch). A ``seconds`` budget makes results depend on the machine's speed, so two runs
    with one seed may then differ.

    In a search or comparison config it is the ``budget:`` key: ``budget: {steps: 500, val_every:
    100}``."""

    steps: int | None = None
    epochs: int | None = None
    seconds: float | None = None
    val_every: int | None = None

    def __post_init__(self) -> None:
        hint = "e.g. budget: {steps: 500, val_every: 100} in a config, Budget(steps=500) in Python"
        for name in ("steps", "epochs", "val_every"):
            value = getattr(self, name)
            if value is not None:
                check_int(f"budget.{name}", value, 1, allowed="an int >= 1, or null",
                          hint=hint if value != 0 else "a budget of 0 trains nothing; " + hint)
        seconds = self.seconds
        if seconds is not None and (not is_number(seconds) or not 0 < seconds < math.inf):
            raise ArgumentError("budget.seconds", allowed="a finite number of seconds > 0, or null",
                                received=seconds, hint=hint)
        if self.steps is None and self.epochs is None and self.seconds is None:
            raise ArgumentError("budget", allowed="at least one of steps, epochs, seconds", received=self,
                                hint=hint)

    def as_dict(self) -> dict[str, Any]:
        """The limits that are set, as JSON values (``{"steps": 500}``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def joined_curve(curves: Sequence[Sequence[dict[str, Any]]], val_every: int | None, *,
                 last_whole: bool = True) -> list[dict[str, Any]]:
    """One learning curve from the curves of a run trained in parts (each part resumed from the
    last one's checkpoint; each curve a :class:`~growrnn.training.callbacks.ValidationCurve`'s
    points), as the uninterrupted run has it. A part scored at its end (``evaluate`` validates
    after training) adds a point there that the uninterrupted run does not have when that step
    is off the ``val_every`` cadence: off-cadence points are dropped, but for those at the last
    step any part reached -- the run's own end (its budget, or where it diverged), kept unless
    ``last_whole`` is False (the parts so far are not the whole run). A step judged twice (a
    part that trained nothing after the last one's end, say) keeps its later point. Without
    ``val_every`` every point is kept: parts of an epoch budget end on epochs' ends, where a
    validation is due anyway.

    >>> joined_curve([[{"step": 3}, {"step": 4}], [{"step": 6}, {"step": 7}]], 3)
    [{'step': 3}, {'step': 6}, {'step': 7}]
    >>> joined_curve([[{"step": 3}, {"step": 4}], [{"step": 6}, {"step": 7}]], 3, last_whole=False)
    [{'step': 3}, {'step': 6}]
    """
    points = [p for curve in curves for p in curve]
    end = max((int(p["step"]) for p in points), default=None)
    joined: list[dict[str, Any]] = []
    for p in points:
        step = int(p["step"])
        if val_every is not None and step % val_every and not (last_whole and step == end):
            continue
        if joined and int(joined[-1]["step"]) == step:
            joined.pop()
        joined.append(p)
    return joined


def neutral_keys(cls: type) -> frozenset[str]:
    """The fields of the config dataclass ``cls`` marked :data:`RESUMABLE`."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


# ------------------------------------------------------------------------------------------ reading
def config_parser(cls: type, prog: str, description: str, config_help: str) -> Any:
    """The jsonargparse parser of the config dataclass ``cls``: ``--config FILE`` plus one option
    per field (``--workers 2``, ``--budget.steps 50``)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, exit_on_error=False, description=description)
    parser.add_argument("--config", action=ActionConfigFile, help=config_help)
    parser.add_class_arguments(cls, fail_untyped=True)
    return parser


def parse_args(parser: Any, argv: list[str], argument: str, allowed: str, hint: str) -> Any:
    """``parser.parse_args(argv)``; a parse failure (an unknown key, a value of the wrong type) is
    an :class:`~growrnn.errors.ArgumentError` naming ``argument`` (the command or the file) with
    jsonargparse's explanation. The one translation of parse errors."""
    from jsonargparse import ArgumentError as ParseError

    try:
        return parser.parse_args(argv)
    except ParseError as err:
        raise ArgumentError(argument, allowed=allowed, received=str(err).strip(), hint=hint) from None


def parse_command(cls: type[_C], parser: Any, argv: list[str], command: str, allowed: str,
                  check: Callable[[_C], None]) -> tuple[_C, Any]:
    """A command's arguments (``--config FILE`` and config keys as options) -> its config of
    ``cls``, checked by ``check``, and the namespace (for the options that are not config keys,
    such as ``--db``). Errors name ``command`` and point at its ``--help``; a ``--config`` file
    that is not there is named as such (:func:`~growrnn.files.config_files`), not in the parser's
    words."""
    config_files(argv)
    namespace = parse_args(parser, argv, command, allowed, f"{command} --help lists them")
    config = build_config(parser, namespace, cls)
    check(config)
    return config, namespace


def build_config(parser: Any, namespace: Any, cls: type[_C]) -> _C:
    """The ``cls`` in a namespace that its parser returned (``Budget`` checks itself here); keys
    that are not its fields (``--db``, ``--out``) are left out."""
    values = parser.instantiate(namespace)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in vars(values).items() if k in fields})


def read_config(cls: type[_C], source: str | Path | Mapping[str, Any], parser: Any, *,
                overrides: list[str] | None = None, what: str, example: str) -> _C:
    """The one loader: read a config of ``cls`` from a YAML file (or from the dict a run stored),
    apply command-line style ``overrides`` (``["--workers", "2"]``) and build it. ``what`` names
    the config in errors (``"a search YAML"``), ``example`` is a shipped config to look at."""
    if isinstance(source, Mapping):
        import json

        args, where = ["--config", json.dumps(dict(source))], "config"
    else:
        path = config_file(source, "config", f"{what} file", example)
        args, where = ["--config", str(path)], str(path)
    namespace = parse_args(parser, [*args, *(overrides or [])], where,
                           f"a config with the fields of {cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}",
                           f"see {example}")
    return build_config(parser, namespace, cls)


# ------------------------------------------------------------------------------------------ checks
def check_keys(name: str, given: Mapping[str, Any], target: Callable[..., Any], owned: tuple[str, ...], hint: str,
               owner: str, *, values: bool = True) -> None:
    """Every key of the options dict ``given`` is a parameter of ``target`` (any key, where it
    takes ``**kwargs``), and none is one that ``owner`` sets itself (``owned``); else an
    ArgumentError naming ``name.key``. With ``values`` each value is also checked against the
    parameter's type (:func:`check_value`)."""
    params = inspect.signature(target).parameters
    known = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in given:
        if key in owned:
            raise ArgumentError(f"{name}.{key}", allowed=f"not set: {owner} sets {', '.join(owned)}",
                                received=given[key], hint=hint)
        if key not in known and not open_ended:
            raise ArgumentError(f"{name}.{key}", allowed=", ".join(sorted(known - set(owned))), received=key,
                                hint=hint)
    if values:
        for key, value in list(given.items()):
            read = check_value(f"{name}.{key}", target, key, value, hint)
            if isinstance(value, str) and isinstance(read, int | float) and isinstance(given, MutableMapping):
                given[key] = read  # a quoted number (YAML 1.1 reads 3e-3 as a string) goes on as the number


def check_value(name: str, target: Callable[..., Any], key: str, value: Any, hint: str) -> Any:
    """``value`` is of the type that parameter ``key`` of ``target`` (a class or a function) is
    annotated with, as jsonargparse reads it (as ``growrnn fit`` types its ``model:`` and
    ``trainer:``: ``lr: "abc"`` is no float, a string for an ``int | list[int]`` is neither);
    else an ArgumentError naming ``name`` (``model.lr``) with the annotated type and the value.
    Returns the value as read (``"3e-3"`` for a float: 0.003); a parameter without a type (or
    one jsonargparse cannot read) takes any value, returned as given."""
    from jsonargparse import ArgumentError as ParseError

    parser = _value_parser(target, key)
    if parser is None:
        return value
    try:
        return getattr(parser.parse_object({key: value}, defaults=False), key, value)
    except ParseError:
        raise ArgumentError(name, allowed=_annotation(target, key), received=value, hint=hint) from None


@functools.cache
def _value_parser(target: Callable[..., Any], key: str) -> Any:
    """A jsonargparse parser of parameter ``key`` of ``target`` alone (the others are skipped, so
    none is required and none is given a default here), or None where it has no typed option."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    skip = {n for n in inspect.signature(target).parameters if n != key}
    try:
        if inspect.isclass(target):
            parser.add_class_arguments(target, skip=skip, fail_untyped=False, sub_configs=True)
        else:
            parser.add_function_arguments(target, skip=skip, fail_untyped=False, sub_configs=True)
    except Exception:  # noqa: BLE001 - a signature jsonargparse cannot read is not checked
        return None
    return parser if any(getattr(a, "dest", None) == key for a in parser._actions) else None


def _annotation(target: Callable[..., Any], key: str) -> str:
    """The type of parameter ``key`` of ``target`` in words (``a value of type int | list[int]``,
    ``one of 'none', 'decay'``), aliases resolved where they can be."""
    import typing

    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is shown as written
        hints = {}
    if key in hints:
        text = _type_text(hints[key])
        return text if text.startswith("one of ") else f"a value of type {text}"
    annotation = inspect.signature(target).parameters[key].annotation
    if annotation is inspect.Parameter.empty:
        return "any value"
    return f"a value of type {annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)}"


def _type_text(tp: Any) -> str:
    """``int | list[int]``, ``null``; a Literal (or a union of them) as ``one of 'a', 'b'``."""
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        if all(typing.get_origin(a) is typing.Literal or a is type(None) for a in args):
            values = [v for a in args for v in (typing.get_args(a) if a is not type(None) else ("null",))]
            return "one of " + ", ".join(v if v == "null" else repr(v) for v in values)
        return " | ".join(_type_text(a) for a in args)
    return "null" if tp is type(None) else inspect.formatannotation(tp)


def check_options(config: Any, owner: str, *, task_owned: tuple[str, ...] = (), task_hint: str,
                  model_owned: tuple[str, ...] = MODEL_OWNED, trainer_hint: str, whole_model: bool = True) -> None:
    """Check what a command's ``config`` passes on: ``task`` is a registered task, and the keys
    of ``task_options``, ``model`` and ``trainer`` are arguments of the task's factory,
    ``SequenceModel`` and ``lightning.Trainer`` that ``owner`` (``"the search"``) does not set
    itself; ``whole_model``: ``model`` is every option a run is built with (false for a
    comparison's shared options, which each entry's own complete). Imports the task registry,
    ``SequenceModel`` and Lightning."""
    import lightning as L

    from growrnn.task import task_factory, task_names
    from growrnn.training.model import SequenceModel, check_model_options

    if config.task not in task_names():
        raise ArgumentError("task", allowed=", ".join(task_names()), received=config.task,
                            hint="growrnn tasks lists the registered tasks")
    check_keys("task_options", config.task_options, task_factory(config.task), task_owned, task_hint, owner)
    check_keys("model", config.model, SequenceModel, model_owned,
               "SequenceModel options, as under model: in a fit config", owner)
    try:
        check_model_options(config.model, whole=whole_model)
    except ArgumentError as err:
        raise err.under("model") from None
    check_keys("trainer", config.trainer, L.Trainer, TRAINER_OWNED, trainer_hint, owner)
    for name, what in (("limit_val_batches", "scores every run on its validation data"),
                       ("limit_train_batches", "trains every run")):
        if config.trainer.get(name, 1.0) in (0, 0.0):
            raise ArgumentError(f"trainer.{name}", allowed="a number of batches >= 1 or a share > 0",
                                received=config.trainer[name], hint=f"{owner} {what}; leave the option unset")
    if "accumulate_grad_batches" in config.trainer:
        check_int("trainer.accumulate_grad_batches", config.trainer["accumulate_grad_batches"], 1,
                  hint="the batches summed into one optimizer step; 1: every batch steps")


def check_grow(name: str, grow: Mapping[str, Any], owner: str, hint: str, owned: tuple[str, ...] = (),
               model: Mapping[str, Any] | None = None, sizes: Sequence[int] | None = None,
               model_key: str = "model") -> None:
    """The keys of a ``grow`` dict are ``StructureController`` options, but ``decide_at_limit``,
    which :func:`~growrnn.evaluation.evaluate` sets for a run in parts (and ``owned``); their
    values hold together, and with ``model`` (the ``SequenceModel`` options the runs get, under the
    config key ``model_key``) and ``sizes`` (their start widths) the controller can grow that
    model: all checked once at load, not in every job."""
    from growrnn.training.growth import StructureController

    check_keys(name, grow, StructureController, ("decide_at_limit", *owned), hint, owner)
    try:
        controller = StructureController(**grow)
    except ArgumentError as err:
        raise err.under(name) from None
    if model is not None and sizes is not None:
        controller.check_model(model, sizes, model_key)


def check_sizes(name: str, value: object) -> list[int]:
    """A config's ``hidden_size``: an int >= 1 or a non-empty list of them (one per layer), as the
    list of layer widths."""
    sizes = value if isinstance(value, list) else [value]
    allowed = "an int >= 1, or a non-empty list of them (one per layer)"
    if not sizes:
        raise ArgumentError(name, allowed=allowed, received=value, hint="e.g. hidden_size: [16]")
    return [check_int(name, s, 1, allowed=allowed) for s in sizes]


def load_cell(cell: str, where: str) -> Any:
    """The genome a config's cell names (through :func:`growrnn.genome.load`: a library cell,
    genome text, or a ``.txt``/``.json`` genome file); an invalid genome is an ArgumentError
    naming the key ``where``."""
    from growrnn.genome import load

    try:
        return load(cell, where)
    except GenomeError as err:
        raise ArgumentError(where, allowed="a valid genome", received=cell, hint=str(err)) from None
