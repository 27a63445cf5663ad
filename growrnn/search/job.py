"""What a worker runs for one candidate: :func:`run_candidate`, a top-level function of plain data
(so every executor can pickle it, and a Ray node needs only growrnn installed).

It trains the candidate with :func:`growrnn.evaluation.evaluate` (which also runs the growth
controller, sets the torch threads and measures the trained sizes) and hooks into that run
through Lightning callbacks:

- weight inheritance happens in ``setup`` (before the optimizer exists), where the child's freshly
  initialised model is overwritten, call site by call site, with its parent's trained weights;
- the learning-curve predictor (:class:`~growrnn.search.predictor.PredictorStop`) may stop the
  run after a validation;
- the trained model is kept so that its weights can be saved for the candidate's children.

The genome travels as JSON, never as text, and reaches the model as the same
:class:`~growrnn.genome.Genome`: the text form renumbers node ids in reading order, and
inheritance matches call sites by the ids a child kept from its parent.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from growrnn.executors import torch_threads
from growrnn.files import atomic_path
from growrnn.genome.graph import Genome

__all__ = ["base_payload", "inherit_into", "run_candidate", "save_weights"]
log = logging.getLogger(__name__)


def base_payload(config: Any, genome_json: str, seed: int) -> dict[str, Any]:
    """The :func:`run_candidate` payload that trains ``genome_json`` from fresh weights with
    ``seed`` as the search ``config`` (a :class:`~growrnn.search.config.SearchConfig`) trains its
    candidates: its task, model, trainer, budget, growth and objectives, one torch thread, no
    parent, no predictor, no weights written. The loop adds those; confirmation runs it as is."""
    return {"genome_json": genome_json, "task": config.task, "task_options": dict(config.task_options),
            "model": dict(config.model), "trainer": dict(config.trainer), "budget": config.budget.as_dict(),
            "seed": int(seed), "test": config.test, "objectives": list(config.objectives), "threads": 1,
            "grow": dict(config.grow) if config.grow is not None else None, "parent": None, "predictor": None,
            "weights_out": None}


def run_candidate(payload: dict[str, Any]) -> dict[str, Any]:
    """Train one candidate and return ``{"metrics", "curve", "objectives", "seconds"}``.

    ``payload`` keys: ``genome_json``; ``task``, ``task_options``, ``model``, ``trainer``,
    ``budget``, ``grow`` (as for ``evaluate``); ``seed``; ``test`` (score on test too);
    ``objectives`` (the names to report); ``threads`` (torch threads while it runs: 1 makes results
    independent of the executor); ``weights_out`` (a ``.pt`` path for the trained weights, or
    ``None``); ``parent`` (``{"path", "genome_json"}`` of the weights to inherit, or ``None``);
    ``predictor`` (``{"state", "threshold", "margin", "min_train", "direction"}`` or ``None``);
    optional ``resume_from`` / ``checkpoint_to`` (rungs, :mod:`growrnn.search.rungs`): a
    checkpoint of an earlier rung to go on from, and where to write this rung's for the next one
    (see :func:`~growrnn.evaluation.evaluate`). ``metrics["train_steps_spent"]`` counts the
    optimizer steps this call trained.

    A diverging run is a result (``diverged`` true, the worst ``val``), not an error. Weights are
    written atomically (:mod:`growrnn.files`), so a killed worker leaves no torn file.
    """
    from growrnn.evaluation import evaluate

    start = time.perf_counter()
    genome = Genome.from_json(payload["genome_json"])
    threads = int(payload.get("threads", 1))
    keeper = _Keeper(payload.get("parent"))
    callbacks: list[L.Callback] = [keeper]
    stop = _predictor_stop(payload.get("predictor"))
    if stop is not None:
        callbacks.append(stop)
    result = evaluate(genome, payload["task"], payload["budget"], int(payload["seed"]),
                      task_options=payload.get("task_options") or {}, model=payload.get("model") or {},
                      trainer=payload.get("trainer") or {}, grow=payload.get("grow"), callbacks=callbacks,
                      threads=threads, test=bool(payload.get("test", True)),
                      resume_from=payload.get("resume_from"), checkpoint_to=payload.get("checkpoint_to"))
    module = keeper.module
    metrics = result.as_dict()
    curve = metrics.pop("curve")
    metrics.update(stopped_early=False, predicted=None, inherited=keeper.inherited,
                   train_steps_spent=result.train_steps)
    val = result.val
    if stop is not None and stop.stopped and not result.diverged:
        predicted = stop.rule.predict_final(stop.curve)
        metrics.update(stopped_early=True, predicted=predicted, val_at_stop=result.val)
        if predicted is not None:
            val = predicted  # the predicted final value stands in for the unfinished run's metric
    objectives: dict[str, float] = {"val": val, "params": float(result.params), "macs": float(result.macs_per_step),
                                    "weighted_nodes": float(len(genome.weighted))}
    if "latency" in payload.get("objectives", ()) and module is not None:
        with torch_threads(threads):
            objectives["latency"] = _latency(module)
    if payload.get("weights_out") and module is not None and not result.diverged:
        save_weights(Path(payload["weights_out"]), module, payload["genome_json"])
    return {"metrics": metrics, "curve": curve, "objectives": objectives, "seconds": time.perf_counter() - start}


def _predictor_stop(spec: dict[str, Any] | None) -> Any:
    if spec is None:
        return None
    from growrnn.search.predictor import CurvePredictor, EarlyStopRule, PredictorStop

    rule = EarlyStopRule(CurvePredictor.from_state(spec["state"]), spec["direction"], float(spec["margin"]),
                         int(spec["min_train"]))
    return PredictorStop(rule, float(spec["threshold"]))


class _Keeper(L.Callback):
    """Inherits the parent's weights when the fit starts, and keeps the trained module."""

    def __init__(self, parent: dict[str, Any] | None):
        self.parent = parent
        self.module: Any = None
        self.inherited = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # evaluate() later validates and tests the same module: those setups must not inherit again
        if self.module is None:
            self.module = pl_module
            if stage == "fit" and self.parent is not None:
                self.inherited = inherit_into(pl_module, Path(self.parent["path"]),
                                              Genome.from_json(self.parent["genome_json"]))


