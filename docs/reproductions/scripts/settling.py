"""The runs of docs/reproductions/settling.md.

Train a growable (or, with ``--fixed``, a fixed-size) ``SequenceModel`` on a task with a
``StructureController``, on one torch thread. Prints one JSON line per validation (units, metric,
units added and deleted) and a final line (units, parameters, test metric, seconds), and appends
the whole record to ``--out``; with ``--best`` the test metric is that of the model as it was at
its best validation (early stopping). The JSB defaults are those of configs/grow/jsb_lstm.yaml (Adam 1e-3,
dropout 0.2, plateau halving, gradient clip 1). Example::

    python docs/reproductions/scripts/settling.py --task-options '{"batch_size": 8}' --epochs 120 \\
        --start 8 --seed 0 --ctrl '{"signal": "group_lasso", "lam": 3e-5}' --out runs/settling.jsonl

With ``--ckpt FILE`` the run checkpoints itself every ``--ckpt-every`` steps (replacing the file
atomically; never on a step that validates, which a resumed run would not validate again) and,
when the file exists, resumes from it with the records it had made: rerun the same command after
an interruption. A finished run leaves ``FILE.done``, and the same command then does nothing.

With ``--trial-looks N`` (the ``paired`` signal) both sides of every trial are also judged N
times at even intervals before its end, on the same validation batches, and the record of each
decision gets a ``curve``: ``[steps into the trial, {side: loss}]`` per look (a diagnostic that
changes no decision; it costs N more judgements a trial; a trial running when the run resumed
from its checkpoint lacks the looks taken before).
"""

import argparse
import copy
import inspect
import json
import os
import time

import lightning as L
import torch

from growrnn.task import task_factory
from growrnn.training.cli import quiet_lightning
from growrnn.training.data import TaskData
from growrnn.training.growth import StructureController
from growrnn.training.model import SequenceModel

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--task", default="jsb")
parser.add_argument("--task-options", default="{}", help="JSON")
parser.add_argument("--cell", default="lstm")
parser.add_argument("--start", type=int, default=8, help="start width (the width, with --fixed)")
parser.add_argument("--fixed", action="store_true")
parser.add_argument("--epochs", type=int, default=50)
parser.add_argument("--model", default="{}", help="SequenceModel options, JSON")
parser.add_argument("--ctrl", default="{}", help="StructureController options, JSON")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default=None)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--max-steps", type=int, default=-1)
parser.add_argument("--best", action="store_true", help="test the model as it was at its best validation")
parser.add_argument("--val-every", type=float, default=1.0, help="Trainer.val_check_interval")
parser.add_argument("--clip", type=float, default=1.0, help="Trainer.gradient_clip_val")
parser.add_argument("--ckpt", default=None, help="checkpoint file: written as the run goes, resumed from if it exists")
parser.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints (with --ckpt)")
parser.add_argument("--precision", default="32-true", help="Trainer.precision (bf16-mixed, bf16-true ...)")
parser.add_argument("--trial-looks", type=int, default=0, help="paired: judge both sides this many times in each trial")
args = parser.parse_args()

torch.set_num_threads(args.threads)
quiet_lightning()
L.seed_everything(args.seed, verbose=False)
seeded = "seed" in inspect.signature(task_factory(args.task)).parameters  # generated tasks take a seed
data = TaskData(args.task, {**({"seed": args.seed} if seeded else {}), **json.loads(args.task_options)})
model_kw = dict(optimizer="adam", lr=1e-3, dropout=0.2, schedule="plateau", plateau_factor=2.0, patience=5)
model_kw.update(json.loads(args.model))
ctrl_kw = json.loads(args.ctrl)
if ctrl_kw.get("signal") == "l0_gate":
    model_kw["unit_gates"] = True
net = SequenceModel(data.spec, cell=args.cell, hidden_size=args.start if args.fixed else [args.start],
                    seed=args.seed, **model_kw)
ctrl = None if args.fixed else StructureController(seed=args.seed, **{"max_units": 1024, **ctrl_kw})
log: list[dict] = []
t0 = time.time()
looks: dict[int, list] = {}  # with --trial-looks: the running trials' looks, by the step each started


def with_looks(decisions: list[dict]) -> None:
    """Give the decisions that have no curve yet the looks taken in their trials."""
    for d in decisions:
        if "curve" not in d:
            d["curve"] = looks.pop(int(d["started"]), [])


