"""JSB's width targets (issue [F]) counted over settling.py's records, one line per recipe and cell.

Reads the JSON lines ``settling.py --out`` writes (or the compact rows ``--summary`` writes, which
``docs/reproductions/records/settling_jsb.jsonl`` holds) and counts, per recipe (the controller's
options) and cell, the runs that meet each target:

- the two starts (8 and 256 units) of a seed end within 25 % of each other;
- the width after 60 and after 120 epochs within 15 %;
- the test NLL within 1 % of the best fixed layer trained with the same optimizer and learning
  rate (Adam at 1e-3: LSTM 64 units, 8.634; GRU 128 units, 8.535; Adam at 3e-3: LSTM 128 units,
  8.489; GRU 128 units, 8.490 (64 and 256 trained too); Adam at 1e-2: LSTM 256 units, 8.335; GRU
  128 units, 8.453; Adam at 3e-4: LSTM 128 units, 8.808; GRU 256 units, 8.621 (32-256 units on
  3 seeds each); SGD with momentum 0.9 at lr 1.0: LSTM 256 units, 8.276; RMSprop at
  1e-3: LSTM 64 units, 8.606, the only width trained; RMSprop at 3e-4: LSTM 128 units, 8.763 (64
  and 256 on 3 seeds: 8.815, 8.780; 32 on seed 0: 9.020); AdamW (weight decay 0.01) at 1e-3: LSTM 64
  units, 8.636 (32, 128 and 256 trained on seed 0: 8.683, 8.653, 8.663), GRU 128 units, 8.536 (64
  and 256 on seed 0: 8.562, 8.570); AdamW at 3e-4: LSTM 128 units, 8.815 (64 and 256 on 3 seeds:
  8.827, 8.844; 32 on seed 0: 9.033); cell 199 of the JSB search under Adam at
  1e-3: 256 units, 8.270; Adam at 1e-3 in Lightning's ``bf16-mixed``: LSTM 64 units, 8.633 (128
  units 8.675; 32 and 256 on seed 0: 8.676, 8.635), GRU 128 units, 8.535 (64 and 256 on seed 0:
  8.560, 8.569); in ``bf16-true``: LSTM 256 units, 8.775 (64 and 128 units 9.004 and 8.863, 32
  on seed 0 9.260); each the mean of 3 seeds), and that with at most 60 % of its recurrent
  parameters.

Widths are the ones a layer *holds*: after the last trial decided by then. An epoch's logged width
counts the units a running trial added on probation, which may be folded away at its end.

    python docs/reproductions/scripts/scoreboard.py 'default=runs/D_*.jsonl' 'margin=runs/MR_*.jsonl'
    python docs/reproductions/scripts/scoreboard.py docs/reproductions/records/settling_jsb.jsonl
"""

from __future__ import annotations

import argparse
import glob
import json
from collections import defaultdict
from collections.abc import Callable, Iterator

