"""docs/reproductions/scripts/budget_worth.py: the width the charge keeps over the whole budget."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs/reproductions/scripts/budget_worth.py"


def script() -> object:
    spec = importlib.util.spec_from_file_location("budget_worth", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("steps", "expected"), [
    # worth 0.004 at 48 units, 0.001 at 96, charge 0.002: halfway in the logarithm, 72
    ([(32, 64, 0.004), (64, 128, 0.001)], (48.0, 96.0, 72.0)),
    ([(32, 64, 0.001), (64, 128, 0.0005)], (None, 48.0, None)),  # no step pays
    ([(32, 64, 0.004), (64, 128, 0.003)], (96.0, None, None)),  # every step pays
    ([(32, 64, 0.004), (64, 128, -0.001)], (48.0, 96.0, None)),  # the wider layer worse: a bracket only
])
def test_where_the_worth_meets_the_charge(steps: list[tuple[int, int, float]], expected: tuple) -> None:
    low, high, estimate = script().kept_width(steps, 0.002)  # type: ignore[attr-defined]
    assert (low, high) == expected[:2]
    assert estimate == pytest.approx(expected[2]) if expected[2] is not None else estimate is None


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_the_settling_page_s_jsb_row() -> None:
    """JSB's LSTM at Adam 3e-4 as the forty-first section prints it: charge 8 rows, about 62 units."""
    proc = run("--cell", "lstm", "32:9.010", "64:8.824", "128:8.808", "256:8.843")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "# charge a unit: lam 3.33e-05 x 8 rows x loss 8.871 = 0.00236"
    assert lines[-1] == "# the charge keeps between 48 and 96, about 62 units over the whole budget"


@pytest.mark.parametrize("args", [["64:8.8"], ["64:8.8", "64:8.7"], ["64-8.8", "128:8.7"]])
def test_bad_fixed_layers_are_refused(args: list[str]) -> None:
    proc = run(*args)
    assert proc.returncode != 0 and ("WIDTH:SCORE" in proc.stderr or "two fixed layers" in proc.stderr)
