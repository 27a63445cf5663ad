"""docs/reproductions/scripts/verdicts.py: what decided each paired trial, read from a record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs/reproductions/scripts/verdicts.py"


def verdicts(path: Path, *extra: str) -> list[str]:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(path), *extra], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def record(tmp_path: Path, *trials: tuple[float, float, float, float, int, bool]) -> Path:
    """A settling.py record of one-unit trials: (narrower loss, wider loss, bar, se, chosen, by_margin)."""
    decisions = [{"step": 100 * (i + 1), "started": 0, "layer": 0, "width": 10,
                  "losses": {"-1": lo, "1": hi}, "chosen": c, "bar": bar, "se": {"-1:1": se},
                  **({"by_margin": True} if m else {})} for i, (lo, hi, bar, se, c, m) in enumerate(trials)]
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps({"log": [], "final": True, "decisions": decisions}) + "\n")
    return path


@pytest.mark.parametrize(("scale", "flipped"), [(1.0, 0), (0.5, 1), (0.1, 2)])
def test_the_margin_and_the_counterfactual_are_counted(tmp_path: Path, scale: float, flipped: int) -> None:
    # net gains (narrow - wide - 2 * bar): +0.004 (by the margin, 0.4 SE), +0.0015 (0.15 SE), -0.01, +0.02 (2 SE)
    path = record(tmp_path, (1.010, 1.000, 0.003, 0.01, -1, True), (1.0075, 1.000, 0.003, 0.01, -1, True),
                  (1.000, 1.004, 0.003, 0.01, -1, False), (1.026, 1.000, 0.003, 0.01, 1, False))
    *rows, summary = verdicts(path, "--se-scale", str(scale))
    assert len(rows) == 5 and rows[1].split()[-5:] == ["+0.40", "-1", "(by", "the", "margin)"]
    assert summary == (f"# 4 two-sided trials: the margin decided 2; with the standard error {scale}x as large, "
                       f"{flipped} would go the wider way")


@pytest.mark.parametrize(("seed", "trials", "flipped"), [(1, 33, 1), (2, 35, 0)])
def test_the_ptb_records(seed: int, trials: int, flipped: int) -> None:
    """The records the settling page reads: the margin deciding one trial a seed, all batches turning at most one."""
    summary = verdicts(REPO / f"docs/reproductions/records/settling_ptb_seed{seed}.jsonl")[-1]
    assert summary == (f"# {trials} two-sided trials: the margin decided 1; with the standard error 0.533x as large, "
                       f"{flipped} would go the wider way")
