"""``StructureController``: the growth regime's Lightning callback.

After every ``every_n_steps`` optimizer steps it asks the structure signal
(:mod:`growrnn.growth.signals`) which units live, applies the rule, and performs the surgery on
the layer, the readers ahead of it, the optimizer state and the carried TBPTT state together
(:func:`~growrnn.growth.resize_layer`). The signal also owns its per-step weight update.

- ``paired`` (the default): the width is chosen by paired trials on validation data: the network
  with units added is trained beside a copy with as many units folded away, on the same batches,
  and the one with the lower validation loss plus its charge per unit goes on
  (:mod:`growrnn.training.paired`).
- ``ablation`` (for runs without validation data): a unit is worth what the training batch's loss
  rises by when its outgoing weights are zeroed, measured round-robin a few units per step; a unit
  worth less than ``lam`` (a fraction of the loss) is dead and deleted, new units are on trial
  (spare) for ``trial_steps`` and judged by the same bar. No penalty touches the weights.
- ``group_lasso``: a proximal group-lasso step after every optimizer step, in the optimizer's own
  metric under Adam/RMSprop/Adagrad; a unit whose outgoing weights are exactly zero is dead. With
  ``l0_gate``: a hard-concrete gate per unit with an expected-L0 cost; a closed gate is dead.
  The settling signals use the need rule (:class:`~growrnn.growth.NeedRule`): dead units are
  spare, deleted after ``dead_steps`` dead steps, and units are added whenever fewer than the
  reserve are spare. ``lam`` is the loss a unit must be worth, by default as a fraction of the
  running training loss.
- Miconi's signals, paper-faithful with the defaults of ``ThomasMiconi/DiffRNN``:
  ``outgoing_l1`` (v3: the normalised L1 norm of the outgoing weights, pulled down by an L1
  decrement, ``l1`` here or ``model.l1``; P_del 0.05, P_add 0.01) and ``multiplier`` (v2: ``|m_j|``
  of a learned multiplier, needs ``model.unit_multipliers``; P_del 0.25, P_add 0.05), with the
  probabilistic rule (:func:`~growrnn.growth.structure_step`).

The callback is stateful: its random generators, counters, dead streaks and the signal's state are
in its ``state_dict``, so a run resumed from a checkpoint makes the same decisions as the
uninterrupted run.

A paired trial still running when training ends is decided on the steps it had: at the last
step the trainer's limits foresee (``max_steps``, the last batch of the last epoch), before any
validation or checkpoint at that step, so that they hold the network training ends with (and no
trial starts there); after a stop they do not foresee (early stopping, ``max_time``), when
training has ended. With ``decide_at_limit`` false it is left running at that step too: a run in
parts, each part a fit that a later one continues from a checkpoint written at its last step
(:func:`growrnn.evaluation.evaluate`'s ``checkpoint_to``: the search's rungs), goes on from the
trial as one uninterrupted run, and so does a longer run resumed from a finished run's
checkpoint.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from growrnn.errors import ArgumentError, check_int, check_number, is_number
from growrnn.growth.rule import GrowthRule, NeedRule, need_step, structure_step
from growrnn.growth.signals import SIGNALS, Paired, Signal, make_signal
from growrnn.growth.stack import GrowableRNN, fold_gates, layers_of, outgoing_weights
from growrnn.growth.surgery import UnitMap
from growrnn.training.callbacks import limit_reached
from growrnn.training.distributed import Replicas, check_strategy
from growrnn.training.model import SequenceModel, batch_seed
from growrnn.training.paired import PairedTrials

__all__ = ["StructureController", "SIGNALS", "SIGNAL_OPTIONS", "EVERY_SIGNAL", "controller_of", "restart_plateaus"]

log = logging.getLogger(__name__)

_RULE = ("outgoing_l1", "multiplier")  # Miconi's probabilistic rule
_NEED = ("group_lasso", "l0_gate", "ablation")  # the need rule
#: the controller's options that only some signals read, and those signals: a value other than the
#: option's default under any other signal is refused, not ignored. ``multiplier_*``, ``ablation_*``
#: and ``paired_*`` belong to their own signal; the options not here are taken under every signal
#: (``signal``, ``max_units``, ``min_units``, ``histogram_every_n_steps``; ``seed``, which
#: ``paired`` draws nothing from, and ``decide_at_limit``, which only ``paired`` acts on, since
#: the evaluator and ``grow seeds`` pass both whatever the signal)
SIGNAL_OPTIONS: dict[str, tuple[str, ...]] = {
    "threshold": _RULE, "p_delete": _RULE, "p_add": _RULE, "p_spontaneous": _RULE,
    "reserve": _RULE + _NEED, "init_std": _RULE + _NEED, "every_n_steps": _RULE + _NEED,
    "fresh_second_moment": _RULE + _NEED, "reference_rows": ("outgoing_l1",), "l1": ("outgoing_l1",),
    "lam": (*_NEED, "paired"), "relative": (*_NEED, "paired"), "group": ("group_lasso",),
    "preconditioned": ("group_lasso",), "warmup_steps": ("group_lasso", "ablation"), "dead_steps": _NEED,
    "reserve_fraction": _NEED, "fold_at_end": ("l0_gate",), "trial_steps": ("ablation",),
}
#: the controller's options every signal takes (``seed`` and ``decide_at_limit`` included, above)
EVERY_SIGNAL = ("signal", "max_units", "min_units", "histogram_every_n_steps", "seed", "decide_at_limit")
#: the stack's per-unit scales (``model.unit_multipliers``, ``model.unit_gates``): the signal that
#: reads them, and why every other signal refuses them
UNIT_SCALES = {"multipliers": ("multiplier", "a unit's multiplier is Miconi's v2 score; under the settling "
                                              "signals and paired a new unit starts with multiplier 0 and zero "
                                              "outgoing weights, so no gradient reaches it and it never learns, and "
                                              "outgoing_l1 (v3) scores the outgoing weights a multiplier rescales"),
                "gates": ("l0_gate", "the hard-concrete gates are l0_gate's: no other signal prices them, and "
                                     "their samples would only add noise to every unit's output")}


def _readers(option: str) -> tuple[str, ...] | None:
    """The signals that read the controller's ``option`` (None: every signal)."""
    for prefix in ("multiplier_", "ablation_", "paired_"):
        if option.startswith(prefix):
            return (prefix[:-1],)
    return SIGNAL_OPTIONS.get(option)


