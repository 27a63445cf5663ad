"""Paired width trials: the training side of the ``paired`` signal
(:class:`~growrnn.growth.signals.Paired`).

A trial (**bracketing**, the default) starts by copying the network, folding ``d`` of a layer's
units away in the copy and adding ``d`` fresh units to the network itself; the copy trains beside
the network on the same batches for ``steps`` optimizer steps (with its own optimizer, a copy of
the network's, at the network's learning rates), and then whichever of the two scores lower on
the validation batches with its charge per unit (``lam`` per row of the unit's weights, by
default) goes on. With ``keep``, the network keeps
its width during the trial and is judged against two copies (``d`` more, ``d`` fewer). An adopted
copy *becomes* the network: its layer is resized with the same unit map, then the copy's weights,
optimizer state and carried state are copied in, so Lightning's references (parameters,
optimizer, scheduler) stay valid.

The trial's copy is part of the controller's checkpoint (unit map, weights and optimizer state):
a run resumed mid-trial trains the same copy on the same batches and decides the same.

Under DDP (:mod:`growrnn.training.distributed`) every process keeps its own replica of the copy
and trains it on its rows of the batch, and everything a trial measures is the whole batch's: the
copy's gradients are averaged over the processes (as DDP's reducer averages the network's), the
judged validation losses and target counts, the layer's output moments (which units a copy folds
away, and how) and the targets a trial counts are summed over them. Every process then holds the
same numbers, bit for bit, and takes the same decision; the controller checks the replicas and
rewraps the network after each resize, as for any signal. The copies' carried state is each
process's rows, gathered to the whole batch in a checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch import Tensor

from growrnn.errors import ArgumentError
from growrnn.growth.signals import Paired, _output_moments, fold_units, unit_worth, weakest_units
from growrnn.growth.stack import layers_of, outgoing_weights
from growrnn.growth.surgery import UnitMap
from growrnn.training.callbacks import epoch_steps
from growrnn.training.distributed import Replicas, gather_rows, shard_rows
from growrnn.training.model import pooled_loss

__all__ = ["PairedTrials"]

log = logging.getLogger(__name__)

#: a settled layer waits up to 2**MAX_CALM - 1 trials' steps between trials
MAX_CALM = 4
#: with paired_settle cycle, the trials whose moves tell a layer going round a width (see cycling)
CYCLE = 4


@dataclass
class _Copy:
    """One trial copy: layer ``k`` resized by ``units`` (``delta`` units more or fewer)."""

    delta: int
    units: UnitMap
    model: Any
    optimizer: torch.optim.Optimizer
    window: int = 0  # the batches its gradient holds since its last step (accumulate_grad_batches)
    finite: bool = True  # whether every loss of that window was finite
    scaler: Any = None  # the window's loss scaler (16-mixed with a scaler), at the network's scale


@dataclass
class PairedTrials:
    """The trials' state: which layer is tried next, each layer's step (a fraction of its width),
    the running trial's copies and where it started, and the decisions taken (for the record)."""

    signal: Paired
    min_units: int = 1
    max_units: int = 512
    layer: int = 0
    fractions: list[float] = field(default_factory=list)
    started: int | None = None
    copies: list[_Copy] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    calm: list[int] = field(default_factory=list)  # per layer: its trials in a row that turned back at one unit
    turned: list[bool] = field(default_factory=list)  # per layer: whether a trial of it has turned back yet
    idle_until: list[int] = field(default_factory=list)  # per layer: no trial of it starts before this step
    held: float | None = None  # with hold: the last validation loss judged while holding (None: not yet)
    holding: bool = True  # with hold: no trial has started yet
    start_loss: float | None = None  # with scale "start"/"gain" or a floor: the validation loss after the first step
    until: int | None = None  # the step the running trial is due to be decided at (None: started + length())
    midway: dict[int, float] | None = None  # with extend: each side's validation loss half-way through the last steps
    born: list[list[int]] = field(default_factory=list)  # per layer, per unit: the step it was added at (0: first)
    counted: list[int] = field(default_factory=lambda: [0, 0])  # the targets the copies trained on, and their steps
    epoch_steps: int | None = None  # the optimizer steps of an epoch (paired_horizon_cap; None: not known)
    replicas: Replicas = field(default_factory=Replicas)  # the training processes (one until the controller's setup)
    _batches: list[Any] | None = None
    _saved: list[dict[str, Any]] | None = None  # copies from a checkpoint, rebuilt at the next step

    # ------------------------------------------------------------------ the trial's life
    def step(self, trainer: Any, model: Any, batch: Any, optimizer: Any, step: int,
             resized: Callable[[int, UnitMap, int], None], start: bool = True,
             rates: list[float] | None = None) -> None:
        """After the network's optimizer step ``step`` on ``batch``: train the copies on it, at
        the learning ``rates`` the network's step used (per parameter group; None: the
        optimizer's now — a scheduler stepped before this hook may have changed them); end the
        trial when it is due; start the next one (unless ``start`` is false: training ends at
        this step). Every resize of the network's layers (a copy adopted, units added for a trial)
        is reported at once to ``resized(layer, units, old width)``."""
        n = len(layers_of(model.rnn))
        if len(self.fractions) != n:
            self.fractions = [self.signal.fraction] * n
        if len(self.calm) != n:
            self.calm, self.idle_until = [0] * n, [0] * n
        if len(self.turned) != n:
            self.turned = [False] * n
        if len(self.born) != n:
            self.born = [[0] * int(x.hidden_size) for x in layers_of(model.rnn)]
        self.epoch_steps = epoch_steps(trainer)
        resized = self._dated(resized, step)
        if self._saved is not None:
            self._rebuild(model, optimizer)
        if self.start_loss is None and self._needs_start():
            # after the first step: its weights moved once from the initialisation (one step of
            # a few thousand), close enough to the untrained network and judged in the one place
            # every trial's steps pass through
            self.start_loss = self._judged(trainer, model)
            if math.isfinite(self.start_loss):
                log.info("paired trials: validation loss after the first step %.4f", self.start_loss)
            else:
                log.warning("paired trials: the validation loss after the first step is not finite; lam and "
                            "the hold are shares of the validation loss at each trial, with no floor")
        if self.copies:
            for c in self.copies:
                _train(c, batch, optimizer, trainer, self.replicas, rates=rates)
            if self.signal.targets:
                self.counted = [self.counted[0] + self._targets(model, batch), self.counted[1] + 1]
            due = self._due_end()
            if self.signal.extend > 1 and self.midway is None and step >= due - self._half():
                self.midway = self._sides(trainer, model, errors=False)[0]
            if step >= due:
                self._end(trainer, model, optimizer, step, resized, may_extend=True, batch=batch)
        if not self.copies and start:
            k = self._due(step)
            if k is not None and not self._holds(trainer, model, step):
                self.layer = k
                self._start(model, batch, optimizer, step, resized)

    def accumulate(self, trainer: Any, model: Any, batch: Any, optimizer: Any) -> None:
        """On a batch whose gradient the network accumulates without stepping
        (``accumulate_grad_batches``): the running trial's copies accumulate theirs on it too, and
        the trial counts its targets (a trial's step, as the network's, is every batch of it)."""
        if self._saved is not None:
            self._rebuild(model, optimizer)
        if not self.copies:
            return
        for c in self.copies:
            _train(c, batch, optimizer, trainer, self.replicas, step=False)
        if self.signal.targets:
            self.counted[0] += self._targets(model, batch)

    def new_epoch(self) -> None:
        """At an epoch's start where the network starts its carried state afresh: the running
        trial's copies start theirs afresh too (each side reads the epoch's first batch as the
        network does)."""
        for c in self.copies:
            c.model._state["train"] = None

    def _targets(self, model: Any, batch: Any) -> int:
        """The targets ``batch`` holds, the whole batch's under DDP (every process's rows)."""
        return int(self.replicas.total(torch.tensor([float(model.targets(batch))])))

    def _due(self, step: int) -> int | None:
        """The layer whose trial is next at ``step``: the first from :attr:`layer` on, round the
        stack, that is not waiting after settling (a settled layer waits alone; the others' trials
        go on); None while every layer waits."""
        n = len(self.idle_until)
        return next((k % n for k in range(self.layer, self.layer + n) if step >= self.idle_until[k % n]), None)

    def finish(self, trainer: Any, model: Any, optimizer: Any, step: int,
               resized: Callable[[int, UnitMap, int], None]) -> None:
        """Decide the running trial now, as it stands (at training's last step, or when training
        has ended: the network is not left with units added for a trial and never judged). A
        trial that has not trained a step (started on the last one) decides nothing: it is
        dropped, and units the network took for it (untrained, with zero outgoing weights: the
        function is unchanged) go."""
        self.epoch_steps = epoch_steps(trainer)
        self._end(trainer, model, optimizer, step, self._dated(resized, step), may_extend=False)

    def _dated(self, resized: Callable[[int, UnitMap, int], None], step: int) -> Callable[[int, UnitMap, int], None]:
        """``resized``, after recording each unit's step of birth through the resize (units new to
        the layer are born at ``step``)."""
        def dated(k: int, units: UnitMap, old: int) -> None:
            if k < len(self.born):
                self.born[k] = [self.born[k][i] if i >= 0 else step for i in units.index.tolist()]
            resized(k, units, old)
        return dated

    def length(self, at: int | None = None) -> int:
        """A trial's steps: ``steps``, or the steps that hold ``targets`` training targets at the
        mean the trials have trained on so far, whichever is more (``steps`` until a trial has
        trained a step); with ``horizon``, at least ``horizon`` times ``at``, the steps trained
        before the trial starts (None: not counted), up to ``horizon_cap`` epochs where an epoch's
        steps are known, or up to :meth:`reached` steps where that is more."""
        targets, steps = self.counted
        base = self.signal.steps
        if self.signal.targets and targets:
            base = max(base, math.ceil(self.signal.targets * steps / targets))
        if not at or not self.signal.horizon:
            return base
        grown = self.signal.horizon * at
        if self.signal.horizon_cap is not None and self.epoch_steps:
            grown = min(grown, max(self.signal.horizon_cap * self.epoch_steps, self.reached()))
        return max(base, math.ceil(round(grown, 9)))  # 0.07 x 100 is 7

    def reached(self) -> int:
        """The steps the starting learning rate takes to sum to ``reach`` (0 where either is not
        set): the horizon lengthens a trial to this many past its cap (a rate so small that the
        count overflows a float lifts the cap altogether)."""
        reach, rate = self.signal.reach, self.signal.rate
        if not (reach and rate):
            return 0
        steps = reach / rate
        return math.ceil(round(steps, 9)) if math.isfinite(steps) else sys.maxsize

    def _young(self, k: int, step: int) -> list[int]:
        """Layer ``k``'s units that have trained fewer than ``mature`` trials' steps at ``step``, each
        counted in trial lengths as they were when it was born (with ``horizon``, a length taken
        at ``step`` would outgrow a unit's age: with ``mature`` x ``horizon`` >= 1 none would mature)."""
        if not self.signal.mature:
            return []
        return [j for j, b in enumerate(self.born[k]) if step - b < self.signal.mature * self.length(b)]

    def _half(self) -> int:
        """How many steps before a trial's due step its sides are judged half-way (with ``extend``)."""
        return max(self.length(self.started) // 2, 1)

    def _due_end(self) -> int:
        return int(self.until) if self.until is not None else int(self.started or 0) + self.length(self.started)

    def _end(self, trainer: Any, model: Any, optimizer: Any, step: int,
             resized: Callable[[int, UnitMap, int], None], may_extend: bool, batch: Any = None) -> None:
        if self._saved is not None:  # resumed from a checkpoint written after the last step
            self._rebuild(model, optimizer)
        if self.copies and self.started is not None and step <= self.started:
            k = self.layer
            H = int(layers_of(model.rnn)[k].hidden_size)
            added = self._taken(H)
            self.copies, self.started, self.until, self.midway = [], None, None, None
            if added > 0:
                back = UnitMap.of(H, range(H - added))
                _resize(model, k, back, optimizer)
                resized(k, back, H)
            return
        if self.copies:
            adopted = self._decide(trainer, model, optimizer, step, may_extend, batch)
            if adopted is not None:
                resized(*adopted)

    def _needs_start(self) -> bool:
        """Whether a share (``lam`` when relative, ``hold``) is of a scale that needs the loss
        judged after the first step."""
        uses = self.signal.relative or self.signal.hold > 0
        return uses and (self.signal.scale != "loss" or bool(self.signal.floor))

    def trained_steps(self, step: int) -> int:
        """The steps a copy trained beside the network up to ``step``: every decided trial's, and
        the running one's so far (what the trials cost on top of the network's own training)."""
        decided = sum(int(d["step"]) - int(d.get("started", int(d["step"]) - self.length()))
                      for d in self.decisions)
        running = (self.copies or self._saved) and self.started is not None
        return decided + (step - int(self.started or 0) if running else 0)

    def _holds(self, trainer: Any, model: Any, step: int) -> bool:
        """With ``hold``: whether trials still wait for the network's learning to slow down (the
        validation loss judged every ``steps`` steps, until it improves by less than ``hold`` of
        the scale ``lam`` is a share of (:meth:`_scale`: itself, at least ``floor`` times the loss
        after the first step; that loss with ``start``; how far it came down from it with
        ``gain``) between two judgements; then trials run for good)."""
        if self.signal.hold <= 0 or not self.holding:
            return False
        if step % self.length():
            return True
        loss = self._judged(trainer, model)
        last, self.held = self.held, loss
        self.holding = last is None or last - loss > self.signal.hold * self._scale(last)
        if not self.holding:
            log.info("paired trials start at step %d: validation loss %.4f, %.4f %d steps before", step, loss,
                     last, self.length())
        return self.holding

    def _start(self, model: Any, batch: Any, optimizer: Any, step: int,
               resized: Callable[[int, UnitMap, int], None]) -> None:
        k = self.layer
        H = int(layers_of(model.rnn)[k].hidden_size)
        # a slope trial's probe keeps its size (the layer's gain shrinks instead); a sign trial's is the step
        d = max(1, round((self.signal.fraction if self.signal.move == "slope" else self.fractions[k]) * H))
        moments = _moments(model, k, batch, self.replicas)
        ahead, recurrent = outgoing_weights(model.rnn, model.decoder, k)
        self.signal.worth[k] = unit_worth(moments, ahead + recurrent).float()
        self.copies = []
        d_in = min(d, self.max_units - H)
        if d_in >= 1 and self.signal.keep:
            self.copies.append(self._copy(model, optimizer, d_in, UnitMap.of(H, range(H), add=d_in)))
        young = self._young(k, step)  # with mature: kept on both sides
        d_out = min(d, H - self.min_units, H - len(young))
        if d_out >= 1 or not self.signal.keep:
            gone = weakest_units(moments, ahead + recurrent, d_out, kept=young)
            c = self._copy(model, optimizer, -d_out, UnitMap.of(H, [j for j in range(H) if j not in set(gone)]),
                           fold=(moments, gone))
            self.copies.append(c)
        if not self.copies:  # keep, and no side to try (the layer at its bounds, its units too young): no trial
            self._wait(k, step, settled=True)
            self.layer = (k + 1) % len(layers_of(model.rnn))
            return
        self.started = step
        if not self.signal.keep and d_in >= 1:
            # bracketing: the network itself takes the added units; the copy with fewer is its rival
            grown = UnitMap.of(H, range(H), add=d_in)
            _resize(model, k, grown, optimizer)
            resized(k, grown, H)

    def _copy(self, model: Any, optimizer: Any, delta: int, units: UnitMap,
              fold: tuple[Tensor, list[int]] | None = None) -> _Copy:
        twin = _clone(model)
        twin_opt = _clone_optimizer(model, optimizer, twin)
        k = self.layer
        if fold is not None and fold[1]:
            fold_units(twin.rnn, twin.decoder, k, fold[0], fold[1])
        _resize(twin, k, units, twin_opt)
        return _Copy(delta, units, twin, twin_opt)

    def held_units(self, sizes: list[int]) -> list[int]:
        """The units each layer holds, given its ``sizes`` now: a layer on trial without the units
        the network took for the trial (:meth:`_taken`), which the trial's end may fold away."""
        units = list(sizes)
        if self.copies:
            units[self.layer] -= self._taken(sizes[self.layer])
        return units

    def _taken(self, H: int) -> int:
        """The units the network itself took for the running trial, at its width ``H``: none with
        ``keep``; bracketing, ``d`` (its width less the rival copy's, less the copy's ``d``)."""
        return 0 if self.signal.keep else H - int(self.copies[0].units.index.numel()) + self.copies[0].delta

    def _scale(self, loss: float) -> float:
        """What a share (``lam``, ``hold``) is of: ``loss`` but at least ``floor`` times the
        validation loss judged after the first step; with scale ``start`` that first loss itself
        (a loss that can reach zero takes any share of itself along); with scale ``gain`` how far
        ``loss`` has come down from it. Before that first loss is judged, or when it diverged,
        ``loss`` itself."""
        if self.start_loss is None or not math.isfinite(self.start_loss):
            return abs(loss)
        if self.signal.scale == "start":
            return abs(self.start_loss)
        if self.signal.scale == "gain":
            return max(self.start_loss - loss, 0.0)
        return max(abs(loss), self.signal.floor * abs(self.start_loss))

    def _judged(self, trainer: Any, model: Any) -> float:
        return _finite(pooled_loss(*self._parts(trainer, model)))

    def _parts(self, trainer: Any, model: Any) -> tuple[Tensor, Tensor]:
        """``model``'s summed validation loss and target count per judged batch (under DDP the
        whole batch's: every process judges its rows, and their sums are added)."""
        if self._batches is None:
            self._batches = _validation_batches(trainer, self.signal.batches)
            if self.signal.margin > 0 and len(self._batches) < 2:
                if self.signal.margin_given:
                    raise ArgumentError("paired_margin", allowed="0 with fewer than 2 validation batches judged",
                                        received=self.signal.margin,
                                        hint=f"the trials judge {len(self._batches)} validation batch(es), and the "
                                             "standard error of two sides' difference is estimated across "
                                             "batches; judge more (paired_batches, limit_val_batches, a smaller "
                                             "validation batch size) or set paired_margin 0")
                log.warning("paired trials: the default paired_margin (0.5 standard errors) needs at least 2 "
                            "validation batches judged, and the trials judge %d: they judge the losses alone "
                            "(judge more batches with limit_val_batches or a smaller validation batch size, or "
                            "set paired_margin 0 to silence this)", len(self._batches))
        sums, counts = self.replicas.total(torch.stack(model.judged_parts(self._batches)))
        return sums, counts

    def _sides(self, trainer: Any, model: Any,
               errors: bool = True) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
        """Each side's validation loss, keyed by its units more or fewer than the trial's start
        width (the network's own key: the units it took, 0 with ``keep``; a copy that changes
        nothing, at a layer's size limits, shares it and is not judged), and with ``margin`` (and
        ``errors``) the standard error of each two sides' difference (keyed by their keys, the
        smaller first)."""
        parts = {self._taken(int(layers_of(model.rnn)[self.layer].hidden_size)): self._parts(trainer, model)}
        for c in self.copies:
            if c.delta not in parts:
                parts[c.delta] = self._parts(trainer, c.model)
        losses = {d: _finite(pooled_loss(*p)) for d, p in parts.items()}
        se = {(a, b): difference_se(parts[a], parts[b]) for a in parts for b in parts
              if a < b} if errors and self.signal.margin > 0 else {}
        return losses, se

    def _decide(self, trainer: Any, model: Any, optimizer: Any, step: int,
                may_extend: bool = False, batch: Any = None) -> tuple[int, UnitMap, int] | None:
        k = self.layer
        width = sum(int(x.hidden_size) for x in layers_of(model.rnn))
        H = int(layers_of(model.rnn)[k].hidden_size)
        mine = self._taken(H)
        losses, errors = self._sides(trainer, model)
        bar = self.signal.lam * self.signal.unit_charge(k) * (self._scale(losses[mine]) if self.signal.relative
                                                              else 1.0)
        if self.signal.move == "slope":
            return self._slope(model, optimizer, step, losses, bar, H, mine, batch)
        tolerance = {pair: self.signal.margin * se for pair, se in errors.items()}
        delta = chosen(losses, mine, width, bar, tolerance)
        length = self.length(self.started)
        room = step - int(self.started or 0) + length <= self.signal.extend * length
        if may_extend and room and self.midway is not None and \
                turning(losses, self.midway, mine, width, bar, ahead=length / self._half(),
                        tolerance=tolerance):
            self.until, self.midway = step + length, None
            log.info("paired trial at step %d, layer %d: its verdict is turning, %d more steps", step, k, length)
            return None
        best = None if delta == mine else next(c for c in self.copies if c.delta == delta)
        start = H - mine  # the width the trial started from
        self.decisions.append({"step": step, "started": int(self.started or 0), "layer": k, "width": start,
                               "losses": _by_name(losses), "chosen": delta, "bar": bar,
                               **({} if self.midway is None else {"midway": _by_name(self.midway)}),
                               **({} if not errors else {"se": {f"{a}:{b}": v for (a, b), v in errors.items()}})})
        self.until, self.midway = None, None
        log.info("paired trial at step %d, layer %d (%d units): validation loss %s -> %s", step, k, start,
                 ", ".join(f"{d:+d}: {v:.4f}" for d, v in sorted(losses.items())), f"{delta:+d} units")
        if self.signal.keep:  # a kept width halves the step, a move doubles it
            moved = best is not None
        else:  # the same direction as the last move doubles the step, a reversal halves it; a trial
            # that kept the layer's width (a side with no units to add or fold: the layer at
            # max_units or min_units, or every unit too young to fold) is no move, has no direction
            # for the next trial to follow or reverse, and is no turn
            last = [d["chosen"] for d in self.decisions[:-1] if d["layer"] == k and d["chosen"]][-1:]
            moved = delta != 0 and (not last or (last[0] > 0) == (delta > 0))
        smallest = max(abs(d) for d in losses) <= 1  # this trial moved by one unit (its sides are +-1 or 0)
        # a move the margin made (the narrower side within the noise, not better) keeps the step: it is
        # no evidence that the layer should go faster
        by_margin = bool(errors) and delta != chosen(losses, mine, width, bar)
        if by_margin:
            self.decisions[-1]["by_margin"] = True
        self.fractions[k] = next_step(self.fractions[k], moved, by_margin, self.signal.homing and self.turned[k],
                                      self.signal.fraction, start)
        self.turned[k] = self.turned[k] or (not moved and delta != 0)
        # settled (turned back at one unit; with settle cycle, also going round a width): the layer waits
        # 1, 3, 7, 15 trials' steps before its next trial
        moves = [d["chosen"] for d in self.decisions if d["layer"] == k]
        settled = (smallest and not moved) or (self.signal.settle == "cycle" and cycling(moves))
        self._wait(k, step, settled)
        self.copies, self.started = [], None
        self.layer = (k + 1) % len(layers_of(model.rnn))
        if best is None:
            return None
        _adopt(model, optimizer, best, k)
        return k, best.units, H

    def _slope(self, model: Any, optimizer: Any, step: int, losses: dict[int, float], bar: float, H: int,
               mine: int, batch: Any) -> tuple[int, UnitMap, int] | None:
        """Decide a ``slope`` trial (``paired_move`` slope): move layer :attr:`layer` by what the
        trial measured (:func:`slope_move`), from the network (surplus units folded) or from the
        copy (fresh units added); the resize made, if any, as ``(layer, units, old width)`` (``H``:
        the layer's width now, ``mine`` of it taken for the trial)."""
        k = self.layer
        start = H - mine
        gain = self.signal.fraction / (1 + self._turns(k))
        delta, z = slope_move(losses, bar, gain, start)
        self.decisions.append({"step": step, "started": int(self.started or 0), "layer": k, "width": start,
                               "losses": _by_name(losses), "chosen": delta, "bar": bar, "slope": z, "gain": gain})
        log.info("paired trial at step %d, layer %d (%d units): validation loss %s, slope %+.2f -> %+d units", step,
                 k, start, ", ".join(f"{d:+d}: {v:.4f}" for d, v in sorted(losses.items())), z, delta)
        self._wait(k, step, delta == 0)  # a trial that moves nothing: settled
        self.turned[k] = self._turns(k) > 0
        copy = next((c for c in self.copies if c.delta < 0), None)
        self.copies, self.started = [], None
        self.layer = (k + 1) % len(layers_of(model.rnn))
        if delta >= 0 or copy is None:  # from the network, its surplus folded as a trial's copy folds
            surplus = mine - delta
            if surplus <= 0:
                return None
            moments = _moments(model, k, batch if batch is not None else self._batches[0],  # type: ignore[index]
                               self.replicas)
            ahead, recurrent = outgoing_weights(model.rnn, model.decoder, k)
            gone = set(weakest_units(moments, ahead + recurrent, surplus))
            fold_units(model.rnn, model.decoder, k, moments, sorted(gone))
            units = UnitMap.of(H, [j for j in range(H) if j not in gone])
            _resize(model, k, units, optimizer)
            return k, units, H
        _adopt(model, optimizer, copy, k)  # from the copy, with fresh units up to the move
        fresh = delta - copy.delta
        if fresh > 0:
            W = start + copy.delta
            _resize(model, k, UnitMap.of(W, range(W), add=fresh), optimizer)
        return k, UnitMap(torch.cat([copy.units.index, torch.full((fresh,), -1, dtype=torch.long)])), H

    def _wait(self, k: int, step: int, settled: bool) -> None:
        """After a trial of layer ``k`` at ``step``: a settled layer waits 1, 3, 7, then 15 trials'
        steps before its next trial (its settled trials in a row), one that is not, none."""
        self.calm[k] = self.calm[k] + 1 if settled else 0
        self.idle_until[k] = step + self.length(step) * (2 ** min(self.calm[k], MAX_CALM) - 1)

    def _turns(self, k: int) -> int:
        """How many times layer ``k``'s slope trials changed the sign of what they measured."""
        signs = [math.copysign(1, d["slope"]) for d in self.decisions if d["layer"] == k and d.get("slope")]
        return sum(a != b for a, b in itertools.pairwise(signs))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        copies = self._saved if self._saved is not None else [
            {"delta": c.delta, "units": c.units.index.tolist(), "weights": c.model.state_dict(),
             "optimizer": c.optimizer.state_dict(),
             "carried": gather_rows(c.model._state.get("train"), self.replicas.trainer)} for c in self.copies]
        return {"layer": self.layer, "fractions": list(self.fractions), "started": self.started,
                "calm": self.calm, "turned": self.turned, "idle_until": self.idle_until, "held": self.held,
                "holding": self.holding,
                "start_loss": self.start_loss, "until": self.until,
                "midway": None if self.midway is None else _by_name(self.midway),
                "decisions": list(self.decisions), "copies": copies, "born": self.born, "counted": list(self.counted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.layer = int(state.get("layer", 0))
        self.fractions = [float(f) for f in state.get("fractions", [])]
        self.started = state.get("started")
        n = len(self.fractions)
        calm, idle = state.get("calm", 0), state.get("idle_until", 0)  # one for the stack before 2026-12-02
        self.calm = [int(c) for c in calm] if isinstance(calm, list) else [int(calm)] * n
        self.idle_until = [int(i) for i in idle] if isinstance(idle, list) else [int(idle)] * n
        # none before 2026-12-03: read a step below the largest as a turn (a layer that turned and
        # doubled back up to the largest reads as not turned)
        self.turned = [bool(t) for t in state["turned"]] if "turned" in state else \
            [f < self.signal.fraction for f in self.fractions]
        self.held, self.holding = state.get("held"), bool(state.get("holding", True))
        self.start_loss = state.get("start_loss")
        if self.start_loss is None and state.get("fractions") and self._needs_start():
            raise ArgumentError("paired_floor", allowed="0 to resume this checkpoint (with paired_scale loss)",
                                received=self.signal.floor,
                                hint="the checkpoint was written past the first step without the validation loss "
                                     "judged there (by a run with no floor, the default before growrnn made it "
                                     "0.5); set paired_floor: 0 to resume it as it ran")
        self.until = state.get("until")
        midway = state.get("midway")
        self.midway = None if midway is None else {int(d): float(v) for d, v in midway.items()}
        self.decisions = list(state.get("decisions", []))
        self.born = [[int(b) for b in layer] for layer in state.get("born", [])]  # none before 2026-12-03: all at 0
        self.counted = [int(c) for c in state.get("counted", [0, 0])]  # none before 2026-12-04: counted afresh
        self.copies = []
        self._saved = list(state.get("copies", [])) or None

    def _rebuild(self, model: Any, optimizer: Any) -> None:
        saved, self._saved = self._saved or [], None
        for s in saved:
            units = UnitMap(torch.tensor(s["units"], dtype=torch.long))
            twin = _clone(model)
            twin_opt = _clone_optimizer(model, optimizer, twin)
            _resize(twin, self.layer, units, twin_opt)
            twin.load_state_dict(s["weights"])
            twin_opt.load_state_dict(s["optimizer"])
            twin._state["train"] = shard_rows(s["carried"], self.replicas.trainer)
            self.copies.append(_Copy(int(s["delta"]), units, twin, twin_opt))


# ---------------------------------------------------------------------------------------- helpers
def _by_name(sides: dict[int, float]) -> dict[str, float]:
    """Sides' losses keyed as JSON keys them (``"-2"``), for the record and the checkpoint."""
    return {str(d): v for d, v in sides.items()}


def cycling(moves: list[int]) -> bool:
    """Whether a layer's last ``CYCLE`` trials (``moves``: the units each of its trials added,
    negative if removed, oldest first) went both ways and left it within one step of where they
    began -- some up, some down, their sum no larger than the largest -- so that it goes round a
    width rather than towards one (``paired_settle`` ``cycle``)."""
    last = moves[-CYCLE:]
    return len(last) == CYCLE and min(last) < 0 < max(last) and abs(sum(last)) <= max(map(abs, last))


def next_step(fraction: float, moved: bool, by_margin: bool, homing: bool, largest: float, width: int) -> float:
    """A layer's step (a share of its ``width``) after a trial: a move the way of the last doubles
    it, up to ``largest`` -- but not a move the margin made (no evidence that the layer should go
    faster), nor one of a ``homing`` layer (``paired_homing``, once the layer has turned back); a
    turn halves it, down to one unit.

    >>> next_step(0.25, True, False, False, 0.25, 40), next_step(0.1, True, False, False, 0.25, 40)
    (0.25, 0.2)
    >>> next_step(0.1, True, False, True, 0.25, 40), next_step(0.1, False, False, True, 0.25, 40)
    (0.1, 0.05)
    >>> next_step(0.04, False, False, False, 0.25, 40)
    0.025
    """
    if moved:
        return fraction if by_margin or homing else min(2 * fraction, largest)
    return max(fraction / 2, 1.0 / max(width, 1))


def slope_move(losses: dict[int, float], bar: float, gain: float, width: int) -> tuple[int, float]:
    """A ``slope`` trial's move, in units, and what it measured (``paired_move`` slope): ``z``, the
    widest side's validation loss gain over the narrowest's per unit of their difference, in units
    of the charge ``bar`` per unit, less one (0: a unit is worth its charge; -1: the wider side
    gains nothing; +1: twice the charge), clipped to [-1, 1] (a side that diverged: the other
    side's end); the move is ``gain * width * z`` rounded, within the sides' (``losses``: each
    side's validation loss, keyed by its units more or fewer than the trial's start ``width``).

    >>> slope_move({-2: 1.0, 2: 0.5}, 0.125, 0.25, 16)  # a unit gained 0.125: its charge
    (0, 0.0)
    >>> slope_move({-2: 1.0, 2: 1.0}, 0.125, 0.25, 16)  # nothing: the whole reach, within the sides
    (-2, -1.0)
    >>> slope_move({-2: 1.0, 2: 0.25}, 0.125, 0.25, 16)  # 1.5 x the charge: half the reach
    (2, 0.5)
    """
    low, high = min(losses), max(losses)
    a, b = losses[high], losses[low]
    if high == low or (math.isinf(a) and math.isinf(b)):
        return 0, 0.0
    if math.isinf(a) or math.isinf(b):
        z = -1.0 if math.isinf(a) else 1.0
    else:
        worth = (b - a) / (high - low)  # what a unit gained
        z = (worth / bar - 1.0) if bar > 0 else math.copysign(1.0, worth) if worth else 0.0
        z = max(-1.0, min(1.0, z))
    return max(low, min(high, round(gain * width * z))), z


def chosen(losses: dict[int, float], mine: int, width: int, bar: float,
           tolerance: dict[tuple[int, int], float] | None = None) -> int:
    """The side a trial goes on with, by its key in ``losses`` (each side's validation loss, keyed by
    its units more or fewer than the trial's start width; ``mine``: the network's own key): the
    lowest loss plus ``bar`` per unit of the whole network's ``width`` (the network's, as it is
    now), a tie going to the network -- or, given a ``tolerance`` for two sides' difference (keyed
    by their keys, the smaller first; ``paired_margin`` standard errors), the narrowest side whose
    charged loss is within its tolerance of that best side's."""
    charged = {d: v + bar * (width - mine + d) for d, v in losses.items()}
    best = min(charged, key=lambda d: (charged[d], d != mine))
    near = [d for d in charged if d < best and charged[d] - charged[best] <= (tolerance or {}).get((d, best), -1.0)]
    return min(near, default=best)


def turning(losses: dict[int, float], midway: dict[int, float], mine: int, width: int, bar: float,
            ahead: float = 2.0, tolerance: dict[tuple[int, int], float] | None = None) -> bool:
    """Whether a trial's verdict (:func:`chosen`, with ``tolerance``) on the sides' validation
    ``losses`` at its end would turn if every side went on as it did since ``midway`` (their losses
    some steps before) for ``ahead`` times those steps (one trial length from half-way: 2); sides
    judged at one time only, or a loss that is not finite (a diverged side loses as it stands), do
    not turn it."""
    if set(midway) != set(losses) or not all(map(math.isfinite, [*losses.values(), *midway.values()])):
        return False
    projected = {d: v + ahead * (v - midway[d]) for d, v in losses.items()}
    return chosen(projected, mine, width, bar, tolerance) != chosen(losses, mine, width, bar, tolerance)


def difference_se(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor]) -> float:
    """The standard error of the difference of two networks' losses per target, each given as its
    summed loss and target count per validation batch (shape (B,) each, the same batches): the
    ratio estimator's, with batches as the sampled units. 0 with fewer than 2 batches of targets;
    not finite where a loss is not."""
    (sa, n), (sb, nb) = a, b
    if not torch.equal(n, nb):
        raise ValueError("difference_se: the two networks were not judged on the same validation batches "
                         f"(target counts {n.tolist()[:5]}... against {nb.tolist()[:5]}...)")
    used = n > 0
    m = int(used.sum())
    if m < 2:
        return 0.0
    diff, n = (sa - sb)[used], n[used]
    mean = diff.sum() / n.sum()
    resid = diff - mean * n
    return float(torch.sqrt(m / (m - 1) * (resid * resid).sum()) / n.sum())


def _finite(loss: float) -> float:
    """A judged loss, with nan (a diverged network) as +inf: it loses every comparison."""
    return loss if loss == loss else float("inf")


def _moments(model: Any, k: int, batch: Any, replicas: Replicas | None = None) -> Tensor:
    """Layer ``k``'s output moments (see :func:`~growrnn.growth.signals.unit_worth`) on ``batch``, as
    the network reads it now (evaluation mode); with ``replicas`` of several processes, on every
    process's rows of it (each process's moments weighted by the steps they are a mean over)."""
    moments: dict[int, Tensor] = {}
    steps: dict[int, int] = {}
    if isinstance(batch, dict):
        batch = {key: v.to(model.device) if torch.is_tensor(v) else v for key, v in batch.items()}
    mask = batch.get("mask") if isinstance(batch, dict) else None
    hook = layers_of(model.rnn)[k].register_forward_hook(_output_moments(moments, k, True, mask, steps))
    try:
        model.batch_loss(batch)
    finally:
        hook.remove()
    return moments[k] if replicas is None else replicas.weighted_mean(moments[k], float(steps[k]))


def _clone(model: Any) -> Any:
    """A deep copy of a ``SequenceModel`` without its trainer."""
    trainer = model._trainer
    model._trainer = None
    try:
        twin = copy.deepcopy(model)
    finally:
        model._trainer = trainer
    twin._step_params = None
    return twin


def _clone_optimizer(model: Any, optimizer: torch.optim.Optimizer, twin: Any) -> torch.optim.Optimizer:
    """``optimizer`` (of ``model``) for ``twin``: the same class, groups and hyperparameters, and a
    copy of its state for the twin's parameters."""
    names = {id(p): n for n, p in model.named_parameters()}
    theirs = dict(twin.named_parameters())
    groups = [{**{key: v for key, v in g.items() if key != "params"},
               "params": [theirs[names[id(p)]] for p in g["params"]]} for g in optimizer.param_groups]
    twin_opt = type(optimizer)(groups)
    for g, tg in zip(optimizer.param_groups, twin_opt.param_groups, strict=True):
        for p, q in zip(g["params"], tg["params"], strict=True):
            if p in optimizer.state:
                twin_opt.state[q] = _state_copy(optimizer.state[p])
    return twin_opt


def _state_copy(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of one parameter's optimizer state (tensors cloned)."""
    return {key: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for key, v in state.items()}


def _resize(model: Any, k: int, units: UnitMap, optimizer: torch.optim.Optimizer) -> None:
    """Resize ``model``'s layer ``k`` by ``units`` (new units: incoming weights of the layer's own
    scale, zero outgoing weights and optimizer state), its carried state along."""
    kept = int((units.index >= 0).sum())
    std = 1.0 / (3.0 * max(kept, 1)) ** 0.5
    gen = torch.Generator().manual_seed(int(units.index.numel()) * 7919 + kept)
    model.resize(k, units, optimizer, gen, std)


def _train(c: _Copy, batch: Any, optimizer: Any, trainer: Any, replicas: Replicas | None = None,
           step: bool = True, rates: list[float] | None = None) -> None:
    """Train a trial copy on ``batch`` as Lightning trains the network: at its learning ``rates``
    (per parameter group; None: ``optimizer``'s now), under the model's training rule where it is
    set (``max_update``, ``l1``: :meth:`SequenceModel.ruled_step`), in the trainer's precision
    (under ``bf16-mixed``/``16-mixed`` inside the same autocast, and with a loss scaler where the
    network has one: a scaler of the copy's own at the network's scale, whose step skips
    gradients that are not finite), its loss divided by
    ``accumulate_grad_batches`` and its gradient accumulated over the batches of one optimizer step
    (``step``: this batch is the step's last; else the gradient waits), clipped as the trainer
    clips; under DDP (``replicas`` of several processes) on this process's rows, the gradients
    averaged over the processes before the step, as the network's are. A loss that is not finite
    (on any process, in any batch of the step): no step."""
    for i, (g, mine) in enumerate(zip(optimizer.param_groups, c.optimizer.param_groups, strict=True)):
        mine["lr"] = rates[i] if rates is not None and i < len(rates) else g["lr"]
    replicas = replicas or Replicas()
    plugin = getattr(trainer, "precision_plugin", None)
    if c.window == 0:  # a step's first batch: fresh gradients, the network's loss scale as it is now
        c.optimizer.zero_grad(set_to_none=True)
        network_scaler = getattr(plugin, "scaler", None)
        c.scaler = torch.amp.GradScaler(plugin.device, init_scale=network_scaler.get_scale()) \
            if network_scaler is not None and network_scaler.is_enabled() else None
        c.finite = True
    c.window += 1
    c.model.train()
    with plugin.train_step_context() if plugin is not None else contextlib.nullcontext():
        loss = c.model._step(batch, "train", measure=False)[0]
    finite = bool(torch.isfinite(loss))
    c.finite = c.finite and finite
    if finite or replicas.active:  # under DDP even when not finite: every process reduces the same gradients
        loss = loss / int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        (c.scaler.scale(loss) if c.scaler is not None else loss).backward()
    if not step:
        return
    c.window = 0
    params = [p for p in c.model.parameters() if p.grad is not None]
    if not (c.finite or replicas.active) or not replicas.mean_gradients(params, c.finite):
        return
    if c.scaler is not None:
        c.scaler.unscale_(c.optimizer)
    clip = getattr(trainer, "gradient_clip_val", None)
    if clip:
        if getattr(trainer, "gradient_clip_algorithm", "norm") == "value":
            torch.nn.utils.clip_grad_value_(params, clip)
        else:
            torch.nn.utils.clip_grad_norm_(params, clip)
    scaler, optimizer_of_copy = c.scaler, c.optimizer
    c.model.ruled_step(optimizer_of_copy.step if scaler is None else lambda: scaler.step(optimizer_of_copy),
                       optimizer_of_copy)


@torch.no_grad()
def _adopt(model: Any, optimizer: Any, c: _Copy, k: int) -> None:
    """Make ``model`` the copy ``c``: resize its layer ``k`` as the copy's, then copy the copy's
    weights, optimizer state and carried state in (the parameter objects stay the network's)."""
    _resize(model, k, c.units, optimizer)
    theirs = dict(c.model.named_parameters())
    for name, p in model.named_parameters():
        q = theirs[name]
        p.copy_(q)
        if q in c.optimizer.state:
            optimizer.state[p] = _state_copy(c.optimizer.state[q])
    for name, b in model.named_buffers():
        b.copy_(dict(c.model.named_buffers())[name])
    model._state["train"] = c.model._state.get("train")
    model._probe_state = c.model._probe_state  # the state this step's batch was read from, as the copy read it


def _validation_batches(trainer: Any, limit: int | None) -> list[Any]:
    """The validation batches the trials judge on: the first ``limit``; None: as many as the
    trainer's ``limit_val_batches`` lets validation see (a count or a share of the loader), all
    when it does not limit them (1.0) or turns validation off (0: the trials still need data)."""
    data = getattr(trainer, "datamodule", None)
    loader = None
    if data is not None:
        try:
            loader = data.val_dataloader()
        except (MisconfigurationException, NotImplementedError):  # a datamodule without validation data
            loader = None
    if loader is None:
        loader = getattr(trainer, "val_dataloaders", None)
    if limit is None and loader is not None:
        share = getattr(trainer, "limit_val_batches", None)
        if isinstance(share, int) and not isinstance(share, bool) and share >= 1:
            limit = share
        elif isinstance(share, float) and 0 < share < 1:
            try:
                size = len(loader)
            except TypeError:
                raise ArgumentError("limit_val_batches", allowed="a count of batches (an int) with a validation "
                                    "loader of no length", received=share,
                                    hint="the paired trials judge a share of the validation batches only when "
                                         "the loader has a length; pass an int, or set paired_batches") from None
            limit = max(1, int(share * size))
    if loader is None:
        raise ArgumentError("signal", allowed="paired with validation data (a datamodule or val_dataloaders)",
                            received="paired, and no validation data",
                            hint="the paired trials judge widths on validation batches; pass a datamodule "
                                 "with a val_dataloader (or val_dataloaders) to trainer.fit, or set signal: "
                                 "ablation, which judges units on the training batches")
    return list(itertools.islice(loader, limit))
