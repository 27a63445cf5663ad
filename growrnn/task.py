"""The small Task protocol that growrnn's training code and the ``tasks`` package share.

A task is found by name through the ``growrnn.tasks`` entry-point group (``tasks.get`` and
:func:`get_task` do the lookup), so third-party packages can add their own. A task has a
:class:`TaskSpec` — what goes in and out, the loss and the metric — and builds a
``LightningDataModule`` whose batches are dicts:

- ``x``: ``(B, T)`` int64 tokens, or ``(B, T, F)`` float features;
- ``y``: targets — ``(B, T)`` int64 next tokens, ``(B, T, K)`` float multi-hot or real
  targets, or ``(B,)`` int64 / ``(B, K)`` float for one target per sequence;
- ``mask`` (optional): ``(B, T)`` bool, the steps that count (padding and ignored steps False);
- ``lengths`` (optional, one target per sequence): ``(B,)`` int64 valid lengths.

Stateful tasks (``spec.stateful``) yield consecutive windows of long streams; the model carries
its hidden state across them (detached: truncated BPTT) and resets it at each epoch's start.
This module imports nothing heavy; the metric functions are plain Python.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

from growrnn.errors import ArgumentError, check_int

__all__ = ["TaskSpec", "Task", "METRICS", "metric_value", "task_names", "task_factory", "get_task",
           "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "growrnn.tasks"
InputKind = Literal["tokens", "features"]
OutputKind = Literal["tokens", "multi_hot", "real", "class"]


@dataclass(frozen=True)
class TaskSpec:
    """What a task feeds in and scores.

    ``output_kind``: ``tokens`` (a class per step, cross-entropy), ``multi_hot`` (independent
    Bernoulli per key, BCE summed over keys), ``real`` (MSE), ``class`` (one class per sequence,
    read at its last valid step). ``metric`` names an entry of
    :data:`METRICS`; ``direction`` says whether lower (``min``) or higher (``max``) is better.
    ``per_step`` is False when there is one target per sequence.
    """

    name: str
    input_kind: InputKind
    input_size: int
    output_kind: OutputKind
    output_size: int
    metric: str
    direction: Literal["min", "max"] = "min"
    stateful: bool = False
    per_step: bool = True
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Task(Protocol):
    """A task: its spec and a datamodule factory."""

    spec: TaskSpec

    def datamodule(self) -> Any:  # a lightning.LightningDataModule
        ...


def _ppl(loss: float, count: float, correct: float) -> float:
    return math.exp(min(loss / count, 700.0))


#: metric name -> f(summed loss, count of scored units, count of correct units).
#: The summed loss is in nats: cross-entropy summed over scored tokens, Bernoulli NLL summed over
#: keys and frames, squared error summed over elements, per the output kind.
METRICS = {
    "ppl": _ppl,                                                  # perplexity per token
    "nll": lambda loss, count, correct: loss / count,             # nats per scored unit
    "nll_per_frame": lambda loss, count, correct: loss / count,   # music: nats per frame
    "nats_per_40": lambda loss, count, correct: 40.0 * loss / count,  # Miconi's unit
    "bpc": lambda loss, count, correct: loss / count / math.log(2.0),
    "accuracy": lambda loss, count, correct: correct / count,
    "mse": lambda loss, count, correct: loss / count,
}


def metric_value(name: str, loss: float, count: float, correct: float = 0.0) -> float:
    if count <= 0:
        return float("nan")
    return float(METRICS[name](loss, count, correct))


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """Names of every registered task."""
    return sorted(_entry_points())


def task_factory(name: str) -> Any:
    """The callable registered as task ``name`` (not called: nothing is read or generated)."""
    eps = _entry_points()
    if name not in eps:
        import difflib
        close = difflib.get_close_matches(name, list(eps), n=1)
        raise ArgumentError("task", allowed=", ".join(sorted(eps)) or "(no task is installed)",
                            received=name, hint=(f"did you mean '{close[0]}'?" if close
                                                 else "run `growrnn tasks` to list them"))
    return eps[name].load()


def get_task(name: str, **options: Any) -> Task:
    """Build the task registered as ``name`` with its options (see ``growrnn tasks``)."""
    factory = task_factory(name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a factory without a signature: its own errors
        return factory(**options)
    try:
        signature.bind(**options)
    except TypeError as e:  # an unknown option, or a required one missing
        required = [p.name for p in signature.parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        allowed = ", ".join(signature.parameters) + (f" (required: {', '.join(required)})" if required else "")
        import difflib
        close = {o: difflib.get_close_matches(o, list(signature.parameters), n=1)
                 for o in sorted(options) if o not in signature.parameters}
        meant = [f"'{o}' for '{c[0]}'" for o, c in close.items() if c]
        raise ArgumentError(f"options of task '{name}'", allowed=allowed, received=sorted(options),
                            hint=str(e) + (f"; did you mean {', '.join(meant)}?" if meant else "")) from None
    if "seed" in options:  # every generated task's, checked once: torch and numpy take seeds below 2**63
        check_int("seed", options["seed"], 0, allowed="an int in [0, 2**31)",
                  hint="seeds the generated data and its order")
        if options["seed"] >= 2**31:
            raise ArgumentError("seed", allowed="an int in [0, 2**31)", received=options["seed"],
                                hint="seeds the generated data and its order")
    return factory(**options)