def inherit_into(module: Any, path: Path, parent: Genome) -> int:
    """Load the parent's trained weights (a file written by :func:`run_candidate`) into ``module``
    (a fresh ``SequenceModel`` whose genome descends from ``parent``), in place; returns the call
    sites inherited.

    ``module.genome`` and ``parent`` carry the stable node ids (JSON form) through which the child
    descends from the parent. The weights file may hold another genome of the parent's canonical
    form (the parent was a duplicate, and reused that cell's result): its call sites are matched to
    the parent's through the canonical form.
    A growable model first takes the parent's layer sizes (the parent may have grown); then the
    call sites of every layer of the module's own network take the parent's weights
    (:func:`~growrnn.search.variation.inherit.inherit_state`), and every other tensor (encoder,
    decoder, unit multipliers) is copied where the shapes agree."""
    from growrnn.genome.canonical import canonical_form
    from growrnn.growth.stack import GrowableRNN, resize_to
    from growrnn.search.variation.inherit import inherit_state
    from growrnn.training.checkpoint import load_checkpoint

    saved = load_checkpoint(path, "parent weights")
    stored: Genome | None = Genome.from_json(saved["genome_json"])
    if stored == parent:
        stored = None
    elif canonical_form(stored)[0] != canonical_form(parent)[0]:
        log.warning("%s holds another cell than the parent's; the child trains from scratch", path)
        return 0
    state: dict[str, torch.Tensor] = saved["state_dict"]
    sizes = list(saved["hidden_sizes"])
    growable = isinstance(module.rnn, GrowableRNN)
    if module.hidden_sizes() != sizes:
        if not growable or len(sizes) != module.rnn.num_layers:
            log.warning("parent sizes %s differ from the child's %s; the child trains from scratch",
                        sizes, module.hidden_sizes())
            return 0
        resize_to(module.rnn, module.decoder, sizes)
    targets = [(f"rnn.layers.{k}.", layer) for k, layer in enumerate(module.rnn.layers)] if growable \
        else [("rnn.", module.rnn)]
    inherited = 0
    for prefix, target in targets:
        theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        inherited += inherit_state(target, parent, theirs, stored=stored).inherited
    own = module.state_dict()  # tensors sharing storage with the parameters
    with torch.no_grad():
        for name, value in state.items():
            if any(name.startswith(prefix) for prefix, _ in targets):
                continue
            if name in own and own[name].shape == value.shape:
                own[name].copy_(value)
    return inherited


def save_weights(path: Path, module: Any, genome_json: str) -> None:
    """Write ``module``'s (a ``SequenceModel``) trained weights where :func:`inherit_into` reads
    them: ``{"genome_json", "hidden_sizes", "state_dict"}``, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"genome_json": genome_json, "hidden_sizes": module.hidden_sizes(),
                    "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}}, tmp)


def _latency(module: Any, batch: int = 8, steps: int = 32, repeats: int = 3) -> float:
    """Seconds per time step of a forward pass (eval mode, no grad, on the device the module is
    on after ``evaluate``), the median of ``repeats``. Measured, so it varies from run to run and
    machine to machine: selecting on it makes a search irreproducible."""
    spec, device = module.spec, next(module.parameters()).device
    if spec.input_kind == "tokens":
        x = torch.zeros(batch, steps, dtype=torch.long, device=device)
    else:
        x = torch.zeros(batch, steps, spec.input_size, device=device)
    was_training = module.training
    module.eval()
    times = []
    with torch.no_grad():
        module(x)  # warm-up: the first call builds caches
        for _ in range(repeats):
            t = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t) / steps)
    module.train(was_training)
    return float(sorted(times)[len(times) // 2]) if times else math.nan