if args.trial_looks > 0:
    from growrnn.training.paired import PairedTrials, _by_name

    plain_step = PairedTrials.step

    def step_and_look(self: PairedTrials, trainer: L.Trainer, model: SequenceModel, batch: object, optimizer: object,
                      step: int, resized: object, start: bool = True, rates: list[float] | None = None) -> None:
        plain_step(self, trainer, model, batch, optimizer, step, resized, start, rates)
        with_looks(self.decisions)
        every = max(self.length() // (args.trial_looks + 1), 1)
        if self.copies and self.started is not None and self.started < step < self._due_end() \
                and (step - self.started) % every == 0:
            sides = self._sides(trainer, model, errors=False)[0]
            looks.setdefault(int(self.started), []).append([step - int(self.started), _by_name(sides)])

    PairedTrials.step = step_and_look  # type: ignore[method-assign]


class Record(L.Callback):
    """Records every validation; its records (and the best model so far) travel in checkpoints."""

    def state_dict(self) -> dict:
        return {"log": log, "elapsed": time.time() - t0, **({"best": self.best} if hasattr(self, "best") else {})}

    def load_state_dict(self, state: dict) -> None:
        global t0
        log[:] = state["log"]
        t0 = time.time() - state["elapsed"]
        if "best" in state:
            self.best = state["best"]

    def on_validation_end(self, trainer: L.Trainer, model: SequenceModel) -> None:
        # after the model logged the epoch's metric (on_validation_epoch_end runs before it does)
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "units": model.hidden_sizes(),
               **{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")},
               "lr": trainer.optimizers[0].param_groups[0]["lr"], "t": round(time.time() - t0, 1)}
        if ctrl is not None:
            row.update(added=sum(ctrl.added), deleted=sum(ctrl.deleted))
            if ctrl.trials is not None:  # without a running trial's units on probation (as validated)
                row.update(held=ctrl.trials.held_units(model.hidden_sizes()))
            if hasattr(ctrl.signal, "removing"):
                row.update(engaged=list(ctrl.signal.engaged))
        log.append(row)
        print(json.dumps(row), flush=True)
        metric = f"val/{data.spec.metric}"
        if args.best and metric in row and row[metric] <= min(r.get(metric, float("inf")) for r in log):
            self.best = (model.hidden_sizes(), copy.deepcopy(model.state_dict()))


class Save(L.Callback):
    """Writes the run's checkpoint to ``--ckpt`` (a temporary file, then an atomic rename) every
    ``--ckpt-every`` steps, but not on a step that validates: Lightning does not validate again
    on resuming there, and the record, the best model and the plateau schedule's step of that
    validation would be lost."""

    def on_train_batch_end(self, trainer: L.Trainer, model: SequenceModel, outputs: object, batch: object,
                           batch_idx: int) -> None:
        loop = trainer.fit_loop.epoch_loop
        validates = loop.batch_progress.is_last_batch or (batch_idx + 1) % max(int(trainer.val_check_batch), 1) == 0
        if trainer.global_step % args.ckpt_every == 0 and not validates:
            trainer.save_checkpoint(args.ckpt + ".tmp", weights_only=False)  # the optimizer and loops too
            os.replace(args.ckpt + ".tmp", args.ckpt)


if args.ckpt and os.path.exists(args.ckpt + ".done"):
    raise SystemExit(f"{args.ckpt}.done: this run finished (its record is in --out); delete it to run again")
record = Record()
trainer = L.Trainer(max_epochs=args.epochs, max_steps=args.max_steps, gradient_clip_val=args.clip, logger=False,
                    precision=args.precision,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[record] + ([ctrl] if ctrl else []) + ([Save()] if args.ckpt else []),
                    val_check_interval=args.val_every, num_sanity_val_steps=0)
resume = args.ckpt if args.ckpt and os.path.exists(args.ckpt) else None
if resume:
    print(json.dumps({"resumed": resume}), flush=True)
trainer.fit(net, datamodule=data, ckpt_path=resume, weights_only=True)
tested = net
if args.best and hasattr(record, "best"):
    sizes, state = record.best
    embedding = {"embedding_size": net.hparams.embedding_size or args.start} if data.spec.input_kind == "tokens" else {}
    tested = SequenceModel(data.spec, cell=args.cell, hidden_size=sizes[0] if args.fixed else sizes, seed=args.seed,
                           **{**embedding, **model_kw})
    tested.load_state_dict(state)
result = trainer.test(tested, datamodule=data, verbose=False)[0]
metric = f"val/{data.spec.metric}"
final = {"final": True, "units": net.hidden_sizes(), "params": sum(p.numel() for p in net.rnn.parameters()),
         "tested_units": tested.hidden_sizes(),
         **{k: float(v) for k, v in result.items()},
         "best_val": min((r.get(metric, float("inf")) for r in log), default=None),
         "time": round(time.time() - t0, 1), "args": vars(args)}
if ctrl is not None:
    final.update(added=ctrl.added, deleted=ctrl.deleted)
    if args.trial_looks > 0 and ctrl.trials is not None:
        with_looks(ctrl.trials.decisions)  # the trial decided as training ended
    if ctrl.trials is not None:  # paired: how many trials ran, and the share of steps a copy trained beside the net
        trained = ctrl.trials.trained_steps(trainer.global_step)
        final.update(trials=len(ctrl.trials.decisions), trial_share=round(trained / max(trainer.global_step, 1), 3))
print(json.dumps(final), flush=True)
if args.out:
    with open(args.out, "a") as f:
        trials = {"decisions": ctrl.trials.decisions} if ctrl is not None and ctrl.trials is not None else {}
        f.write(json.dumps({"log": log, **final, **trials}) + "\n")
if args.ckpt:
    open(args.ckpt + ".done", "w").close()
