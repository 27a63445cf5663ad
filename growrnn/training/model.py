"""``SequenceModel``: encoder -> GenomeRNN stack -> decoder, trained on any task's spec."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from growrnn.cells.gemm import agree_kernels
from growrnn.cells.rnn import GenomeRNN
from growrnn.errors import ArgumentError, check_choice, check_int, check_number, is_number
from growrnn.genome.complexity import complexity
from growrnn.genome.graph import Genome
from growrnn.genome.source import load as load_genome
from growrnn.task import TaskSpec, metric_value
from growrnn.training.distributed import destroy_at_exit, gather_rows, shard_rows, summed

__all__ = ["SequenceModel", "OPTIMIZERS", "pooled_loss"]

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
Schedule = Literal["none", "decay", "plateau"]


class SequenceModel(L.LightningModule):
    """A recurrent sequence model of any genome, for any :class:`~growrnn.task.TaskSpec`.

    Args:
        spec: the task's spec (linked from the datamodule by the CLI).
        cell: a :class:`~growrnn.genome.Genome` (used as it is, node ids included), a library cell
            name, genome text, or a path to a ``.txt``/``.json`` genome file.
        hidden_size: units per layer of the ``GenomeRNN`` stack; a list gives every layer its own
            count and builds a growable stack (:class:`~growrnn.growth.GrowableRNN`).
        num_layers: layers of the stack (with a list of sizes: leave it unset, or give the list's length).
        embedding_size: token embedding size (tokens in; default ``hidden_size``). Feature inputs
            go through a linear encoder of this size when it is given, else straight in.
        one_hot: feed tokens to the RNN as one-hot vectors instead of embeddings (as Miconi's and
            Karpathy's character models do).
        dropout: on the encoder output, between layers and before the decoder.
        tie_weights: share the token embedding with the decoder (needs embedding = hidden size).
        optimizer: ``sgd``, ``adam``, ``adamw`` (Loshchilov & Hutter's decoupled weight decay),
            ``rmsprop`` or ``adagrad``.
        lr: learning rate.
        momentum: for SGD and RMSprop.
        weight_decay: L2 penalty, as in torch (AdamW's decoupled decay); None: the optimizer's own
            default (torch's: 0, AdamW's 0.01).
        eps: the denominator's epsilon of Adam, RMSprop and Adagrad (torch's default if None).
        betas: Adam's and AdamW's decay rates of the first and second moments (torch's default,
            ``(0.9, 0.999)``, if None).
        alpha: RMSprop's decay rate of the mean square (torch's default, 0.99, if None; 0.999
            remembers as long as Adam's second moment, which gives a grown unit Adam's head start:
            docs/reproductions/settling.md, forty-third session).
        schedule: ``none``; ``decay`` — multiply the lr by ``decay`` after every epoch from
            ``decay_start`` on (Zaremba et al.); ``plateau`` — divide it by ``plateau_factor``
            when the validation metric has not improved for ``patience`` epochs.
        decay: factor per epoch of the ``decay`` schedule.
        decay_start: epochs at the full lr before the ``decay`` schedule starts.
        plateau_factor: divisor of the ``plateau`` schedule.
        patience: epochs without improvement before the ``plateau`` schedule divides.
        init_range: if given, every parameter starts uniform in ``±init_range``.
        loss_sum_over_time: train on the loss summed over time steps and averaged over the batch
            (Zaremba et al., Miconi) instead of averaged over both.
        max_update: if given, clamp every parameter's change per optimizer step to
            ``±max_update`` (Miconi's ``MAXDW``, which tames RMSprop's first steps).
        l1: after every step, move the weights that read the hidden units' output (the decoder,
            the next layer's input weights and the recurrent weights) by ``-l1 * sign(w)``
            (Miconi's ``COEFFWPEN``).
        unit_multipliers: give every unit a learned multiplier on its outgoing path (the v2
            structure signal of the growth regime; builds a growable stack).
        unit_gates: give every unit a hard-concrete L0 gate on its outgoing path (the ``l0_gate``
            structure signal; builds a growable stack).
        gate_lr: the gates' learning rate as a multiple of ``lr`` (their own parameter group): under
            Adam a gate's location moves about ``lr * gate_lr`` per step, which sets how many steps a
            unit takes to open or close.
        fast_path: passed to ``GenomeRNN``.
        output_prior: when fitting starts (not when it resumes), set the decoder's bias to the
            training targets' prior: log-odds of each note (``multi_hot``), log-frequencies of the
            classes (``tokens``, ``class``) or the mean (regression). The loss then starts at the
            targets' entropy, and the recurrent units are not first pushed to learn constants
            (on JSB the loss starts at 11 nats instead of 61).
        seed: seeds the initial weights (a ``torch.Generator``; no global RNG).

    Batches are dicts (see :mod:`growrnn.task`); the hidden state is carried (detached) across
    batches of stateful tasks and reset at every epoch's start.
    """

    def __init__(self, spec: TaskSpec, cell: Genome | str = "lstm", hidden_size: int | list[int] = 128,
                 num_layers: int = 1, embedding_size: int | None = None, one_hot: bool = False, dropout: float = 0.0,
                 tie_weights: bool = False,
                 optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.0, weight_decay: float | None = None,
                 eps: float | None = None, betas: tuple[float, float] | None = None, alpha: float | None = None,
                 schedule: Schedule = "none", decay: float = 0.5, decay_start: int = 1,
                 plateau_factor: float = 4.0, patience: int = 0, init_range: float | None = None,
                 loss_sum_over_time: bool = False, max_update: float | None = None, l1: float = 0.0,
                 unit_multipliers: bool = False, unit_gates: bool = False, gate_lr: float = 10.0,
                 fast_path: bool | str = "auto", output_prior: bool = False, seed: int = 0) -> None:
        super().__init__()
        if isinstance(spec, dict):
            spec = TaskSpec(**spec)
        # The spec is the task's (the CLI links it from the data), so it is not a hyper-parameter;
        # checkpoints carry it under "growrnn" (see on_save_checkpoint / load_from_checkpoint).
        self.save_hyperparameters(ignore=["spec"])
        self.spec = spec
        check_model_options({name: value for name, value in self.hparams.items() if name in _TASK_FREE})
        self.genome = load_genome(cell, "cell")
        if isinstance(cell, Genome):  # hyper-parameters are plain values (a checkpoint loads them weights-only)
            self.hparams["cell"] = self.genome.to_text()
        gen = torch.Generator().manual_seed(seed)
        sizes: list[int] | None = list(hidden_size) if isinstance(hidden_size, (list, tuple)) else None
        if sizes is not None:
            if not sizes or any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in sizes):
                raise ArgumentError("hidden_size", allowed="an int >= 1, or a non-empty list of them (one per layer)",
                                    received=hidden_size, hint="e.g. hidden_size: [64, 32] for a two-layer stack")
            if num_layers not in (1, len(sizes)):  # 1: the default, which a list of sizes overrides
                raise ArgumentError("num_layers", allowed=f"the length of hidden_size's list ({len(sizes)}), or unset",
                                    received=num_layers, hint="a list of sizes sets the layers: give one size per "
                                    "layer, or an int hidden_size with num_layers")
            num_layers = len(sizes)
        elif unit_multipliers or unit_gates:
            sizes = [int(hidden_size)] * num_layers  # type: ignore[arg-type]
        size: int = sizes[0] if sizes else hidden_size  # type: ignore[assignment]
        if spec.input_kind == "tokens" and one_hot:
            emb = spec.input_size
            self.encoder: nn.Module = _OneHot(spec.input_size)
        elif spec.input_kind == "tokens":
            emb = embedding_size or size
            self.encoder = nn.Embedding(spec.input_size, emb)
        else:
            emb = embedding_size or spec.input_size
            self.encoder = nn.Linear(spec.input_size, emb) if embedding_size else nn.Identity()
        self.rnn: Any
        if sizes is None:
            self.rnn = GenomeRNN(self.genome, emb, size, num_layers, batch_first=True, dropout=dropout,
                                 fast_path=fast_path, generator=gen)
        else:
            from growrnn.growth.stack import GrowableRNN
            self.rnn = GrowableRNN(self.genome, emb, sizes, dropout, unit_multipliers, fast_path, gen,
                                   gates=unit_gates)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(self.rnn.hidden_size, spec.output_size)
        if tie_weights:
            if spec.input_kind != "tokens" or emb != size or spec.input_size != spec.output_size:
                raise ArgumentError("tie_weights", allowed="token input and output of one vocabulary, "
                                    "embedding_size == hidden_size", received=True)
            self.decoder.weight = self.encoder.weight  # type: ignore[assignment]
        self._init(init_range, gen)
        self._state: dict[str, Any] = {}
        self._probe_state: Any = None  # the state the last training step started from
        self._processes = 1  # the processes a training step's batch is split over (DDP; set in setup)
        self._resume: dict[str, Any] | None = None
        self._validated: tuple[int, float] | None = None  # (step, metric) of the last validation, for resumes
        self._step_params: tuple[list[Tensor], list[Tensor]] | None = None
        #: scales the steps of entries whose optimizer state a resize zeroed (set by the structure
        #: controller for a paired run: :class:`~growrnn.growth.signals.HeadStart`; None: none)
        self.head_start: Any = None
        self._sums: dict[str, list[float]] = {}

    def _init(self, init_range: float | None, gen: torch.Generator) -> None:
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith(("rnn.multipliers", "rnn.gates")):
                    continue  # multipliers start at 1, gates open
                if init_range is not None:
                    p.uniform_(-init_range, init_range, generator=gen)
                elif not name.startswith("rnn."):
                    if p.dim() > 1:
                        nn.init.xavier_uniform_(p, generator=gen)
                    else:
                        p.zero_()

    # ---------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, state: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x: (B, T) tokens or (B, T, F) features -> logits (B, T, K), final state. Features and
        one-hot vectors go in in the parameters' dtype (Lightning converts a batch for its own steps
        only; a measurement on a batch of a ``bf16-true`` or ``64-true`` model needs it too)."""
        dtype = self.decoder.weight.dtype
        h = self.encoder(x.to(dtype) if x.is_floating_point() else x)
        out, state = self.rnn(self.drop(h.to(dtype)), state)
        return self.decoder(self.drop(out)), state

    def _step(self, batch: dict[str, Tensor], stage: str,
              measure: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The loss to train on, and the loss sum, count and correct count as tensors (no host
        syncs here: a training step reads them only when it logs; ``measure`` = count correct)."""
        x, y, mask = batch["x"], batch["y"], batch.get("mask")
        state = _fitting(self._state.get(stage) if self.spec.stateful else None, x)
        if stage == "train":
            self._probe_state = state  # what the structure controller's probe of this batch starts from
        logits, new_state = self(x, state)
        if self.spec.stateful:
            self._state[stage] = _carried(new_state, self.decoder.weight.dtype)
        loss_sum, count, correct = self._loss(logits, y, mask, batch.get("lengths"), measure)
        processes = self._processes if stage == "train" else 1
        return self._normalised(loss_sum, count, x.shape[0], processes), loss_sum.detach(), count, correct

    def _normalised(self, loss_sum: Tensor, count: Tensor, batch_size: int, processes: int = 1) -> Tensor:
        """The loss to train on from a batch's loss sum: per sequence (summed over time) or per
        target. With ``processes`` > 1 (a DDP training step on this process's rows of the global
        batch) per the mean over the processes of the global batch's sequences or targets, so that
        DDP's mean of the processes' gradients is the gradient of the global batch's loss, as one
        process takes it, however the rows and their valid steps split (one ``all_reduce`` of a
        number)."""
        per_sequence = self.hparams["loss_sum_over_time"] and self.spec.per_step
        if processes > 1:
            mine = torch.as_tensor(float(batch_size), device=count.device) if per_sequence else count
            return loss_sum / (summed(mine.double()).clamp(min=1.0) / processes).to(loss_sum.dtype)
        if per_sequence:
            return loss_sum / batch_size
        return loss_sum / count.clamp(min=1.0)

    @torch.no_grad()
    def batch_loss(self, batch: dict[str, Tensor], processes: int = 1) -> float:
        """``batch``'s training loss with the weights as they are, in evaluation mode (no dropout)
        and without gradients: the structure controller's ablation probe. It starts from the state
        the last training step started from where the task carries state across batches (a
        language model's window is read in its context, as it was trained), else from a fresh one.
        With ``processes`` > 1 (this process's rows of a DDP batch; a collective) normalised as a
        training step is, so that the processes' mean is the global batch's loss."""
        was = self.training
        self.eval()
        state = _fitting(self._probe_state if self.spec.stateful else None, batch["x"])
        try:
            logits, _ = self(batch["x"], state)
            loss_sum, count, _ = self._loss(logits, batch["y"], batch.get("mask"), batch.get("lengths"), False)
            return float(self._normalised(loss_sum, count, batch["x"].shape[0], processes))
        finally:
            self.train(was)

    def resize(self, k: int, units: Any, optimizer: torch.optim.Optimizer | None = None,
               generator: torch.Generator | None = None, init_std: float = 0.0,
               fresh_second_moment: float | str = 0.0, fresh_multiplier: float | None = None) -> None:
        """Give layer ``k`` the units of ``units`` (a :class:`~growrnn.growth.surgery.UnitMap`;
        :func:`growrnn.growth.stack.resize_layer` with these arguments: the layer, the readers
        ahead, its scales and ``optimizer``'s state) and resize the states carried through it with
        it: the training state and the state the last training step started from (what a probe of
        that step's batch reads before the next step), fresh units at zero. Every resize during
        training goes through here."""
        from growrnn.growth.stack import resize_layer, resize_state

        state = resize_layer(self.rnn, self.decoder, k, units, optimizer, generator, init_std, fresh_second_moment,
                             self._state.get("train"), fresh_multiplier)
        if state is not None:
            self._state["train"] = state
        self._probe_state = resize_state(self.rnn, k, units, self._probe_state)

    def judged_loss(self, batches: Iterable[dict[str, Tensor]]) -> float:
        """The loss per target over ``batches`` (evaluation mode, no gradient, the state carried
        across batches where the task carries it, as in validation): how the structure
        controller's paired trials compare networks of different widths on held-out data."""
        return pooled_loss(*self.judged_parts(batches))

    @torch.no_grad()
    def judged_parts(self, batches: Iterable[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """Per batch of ``batches`` (as :meth:`judged_loss` reads them): the summed loss and the
        number of targets, two float64 tensors of shape (B,) on the CPU (empty batches count 0) --
        what the standard error of a difference between two networks judged on the same batches
        is estimated from."""
        was = self.training
        self.eval()
        state: Any = None
        sums: list[float] = []
        counts: list[float] = []
        try:
            for batch in batches:
                batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                if batch["x"].shape[0] == 0:
                    sums.append(0.0)
                    counts.append(0.0)
                    continue
                logits, new_state = self(batch["x"], _fitting(state, batch["x"]) if self.spec.stateful else None)
                state = new_state if self.spec.stateful else None
                loss_sum, n, _ = self._loss(logits, batch["y"], batch.get("mask"), batch.get("lengths"), False)
                sums.append(float(loss_sum))
                counts.append(float(n))
            return (torch.tensor(sums, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64))
        finally:
            self.train(was)

    def targets(self, batch: dict[str, Tensor]) -> int:
        """How many targets ``batch`` holds: the terms its loss is a mean of (a per-step task's
        valid steps -- tokens, frames; a one-target-per-sequence task's targets)."""
        return int(self._count(batch["y"], batch.get("mask")))

    def _count(self, y: Tensor, mask: Tensor | None) -> Tensor:
        if not self.spec.per_step:
            return torch.tensor(float(y.numel()))
        return torch.tensor(float(y.shape[0] * y.shape[1])) if mask is None else mask.sum().float()

    def _loss(self, logits: Tensor, y: Tensor, mask: Tensor | None, lengths: Tensor | None,
              measure: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
        kind = self.spec.output_kind
        # in at least single precision: a half-precision model's (bf16-true) sums would resolve a
        # few parts in a thousand of the loss, coarser than what growth's trials and probes compare
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if y.is_floating_point():
            y = y.to(logits.dtype)
        if not self.spec.per_step:  # one target per sequence, read at the last valid step
            last = (lengths - 1) if lengths is not None else torch.full((logits.shape[0],), logits.shape[1] - 1)
            logits = logits[torch.arange(logits.shape[0]), last.to(logits.device)]
            n = self._count(y, mask)
            if kind == "class":
                loss = F.cross_entropy(logits, y, reduction="sum")
                return loss, n, (logits.argmax(-1) == y).sum() if measure else None
            loss = F.mse_loss(logits, y, reduction="sum")
            return loss, n, torch.zeros(())
        keep, count = mask, self._count(y, mask)  # with no mask every step counts: plain sums, no mask products
        correct: Tensor | None = torch.zeros(())
        if kind == "tokens":
            per = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
            hit = logits.argmax(-1) == y if measure else None
        elif kind == "multi_hot":
            per = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)
            hit = ((logits > 0) == (y > 0.5)).all(-1) if measure else None
        else:
            per = F.mse_loss(logits, y, reduction="none").sum(-1)
            hit = None
        if measure and hit is not None:
            correct = (hit & keep).sum() if keep is not None else hit.sum()
        elif not measure:
            correct = None
        loss = (per * keep).sum() if keep is not None else per.sum()
        return loss, count, correct

    # ---------------------------------------------------------------------------- lightning hooks
    def setup(self, stage: str) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self._processes = int(self.trainer.world_size) if self._trainer is not None and distributed else 1
        if self._processes > 1:  # every process's products on the same kernels, bit for bit
            agree_kernels(summed, self._processes)
            destroy_at_exit()
        # before a checkpoint is restored (a resumed run keeps its own bias) and before DDP wraps
        # the module (which then copies rank 0's bias to every process: the same on each)
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and self.hparams.get("output_prior") and data is not None:
            with torch.no_grad():  # under DDP each process reads its rows: the counts are summed
                self.decoder.bias.copy_(output_prior(self.spec, data.train_dataloader(),
                                                     summed if self._processes > 1 else None))

    def on_train_start(self) -> None:
        # resumed with accumulate_grad_batches, Lightning's ModelCheckpoint saves again at the end of
        # the first batch of the resumed step, whose global_step is still the checkpoint's
        # (Lightning-AI/pytorch-lightning#17903): in the checkpoint's folder that save replaces the
        # checkpoint resumed from with one taken mid-step, which no run resumes exactly. The step
        # resumed at counts as saved.
        if self.trainer.ckpt_path and self.trainer.accumulate_grad_batches > 1:
            for callback in self.trainer.checkpoint_callbacks:
                if hasattr(callback, "_last_global_step_saved"):
                    callback._last_global_step_saved = self.global_step

    def resumed_mid_epoch(self) -> bool:
        """Whether this epoch goes on with the carried state a checkpoint restored (a run resumed
        mid-epoch, at the step it resumed at; see :meth:`on_load_checkpoint`): at an epoch's start
        every other run starts its carried state afresh."""
        return self._resume is not None and self._resume["step"] == self.global_step

    def on_train_epoch_start(self) -> None:
        if not self.resumed_mid_epoch():
            self._state["train"], self._resume = None, None

    def on_train_epoch_end(self) -> None:
        # Lightning does not step a ReduceLROnPlateau at the end of the epoch a run was resumed in
        # (its metric is not in the checkpoint, so it skips the step for that epoch): the schedule
        # steps here as it would have without the interruption, with the metric it would have
        # read: the last validation's -- run after the resume, or before the checkpoint was
        # written (kept in it)
        loop = self.trainer.fit_loop
        if not loop.restarting or not loop.epoch_loop.batch_progress.is_last_batch:
            return
        for config in self.trainer.lr_scheduler_configs:
            metric = self.trainer.callback_metrics.get(config.monitor) if config.monitor else None
            if metric is None and self._validated is not None:
                metric = self._validated[1]
            if config.reduce_on_plateau and config.interval == "epoch" and metric is not None:
                config.scheduler.step(float(metric))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._resume = None
        if self.hparams["dropout"]:
            # dropout draws from the global RNG; seeding it from the batch's place makes every
            # step's masks the same in a resumed run as in an uninterrupted one, whatever else drew
            # from it in between (Lightning's data iterators do)
            torch.manual_seed(batch_seed(self.hparams["seed"], self.trainer, batch_idx))

    def _start(self, stage: str) -> None:
        self._state[stage] = None
        self._sums[stage] = [0.0, 0.0, 0.0]

    def on_validation_epoch_start(self) -> None:
        self._start("val")

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logs = self._logs_now()  # self.log costs ~0.2 ms; Lightning writes a step's value only then anyway
        loss, loss_sum, count, correct = self._step(batch, "train", measure=logs)
        if logs:
            parts = torch.stack([loss.detach(), loss_sum, count, count * 0 if correct is None else correct]).double()
            if self._processes > 1:  # the global batch's (a collective; every process logs at the same steps):
                parts = summed(parts)  # the processes' losses are normalised so that their mean is the global loss
                parts[0] /= self._processes
            shown, loss_sum_all, count_all, correct_all = parts.tolist()
            value = metric_value(self.spec.metric, loss_sum_all, count_all, correct_all)
            self.log("train/loss", shown, prog_bar=True, batch_size=int(batch["x"].shape[0]))
            self.log(f"train/{self.spec.metric}", value, batch_size=int(batch["x"].shape[0]))
        return loss

    def _logs_now(self) -> bool:
        trainer = self._trainer
        if trainer is None:
            return True
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        return (self.global_step + 1) % every == 0 or bool(getattr(trainer, "fast_dev_run", False))

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        if batch["x"].shape[0] == 0:  # a process's empty share of a batch smaller than the processes
            return
        _, loss_sum, count, correct = self._step(batch, stage)
        sums = self._sums[stage]
        sums[0] += float(loss_sum)
        sums[1] += float(count)
        sums[2] += float(correct or 0.0)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _end(self, stage: str) -> None:
        loss, count, correct = self._sums[stage]
        many = self._trainer is not None and self._trainer.world_size > 1
        if many:  # every process evaluated its rows of each batch: the sums are the whole set's
            sums = self._trainer.strategy.reduce(torch.tensor(self._sums[stage], dtype=torch.float64,  # type: ignore[union-attr]
                                                              device=self.device), reduce_op="sum")
            loss, count, correct = sums.tolist()
        value = metric_value(self.spec.metric, loss, count, correct)
        # the values are the same on every process; sync_dist says so to Lightning (a mean of equals)
        self.log(f"{stage}/{self.spec.metric}", value, prog_bar=True, sync_dist=many)
        self.log(f"{stage}/loss", loss / count if count else math.nan, sync_dist=many)

    def on_validation_epoch_end(self) -> None:
        self._end("val")
        if self._trainer is not None and not self.trainer.sanity_checking:
            metric = self.trainer.callback_metrics.get(f"val/{self.spec.metric}")
            self._validated = (int(self.global_step), float(metric)) if metric is not None else None

    def on_test_epoch_end(self) -> None:
        self._end("test")

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        kw: dict[str, Any] = {"lr": hp.lr}
        if hp.weight_decay is not None:
            kw["weight_decay"] = hp.weight_decay
        if hp.optimizer in ("sgd", "rmsprop"):
            kw["momentum"] = hp.momentum
        if hp.eps is not None and hp.optimizer != "sgd":
            kw["eps"] = hp.eps
        if hp.get("betas") is not None:
            kw["betas"] = tuple(hp.betas)
        if hp.get("alpha") is not None:
            kw["alpha"] = hp.alpha
        gates = [p for n, p in self.named_parameters() if n.startswith("rnn.gates.")]
        rest = [p for n, p in self.named_parameters() if not n.startswith("rnn.gates.")]
        groups: list[dict[str, Any]] = [{"params": rest}]
        if gates:
            groups.append({"params": gates, "lr": hp.lr * hp.get("gate_lr", 10.0)})
        opt = OPTIMIZERS[hp.optimizer](groups, foreach=True, **kw)
        if hp.schedule == "decay":
            start, decay = hp.decay_start, hp.decay
            step = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: decay ** max(0, epoch + 1 - start))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": step, "interval": "epoch"}}
        if hp.schedule == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self.spec.direction, factor=1.0 / hp.plateau_factor, patience=hp.patience)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": f"val/{self.spec.metric}",
                                                       "interval": "epoch"}}
        return opt

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """The optimizer's step, then Miconi's training rule where it is set (:meth:`ruled_step`)."""
        parent = super().optimizer_step
        self.ruled_step(lambda: parent(epoch, batch_idx, optimizer, optimizer_closure), optimizer)

    def ruled_step(self, step: Callable[[], Any], optimizer: Any = None) -> None:
        """Run ``step`` (``optimizer``'s step on this model's parameters) inside Miconi's training
        rule where it is set: the update clip (``max_update``) around it and the L1 decrement
        (``l1``) after it, both from :mod:`growrnn.growth.signals`; inside the clip, a new unit's
        :attr:`head_start` where the structure controller set one. The network's
        :meth:`optimizer_step` and a paired trial's copies (``training/paired.py``) step through
        it, so both sides of a trial train under the same rule."""
        from growrnn.growth.signals import UpdateClip, l1_decrement, reading_weights
        limit, l1 = self.hparams["max_update"], self.hparams["l1"]
        # The lists are built once: growth resizes parameters in place, so the objects stay the same.
        if self._step_params is None:
            self._step_params = ([p for p in self.parameters() if p.requires_grad],
                                 reading_weights(self.rnn, self.decoder) if l1 else [])
        clip = UpdateClip(limit) if limit is not None else None
        if clip is not None:
            clip.before(self._step_params[0])
        head = self.head_start if optimizer is not None else None
        if head is not None:
            head.before(optimizer)
        step()
        if head is not None:
            head.after(optimizer)
        if clip is not None:
            clip.after()
        if l1:
            l1_decrement(self._step_params[1], l1)

    def outgoing_weights(self) -> list[Tensor]:
        """The weights that read the hidden units' output: the decoder, the layers' weights that
        read hidden-size values, and the input weights of every layer above the first."""
        from growrnn.growth.signals import reading_weights
        return reading_weights(self.rnn, self.decoder)

    def hidden_sizes(self) -> list[int]:
        """The unit count of every layer."""
        sizes = getattr(self.rnn, "hidden_sizes", None)
        return list(sizes) if sizes is not None else [self.rnn.hidden_size] * self.rnn.num_layers

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        encoded = isinstance(self.encoder, (nn.Embedding, nn.Linear))
        growable = not isinstance(self.rnn, GenomeRNN)
        progress = self._trainer.fit_loop.epoch_loop.batch_progress if self._trainer is not None else None
        epoch_done = progress is None or bool(progress.is_last_batch)  # the next epoch starts afresh
        checkpoint["growrnn"] = {"spec": self.spec.as_dict(), "genome": self.genome.to_text(),
                                 "hidden_size": self.hidden_sizes() if growable else self.rnn.hidden_size,
                                 "embedding_size": self.rnn.input_size if encoded else None,
                                 # the carried state an exact mid-epoch resume goes on with (the whole
                                 # batch's: every process's rows, so it resumes on any number of them)
                                 "train_state": None if epoch_done else gather_rows(self._state.get("train"),
                                                                                   self._trainer),
                                 # a resume at an epoch's end steps the plateau schedule with it
                                 "validated": list(self._validated) if self._validated is not None else None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the stored unit counts before the weights load (Lightning calls this hook before
        ``load_state_dict``), so a run whose layers grew or shrank resumes with ``fit(ckpt_path=)``;
        keep the carried state and the global RNG state for an exact mid-epoch resume."""
        meta = checkpoint.get("growrnn", {})
        _check_same_model(self, meta)
        validated = meta.get("validated")
        self._validated = (int(validated[0]), float(validated[1])) if validated else None
        if meta.get("train_state") is not None:  # Lightning resumes mid-epoch without on_train_epoch_start
            self._state["train"] = shard_rows(meta["train_state"], self._trainer)
            self._resume = {"step": checkpoint.get("global_step")}
        stored = meta.get("hidden_size")
        if stored is None or stored == self.rnn.hidden_size or stored == self.hidden_sizes():
            return
        stored = list(stored) if isinstance(stored, (list, tuple)) else [stored]
        if isinstance(self.rnn, GenomeRNN) and self.rnn.num_layers != 1 or self.hparams["tie_weights"]:
            raise ArgumentError("checkpoint", allowed=f"hidden sizes {self.hidden_sizes()} (resizing needs a "
                                "growable stack or one untied layer)", received=f"hidden sizes {stored}")
        from growrnn.growth.stack import resize_to
        resize_to(self.rnn, self.decoder, stored)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """As torch's, after giving a growable stack the unit counts of ``state_dict``'s weights
        (how Lightning hands a grown model back from ``ddp_spawn``'s workers to the main process)
        and, where its gates or multipliers were folded away (``l0_gate``'s end of fit) but
        ``state_dict`` has them (a checkpoint written during the fit), those back, or where it has
        them and ``state_dict``, a folded model's, does not, those removed: the model is the state
        dict's network, not its weights without their scales or with scales folded in twice."""
        sizes = _sizes_in(self, state_dict)
        if sizes is not None and sizes != self.hidden_sizes():
            from growrnn.growth.stack import resize_to
            resize_to(self.rnn, self.decoder, sizes)
        _match_unit_scales(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> SequenceModel:  # type: ignore[override]
        """As Lightning's, with the task spec and the cell read from the checkpoint (so a cell given
        as a file that has since changed cannot load the wrong equations)."""
        from growrnn.training.checkpoint import ALLOWED_GLOBALS, load_checkpoint
        ckpt = load_checkpoint(checkpoint_path, "checkpoint_path")  # weights only: a checkpoint runs no code
        if not isinstance(ckpt.get("growrnn"), dict):
            raise ArgumentError("checkpoint_path", allowed="a checkpoint of a growrnn SequenceModel",
                                received=str(checkpoint_path), hint="it has no 'growrnn' entry (spec, cell, sizes)")
        kwargs.setdefault("spec", TaskSpec(**ckpt["growrnn"]["spec"]))
        kwargs.setdefault("cell", ckpt["growrnn"]["genome"])
        if "hidden_size" in ckpt["growrnn"]:  # the sizes the weights have, which growth may have changed
            kwargs.setdefault("hidden_size", ckpt["growrnn"]["hidden_size"])
            if ckpt["growrnn"]["embedding_size"] is not None:
                kwargs.setdefault("embedding_size", ckpt["growrnn"]["embedding_size"])
        kwargs["weights_only"] = True
        # a checkpoint `growrnn fit` wrote names LightningCLI's instantiator, which would parse the
        # options again without the spec given above; the class is known, so it is built directly
        kwargs["_instantiator"] = None
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)  # type: ignore[return-value]

    def configure_callbacks(self) -> list[L.Callback]:
        from growrnn.training.callbacks import CellLogger
        return [CellLogger()]

    # ---------------------------------------------------------------------------- figures of merit
    def complexity(self) -> dict[str, int]:
        params = macs = 0
        for k, h in enumerate(self.hidden_sizes()):
            c = complexity(self.genome, self.rnn.input_size if k == 0 else self.hidden_sizes()[k - 1], h, 1)
            params, macs = params + c.params, macs + c.macs
        return {"params": sum(p.numel() for p in self.parameters()), "rnn_params": params, "macs_per_step": macs}


def batch_seed(seed: int, trainer: Any, batch_idx: int) -> int:
    """The seed of a training batch's random draws (dropout masks, gate samples): a function of
    ``seed``, the optimizer step and the batch's place in it under ``accumulate_grad_batches``
    alone, so a resumed run draws what an uninterrupted one did and the batches of one
    accumulated step draw apart (without accumulation: ``seed * 1_000_003 + step``)."""
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
    return seed * 1_000_003 + int(trainer.global_step) + (batch_idx % accumulate) * 2**40


def pooled_loss(sums: Tensor, counts: Tensor) -> float:
    """The loss per target of batches' summed losses ``sums`` over their target ``counts`` (shape
    (B,) each, as :meth:`SequenceModel.judged_parts` gives them), added in batch order."""
    total, count = 0.0, 0.0
    for s, n in zip(sums.tolist(), counts.tolist(), strict=True):
        total, count = total + s, count + n
    return total / max(count, 1.0)


def output_prior(spec: TaskSpec, batches: Any, total: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """The decoder bias ``(output_size,)`` whose outputs are the targets' prior over ``batches``
    (dicts with ``y`` and optionally ``mask``, as the task loaders give): log-odds of each output
    (``multi_hot``), log-frequencies (``tokens``, ``class``), or the mean target (regression).
    ``total``: the sum over the processes of what each counted (DDP, whose processes read their
    rows of each batch: :func:`~growrnn.training.distributed.summed`), so that every process's
    prior is the whole training set's."""
    sums = torch.zeros(spec.output_size, dtype=torch.float64)
    count = 0.0
    for batch in batches:
        y = batch["y"]
        mask = batch.get("mask") if spec.per_step else None
        if spec.output_kind in ("tokens", "class"):
            y = y[mask] if mask is not None else y.reshape(-1)
            sums += torch.bincount(y.reshape(-1).long(), minlength=spec.output_size)[:spec.output_size].double()
            count += y.numel()
        else:
            y = (y[mask] if mask is not None else y).reshape(-1, spec.output_size).double()
            sums += y.sum(0)
            count += y.shape[0]
    if total is not None:
        every = total(torch.cat([sums, torch.tensor([count], dtype=torch.float64)]))
        sums, count = every[:-1], float(every[-1])
    if count == 0:
        raise ArgumentError("output_prior", allowed="a training set with at least one target", received="none",
                            hint="set output_prior: false")
    mean = sums / count
    if spec.output_kind in ("tokens", "class"):
        return mean.clamp_min(1e-8).log().float()
    if spec.output_kind == "multi_hot":
        p = mean.clamp(1e-4, 1 - 1e-4)
        return (p / (1 - p)).log().float()
    return mean.float()


def _check_same_model(model: SequenceModel, meta: dict[str, Any]) -> None:
    """Refuse a checkpoint of another cell or task before its weights load into ``model`` (equal
    shapes would load them silently into other equations)."""
    stored_cell, stored_spec = meta.get("genome"), meta.get("spec") or {}
    if stored_cell is not None and stored_cell != model.genome.to_text():
        raise ArgumentError("ckpt_path", allowed=f"a checkpoint of this model's cell (key {model.genome.key})",
                            received=f"a checkpoint of another cell ({'; '.join(str(stored_cell).splitlines())})",
                            hint="pass the config the checkpoint was trained with, or --model.cell with its cell")
    keys = ("name", "input_kind", "input_size", "output_kind", "output_size")
    mine = {k: v for k, v in model.spec.as_dict().items() if k in keys}
    theirs = {k: stored_spec[k] for k in keys if k in stored_spec}
    if theirs and theirs != {k: mine[k] for k in theirs}:
        raise ArgumentError("ckpt_path", allowed=f"a checkpoint of task {mine['name']} ({mine})",
                            received=f"a checkpoint of task {theirs.get('name')} ({theirs})",
                            hint="pass the config (data.task and its options) the checkpoint was trained with")


def _sizes_in(model: SequenceModel, state_dict: Mapping[str, Any]) -> list[int] | None:
    """The unit counts of the growable layers' weights in ``state_dict``, read off each layer's own
    rows (a weight group of ``n`` calls has ``n * H`` rows); ``None`` where the model's layers are
    not resized to a state dict (a fixed multi-layer stack, tied weights) or it lacks their weights."""
    from growrnn.growth.stack import GrowableRNN, unit_rows
    if model.hparams["tie_weights"] or not isinstance(model.rnn, GrowableRNN) and model.rnn.num_layers != 1:
        return None
    names = {id(p): name for name, p in model.named_parameters()}
    sizes = []
    for layer in (model.rnn.layers if isinstance(model.rnn, GrowableRNN) else [model.rnn]):
        view, p = unit_rows(layer)[0]
        stored = state_dict.get(names[id(p)])
        if stored is None or stored.shape[0] % view.shape[0]:
            return None
        sizes.append(int(stored.shape[0]) // int(view.shape[0]))
    return sizes


#: the SequenceModel options whose values are checked without a task (check_model_options)
_TASK_FREE = ("optimizer", "schedule", "lr", "momentum", "weight_decay", "eps", "betas", "alpha", "dropout", "decay",
              "decay_start", "plateau_factor", "patience", "init_range", "max_update", "l1", "gate_lr",
              "embedding_size", "num_layers", "seed")


def check_model_options(options: Mapping[str, Any], whole: bool = False) -> None:
    """Refuse a ``SequenceModel`` option value that is wrong whatever the task (``options``: some
    of its keyword arguments; the others are not looked at): an unknown optimizer or schedule, a
    rate, factor or count out of its range, an optimizer's decay rate under an optimizer that does
    not read it (where ``options`` name the optimizer, or are ``whole``: every option the model is
    built with, an absent one at its default). The model checks its own with it, and a search's or
    a comparison's config is checked with it at load, so a bad value fails before any run trains."""
    o = options
    if whole and "optimizer" not in o:
        o = {**o, "optimizer": inspect.signature(SequenceModel).parameters["optimizer"].default}
    if "optimizer" in o and o["optimizer"] not in OPTIMIZERS:
        raise ArgumentError("optimizer", allowed=", ".join(OPTIMIZERS), received=o["optimizer"])
    if "schedule" in o:
        check_choice("schedule", o["schedule"], ("none", "decay", "plateau"))
    for name in ("lr", "momentum", "weight_decay", "l1"):
        if o.get(name) is not None:
            check_number(name, o[name], hint="e.g. lr: 0.001 for adam, 1.0 for sgd" if name == "lr" else None)
    for name in ("eps", "init_range", "max_update", "gate_lr"):
        value = o.get(name)
        if value is not None and not (is_number(value) and 0 < value < math.inf):
            raise ArgumentError(name, allowed="a finite number > 0" + (", or null" if name != "gate_lr" else ""),
                                received=value)
    _check_decay_rates(o)
    if "dropout" in o and not (is_number(o["dropout"]) and 0 <= o["dropout"] < 1):
        raise ArgumentError("dropout", allowed="a number in [0, 1)", received=o["dropout"],
                            hint="the share of units dropped in training; 0: none")
    if "decay" in o and not (is_number(o["decay"]) and 0 < o["decay"] <= 1):
        raise ArgumentError("decay", allowed="a number in (0, 1]", received=o["decay"],
                            hint="the decay schedule multiplies the rate by it every epoch")
    if "plateau_factor" in o and not (is_number(o["plateau_factor"]) and 1 <= o["plateau_factor"] < math.inf):
        raise ArgumentError("plateau_factor", allowed="a finite number >= 1", received=o["plateau_factor"],
                            hint="the plateau schedule divides the rate by it")
    for name, low in (("decay_start", 0), ("patience", 0), ("num_layers", 1), ("seed", 0)):
        if name in o:
            check_int(name, o[name], low)
    if o.get("embedding_size") is not None:
        check_int("embedding_size", o["embedding_size"], 1, allowed="an int >= 1, or null (the layer's width)")


#: the optimizers that read each decay-rate option
_DECAY_RATES = {"betas": ("adam", "adamw"), "alpha": ("rmsprop",)}


def _check_decay_rates(o: Mapping[str, Any]) -> None:
    """Refuse ``betas`` that are not a list or tuple of two numbers in [0, 1), an ``alpha`` not in
    [0, 1), and, where ``o`` names the optimizer, either set under one that does not read it."""
    rates = {"betas": o.get("betas"), "alpha": o.get("alpha")}
    if rates["betas"] is not None:
        b = rates["betas"]
        if not isinstance(b, (list, tuple)) or len(b) != 2 or not all(is_number(x) and 0 <= x < 1 for x in b):
            raise ArgumentError("betas", allowed="two numbers in [0, 1) (the first and second moments' decay rates)",
                                received=b, hint="e.g. betas: [0.9, 0.999], torch's default")
    if rates["alpha"] is not None and not (is_number(rates["alpha"]) and 0 <= rates["alpha"] < 1):
        raise ArgumentError("alpha", allowed="a number in [0, 1) (RMSprop's mean square decay rate)",
                            received=rates["alpha"], hint="e.g. alpha: 0.99, torch's default")
    if "optimizer" not in o:  # part of the options (a comparison's shared model): checked where they are whole
        return
    optimizer = o["optimizer"]
    for name, readers in _DECAY_RATES.items():
        if rates[name] is not None and optimizer not in readers:
            raise ArgumentError(name, allowed=f"null under optimizer {optimizer!r} (only {' and '.join(readers)} "
                                f"read{'s' if len(readers) == 1 else ''} it)", received=rates[name],
                                hint=f"set optimizer: {readers[0]}, or leave {name} unset")


def _match_unit_scales(model: SequenceModel, state_dict: Mapping[str, Any]) -> None:
    """Give a growable stack the unit gates and multipliers of ``state_dict``, a whole model's:
    those it holds and the stack folded away (removed) come back, as parameters its load fills (a
    checkpoint written during a gated fit, loaded after it); those the stack has and the state
    dict does not hold are removed, as folding removes them (the folded model a ``ddp_spawn``
    worker hands back to the main process, whose model still has its gates: kept, they would
    scale weights they were already folded into). A state dict without the decoder's weight (a
    part of a model) changes neither."""
    from growrnn.growth.stack import GrowableRNN
    rnn = model.rnn
    if not isinstance(rnn, GrowableRNN) or "decoder.weight" not in state_dict:
        return
    for kind, option in (("gates", "unit_gates"), ("multipliers", "unit_multipliers")):
        keys = [f"rnn.{kind}.{k}" for k in range(rnn.num_layers)]
        if getattr(rnn, kind) is None and all(key in state_dict for key in keys):
            like = model.decoder.weight
            setattr(rnn, kind, nn.ParameterList(
                [nn.Parameter(torch.empty(state_dict[key].shape, dtype=state_dict[key].dtype, device=like.device))
                 for key in keys]))
            model.hparams[option] = True  # later checkpoints describe the model with them
        elif getattr(rnn, kind) is not None and not any(key in state_dict for key in keys):
            if kind in rnn._modules:  # removed as fold_unit_scales removes them
                del rnn._modules[kind]
            setattr(rnn, kind, None)
            model.hparams[option] = False


def _first(state: Any) -> Tensor:
    return state if torch.is_tensor(state) else _first(state[0])


def _fitting(state: Any, x: Tensor) -> Any:
    """``state`` on ``x``'s device if it has one row per sequence of the batch ``x`` (a carried
    state from a batch of another size, the last of an epoch, starts fresh), else None. A state
    read back from a checkpoint is on the CPU until here."""
    return _to(state, x.device) if state is not None and _first(state).shape[1] == x.shape[0] else None


def _carried(state: Any, dtype: torch.dtype) -> Any:
    """``state`` detached, in the parameters' ``dtype``: under autocast (``bf16-mixed``) a state
    comes out in the autocast dtype, and every forward that reads it next -- a training step, or a
    measurement or judgement outside autocast (the paired trials, ``ablation``'s probes) -- can then
    take it, as it takes the parameters."""
    return state.detach().to(dtype) if torch.is_tensor(state) else tuple(_carried(s, dtype) for s in state)


def _to(state: Any, device: torch.device) -> Any:
    return state.to(device) if torch.is_tensor(state) else tuple(_to(s, device) for s in state)


class _OneHot(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return F.one_hot(x, self.size).to(torch.get_default_dtype())

