"""Atomic file writes: a reader, or a run resumed after a kill, sees the whole file or none.

The data goes to a temporary file beside the target (``<name>.<pid>.tmp``, so that two processes
never share one), which is then renamed over it; ``os.replace`` is atomic within one file system.
A write that fails leaves no temporary file behind. An output folder a user names is made by
:func:`output_folder`, which names the option when it cannot be; a config file a user names is
checked by :func:`config_file` (every command's ``--config``). This module imports only
:mod:`growrnn.errors` from growrnn.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "runs" / "seed0.json"
>>> write_atomic(path, '{"val": 0.5}').read_text()
'{"val": 0.5}'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from growrnn.errors import ArgumentError

__all__ = ["atomic_path", "config_file", "config_files", "output_folder", "write_atomic"]


def config_file(path: str | os.PathLike[str], argument: str = "--config", what: str = "an existing YAML file",
                example: str | None = None) -> Path:
    """``path`` if it is a file; else an :class:`ArgumentError` naming ``argument``, with ``what``
    was allowed and a hint: where the shipped configs are (``example``, one of them) and where
    relative paths start."""
    if not Path(path).is_file():
        shipped = f"e.g. {example}; " if example else ""
        raise ArgumentError(argument, allowed=what, received=str(path),
                            hint=f"the shipped configs are in configs/ ({shipped}paths start at {Path.cwd()})")
    return Path(path)


def config_files(argv: list[str]) -> None:
    """Every ``--config FILE`` (or ``--config=FILE``) of a command line names a file
    (:func:`config_file`), checked before a parser that would word it its own way; a config given
    inline (jsonargparse takes the YAML itself) is left to the parser."""
    for k, arg in enumerate(argv):
        if arg == "--config" and k + 1 < len(argv):
            path = argv[k + 1]
        elif arg.startswith("--config="):
            path = arg.partition("=")[2]
        else:
            continue
        if not (path.lstrip().startswith("{") or "\n" in path):
            config_file(path)


def output_folder(path: str | os.PathLike[str], argument: str) -> Path:
    """The folder ``path``, made with its parents if missing; an :class:`ArgumentError` naming
    ``argument`` (a command's option) when it is a file or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArgumentError(argument, allowed="a folder (made if missing)", received=str(path),
                            hint="that path is a file; name a folder for the outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArgumentError(argument, allowed="a folder that can be made and written", received=str(path),
                            hint=f"{e.strerror or e}; name a folder you can write to") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (with any writer:
    ``torch.save``, ``Figure.savefig``, ...); when the block ends without an error it replaces
    ``path``, else it is deleted. Missing parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)
