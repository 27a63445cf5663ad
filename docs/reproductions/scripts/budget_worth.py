"""What a unit is worth over the whole budget, from fixed layers, against the paired charge (issue [F]).

Takes the test losses of fixed layers of several widths, each trained for the whole budget, and
prints for every step between neighbouring widths what a unit added there is worth at the end of
the budget (the narrower layer's loss less the wider one's, over the units between them) beside
what the default ``paired`` recipe charges a unit (``lam`` x the rows of weights a unit has in its
cell x the loss, here the mean of the losses given; the charge's floor, ``paired_floor``, is left
out: it binds only where the loss falls below half its untrained value). Walking the steps from
the narrowest, the first one whose worth does not pay its charge places the width where a unit's
marginal worth falls to the charge -- the width the charge would keep if a trial saw the whole
budget: the last line brackets it between that step's middle width and the middle of the step
before it, and, where both steps' worths are positive and fall, estimates it with a worth that
falls exponentially with the width (diminishing returns), fitted so that its means over the two
steps are their worths. Against it, the width the default's trials find says whether a trial's
window or the charge sets a layer's width.

    python docs/reproductions/scripts/budget_worth.py --cell lstm 32:9.010 64:8.824 128:8.808 256:8.843
    python docs/reproductions/scripts/budget_worth.py --cell lstm --perplexity 60:123.0 68:119.5 256:95.7

``--cell`` takes what :func:`growrnn.genome.load` reads (a library cell name or a genome file);
``--perplexity`` reads the scores as perplexities (their logarithms are the losses).
"""

from __future__ import annotations

import argparse
import itertools
import math


def charge_rows(cell: str) -> int:
    """The rows of weights a unit of ``cell`` has: one per weighted call (an LSTM 8, a GRU 6)."""
    from growrnn.genome import load

    return len(load(cell).weighted)


def default_lam() -> float:
    """The ``paired`` signal's ``lam`` under adaptive optimizers (Adam, AdamW, RMSprop)."""
    from growrnn.growth.signals import PAIRED_RECIPES

    return float(PAIRED_RECIPES["adaptive"]["lam"])


def widths_and_losses(pairs: list[str], perplexity: bool) -> list[tuple[int, float]]:
    """``WIDTH:SCORE`` strings as (width, loss) pairs, narrowest first."""
    out = []
    for pair in pairs:
        try:
            width, score = pair.split(":")
            out.append((int(width), math.log(float(score)) if perplexity else float(score)))
        except ValueError:
            raise SystemExit(f"a fixed layer is WIDTH:SCORE (e.g. 64:8.824); received {pair!r}") from None
    out.sort()
    if len(out) < 2 or len({w for w, _ in out}) < len(out):
        raise SystemExit("give at least two fixed layers of distinct widths")
    return out


def _log_mean(r: float, lo: float, hi: float) -> float:
    """log of the mean of exp(-r w) over [lo, hi], for r > 0."""
    d = r * (hi - lo)
    return -r * lo + math.log(-math.expm1(-d) / d)


def crossing(first: tuple[int, int, float], second: tuple[int, int, float], charge: float) -> float | None:
    """The width where a worth ``A exp(-r w)`` whose means over ``first`` and ``second`` (adjacent
    ``(narrow, wide, worth)`` steps) are their worths falls to ``charge``; None unless both worths
    are positive and the second is the smaller."""
    (a, b, w1), (b2, c, w2) = first, second
    if not (w1 > w2 > 0 and charge > 0 and b == b2):
        return None
    target = math.log(w1 / w2)

    def log_ratio(r: float) -> float:
        return _log_mean(r, a, b) - _log_mean(r, b, c)

    lo, hi = 1e-12, 1.0 / (c - a)
    while log_ratio(hi) < target:
        hi *= 2.0
    for _ in range(200):  # the ratio of the means grows with r: bisect
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if log_ratio(mid) < target else (lo, mid)
    r = (lo + hi) / 2
    log_a = math.log(w1) - _log_mean(r, a, b)
    return (log_a - math.log(charge)) / r


def kept_width(steps: list[tuple[int, int, float]], charge: float) -> tuple[float | None, float | None, float | None]:
    """Where a unit's marginal worth falls to ``charge``, from ``(narrow, wide, worth a unit)``
    steps, narrowest first: the first step whose worth does not pay ``charge`` and the one before
    it give (the earlier step's middle width, that step's middle, the exponential estimate from
    the two: :func:`crossing`). None for a bound no step gives (every step pays, or the first does
    not) and for an estimate the two steps do not give."""
    middles = [(a + b) / 2 for a, b, _ in steps]
    for i, (_, _, worth) in enumerate(steps):
        if worth <= charge:
            if i == 0:
                return None, middles[0], None
            return middles[i - 1], middles[i], crossing(steps[i - 1], steps[i], charge)
    return middles[-1], None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixed", nargs="+", help="WIDTH:SCORE of each fixed layer (test loss, or perplexity)")
    parser.add_argument("--cell", default="lstm", help="the layers' cell: what growrnn.genome.load reads")
    parser.add_argument("--perplexity", action="store_true", help="the scores are perplexities")
    parser.add_argument("--lam", type=float, default=None, help="the charge's lam (default: the recipe's)")
    args = parser.parse_args()
    fixed = widths_and_losses(args.fixed, args.perplexity)
    lam = default_lam() if args.lam is None else args.lam
    rows = charge_rows(args.cell)
    loss = sum(v for _, v in fixed) / len(fixed)
    charge = lam * rows * loss
    print(f"# charge a unit: lam {lam:g} x {rows} rows x loss {loss:.3f} = {charge:.5f}")
    steps = [(a, b, (va - vb) / (b - a)) for (a, va), (b, vb) in itertools.pairwise(fixed)]
    for narrow, wide, worth in steps:
        print(f"{narrow:5d} -> {wide:<5d} worth a unit {worth:+.5f}  {'pays' if worth > charge else 'does not pay'}")
    low, high, estimate = kept_width(steps, charge)
    if low is None:
        where = f"fewer than {high:g} (the first step does not pay)"
    elif high is None:
        where = f"more than {low:g} (every step pays)"
    else:
        where = f"between {low:g} and {high:g}" + ("" if estimate is None else f", about {estimate:.0f}")
    print(f"# the charge keeps {where} units over the whole budget")

if __name__ == "__main__":
    main()
