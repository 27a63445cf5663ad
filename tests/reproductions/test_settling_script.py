"""docs/reproductions/scripts/settling.py: its trial looks are a diagnostic that changes no decision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN = ["docs/reproductions/scripts/settling.py", "--task", "teacher", "--epochs", "3", "--start", "4",
       "--task-options", json.dumps({"units": 4, "n_train": 128, "n_eval": 64, "length": 20, "batch_size": 16}),
       "--model", json.dumps({"dropout": 0.0}),
       "--ctrl", json.dumps({"signal": "paired", "lam": 2e-4, "paired_steps": 4, "paired_targets": 0})]


def run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"run{len(extra)}.jsonl"
    proc = subprocess.run([sys.executable, *RUN, *extra, "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text().splitlines()[-1])


def test_trial_looks_record_each_trials_course_and_change_no_decision(tmp_path: Path) -> None:
    plain, looked = run(tmp_path), run(tmp_path, "--trial-looks", "3")
    assert plain["decisions"], "the run made no trial: nothing was compared"
    assert [{k: v for k, v in d.items() if k != "curve"} for d in looked["decisions"]] == plain["decisions"]
    assert (plain["units"], plain["test/loss"]) == (looked["units"], looked["test/loss"])
    decided = [d for d in looked["decisions"] if d["step"] - d["started"] == 4]  # not the one cut by training's end
    assert decided and all([t for t, _ in d["curve"]] == [1, 2, 3] for d in decided)
    assert all(set(sides) == set(d["losses"]) for d in decided for _, sides in d["curve"])
