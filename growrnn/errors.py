"""The growrnn exception family.

Every error raised for bad user input is a :class:`GrowRNNError`. Messages follow one shape so
that a user can act on them: what was wrong (naming the argument or the genome line), what was
allowed, what was received, and a ``HINT:``. This module imports nothing from growrnn.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "GrowRNNError",
    "GenomeError",
    "GenomeSyntaxError",
    "UnknownFunctionError",
    "ArityError",
    "UndefinedNameError",
    "StateNotWrittenError",
    "StateNotReadError",
    "MissingOutputError",
    "InputOutsideWeightError",
    "CycleError",
    "DuplicateAssignmentError",
    "EmptyGenomeError",
    "UnusedLocalError",
    "SearchError",
    "VariationError",
    "ExecutorError",
    "ShapeError",
    "ArgumentError",
    "ReplicaError",
    "DoubleBackwardError",
    "format_message",
    "check_choice",
    "check_int",
    "check_number",
    "is_number",
]


_UNSET = object()


def format_message(what: str, *, allowed: str | None = None, received: object = _UNSET,
                   hint: str | None = None) -> str:
    """Build an error message in the project's one shape: what, allowed, received (a ``None``
    received is said too), HINT."""
    parts = [what.rstrip(".") + "."]
    if allowed is not None:
        parts.append(f"Allowed: {allowed}.")
    if received is not _UNSET:
        parts.append(f"Received: {received!r}." if not isinstance(received, str) or _reads_as_a_value(received)
                     else f"Received: {received}.")
    if hint:
        parts.append(f"HINT: {hint}")
    return " ".join(parts)


def _reads_as_a_value(text: str) -> bool:
    """Whether a received string would read as a number or a bool unquoted (``"20"`` given where
    an int is allowed): it is then shown quoted. Other strings (paths, names, descriptions) are
    shown as they are."""
    try:
        float(text)
    except ValueError:
        return text.strip().lower() in ("true", "false", "none", "null", "")
    return True


class GrowRNNError(Exception):
    """Base of every error growrnn raises on purpose."""


class ArgumentError(GrowRNNError, ValueError):
    """A function or constructor argument is out of its allowed range or of the wrong kind."""

    def __init__(self, argument: str, *, allowed: str, received: object, hint: str | None = None):
        self.argument, self.allowed, self.received, self.hint = argument, allowed, received, hint
        super().__init__(format_message(f"invalid argument '{argument}'", allowed=allowed,
                                        received=received, hint=hint))

    def under(self, prefix: str) -> ArgumentError:
        """The same error for an argument given under the config key ``prefix`` (each argument
        named: ``"min_units, max_units"`` under ``grow`` is ``"grow.min_units, grow.max_units"``)."""
        argument = ", ".join(f"{prefix}.{a}" for a in self.argument.split(", "))
        return ArgumentError(argument, allowed=self.allowed, received=self.received, hint=self.hint)


class ReplicaError(GrowRNNError, RuntimeError):
    """The processes of a data-parallel run no longer hold the same model (a structure change
    applied differently on one of them); ``hint`` says where to look."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(format_message(message, hint=hint))


