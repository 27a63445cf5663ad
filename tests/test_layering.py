"""The dependency arrows of DESIGN.md, checked in fresh interpreters."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("module", "absent"), [
    ("growrnn", "torch"),
    ("growrnn.errors", "torch"),
    ("growrnn.genome", "torch"),
    ("growrnn.cells", "lightning"),
    ("growrnn.growth", "lightning"),
])
def test_import_leaves_heavier_layers_out(module: str, absent: str) -> None:
    code = f"import sys, {module}; sys.exit(int({absent!r} in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imported {absent}"


def test_lazy_public_names_resolve() -> None:
    import growrnn as gr
    assert gr.parse("h' = tanh(affine(x) + affine(h))").states == ("h",)
    assert gr.cells.lstm() == gr.genome.lstm()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gr.nope  # noqa: B018
