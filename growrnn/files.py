"""Atomic file writes: a reader, or a run resumed after a kill, sees the whole file or none.

The data goes to a temporary file beside the target (``<name>.<pid>.tmp``, so that two processes
never share one), which is then renamed over it; ``os.replace`` is atomic within one file system.
A write that fails leaves no temporary file behind. Standard library only; this module imports
nothing from growrnn.

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

__all__ = ["atomic_path", "write_atomic"]


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