class DoubleBackwardError(GrowRNNError, RuntimeError):
    """A backward with ``create_graph=True`` (a gradient penalty, a Hessian-vector product,
    ``gradgradcheck``) reached a part of a network whose backward is not itself differentiable;
    ``what`` names that part, ``hint`` says what supports it instead."""

    def __init__(self, what: str, *, hint: str | None = None):
        super().__init__(format_message(
            what, allowed="first-order gradients: backward() or torch.autograd.grad without create_graph "
                          "(retain_graph=True is fine)",
            received="a backward with create_graph=True", hint=hint))


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number (a Python or numpy int or float; a bool is not one
    here), so that an option's range check can compare it: a string given from Python is then an
    :class:`ArgumentError` naming the option, not a ``TypeError`` from the comparison.

    >>> is_number(0.5), is_number("0.5"), is_number(True)
    (True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(argument: str, value: object, low: int, *, hint: str | None = None, allowed: str | None = None) -> int:
    """``value`` as an int if it is an integer ``>= low`` (a Python or numpy integer; a bool is
    not one here), else an :class:`ArgumentError` naming ``argument`` (``allowed`` overrides the
    "an int >= low" wording).

    >>> check_int("workers", 2, 0)
    2
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ArgumentError(argument, allowed=allowed or f"an int >= {low}", received=value, hint=hint)
    return int(value)


def check_number(argument: str, value: object, *, hint: str | None = None, allowed: str | None = None) -> float:
    """``value`` as a float if it is a finite real number ``>= 0`` (a bool is not one here), else an
    :class:`ArgumentError` naming ``argument`` (``allowed`` overrides the "a finite number >= 0"
    wording). Rates, penalties and margins are checked with it.

    >>> check_number("lr", 0.001)
    0.001
    """
    if not is_number(value) or not 0 <= value < math.inf:  # type: ignore[operator]
        raise ArgumentError(argument, allowed=allowed or "a finite number >= 0", received=value, hint=hint)
    return float(value)  # type: ignore[arg-type]


def check_choice(argument: str, value: object, choices: tuple[Any, ...], *, hint: str | None = None) -> Any:
    """``value`` if it is one of ``choices``, else an :class:`ArgumentError` naming ``argument``
    that lists them. The named options (a schedule, a signal's group, a direction) are checked
    with it.

    >>> check_choice("direction", "min", ("min", "max"))
    'min'
    """
    if value not in choices:
        raise ArgumentError(argument, allowed=", ".join(str(c) for c in choices), received=value, hint=hint)
    return value


class ShapeError(GrowRNNError, ValueError):
    """A tensor given at call time has the wrong shape (message holds expected vs received)."""


class GenomeError(GrowRNNError, ValueError):
    """A genome (text, JSON or programmatic) is not a valid cell.

    ``line`` and ``column`` are 1-based positions in the genome text when the genome came from
    text, else ``None``; ``hint`` says how to fix it.
    """

    code = "genome"

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 hint: str | None = None):
        self.line, self.column, self.hint = line, column, hint
        where = f"line {line}, column {column}: " if line is not None else ""
        text = where + message.rstrip(".") + "."
        if hint:
            text += f" HINT: {hint}"
        super().__init__(text)


class GenomeSyntaxError(GenomeError):
    code = "syntax"


class UnknownFunctionError(GenomeError):
    code = "unknown-function"


class ArityError(GenomeError):
    code = "arity"


class UndefinedNameError(GenomeError):
    code = "undefined-name"


class StateNotWrittenError(GenomeError):
    code = "state-not-written"


class StateNotReadError(GenomeError):
    code = "state-not-read"


class MissingOutputError(GenomeError):
    code = "missing-output"


class InputOutsideWeightError(GenomeError):
    code = "input-outside-weight"


class CycleError(GenomeError):
    code = "cycle"


class DuplicateAssignmentError(GenomeError):
    code = "duplicate-assignment"


class EmptyGenomeError(GenomeError):
    code = "empty"


class UnusedLocalError(GenomeError):
    code = "unused-local"


class SearchError(GrowRNNError):
    """The evolutionary search cannot go on as asked (a database made by another search, a
    config that contradicts the stored one, an objective that does not exist)."""


class ExecutorError(GrowRNNError):
    """An executor cannot run jobs as asked (it is closed, already running, or its workers cannot
    start). A job that fails is an ``Outcome``, never this error."""


class VariationError(SearchError):
    """A variation operator does not apply to this genome (no node it can act on, or every try
    broke a bloat limit). The search treats it as "try another operator", never as a crash."""

    def __init__(self, operator: str, reason: str):
        self.operator, self.reason = operator, reason
        super().__init__(format_message(f"operator '{operator}' cannot vary this genome: {reason}",
                                        hint="the search picks another operator or parent"))
