"""Loading checkpoints without running code from them.

A ``.ckpt`` file is a pickle, and unpickling can call any function the file names: a checkpoint a
user downloads or is sent could run a shell command. growrnn therefore loads every checkpoint and
weights file with ``torch.load(weights_only=True)``, which rebuilds only tensors and plain values,
plus the classes in :data:`ALLOWED_GLOBALS`. growrnn's checkpoints (Lightning's, with the model's
``growrnn`` entry, the growth controller's state, optimizer and scheduler states) hold nothing
else. :func:`load_checkpoint` is the one loader: ``SequenceModel.load_from_checkpoint``,
``growrnn fit|validate|test --ckpt_path`` (through :class:`SafeCheckpointIO`) and the search's
weight files use it, and it turns every failure into an :class:`~growrnn.errors.ArgumentError`
that names the file.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from growrnn.errors import ArgumentError

__all__ = ["ALLOWED_GLOBALS", "SafeCheckpointIO", "load_checkpoint"]
log = logging.getLogger(__name__)

#: The classes (beyond tensors and plain Python values, which torch always allows) that a
#: checkpoint may rebuild. growrnn's own checkpoints need none of them; OrderedDict is listed
#: because torch state dicts are ordered dicts.
ALLOWED_GLOBALS: tuple[type, ...] = (OrderedDict,)

WHAT = "a checkpoint that growrnn or Lightning wrote (tensors and plain values only)"


def load_checkpoint(path: str | os.PathLike[str], argument: str = "ckpt_path",
                    map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with :data:`ALLOWED_GLOBALS`, as a dict.

    Raises :class:`~growrnn.errors.ArgumentError` (naming ``argument`` and the file) when the file
    is missing, unreadable, truncated, not a checkpoint, or holds objects whose unpickling could
    run code (those are refused, never run).
    """
    path = Path(path)
    if not path.is_file():
        raise ArgumentError(argument, allowed=WHAT, received=str(path),
                            hint="there is no such file" if not path.exists() else "it is a folder, not a file")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise ArgumentError(argument, allowed=WHAT, received=str(path),
                                hint=f"it is not a checkpoint ({_first_line(err)})") from None
        raise ArgumentError(argument, allowed=WHAT, received=str(path),
                            hint="it holds objects growrnn does not load, since unpickling them could run code "
                                 f"({_unsafe_global(err)}); nothing in it was run") from None
    except PermissionError as err:
        raise ArgumentError(argument, allowed=WHAT, received=str(path),
                            hint=f"it cannot be read: {err.strerror or err}") from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        raise ArgumentError(argument, allowed=WHAT, received=str(path),
                            hint=f"it is truncated or not a checkpoint ({type(err).__name__}: {_first_line(err)})"
                            ) from None
    if not isinstance(checkpoint, dict):
        raise ArgumentError(argument, allowed=WHAT, received=str(path),
                            hint=f"it holds a {type(checkpoint).__name__}, not a checkpoint's dict")
    return checkpoint


def _unsafe_global(err: BaseException) -> str:
    for line in str(err).splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip()[:200]
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with :func:`load_checkpoint` as the loader (``weights_only``
    forced on, clear errors naming the file); the CLI's trainers use it for ``--ckpt_path``."""

    def __init__(self, announce: bool = True) -> None:
        super().__init__()
        self.announce = announce  # a search's rungs resume hundreds of checkpoints: no line for each

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        checkpoint = load_checkpoint(path, map_location="cpu" if map_location is None else map_location)
        meta = checkpoint.get("growrnn") if isinstance(checkpoint.get("growrnn"), dict) else None
        if meta is not None:
            spec = meta.get("spec") or {}
            log.log(logging.INFO if self.announce else logging.DEBUG, "checkpoint %s: task %s, %s steps, cell:\n%s",
                    path, spec.get("name", "?"), checkpoint.get("global_step", "?"),
                    str(meta.get("genome", "?")).rstrip())
        return checkpoint