# (cell, optimizer, learning rate -- None: the optimizer's usual one, USUAL -- and Lightning's
# precision -- None: 32-true): the best fixed layer's test NLL, the recurrent parameters at n units,
# its width
BEST: dict[tuple[str, str, float | None, str | None], tuple[float, Callable[[int], int], int]] = {
    ("lstm", "adam", None, None): (8.634, lambda n: 4 * n * (88 + n + 2), 64),
    ("gru", "adam", None, None): (8.535, lambda n: 3 * n * (88 + n + 2), 128),
    ("lstm", "adam", 0.003, None): (8.489, lambda n: 4 * n * (88 + n + 2), 128),
    ("gru", "adam", 0.003, None): (8.490, lambda n: 3 * n * (88 + n + 2), 128),
    ("lstm", "adam", 0.01, None): (8.335, lambda n: 4 * n * (88 + n + 2), 256),
    ("lstm", "adam", 0.0003, None): (8.808, lambda n: 4 * n * (88 + n + 2), 128),
    ("gru", "adam", 0.0003, None): (8.621, lambda n: 3 * n * (88 + n + 2), 256),
    ("gru", "adam", 0.01, None): (8.453, lambda n: 3 * n * (88 + n + 2), 128),
    ("lstm", "sgd", None, None): (8.276, lambda n: 4 * n * (88 + n + 2), 256),
    ("lstm", "rmsprop", None, None): (8.606, lambda n: 4 * n * (88 + n + 2), 64),
    ("lstm", "rmsprop", 0.0003, None): (8.763, lambda n: 4 * n * (88 + n + 2), 128),
    ("lstm", "adamw", None, None): (8.636, lambda n: 4 * n * (88 + n + 2), 64),
    ("lstm", "adamw", 0.0003, None): (8.815, lambda n: 4 * n * (88 + n + 2), 128),
    ("gru", "adamw", None, None): (8.536, lambda n: 3 * n * (88 + n + 2), 128),
    ("configs/cells/jsb/cell_199.txt", "adam", None, None): (8.270, lambda n: 4 * n * n + 90 * n, 256),  # growrnn show
    ("lstm", "adam", None, "bf16-mixed"): (8.633, lambda n: 4 * n * (88 + n + 2), 64),
    ("gru", "adam", None, "bf16-mixed"): (8.535, lambda n: 3 * n * (88 + n + 2), 128),
    ("lstm", "adam", None, "bf16-true"): (8.775, lambda n: 4 * n * (88 + n + 2), 256),
}
# the learning rate the references above trained with
USUAL = {"adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "sgd": 1.0}


def held(record: dict, epoch: int) -> int:
    """The width layer 0 holds after ``epoch`` epochs: its start, moved by every trial decided by
    the end of that epoch -- at the last epoch, the width the run ends with, after the trial cut
    short by the end is decided (settling.py's ``held``, logged at the epoch's validation, is
    before that decision)."""
    step = next(row["step"] for row in record["log"] if row["epoch"] + 1 == epoch)
    width = record["args"]["start"]
    for d in record["decisions"]:
        if d["step"] <= step and d["layer"] == 0:
            width = d["width"] + d["chosen"]
    return width


def rows(paths: list[str]) -> Iterator[dict]:
    """Compact rows from settling.py's records (or rows already compact), each named by the recipe
    its path was given with (``name=glob``), else by its controller options."""
    for given in paths:
        name, _, pattern = given.rpartition("=")
        for path in sorted(glob.glob(pattern)):
            for line in open(path):
                r = json.loads(line)
                if "held" in r:
                    yield r | ({"recipe": name} if name else {})
                    continue
                a = r.get("args", {})
                grown = "decisions" in r and "log" in r and not a.get("fixed")
                if not grown or a.get("task", "jsb") != "jsb" or a.get("epochs") != 120:
                    continue
                model = json.loads(a.get("model") or "{}")
                optimizer = model.get("optimizer", "adam")
                precision = a.get("precision", "32-true")
                yield {"recipe": name or a["ctrl"], "ctrl": json.loads(a["ctrl"]), "cell": a["cell"],
                       **({} if optimizer == "adam" else {"optimizer": optimizer}),
                       **({} if precision == "32-true" else {"precision": precision}),
                       **({"lr": model["lr"]} if model.get("lr", USUAL.get(optimizer)) != USUAL.get(optimizer)
                          else {}),
                       "seed": a["seed"], "start": a["start"], "held": {"60": held(r, 60), "120": held(r, 120)},
                       "tested_units": r["tested_units"][0], "test": r["test/nll_per_frame"],
                       "trial_share": r.get("trial_share")}


def setting(row: dict) -> tuple[str, float | None, str | None]:
    """The optimizer a compact row's run trained with (rows without one: Adam), the learning rate
    it was given (None: the optimizer's usual one, USUAL) and its precision (None: 32-true)."""
    return row.get("optimizer", "adam"), row.get("lr"), row.get("precision")


def score(runs: list[dict]) -> str:
    key = (runs[0]["cell"], *setting(runs[0]))
    if key not in BEST:
        return (f"no fixed reference for {key[0]} under {key[1]} at lr {key[2]} in precision {key[3]} "
                f"(known: {', '.join(map(str, BEST))})")
    best, params, width = BEST[key]
    by = {(r["seed"], r["start"]): r for r in runs}
    pairs = [max(a, b) / min(a, b) for (seed, start), r in sorted(by.items()) if start == 8 and (seed, 256) in by
             for a, b in [(r["held"]["120"], by[(seed, 256)]["held"]["120"])]]
    drift = [abs(r["held"]["120"] / r["held"]["60"] - 1) <= 0.15 for r in runs]
    accurate = [r["test"] <= 1.01 * best for r in runs]
    lean = [ok and params(r["tested_units"]) <= 0.6 * params(width) for ok, r in zip(accurate, runs, strict=True)]
    apart = ", ".join(f"{p:.2f}" for p in pairs)
    return (f"pairs within 25 %: {sum(p <= 1.25 for p in pairs)}/{len(pairs)} ({apart}); "
            f"60->120 within 15 %: {sum(drift)}/{len(drift)}; within 1 %: {sum(accurate)}/{len(accurate)}; "
            f"and <= 60 % of the parameters: {sum(lean)}/{len(lean)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="settling.py records or compact rows: globs, each NAME=GLOB to "
                                                 "name its recipe (else its controller options name it)")
    parser.add_argument("--summary", help="also write the compact rows here (JSON lines)")
    args = parser.parse_args()
    found = list(rows(args.paths))
    if args.summary:
        with open(args.summary, "w") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in found)
    recipes: dict[tuple[str, str, tuple[str, float | None, str | None]], list[dict]] = defaultdict(list)
    for r in found:
        recipes[(r["recipe"], r["cell"], setting(r))].append(r)
    for (recipe, cell, (opt, lr, precision)), runs in recipes.items():
        how = (('' if opt == 'adam' else f' under {opt}') + ('' if lr is None else f' at lr {lr:g}')
               + ('' if precision is None else f' in {precision}'))
        print(f"{recipe}, {cell}{how} ({len(runs)} runs): {score(runs)}")


if __name__ == "__main__":
    main()
