"""What decided each `paired` trial of a run: the charge or the noise (issue [F]).

Reads the trials' decisions from a ``settling.py --out`` record (its ``decisions``) or from a
Lightning checkpoint of a run (the controller's state, read with ``weights_only=True``) and prints,
per trial of a two-sided trial (the narrower side ``-d`` against the wider ``+d``):

- ``gain``: the narrower side's validation loss minus the wider side's (what the ``2d`` units
  between them were worth over the trial);
- ``charge``: what they cost (the trial's ``bar`` per unit times ``2d``);
- ``net``: gain minus charge (the wider side wins on the losses alone where it is > 0) and
  ``net/se``, with ``se`` the standard error of the two sides' difference: with the default
  margin of half a standard error the wider side wins where ``net/se`` > 0.5.

The summary counts the trials the margin decided (``net`` > 0 but within the margin) and the ones
it would decide otherwise if the standard error were ``--se-scale`` times as large (judging all
``n`` validation batches instead of ``m`` shrinks it about ``sqrt(m / n)`` times, if the
difference's spread is the same over every batch): a trial whose ``net`` is well clear of either
margin is decided by the charge, not by the noise.

    python docs/reproductions/scripts/verdicts.py runs/s1.jsonl --se-scale 0.533
    python docs/reproductions/scripts/verdicts.py runs/s1.ckpt
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def decisions_of(path: str) -> list[dict[str, Any]]:
    """The trials' decisions a record (JSON lines, the last with ``decisions``) or a checkpoint holds."""
    if path.endswith((".jsonl", ".json")):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        found = [r["decisions"] for r in rows if "decisions" in r]
        if not found:
            raise SystemExit(f"{path}: no record with 'decisions' (a paired run's settling.py --out)")
        return found[-1]
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)

    def find(obj: Any) -> list[dict[str, Any]] | None:
        if isinstance(obj, dict):
            if isinstance(obj.get("decisions"), list):
                return obj["decisions"]
            for value in obj.values():
                if (got := find(value)) is not None:
                    return got
        return None

    found = find(state.get("callbacks", {}))
    if found is None:
        raise SystemExit(f"{path}: no paired trials' decisions among its callbacks' states")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a settling.py --out record or a run's checkpoint")
    parser.add_argument("--se-scale", type=float, default=0.533,
                        help="the standard error's factor for the counterfactual (sqrt(60/211) = 0.533: PTB's "
                             "60 judged validation batches against all 211)")
    parser.add_argument("--margin", type=float, default=0.5, help="the run's paired_margin (standard errors)")
    args = parser.parse_args()
    margin_decided = flipped = two_sided = 0
    print(f"{'step':>6} {'units':>5} {'sides':>7} {'gain':>8} {'charge':>7} {'net':>8} {'se':>7} {'net/se':>7} chosen")
    for d in decisions_of(args.path):
        losses = {int(k): float(v) for k, v in d["losses"].items()}
        narrow, wide = min(losses), max(losses)
        if narrow >= 0 or wide <= 0:  # a trial at a bound: one side only
            continue
        two_sided += 1
        gain = losses[narrow] - losses[wide]
        charge = d["bar"] * (wide - narrow)
        net = gain - charge
        se = next(iter(d.get("se", {}).values()), 0.0)
        ratio = net / se if se else float("inf") if net > 0 else float("-inf")
        print(f"{d['step']:6d} {d['width']:5d} {narrow:+d}/{wide:+d} {gain:+8.4f} {charge:7.4f} {net:+8.4f} "
              f"{se:7.4f} {ratio:+7.2f} {d['chosen']:+d}{'  (by the margin)' if d.get('by_margin') else ''}")
        margin_decided += bool(d.get("by_margin"))
        flipped += bool(se) and args.margin * se * args.se_scale < net <= args.margin * se
    print(f"# {two_sided} two-sided trials: the margin decided {margin_decided}; with the standard error "
          f"{args.se_scale}x as large, {flipped} would go the wider way")


if __name__ == "__main__":
    main()
