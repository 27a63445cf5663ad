"""docs/reproductions/scripts/budget_worth.py: the width the charge keeps over the whole budget."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.reproductions import SCRIPTS, load_script

SCRIPT = SCRIPTS / "budget_worth.py"


@pytest.mark.parametrize(("steps", "bracket", "estimated"), [
    ([(32, 64, 0.004), (64, 128, 0.001)], (48.0, 96.0), True),
    ([(32, 64, 0.001), (64, 128, 0.003)], (None, 48.0), False),  # the first step does not pay: a bound only
    ([(32, 64, 0.004), (64, 128, 0.003)], (96.0, None), False),  # every step pays
    ([(32, 64, 0.004), (64, 128, -0.001)], (48.0, 96.0), False),  # the wider layer worse: no estimate
])
def test_the_bracket_is_the_first_step_that_does_not_pay(steps: list[tuple[int, int, float]],
                                                        bracket: tuple, estimated: bool) -> None:
    low, high, estimate = load_script("budget_worth").kept_width(steps, 0.002)
    assert (low, high) == bracket
    assert (estimate is not None) == estimated
    if estimated:
        assert bracket[0] < estimate < bracket[1]


@pytest.mark.parametrize(("widths", "rate", "at"), [((32, 64, 128), 0.03, 70.0), ((64, 128, 256), 0.01, 150.0),
                                                    ((60, 68, 256), 0.005, 120.0)])
def test_the_estimate_finds_a_known_exponential(widths: tuple[int, int, int], rate: float, at: float) -> None:
    """Steps whose worths are the means of 0.01 exp(-rate w) over them: the estimate is exact."""
    a, b, c = widths

    def mean(lo: float, hi: float) -> float:
        return 0.01 * (math.exp(-rate * lo) - math.exp(-rate * hi)) / (rate * (hi - lo))

    charge = 0.01 * math.exp(-rate * at)
    found = load_script("budget_worth").crossing((a, b, mean(a, b)), (b, c, mean(b, c)), charge)
    assert found == pytest.approx(at, rel=1e-6)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_the_settling_page_s_jsb_row() -> None:
    """JSB's LSTM at Adam 3e-4 as the forty-first section prints it: charge 8 rows, about 56 units."""
    proc = run("--cell", "lstm", "32:9.010", "64:8.824", "128:8.808", "256:8.843")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "# charge a unit: lam 3.33e-05 x 8 rows x loss 8.871 = 0.00236"
    assert lines[-1] == "# the charge keeps between 48 and 96, about 56 units over the whole budget"


@pytest.mark.parametrize("args", [["64:8.8"], ["64:8.8", "64:8.7"], ["64-8.8", "128:8.7"]])
def test_bad_fixed_layers_are_refused(args: list[str]) -> None:
    proc = run(*args)
    assert proc.returncode != 0 and ("WIDTH:SCORE" in proc.stderr or "two fixed layers" in proc.stderr)
