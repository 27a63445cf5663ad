"""Tests of the scripts in docs/reproductions/scripts (they are files, not a package: loaded by path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "docs/reproductions/scripts"


def load_script(name: str) -> ModuleType:
    """The script ``docs/reproductions/scripts/<name>.py``, imported as a module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