def _check_options(signal: str, given: dict[str, Any]) -> None:
    """Refuse an option of ``given`` (the controller's arguments) that ``signal`` does not read,
    set to anything but its default."""
    defaults = inspect.signature(StructureController.__init__).parameters
    for name, value in given.items():
        readers = _readers(name)
        if readers is None or signal in readers or name not in defaults:
            continue
        default = defaults[name].default
        if value is default or (type(value) is type(default) or is_number(value) and is_number(default)) \
                and value == default:
            continue
        raise ArgumentError(name, allowed=f"unset with signal {signal} (read by signal {', '.join(readers)})",
                            received=value, hint=f"the {signal} signal does not read it: drop it, or choose a "
                                                 "signal that does")


class StructureController(L.Callback):
    """Args:
        signal: ``paired`` (default: the measured recipe; it judges widths on the validation data,
            on one process or under DDP), ``ablation`` (no validation data needed),
            ``group_lasso``, ``l0_gate``, ``outgoing_l1`` (Miconi v3) or ``multiplier`` (Miconi v2).
            An option below that the signal does not read (:data:`SIGNAL_OPTIONS`), set to
            anything but its default, is an error, and so is a model with unit multipliers or
            gates under a signal that does not read them.
        lam: the settling signals' bar: the loss a unit must be worth (a fraction of the running
            training loss when ``relative``; of the validation loss with ``paired``, and there per
            row of the unit's weights in its cell unless ``paired_charge`` is ``unit``: an LSTM unit
            has 8 rows, a GRU unit 6). Default 2e-4 (ablation), 3.33e-5 (paired under an adaptive
            optimizer: 2.67e-4 an LSTM unit, 2e-4 a GRU unit; 1.67e-5 under SGD), 3e-5
            (group_lasso), 0.002 (l0_gate).
        group: group_lasso's group, ``outgoing`` (Miconi's) or ``units`` (ISS: outgoing and incoming).
        preconditioned: group_lasso's shrink in the optimizer's metric (default: true except SGD).
        relative: ``lam`` relative to the running training loss (default) or in loss units.
        dead_steps: steps a unit may stay dead (on trial) before it is deleted (settling signals;
            default 100, 1 with ablation: a unit measured below the bar goes at once).
        reserve_fraction: keep at least this share of the layer spare (on trial); default 0, 0.25
            with ablation (a layer started small grows by up to a quarter per trial).
        trial_steps, ablation_rate, ablation_every, ablation_baseline: ablation's trial length (in
            steps at the first learning rate), units measured per step, steps between measuring
            rounds, and the baseline: ``regress`` (default: the unit's output replaced by its
            least-squares estimate from the other units'), ``mean`` or ``zero`` (see
            :class:`~growrnn.growth.signals.Ablation`).
        warmup_steps: group_lasso's penalty ramps up linearly over these first steps; ablation
            removes no unit during these first steps (units are measured, and new ones tried).
        ablation_layer_worth: ablation removes no unit of a layer until the layer is measured to be
            worth this fraction of the loss beyond its units' mean outputs (default 0: from the start).
        ablation_retrial: ablation removes an old unit measured below this multiple of the bar and
            puts it back on trial, judged as a new unit is after the others adapted (default 0: off).
        ablation_held_out: ablation's ``regress`` stand-ins are fitted on earlier batches (running
            moments), not on the batch they are judged on (default false).
        ablation_bound: the largest coefficient (in absolute value) of ablation's ``regress``
            stand-ins (default 1: a unit stands in for another at most at its own scale; None: no bound).
        paired_steps, paired_targets, paired_horizon, paired_horizon_cap, paired_reach, paired_fraction, paired_batches,
        paired_keep, paired_hold, paired_scale, paired_floor, paired_extend, paired_margin, paired_settle,
        paired_restart, paired_mature,
        paired_homing, paired_move, paired_charge, paired_head_start: the
            ``paired`` signal's trial length (steps; unset: 100, 400 under SGD) and the training
            targets a trial trains on at least (default 40,000: a trial is longer where a step holds
            fewer than 400 targets; 0: steps alone) and the share of the steps trained before it
            a trial lasts at least (default 0.2: trials lengthen with the run; 0: none) and the most
            epochs that lengthens a trial to (default 2.5; None: no bound) or, where more, the
            steps the starting learning rate takes to sum to ``paired_reach`` (unset: 0.1 under an
            adaptive optimizer -- 100 steps at 1e-3, 334 at 3e-4 --, 0 under SGD), largest step (a
            share of the layer; unset: 0.25, 0.5 under SGD), validation
            batches judged (None: those the trainer's limit_val_batches lets validation see),
            whether a trial may keep the width (a network copied twice, judged against both
            copies; default false: bracketing -- the network with units added
            against one copy with as many removed), the validation loss's improvement per trial's
            steps below which trials start (default 0: at once), and what a relative ``lam`` and
            ``paired_hold`` are fractions of: ``loss`` (default: the validation loss at each trial)
            or ``start`` (the validation loss judged after the first step; for tasks whose loss can
            reach zero) or ``gain`` (how far the validation loss has come down since then), and
            the least loss ``loss`` may be, as a share of that first loss (default, unset: 0.5 with
            ``loss`` -- a solved task's charge does not vanish; 0 lets it follow the loss to zero; the
            other scales take no floor), and the most trial lengths a trial may last while its
            verdict is still turning (default 1: every trial is decided after its length), and
            how many standard errors of two sides' difference a wider side must win by (default,
            unset: 0.5, but 0 with ``paired_move`` ``slope`` or ``paired_batches`` 1; 0: the lower
            charged loss wins; 1: the one-standard-error rule), and when a layer counts as
            settled and waits longer between trials (``turn``, the default: a one-unit trial turned
            back; ``cycle``: also when its last four trials went both ways and left it within one
            step of where they began), and whether a resize the trials make starts a ``plateau``
            schedule's count of epochs without improvement over (default true), and how many
            trials' steps a unit must have trained before a trial may fold it (default 0: any
            unit), and whether a layer's step stops doubling once a trial of it has turned back
            (unset: false, true under SGD -- with ``lam``, ``paired_steps``, ``paired_fraction`` and
            ``paired_head_start`` the optimizer family's recipe,
            :data:`~growrnn.growth.signals.PAIRED_RECIPES`), and how a trial moves a layer
            (``sign``, the default: to the side with the lower charged loss, by the layer's step;
            ``slope``: by the charged gain per unit it measured, a stochastic approximation), and
            what ``lam`` is charged per (``row``, the default: per row of a unit's weights in its
            cell, one per weighted call; ``unit``: per unit), and how a new unit's first steps go
            (unset: ``adam`` under an adaptive optimizer whose own head start is known -- as a zero
            state makes them go under Adam, whatever the optimizer --, ``optimizer`` under SGD and
            elsewhere -- as the optimizer's own zero state makes them; a number b in (0, 1): as
            under Adam with beta2 b, 0.9999 a longer head start, probed only); see
            :class:`~growrnn.growth.signals.Paired`.
        threshold, reserve, p_delete, p_add, p_spontaneous, max_units, min_units: the rule;
            ``threshold``, ``p_*`` are Miconi's rule only (:class:`~growrnn.growth.GrowthRule`),
            ``reserve`` is the spare units kept (both rules). Every layer must start within
            ``[min_units, max_units]`` (an error at setup otherwise: a wide start needs
            ``max_units`` above it).
        init_std: std of a new unit's incoming weights (default: 0.01 for Miconi's signals, else
            that of the layer's own initialisation, ``1/sqrt(3 H)``).
        every_n_steps: apply the rule after every n-th optimizer step.
        seed: seeds the rule's and the new weights' random numbers, and the gates' samples. The
            ``paired`` signal draws none of its own: a trial's new units take incoming weights
            from a generator seeded by the layer's widths, so a paired run's growth follows the
            model's seed and its data (and a resumed run draws the same).
        fresh_second_moment: start a new unit's optimizer second moment (RMSprop/Adam/Adagrad)
            here instead of at zero; ``"mean"``: at the mean of the same tensor's entries (the
            settling signals' default: a unit on trial then takes steps in proportion to its
            gradient, not Adam's ~3 lr of a fresh entry). Else 0.01 for ``outgoing_l1`` under
            RMSprop (Miconi's
            v3 code, which keeps a new unit's first updates small), else 0 -- under Adam the
            tiny gradients of a new unit divided by sqrt(0.01) would keep it from ever rising
            above the threshold, so the layer could not grow.
        reference_rows: the row count the ``outgoing_l1`` score is normalised to (default: the
            decoder's outputs, as in the paper).
        l1: ``outgoing_l1``'s L1 decrement on the weights that read the units, per step (Miconi's
            ``COEFFWPEN``, 1e-4 in the paper; or set ``model.l1``).
        multiplier_floor, multiplier_l1, multiplier_grad_scale: the v2 signal's M_min, L1
            coefficient per window (the v2 code adds 2e-5 per time step: 8e-4 over 40 steps) and
            task-gradient scale.
        histogram_every_n_steps: how often unit-score histograms go to TensorBoard.
        fold_at_end: with ``l0_gate``, fold the gates' deterministic values into the outgoing
            weights when fitting ends (:func:`~growrnn.growth.fold_gates`), so the trained model has
            no gates (its evaluation outputs unchanged; checkpoints keep the gates, to resume).
        decide_at_limit: with ``paired``, decide a trial still running at the last step the
            trainer's limits foresee at that step (default true), so that a validation and the
            checkpoints there hold the network training ends with; false leaves it running there
            (a checkpoint then holds it, and a longer run resumed from that checkpoint goes on
            exactly as one uninterrupted run) and decides it when training has ended, after them.
            :func:`~growrnn.evaluation.evaluate`'s runs in parts (the search's rungs, compare's
            parts) set it false for every part but the last.
    """

    def __init__(self, signal: str = "paired", threshold: float = 0.05, reserve: int = 1,
                 p_delete: float | None = None, p_add: float | None = None, p_spontaneous: float = 1e-4,
                 max_units: int = 100, min_units: int = 1, init_std: float | None = None, every_n_steps: int = 1,
                 seed: int = 0, fresh_second_moment: float | str | None = None, reference_rows: int | None = None,
                 multiplier_floor: float = 0.025, multiplier_l1: float = 8e-4, multiplier_grad_scale: float = 0.1,
                 histogram_every_n_steps: int = 1000, lam: float | None = None, group: str = "outgoing",
                 preconditioned: bool | None = None, relative: bool = True, dead_steps: int | None = None,
                 l1: float = 0.0, fold_at_end: bool = True, warmup_steps: int = 0,
                 reserve_fraction: float | None = None,
                 trial_steps: int = 100, ablation_rate: float = 0.25, ablation_every: int = 20,
                 ablation_baseline: str = "regress", ablation_layer_worth: float = 0.0,
                 ablation_retrial: float = 0.0, ablation_held_out: bool = False, ablation_bound: float | None = 1.0,
                 paired_fraction: float | None = None,
                 paired_steps: int | None = None, paired_targets: int = 40_000,
                 paired_horizon: float = 0.2, paired_horizon_cap: float | None = 2.5,
                 paired_reach: float | None = None,
                 paired_batches: int | None = None,
                 paired_keep: bool = False,
                 paired_hold: float = 0.0, paired_scale: str = "loss", paired_floor: float | None = None,
                 paired_extend: int = 1, paired_margin: float | None = None, paired_settle: str = "turn",
                 paired_restart: bool = True, paired_mature: int = 0,
                 paired_homing: bool | None = None, paired_move: str = "sign", paired_charge: str = "row",
                 paired_head_start: str | float | None = None, decide_at_limit: bool = True) -> None:
        if signal not in SIGNALS:
            raise ArgumentError("signal", allowed=", ".join(SIGNALS), received=signal,
                                hint="ablation, paired, group_lasso or l0_gate settle under any optimizer; outgoing_l1 "
                                     "and multiplier are Miconi's v3 and v2 signals")
        cls = SIGNALS[signal]
        called = dict(locals())  # the arguments as called (the statements above bind nothing else)
        if cls.settles:
            given = [n for n, v in (("p_delete", p_delete), ("p_add", p_add)) if v is not None]
            if given:
                raise ArgumentError(", ".join(given), allowed=f"unset with signal {signal} (no coin decides)",
                                    received=[p_delete, p_add] if len(given) == 2 else (p_delete or p_add),
                                    hint="a settling signal adds a unit when none is spare and deletes a unit "
                                         "dead for dead_steps steps; set signal: outgoing_l1 for Miconi's rule")
        _check_options(signal, {k: v for k, v in called.items() if k not in ("self", "cls")})
        check_int("every_n_steps", every_n_steps, 1, hint="1 applies the rule after every optimizer step, as the paper")
        check_int("reserve", reserve, 0, hint="the units kept spare (a unit is added when fewer are); 1 is the paper's")
        check_int("min_units", min_units, 1, hint="the fewest units a layer may fall to")
        check_int("max_units", max_units, 1, hint="the most units a layer may grow to, e.g. 512")
        if dead_steps is not None:
            check_int("dead_steps", dead_steps, 1, hint="the consecutive steps a unit is dead before it is deleted")
        check_int("seed", seed, 0, hint="any int >= 0 seeds the controller's random numbers")
        if not isinstance(relative, bool):
            raise ArgumentError("relative", allowed="true or false", received=relative,
                                hint="true (the default): lam is a share of the loss; false: lam is in loss units")
        check_int("histogram_every_n_steps", histogram_every_n_steps, 0,
                  hint="how often unit-score histograms go to TensorBoard, in steps; 0: never")
        if isinstance(fresh_second_moment, str) and fresh_second_moment != "mean":
            raise ArgumentError("fresh_second_moment", allowed="a number >= 0, 'mean', or None",
                                received=fresh_second_moment)
        moment = None if isinstance(fresh_second_moment, str) else fresh_second_moment
        for name, value in (("init_std", init_std), ("fresh_second_moment", moment),
                            ("multiplier_l1", multiplier_l1), ("multiplier_grad_scale", multiplier_grad_scale),
                            ("l1", l1)):
            if value is not None:
                check_number(name, value)
        if reference_rows is not None:
            check_int("reference_rows", reference_rows, 1, allowed="an int >= 1, or None for the decoder's outputs")
        self.signal_name = signal
        self.signal: Signal
        if signal == "group_lasso":
            self.signal = make_signal(signal, group=group, preconditioned=preconditioned, relative=relative,
                                      warmup_steps=warmup_steps, **({} if lam is None else {"lam": lam}))
        elif signal == "l0_gate":
            self.signal = make_signal(signal, relative=relative, **({} if lam is None else {"lam": lam}))
        elif signal == "ablation":
            self.signal = make_signal(signal, relative=relative, trial_steps=trial_steps, rate=ablation_rate,
                                      check_every=ablation_every, baseline=ablation_baseline,
                                      warmup_steps=warmup_steps, layer_worth=ablation_layer_worth,
                                      retrial=ablation_retrial, held_out=ablation_held_out, bound=ablation_bound,
                                      **({} if lam is None else {"lam": lam}))
        elif signal == "paired":
            self.signal = make_signal(signal, relative=relative, fraction=paired_fraction, steps=paired_steps,
                                      targets=paired_targets, horizon=paired_horizon,
                                      horizon_cap=paired_horizon_cap, reach=paired_reach,
                                      batches=paired_batches, keep=paired_keep,
                                      hold=paired_hold, scale=paired_scale,
                                      floor=paired_floor, extend=paired_extend, margin=paired_margin,
                                      settle=paired_settle, restart=paired_restart, mature=paired_mature,
                                      homing=paired_homing, move=paired_move, charge=paired_charge,
                                      head_start=paired_head_start,
                                      **({} if lam is None else {"lam": lam}))
        elif signal == "outgoing_l1":
            self.signal = make_signal(signal, reference_rows=reference_rows, l1=l1)
        else:
            self.signal = make_signal(signal, threshold=threshold, floor=multiplier_floor, l1=multiplier_l1,
                                      grad_scale=multiplier_grad_scale)
        d_del, d_add, d_moment = cls.rule_defaults
        self.settles = cls.settles
        if self.settles:
            wanted = dict(cls.controller_defaults)
            wanted.update({k: v for k, v in (("dead_steps", dead_steps), ("reserve_fraction", reserve_fraction))
                           if v is not None})
            self.need = NeedRule(reserve, wanted.get("dead_steps", 100), max_units, min_units,
                                 wanted.get("reserve_fraction", 0.0))
        else:
            self.rule = GrowthRule(threshold, reserve, d_del if p_delete is None else p_delete,
                                   d_add if p_add is None else p_add, p_spontaneous, max_units, min_units)
        self.init_std, self.every_n_steps = init_std, every_n_steps
        self._fresh_given = fresh_second_moment  # None: chosen in setup, from the model's optimizer
        self.fresh_second_moment: float | str = fresh_second_moment if fresh_second_moment is not None else (
            cls.controller_defaults.get("fresh_second_moment", "mean") if self.settles else d_moment)
        self.reference_rows = reference_rows
        self.histogram_every = histogram_every_n_steps
        self.fold_at_end = fold_at_end
        if not isinstance(decide_at_limit, bool):
            raise ArgumentError("decide_at_limit", allowed="true or false", received=decide_at_limit,
                                hint="true (the default) decides a paired trial still running at the trainer's "
                                     "last step there; false leaves it running in that step's checkpoints, so a "
                                     "longer run resumed from them goes on exactly")
        self.decide_at_limit = decide_at_limit
        self.seed = seed
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.gate_gen = torch.Generator()
        self.added: list[int] = []
        self.deleted: list[int] = []
        self.streaks: list[Tensor] = []  # per layer, per unit: consecutive dead steps (settling signals)
        # (step, units per layer, with paired trials the units each layer holds) not yet logged
        self._pending: list[tuple[int, list[int], list[int] | None]] = []
        self._last_step = -1  # with gradient accumulation, act once per optimizer step
        self._stepped = False  # whether the optimizer stepped on this batch (before on_train_batch_end)
        # the step's batches' losses so far (their sum, how many): an accumulated step's loss is
        # their mean, not Lightning's output on its last batch (which it divides by the accumulation)
        self._losses: tuple[Tensor | None, int] = (None, 0)
        self._lrs: list[float] = []
        self.replicas = Replicas()  # one process until setup sees the trainer (training/distributed.py)
        self.min_units, self.max_units = min_units, max_units
        self.trials = PairedTrials(self.signal, min_units, max_units) if isinstance(self.signal, Paired) else None

    # ------------------------------------------------------------------ checks and hooks
    def setup(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        if not isinstance(pl_module, SequenceModel):
            raise ArgumentError("model", allowed="a growrnn.training.SequenceModel (or a subclass of it)",
                                received=type(pl_module).__name__,
                                hint="the controller resizes the model's rnn and decoder together and judges "
                                     "widths with its loss and carried state; build the network as a "
                                     "SequenceModel (any cell, task and optimizer) or subclass it")
        if stage != "fit":  # a validate or test (after fit, whose end folded l0_gate's gates away) grows nothing
            return
        layers = layers_of(pl_module.rnn)
        hp = dict(getattr(pl_module, "hparams", {}))
        self.check_model({**hp, **{f"unit_{scales}": getattr(pl_module.rnn, scales, None) is not None
                                   for scales in UNIT_SCALES}}, [int(x.hidden_size) for x in layers])
        self.signal.check(pl_module.rnn, hp)
        check_strategy(trainer)
        self.replicas = Replicas(trainer)
        if self.trials is not None:  # under DDP the trials measure the whole batch (training/paired.py)
            self.trials.replicas = self.replicas
        self.signal.process_mean = self.replicas.weighted_mean  # type: ignore[attr-defined]
        n = len(layers)
        self.added = self.added or [0] * n
        self.deleted = self.deleted or [0] * n
        if not self.streaks or [int(s.numel()) for s in self.streaks] != [int(x.hidden_size) for x in layers]:
            self.streaks = [torch.zeros(int(x.hidden_size), dtype=torch.long) for x in layers]
        if self._fresh_given is None and self.settles:
            self.fresh_second_moment = self.signal.controller_defaults.get("fresh_second_moment", "mean")
        elif self._fresh_given is None and "optimizer" in hp:
            self.fresh_second_moment = self.signal.rule_defaults[2] if hp["optimizer"] == "rmsprop" else 0.0
        if self.signal_name == "outgoing_l1" and not hp.get("l1") and not getattr(self.signal, "l1", 0.0):
            log.warning("signal outgoing_l1 without an L1 decrement: nothing pulls the units' scores down, so units "
                        "are added but rarely deleted. HINT: set the controller's l1 (the paper's code uses 1e-4)")
        if self.signal_name == "multiplier" and not hp.get("loss_sum_over_time", True):
            log.warning("signal multiplier with a loss averaged over time steps: multiplier_l1 is per window "
                        "and assumes a summed loss (the paper's), so it is about T times stronger here. "
                        "HINT: set model.loss_sum_over_time: true, or scale multiplier_l1 down")
        if self.settles and hp.get("optimizer") == "rmsprop" and hp.get("max_update") is not None:
            log.warning("a settling signal with model.max_update: the update clip also clips the proximal "
                        "shrink's effect on the next step. HINT: leave max_update unset")

    def check_model(self, model: Mapping[str, Any], sizes: Sequence[int], where: str = "model") -> None:
        """Refuse a model this controller cannot grow, from its options alone (``model``: the
        ``SequenceModel`` options, ``sizes``: its layers' start widths; ``where``: the config key
        they sit under): a tied decoder, unit gates or multipliers the signal does not read or
        lacks, a layer started outside ``[min_units, max_units]``. Setup checks the model it is
        given with it, and a comparison or a search checks its configs with it at load, before any
        job trains."""
        if model.get("tie_weights", False):
            raise ArgumentError(f"{where}.tie_weights", allowed="false with a StructureController", received=True,
                                hint="a tied decoder cannot change size with the last layer")
        for scales, (reader, why) in UNIT_SCALES.items():
            given = bool(model.get(f"unit_{scales}", False))
            if given and self.signal_name != reader:
                raise ArgumentError(f"{where}.unit_{scales}", allowed=f"false with signal {self.signal_name} (true "
                                    f"with signal {reader} only)", received=True, hint=why)
            if not given and self.signal_name == reader:
                raise ArgumentError(f"{where}.unit_{scales}", allowed=f"true with signal: {reader}", received=False,
                                    hint=f"set {where}.unit_{scales}: true")
        self._check_widths(sizes, restored=False, where=where)

    def _check_widths(self, sizes: Sequence[int], restored: bool, where: str = "model") -> None:
        """Refuse a layer outside ``[min_units, max_units]``: at setup (the config's start) and after
        a checkpoint is restored (its widths, under the controller the run resumes with)."""
        for k, width in enumerate(sizes):
            if self.min_units <= width <= self.max_units:
                continue
            hint = (f"the checkpoint's layer {k} holds {width} units: resume with min_units <= {width} <= "
                    f"max_units, or start a new run" if restored else
                    f"a layer starts within the widths it may take: set max_units >= {width} for a wide start, "
                    f"or min_units <= {width} for a narrow one")
            raise ArgumentError(f"{where}.hidden_size[{k}]", received=width, hint=hint,
                                allowed=f"between the controller's min_units ({self.min_units}) and max_units "
                                        f"({self.max_units})")

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.ckpt_path is not None:  # the widths were restored after setup
            self._check_widths([int(x.hidden_size) for x in layers_of(pl_module.rnn)], restored=True)
        if isinstance(self.signal, Paired):  # the options left unset take the optimizer family's recipe
            self.signal.for_optimizer(trainer.optimizers[0] if trainer.optimizers else None)
            pl_module.head_start = self.signal.head_start_rule  # the network's and its copies' steps
        n = len(layers_of(pl_module.rnn))
        layout = {"growth": {
            "units": ["Multiline", [f"structure/units/layer{k}" for k in range(n)]],
            **({"units held": ["Multiline", [f"structure/held/layer{k}" for k in range(n)]]}
               if self.trials is not None else {}),
            "loss": ["Multiline", ["train/loss", "val/loss"]],
            "added and deleted": ["Multiline", ["structure/added", "structure/deleted"]]}}
        for logger in trainer.loggers:
            experiment: Any = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_custom_scalars"):
                experiment.add_custom_scalars(layout)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        # before the model's own hook: a running trial's copies start their carried state afresh
        # where the network does (every epoch but the one a run resumed in mid-epoch)
        if self.trials is not None and not pl_module.resumed_mid_epoch():
            self.trials.new_epoch()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        rnn = pl_module.rnn
        if isinstance(rnn, GrowableRNN) and rnn.gates is not None:
            # the gates' samples depend on (seed, step, the batch's place in it) alone: a resumed run
            # draws the same ones, the batches of an accumulated step different ones
            self.gate_gen.manual_seed(batch_seed(self.seed, trainer, batch_idx))
            rnn.gate_generator = self.gate_gen

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        self._lrs = [float(g["lr"]) for g in optimizer.param_groups]  # the step's own rates
        self._stepped = True
        self.signal.before_step(pl_module.rnn, pl_module.decoder, optimizer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        rnn, decoder = pl_module.rnn, pl_module.decoder
        step = trainer.global_step
        stepped, self._stepped = self._stepped, False
        accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        self._add_loss(outputs, accumulate)
        if step == self._last_step or (accumulate > 1 and not stepped):
            # a batch of an accumulated step that did not step: the weights did not move (a trial's
            # copy accumulates its gradient on it, as the network did)
            if self.trials is not None and trainer.optimizers:
                self.trials.accumulate(trainer, pl_module, batch, trainer.optimizers[0])
            return
        self._last_step = step
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        loss = self._step_loss(self.signal.reads_loss)
        self.signal.after_step(rnn, decoder, _AtStepRates(optimizer, self._lrs), loss)
        if self.signal.needs_probe:  # under DDP a probe is the global batch's loss (every process's rows)
            processes = self.replicas.world if self.replicas.active else 1
            probe = self.replicas.across(lambda: pl_module.batch_loss(batch, processes))
            self.signal.measure(rnn, decoder, probe, step, mask=batch.get("mask") if isinstance(batch, dict) else None)
        ends = self.decide_at_limit and limit_reached(trainer) is not None
        if self.trials is not None:
            seen, moved = len(self.trials.decisions), (sum(self.added), sum(self.deleted))
            self.trials.step(trainer, pl_module, batch, optimizer, step, self._count, start=not ends, rates=self._lrs)
            if ends:
                # decided now, not at on_train_end: the last validation, the checkpoints written
                # after it and the progress bar see the network training ends with
                self.trials.finish(trainer, pl_module, optimizer, step, self._count)
            if (sum(self.added), sum(self.deleted)) != moved:
                self.replicas.resized(pl_module, optimizer)  # under DDP: check the replicas, rewrap
                if self.signal.restart:  # type: ignore[attr-defined]
                    restart_plateaus(trainer)
            self._log_trials(trainer, seen)
            for k in range(len(layers_of(rnn)) if self.histogram_every and step % self.histogram_every == 0 else 0):
                self._histogram(trainer, k, self.signal.scores(rnn, decoder, k), step)
        elif step % self.every_n_steps == 0:
            plans = []
            for k in range(len(layers_of(rnn))):
                if self.histogram_every and step % self.histogram_every == 0:
                    self._histogram(trainer, k, self.signal.scores(rnn, decoder, k), step)
                plans.append(self._decide(rnn, decoder, k))
            # under DDP every process applies rank 0's decisions (one small collective when none)
            plans, self.streaks = self.replicas.agree(plans, self.streaks, self.rng, self.gen)
            for k, units in enumerate(plans):
                if units is not None:
                    self._grow(pl_module, k, units, optimizer)
            if any(units is not None for units in plans):
                self.replicas.resized(pl_module, optimizer)  # check the replicas, rebuild DDP's reducer
        sizes = [layer.hidden_size for layer in layers_of(rnn)]
        held = None if self.trials is None else self.trials.held_units(sizes)
        self._pending.append((step, sizes, held))
        if self._logs_now(trainer) or ends:
            # the console's progress bar shows the units each layer holds (not a running trial's
            # units on probation; TensorBoard gets both from flush), at the last step those
            # training ends with
            for k, size in enumerate(held or sizes):
                pl_module.log("units" if len(sizes) == 1 else f"units{k}", float(size), prog_bar=True,
                              logger=False, on_step=True, on_epoch=False)
            self.flush(trainer)

    def _add_loss(self, outputs: Any, accumulate: int) -> None:
        """Add a batch's training loss to its step's (Lightning's output is it over ``accumulate``)."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        total, count = self._losses
        if not torch.is_tensor(loss) or (count and total is None):
            self._losses = (None, count + 1)  # a batch without a loss: the step has none
            return
        loss = loss.detach() * accumulate
        self._losses = (loss if total is None else total + loss, count + 1)

    def _step_loss(self, read: bool) -> float | None:
        """The mean training loss of the step's batches, the global batch's under DDP (one float
        read a step, none unless ``read``), and start the next step's."""
        (total, count), self._losses = self._losses, (None, 0)
        return self.replicas.mean(None if total is None else float(total) / count) if read else None

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        # a stop the trainer's limits do not foresee (early stopping, max_time, should_stop): the
        # trial still running is decided here, after the last validation and checkpoints
        if self.trials is not None and trainer.optimizers:
            seen, moved = len(self.trials.decisions), (sum(self.added), sum(self.deleted))
            self.trials.finish(trainer, pl_module, trainer.optimizers[0], trainer.global_step, self._count)
            if (sum(self.added), sum(self.deleted)) != moved:  # training is over: checked, not rewrapped
                self.replicas.resized(pl_module, trainer.optimizers[0], rewrap=False)
            self._log_trials(trainer, seen)
        self.flush(trainer)

    def _log_trials(self, trainer: L.Trainer, seen: int) -> None:
        """The paired trials decided since ``seen``, to every logger: each side's validation loss
        (``structure/trial/val_loss_more`` and ``_fewer``, layer 0's names without a suffix) and
        the width moved by."""
        for d in self.trials.decisions[seen:] if self.trials is not None else []:
            sides = sorted((int(delta), loss) for delta, loss in d["losses"].items())
            suffix = f"/layer{d['layer']}" if d["layer"] else ""
            row = {f"structure/trial/val_loss_fewer{suffix}": sides[0][1],
                   f"structure/trial/val_loss_more{suffix}": sides[-1][1],
                   f"structure/trial/moved{suffix}": float(d["chosen"])}
            for logger in trainer.loggers:
                logger.log_metrics(row, step=int(d["step"]))

    def _count(self, k: int, units: UnitMap, old: int) -> None:
        """Record a resize of layer ``k`` (``old`` units before) made by the paired trials."""
        self.signal.resized(k, units)
        self.added[k] += int((units.index < 0).sum())
        self.deleted[k] += old - int((units.index >= 0).sum())

    def record(self, step: int) -> dict[str, Any]:
        """What this controller did by optimizer step ``step``: the units ``added`` and ``deleted``
        per layer and, with the ``paired`` signal, the ``trials`` decided and ``trial_share``, the
        share of the steps a copy of the network trained beside it (the trials' cost on top of the
        network's own training). JSON-ready."""
        out: dict[str, Any] = {"added": list(self.added), "deleted": list(self.deleted)}
        if self.trials is not None:
            out.update(trials=len(self.trials.decisions), trial_share=self.trials.trained_steps(step) / max(step, 1))
        return out

    def on_fit_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        rnn = pl_module.rnn
        if self.fold_at_end and isinstance(rnn, GrowableRNN) and rnn.gates is not None:
            fold_gates(rnn, pl_module.decoder)
            pl_module.hparams["unit_gates"] = False  # later checkpoints describe the folded model
            log.info("folded the units' gates into their outgoing weights: the model has no gates left")

    def teardown(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        if stage == "fit":  # a model trained on without the controller steps as any other
            if pl_module.head_start is not None:
                pl_module.head_start.forget()
            pl_module.head_start = None

    # ------------------------------------------------------------------ the rule
    def scores(self, rnn: Any, decoder: torch.nn.Linear, k: int) -> Tensor:
        """Layer ``k``'s unit scores under this controller's signal (shape ``(H_k,)``)."""
        return self.signal.scores(rnn, decoder, k)

    def _decide(self, rnn: Any, decoder: torch.nn.Linear, k: int) -> UnitMap | None:
        """Layer ``k``'s units after the rule (``None``: unchanged)."""
        H = int(layers_of(rnn)[k].hidden_size)
        if self.settles:
            units, self.streaks[k] = need_step(self.signal.dead(rnn, decoder, k), self.streaks[k], self.need,
                                               self.signal.spare(rnn, decoder, k))
        else:
            units = structure_step(self.signal.scores(rnn, decoder, k), self.rule, self.rng)
        if units.size == H and int(units.index[-1]) == H - 1:  # kept in order, none added: unchanged
            return None
        return units

    def _grow(self, pl_module: Any, k: int, units: UnitMap, optimizer: Any) -> None:
        rnn, decoder = pl_module.rnn, pl_module.decoder
        H = int(layers_of(rnn)[k].hidden_size)
        fresh = torch.nonzero(units.index < 0).flatten().tolist()
        kept = units.size - len(fresh)
        std = self.init_std
        if std is None:
            std = 1.0 / math.sqrt(3.0 * max(kept, 1)) if self.settles else 0.01
        pl_module.resize(k, units, optimizer, self.gen, std, self.fresh_second_moment,
                         fresh_multiplier=self.signal.fresh_gate(_scale_dtype(rnn, k)))
        self.signal.resized(k, units)
        if fresh and not self.settles:
            self._init_outgoing(rnn, decoder, k, fresh, kept, self.signal_name == "multiplier", std)
        self.added[k] += len(fresh)
        self.deleted[k] += H - kept

    @torch.no_grad()
    def _init_outgoing(self, rnn: Any, decoder: torch.nn.Linear, k: int, fresh: list[int], kept: int,
                       v2: bool, std: float) -> None:
        """New units' outgoing weights under Miconi's rule. v3: the readers ahead get a column of L1
        norm giving half the threshold's score, the recurrent readers likewise (sized by the rows
        before the addition, as the v3 code); v2: N(0, ``init_std``). (Settling signals start new
        units with zero outgoing weights: the function is kept and the unit is on trial.)"""
        ahead, recurrent = outgoing_weights(rnn, decoder, k)
        rows_ref = self.reference_rows or decoder.out_features
        thr = self.rule.threshold
        r_ahead = sum(int(w.shape[0]) for w in ahead)
        r_rec = sum(int(w.shape[0]) for w in recurrent)
        per_unit = r_rec // rnn_size(rnn, k)  # recurrent rows per unit (gates reading hidden values)
        for j in fresh:
            v = torch.randn(r_ahead, generator=self.gen)
            v = v * std if v2 else 0.5 * thr * v / (1e-8 + v.abs().sum()) * (r_ahead / rows_ref)
            _write_column(ahead, j, v)
            u = torch.randn(r_rec, generator=self.gen)
            u = u * std if v2 else 0.5 * (kept * per_unit) * thr * u / (1e-8 + rows_ref * u.abs().sum())
            _write_column(recurrent, j, u)

    # ------------------------------------------------------------------ logging
    def _logs_now(self, trainer: L.Trainer) -> bool:
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        return (trainer.global_step + 1) % every == 0

    def flush(self, trainer: L.Trainer) -> None:
        """Write the buffered unit counts (one point per step) to every logger; with paired trials
        also the units each layer holds (``structure/held``: a layer on trial without the units the
        network took for it, which the trial's end may fold away again)."""
        if not self._pending:
            return
        for logger in trainer.loggers:
            for step, sizes, held in self._pending:
                logger.log_metrics({f"structure/units/layer{k}": float(h) for k, h in enumerate(sizes)}, step=step)
                if held is not None:
                    logger.log_metrics({f"structure/held/layer{k}": float(h) for k, h in enumerate(held)}, step=step)
            logger.log_metrics({"structure/added": float(sum(self.added)),
                                "structure/deleted": float(sum(self.deleted))}, step=self._pending[-1][0])
        self._pending = []

    def _histogram(self, trainer: L.Trainer, k: int, scores: Tensor, step: int) -> None:
        for logger in trainer.loggers:
            experiment: Any = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_histogram"):
                experiment.add_histogram(f"structure/scores/layer{k}", scores.float().cpu(), step)

    # ------------------------------------------------------------------ state
    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the callbacks to its workers: a torch.Generator pickles through a
        # temporary tensor whose shared-memory file descriptor torch may hand out twice (the spawn
        # then fails with "bad value(s) in fds_to_keep"); its state travels as bytes instead
        state = dict(self.__dict__)
        for key in ("gen", "gate_gen"):
            state[key] = bytes(state[key].get_state().numpy())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key in ("gen", "gate_gen"):
            gen = torch.Generator()
            gen.set_state(torch.frombuffer(bytearray(state[key]), dtype=torch.uint8))
            state[key] = gen
        self.__dict__.update(state)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "gen": self.gen.get_state(), "added": list(self.added),
                "deleted": list(self.deleted), "signal": self.signal_name, "pending": list(self._pending),
                "last_step": self._last_step, "streaks": [s.tolist() for s in self.streaks],
                "signal_state": self.signal.state_dict(),
                **({"trials": self.trials.state_dict()} if self.trials is not None else {})}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("signal", self.signal_name) != self.signal_name:
            raise ArgumentError("signal", allowed=f"the checkpoint's signal ({state_dict['signal']})",
                                received=self.signal_name, hint="resume with the controller the run was trained with")
        # before 2026-12-03 a pending row had no held units: log none for it
        self._pending = [(int(row[0]), list(row[1]), None if len(row) < 3 or row[2] is None else list(row[2]))
                         for row in state_dict.get("pending", [])]
        self._last_step = int(state_dict.get("last_step", -1))
        self.rng.setstate(state_dict["rng"])
        self.gen.set_state(state_dict["gen"])
        added, deleted = state_dict["added"], state_dict["deleted"]
        self.added = list(added) if isinstance(added, list) else [added]
        self.deleted = list(deleted) if isinstance(deleted, list) else [deleted]
        self.streaks = [torch.tensor(s, dtype=torch.long) for s in state_dict.get("streaks", [])]
        self.signal.load_state_dict(state_dict.get("signal_state", {}))
        if self.trials is not None and "trials" in state_dict:
            self.trials.load_state_dict(state_dict["trials"])


def controller_of(trainer: Any) -> StructureController | None:
    """The trainer's :class:`StructureController` callback (the first), or None."""
    return next((c for c in getattr(trainer, "callbacks", []) if isinstance(c, StructureController)), None)


def restart_plateaus(trainer: Any) -> None:
    """Start each ``ReduceLROnPlateau`` schedule's count of epochs without improvement over: the
    next validation is its new reference (the network it judged is gone: a layer was resized)."""
    for config in getattr(trainer, "lr_scheduler_configs", None) or []:
        plateau = config.scheduler
        if isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau):
            plateau.best, plateau.num_bad_epochs = plateau.mode_worse, 0


class _AtStepRates:
    """The optimizer as the signal sees it after the step: its state, with the learning rates the
    step used (a scheduler may have changed them since)."""

    def __init__(self, optimizer: Any, lrs: list[float]) -> None:
        self.state = optimizer.state if optimizer is not None else {}
        groups = optimizer.param_groups if optimizer is not None else []
        self.param_groups = [dict(g, lr=lrs[i]) if i < len(lrs) else g for i, g in enumerate(groups)]




def _scale_dtype(rnn: Any, k: int) -> torch.dtype:
    """The dtype layer ``k``'s unit gates or multipliers are held in (float32 without them)."""
    scales = getattr(rnn, "gates", None) or getattr(rnn, "multipliers", None)
    return scales[k].dtype if scales is not None else torch.float32


def rnn_size(rnn: Any, k: int) -> int:
    return int(layers_of(rnn)[k].hidden_size)


def _write_column(weights: list[Tensor], j: int, values: Tensor) -> None:
    """Write ``values`` down column ``j`` of the row-stacked ``weights``."""
    start = 0
    for w in weights:
        n = int(w.shape[0])
        w[:, j] = values[start:start + n].to(w)
        start += n
