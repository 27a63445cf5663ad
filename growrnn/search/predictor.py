"""A fitness predictor for the search: a small "meta-LSTM" that reads the first ``k`` points of a
candidate's validation curve and predicts the value the curve ends at (Rawal & Miikkulainen 2018,
arXiv 1803.04439, §3.3), so that candidates that will clearly end badly can be stopped early.

The predictor is trained on the curves of candidates that already finished. It predicts the
*remaining change* ``final - prefix[-1]`` rather than the final value itself, so a network that has
learnt nothing falls back to the "last point seen" rule (up to a constant), which is a strong
baseline; what it learns is the correction from the curve's shape. Inputs and targets are
normalised with robust statistics of the training set (median and interquartile range, values
clipped at 10 scales, so blown-up candidates do not swamp the fit), kept in the predictor and
its state.

>>> p = CurvePredictor(k=2, epochs=50).fit([[3.0, 2.0, 1.5], [2.0, 1.9, 1.85]], [1.5, 1.85])
>>> p.predict([[3.0, 2.0]]).shape
(1,)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from growrnn.errors import ArgumentError, check_choice
from growrnn.executors import torch_threads
from growrnn.search.selection import nondominated_ranks, spearman
from growrnn.search.storage import Archive
from growrnn.training.callbacks import ValidationCurve

__all__ = ["CurvePredictor", "EarlyStopRule", "PredictorStop", "fit_predictor", "holdout_report"]
log = logging.getLogger(__name__)


def _int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ArgumentError(name, allowed=f"an int >= {low}", received=value)
    return int(value)


def _positive(name: str, value: object, *, zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value < 0 if zero else value <= 0):  # type: ignore[operator]
        raise ArgumentError(name, allowed=f"a finite float {'>=' if zero else '>'} 0", received=value)
    return float(value)  # type: ignore[arg-type]


def _prefixes(name: str, curves: Sequence[Sequence[float]], k: int) -> np.ndarray:
    """The first ``k`` points of every curve as a float64 array ``(N, k)``."""
    if isinstance(curves, (str, bytes)) or not isinstance(curves, (Sequence, np.ndarray)):
        raise ArgumentError(name, allowed="a sequence of curves (sequences of floats)", received=type(curves).__name__)
    rows = []
    for i, curve in enumerate(curves):
        try:
            values = [float(v) for v in curve]
        except (TypeError, ValueError):
            raise ArgumentError(f"{name}[{i}]", allowed="a sequence of floats", received=curve) from None
        if len(values) < k:
            raise ArgumentError(f"{name}[{i}]", allowed=f"a curve of at least k={k} points", received=len(values),
                                hint="wait for k validations before predicting, or use a smaller k")
        rows.append(values[:k])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), k)


#: normalised inputs and targets are clipped to +-_CLIP robust scales: a blown-up curve is then
#: "far worse than usual" to the meta-LSTM, without dominating its fit
_CLIP = 10.0


def _scale(values: np.ndarray) -> float:
    """A robust spread: the interquartile range / 1.349 (the standard deviation for a normal
    sample), else the standard deviation when most values are equal, else 1."""
    q1, q3 = np.percentile(values, [25, 75])
    spread = float(q3 - q1) / 1.349
    if spread > 0 and math.isfinite(spread):
        return spread
    std = float(values.std())
    return std if std > 0 and math.isfinite(std) else 1.0


class _MetaLSTM(nn.Module):
    """LSTM over the prefix (2 features a step: the normalised value and its change), a linear
    read-out of the last hidden state, plus a linear skip from the prefix (so the model can do at
    least what a linear regression on the k points does)."""

    def __init__(self, hidden_size: int, k: int, generator: torch.Generator) -> None:
        super().__init__()
        # built on the meta device and initialised from `generator`: nn.LSTM's own init would draw
        # from (and advance) torch's global RNG
        self.lstm = nn.LSTM(2, hidden_size, batch_first=True, device="meta")
        self.head = nn.Linear(hidden_size, 1, device="meta")
        self.skip = nn.Linear(k, 1, bias=False, device="meta")
        self.to_empty(device="cpu")
        bound = 1.0 / math.sqrt(hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                nn.init.uniform_(p, -bound, bound, generator=generator)

    def forward(self, z: Tensor) -> Tensor:
        """``z`` (N, k) normalised prefixes -> (N,) normalised remaining change."""
        step = torch.diff(z, dim=1, prepend=z[:, :1])
        out, _ = self.lstm(torch.stack([z, step], dim=-1))
        return (self.head(out[:, -1]) + self.skip(z)).squeeze(-1)


class CurvePredictor:
    """Predicts a curve's final validation metric from its first ``k`` points.

    Args:
        k: prefix length read (curves longer than ``k`` are cut to their first ``k`` points).
        hidden_size: units of the meta-LSTM.
        epochs: full-batch AdamW steps per :meth:`fit`.
        lr: AdamW learning rate.
        seed: seeds the meta-LSTM's initial weights and the early-stopping split (same data +
            seed -> same predictor).
        weight_decay: AdamW's decoupled weight decay.
        val_fraction: share of the training curves held out for early stopping: :meth:`fit`
            keeps the weights of the step with the lowest held-out loss (0 turns it off; it is
            also off with fewer than 2 curves on either side). On noisy curves this is what keeps
            300 steps from overfitting 80 curves.
    """

    def __init__(self, k: int, hidden_size: int = 16, epochs: int = 300, lr: float = 1e-2, seed: int = 0,
                 weight_decay: float = 1e-2, val_fraction: float = 0.2) -> None:
        self.k = _int("k", k, 1)
        self.hidden_size = _int("hidden_size", hidden_size, 1)
        self.epochs = _int("epochs", epochs, 0)
        self.lr = _positive("lr", lr)
        self.seed = _int("seed", seed, 0)
        self.weight_decay = _positive("weight_decay", weight_decay, zero=True)
        if not isinstance(val_fraction, (int, float)) or not 0.0 <= float(val_fraction) < 1.0:
            raise ArgumentError("val_fraction", allowed="a float in [0, 1)", received=val_fraction)
        self.val_fraction = float(val_fraction)
        self.n_train = 0
        # normalisation: x -> (x - x_mean) / x_std on prefix values; the target is the remaining
        # change final - prefix[-1], normalised by (d_mean, d_std)
        self.stats = {"x_mean": 0.0, "x_std": 1.0, "d_mean": 0.0, "d_std": 1.0}
        self.net = _MetaLSTM(self.hidden_size, self.k, torch.Generator().manual_seed(self.seed))

    @property
    def fitted(self) -> bool:
        return self.n_train > 0

    def fit(self, curves: Sequence[Sequence[float]], finals: Sequence[float]) -> CurvePredictor:
        """Train on finished candidates: ``curves[i]`` (>= k points) ended at ``finals[i]``.
        Pairs with a non-finite value (diverged runs) are left out. Retrains from the seeded
        initial weights, so the result depends only on the data and the seed. Returns ``self``."""
        x = _prefixes("curves", curves, self.k)
        y = np.asarray([float(f) for f in finals], dtype=np.float64)
        if len(y) != len(x):
            raise ArgumentError("finals", allowed=f"one value per curve ({len(x)})", received=len(y))
        keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if len(y) < 2:
            raise ArgumentError("curves", allowed="at least 2 curves with finite values", received=len(y),
                                hint="train the predictor once a few candidates have finished")
        d = y - x[:, -1]
        # robust centre and scale (median, IQR): a search's curves include blow-ups at 1e8 and
        # beyond that are finite, and with the mean and standard deviation those few would squash
        # every ordinary curve into one point (measured on the JSB archive: rho went to NaN at k=3)
        self.stats = {"x_mean": float(np.median(x)), "x_std": _scale(x),
                      "d_mean": float(np.median(d)), "d_std": _scale(d)}
        self.net = _MetaLSTM(self.hidden_size, self.k, torch.Generator().manual_seed(self.seed))
        z = self._normalise(x)
        target = torch.as_tensor(np.clip((d - self.stats["d_mean"]) / self.stats["d_std"], -_CLIP, _CLIP),
                                 dtype=torch.float32)
        fit_rows, held_rows = self._split(len(y))
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.net.train()
        best, best_state, loss = math.inf, None, torch.tensor(math.nan)
        for epoch in range(self.epochs + 1):
            out = self.net(z)
            if len(held_rows):
                # early stopping: keep the weights with the lowest loss on the held-out curves
                held = float(nn.functional.mse_loss(out[held_rows], target[held_rows]).detach())
                if held < best:
                    best, best_state = held, {n: t.detach().clone() for n, t in self.net.state_dict().items()}
            if epoch == self.epochs:
                break
            opt.zero_grad()
            loss = nn.functional.mse_loss(out[fit_rows], target[fit_rows])
            loss.backward()
            opt.step()
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.n_train = len(y)
        log.debug("curve predictor: k=%d, %d curves (%d left out), final loss %.4g",
                  self.k, len(y), int((~keep).sum()), float(loss.detach()))
        return self

    def _split(self, n: int) -> tuple[Tensor, Tensor]:
        """Rows to fit and rows held out for early stopping (a seeded ``val_fraction`` of them;
        none when that would leave fewer than 2 on either side)."""
        n_held = int(round(self.val_fraction * n))
        order = np.random.default_rng(self.seed).permutation(n)
        if n_held < 2 or n - n_held < 2:
            return torch.arange(n), torch.arange(0)
        return torch.as_tensor(np.sort(order[n_held:])), torch.as_tensor(np.sort(order[:n_held]))

    def _normalise(self, x: np.ndarray) -> Tensor:
        z = np.clip((x - self.stats["x_mean"]) / self.stats["x_std"], -_CLIP, _CLIP)
        return torch.as_tensor(z, dtype=torch.float32)

    def predict(self, prefixes: Sequence[Sequence[float]]) -> np.ndarray:
        """Predicted final values, shape ``(N,)``, from prefixes of at least ``k`` points (only the
        first ``k`` are read). A prefix with a non-finite value predicts NaN."""
        if not self.fitted:
            raise ArgumentError("predictor", allowed="a fitted CurvePredictor", received="an unfitted one",
                                hint="call fit(curves, finals) first (or load_state_dict)")
        x = _prefixes("prefixes", prefixes, self.k)
        if len(x) == 0:
            return np.empty(0)
        finite = np.isfinite(x).all(axis=1)
        self.net.eval()
        with torch.no_grad():
            out = self.net(self._normalise(np.where(finite[:, None], x, 0.0))).double().numpy()
        pred = x[:, -1] + self.stats["d_mean"] + self.stats["d_std"] * out
        return np.where(finite, pred, np.nan)

    def evaluate(self, curves: Sequence[Sequence[float]], finals: Sequence[float]) -> dict[str, float]:
        """``{"spearman": rank correlation of predicted vs true finals, "mae": mean absolute
        error}`` on finite pairs; spearman is NaN when either side is constant or < 2 pairs."""
        pred = self.predict(curves)
        y = np.asarray([float(f) for f in finals], dtype=np.float64)
        if len(y) != len(pred):
            raise ArgumentError("finals", allowed=f"one value per curve ({len(pred)})", received=len(y))
        return {"spearman": spearman(pred, y), "mae": _mae(pred, y)}

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A JSON-able dict: configuration, normalisation statistics and weights (as lists)."""
        return {"k": self.k, "hidden_size": self.hidden_size, "epochs": self.epochs, "lr": self.lr,
                "seed": self.seed, "weight_decay": self.weight_decay, "val_fraction": self.val_fraction,
                "n_train": self.n_train, "stats": dict(self.stats),
                "weights": {n: t.tolist() for n, t in self.net.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (predictions come back identical)."""
        for name in ("k", "hidden_size"):
            if state.get(name) != getattr(self, name):
                raise ArgumentError(f"state['{name}']", allowed=f"{getattr(self, name)} (this predictor's)",
                                    received=state.get(name), hint="build it with CurvePredictor.from_state(state)")
        self.epochs, self.lr, self.seed = int(state["epochs"]), float(state["lr"]), int(state["seed"])
        self.weight_decay, self.val_fraction = float(state["weight_decay"]), float(state["val_fraction"])
        self.n_train, self.stats = int(state["n_train"]), {n: float(v) for n, v in state["stats"].items()}
        self.net.load_state_dict({n: torch.tensor(v, dtype=torch.float32) for n, v in state["weights"].items()})

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CurvePredictor:
        """A predictor rebuilt from a :meth:`state_dict`."""
        p = cls(k=state["k"], hidden_size=state["hidden_size"])
        p.load_state_dict(state)
        return p


def _mae(pred: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(pred) & np.isfinite(y)
    return float(np.abs(pred[ok] - y[ok]).mean()) if ok.any() else math.nan


def holdout_report(curves: Sequence[Sequence[float]], finals: Sequence[float], k: int, train_fraction: float = 0.7,
                   seed: int = 0, **options: Any) -> dict[str, float]:
    """Honest measurement: fit a :class:`CurvePredictor` (``options`` go to it) on a random
    ``train_fraction`` of the curves and score it on the rest. Returns ``spearman`` and ``mae`` on
    the held-out curves, ``baseline_spearman`` (of the "last point seen" rule, what the predictor
    must beat), ``n_train`` and ``n_test``."""
    if not isinstance(train_fraction, (int, float)) or not 0.0 < float(train_fraction) < 1.0:
        raise ArgumentError("train_fraction", allowed="a float in (0, 1)", received=train_fraction)
    x = _prefixes("curves", curves, _int("k", k, 1))
    y = np.asarray([float(f) for f in finals], dtype=np.float64)
    if len(y) != len(x):
        raise ArgumentError("finals", allowed=f"one value per curve ({len(x)})", received=len(y))
    order = np.random.default_rng(_int("seed", seed, 0)).permutation(len(y))
    n_train = int(round(train_fraction * len(y)))
    if n_train < 2 or n_train > len(y) - 2:
        raise ArgumentError("curves", allowed="enough curves for >= 2 to train and >= 2 to test",
                            received=f"{len(y)} curves, train_fraction={train_fraction}")
    train, test = order[:n_train], order[n_train:]
    predictor = CurvePredictor(k, seed=seed, **options).fit(x[train].tolist(), y[train].tolist())
    scores = predictor.evaluate(x[test].tolist(), y[test].tolist())
    return {"spearman": scores["spearman"], "mae": scores["mae"],
            "baseline_spearman": spearman(x[test, -1], y[test]),
            "n_train": float(predictor.n_train), "n_test": float(len(test))}


class EarlyStopRule:
    """Stop a candidate whose predicted final is worse than ``threshold`` by more than ``margin``.

    Args:
        predictor: a :class:`CurvePredictor` (refit it in place as candidates finish).
        direction: ``"min"`` (lower metric is better) or ``"max"``.
        margin: slack in metric units (>= 0): stop only if the prediction is worse than the
            threshold by more than this.
        min_train: never stop while the predictor was trained on fewer curves than this.
    """

    def __init__(self, predictor: CurvePredictor, direction: str, margin: float, min_train: int) -> None:
        if not isinstance(predictor, CurvePredictor):
            raise ArgumentError("predictor", allowed="a CurvePredictor", received=type(predictor).__name__)
        check_choice("direction", direction, ("min", "max"))
        self.predictor, self.direction = predictor, direction
        self.margin = _positive("margin", margin, zero=True)
        self.min_train = _int("min_train", min_train, 1)

    def predict_final(self, prefix: Sequence[float]) -> float | None:
        """The predicted final value, or ``None`` while the rule may not decide (predictor trained
        on fewer than ``min_train`` curves, prefix shorter than ``k``, or a non-finite prediction)."""
        if self.predictor.n_train < self.min_train or len(prefix) < self.predictor.k:
            return None
        value = float(self.predictor.predict([prefix])[0])
        return value if math.isfinite(value) else None

    def should_stop(self, prefix: Sequence[float], threshold: float) -> bool:
        """Whether to stop the candidate whose curve so far is ``prefix``, given ``threshold`` (e.g.
        the worst value on the current front, or the population median). A non-finite threshold
        (an empty front) never stops anything."""
        if not math.isfinite(float(threshold)):
            return False
        value = self.predict_final(prefix)
        if value is None:
            return False
        if self.direction == "min":
            return value > threshold + self.margin
        return value < threshold - self.margin


class PredictorStop(ValidationCurve):
    """Lightning callback: after each validation, the monitored metric joins the candidate's
    curve (see :class:`~growrnn.training.callbacks.ValidationCurve`) and ``trainer.should_stop``
    is set when ``rule.should_stop(curve, threshold)`` says so.

    Args:
        rule: the :class:`EarlyStopRule`.
        threshold: the value the prediction is compared with (fixed for this run).
        monitor: the logged metric; ``None`` reads ``val/<metric>`` of the module's task spec
            (``val/loss`` for a module without one).
    """

    def __init__(self, rule: EarlyStopRule, threshold: float, monitor: str | None = None) -> None:
        super().__init__(monitor)
        self.rule, self.threshold = rule, float(threshold)
        self.stopped = False

    @property
    def curve(self) -> list[float]:
        """The monitored values, one per validation."""
        return [p["val"] for p in self.points]

    @property
    def steps(self) -> list[int]:
        """The global step of each value of :attr:`curve`."""
        return [int(p["step"]) for p in self.points]

    def on_point(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.stopped and self.rule.should_stop(self.curve, self.threshold):
            self.stopped = trainer.should_stop = True
            log.info("predictor stops the run at step %d: predicted %s worse than %.4g",
                     trainer.global_step, self.monitored(pl_module), self.threshold)

    def state_dict(self) -> dict[str, Any]:
        return {"curve": self.curve, "steps": self.steps, "stopped": self.stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.points = [{"step": step, "epoch": math.nan, "val": float(value), "train_loss": math.nan}
                       for step, value in zip(state_dict["steps"], state_dict["curve"], strict=True)]
        self.stopped = bool(state_dict["stopped"])


def fit_predictor(archive: Archive, config: Any, seed: int, population: Sequence[int], F: np.ndarray,
                  n_objectives: int, direction: str) -> tuple[dict[str, Any] | None, float | None]:
    """Refit the curve predictor (``config``: the search's
    :class:`~growrnn.search.config.PredictorConfig`) on every candidate that trained to its end (not stopped early,
    not left in a lower rung, not a reused result, not diverged) and return its state with the next generation's
    threshold: the worst ``val`` on the population's front (over the first ``n_objectives`` columns of ``F``;
    ``inf`` when none is finite, which stops nothing). ``(None, None)`` below two curves."""
    curves, finals = [], []
    for r in archive.rows("done"):
        m = r.metrics or {}
        final = float(m.get("val", math.nan))
        if m.get("reused_from") is None and not m.get("stopped_early") and not m.get("diverged") \
                and not m.get("unpromoted") \
                and r.curve is not None and len(r.curve) >= config.k and math.isfinite(final):
            curves.append([float(point["val"]) for point in r.curve])
            finals.append(final)
    if len(curves) < 2:
        return None, None
    with torch_threads(1):  # as in the workers: results do not depend on the core count
        predictor = CurvePredictor(config.k, hidden_size=config.hidden_size, epochs=config.epochs, seed=seed)
        predictor.fit(curves, finals)
    front = nondominated_ranks(F[:, :n_objectives]) == 0
    objectives = [archive.get(i).objectives for i, on in zip(population, front, strict=True) if on]
    finite = [float(o["val"]) for o in objectives if o is not None and math.isfinite(float(o["val"]))]
    if not finite:
        return predictor.state_dict(), math.inf
    return predictor.state_dict(), (min(finite) if direction == "max" else max(finite))
