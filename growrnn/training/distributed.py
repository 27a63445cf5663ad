"""Growth when training spans many processes: Lightning's DDP (``ddp``, ``ddp_spawn``, ``ddp_fork``).

Data-parallel training keeps one replica of the model per process and averages the gradients, so
the replicas stay identical only while every process does the same thing to its weights. Growth
changes parameter shapes while training, which DDP's reducer (built for fixed shapes when the model
is wrapped) cannot follow, and several structure signals take decisions or update weights from
quantities measured on the process's own batch. This module keeps the replicas one model:

- **Rank agreement (rank 0 decides, every process applies).** Every process runs the rule on its
  own replica, then the processes apply *rank 0's* decision: one ``all_reduce`` of a flag per layer
  says whether any process wants a change; only then does rank 0 broadcast its unit maps, the
  rule's dead streaks and its random generators' states, which every process adopts. Agreement
  therefore holds for any signal, whatever it measures, and costs one tiny collective per rule
  application when nothing changes. (Deciding independently from globally reduced scores and one
  seeded generator agrees only as long as every input is bit-identical on every process; one
  differing bit in a threshold comparison would make one process resize and the others wait
  forever in the next collective.)
- **Signals see global-batch values.** The training loss a signal is given (the running loss of a
  relative ``lam``) is the mean over the processes (:meth:`Replicas.mean`), and a signal that
  measures anything else on its batch reduces it through ``Signal.across_processes``: a proximal
  step or a gate's cost is then the same on every process, so the weights stay bit-identical, and
  the decision equals that of one process training on the whole batch.
- **The reducer is rebuilt after a resize, never otherwise** (:meth:`Replicas.resized`): the
  processes first check that their parameters and optimizer state are bit-identical
  (a fingerprint of each tensor, gathered), then the strategy wraps the module anew through its
  own ``configure_ddp`` (Lightning's supported route, with the strategy's DDP options). The
  parameters are resized in place, so the optimizer and its scheduler keep their references.
- **The batch is global** (:class:`RowShard`): ``batch_size`` is the global batch; each process
  trains on its rows of every batch (``torch.tensor_split`` over the processes) and divides its
  loss sum by the processes' mean count of what the loss is per (targets, or sequences), reduced
  with :func:`summed`, so that DDP's mean of the gradients is the global batch's however the rows
  and their valid steps split; a run on N
  processes sees the same batches, takes the same steps and carries the same hidden state (row by
  row) as a run on one, and a checkpoint (whose carried state is gathered to the whole batch,
  :func:`gather_rows`) resumes on any number of processes.

Strategies that shard or partition parameters (FSDP, DeepSpeed, model parallel) cannot resize a
parameter in place on one process and are refused (:func:`check_strategy`).
"""

from __future__ import annotations

import atexit
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from growrnn.errors import ArgumentError, ReplicaError
from growrnn.growth.surgery import UnitMap

__all__ = ["Replicas", "RowShard", "check_strategy", "check_last_batch", "shard_loader", "gather_rows", "shard_rows",
           "fingerprint", "summed", "destroy_at_exit"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- strategies
def check_strategy(trainer: Any) -> None:
    """Refuse a strategy that growth cannot work with: growth resizes whole parameters in place on
    every process, which a strategy that shards or partitions them (FSDP, DeepSpeed, model
    parallel, XLA's) does not allow. One device and the DDP family (``ddp``, ``ddp_spawn``,
    ``ddp_fork``, ``ddp_notebook``) are allowed."""
    from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
    strategy = getattr(trainer, "strategy", None)
    if strategy is None:
        return
    name = type(strategy).__name__
    refused = ("DeepSpeed", "FSDP", "ModelParallel", "XLA")
    if any(r in name for r in refused) or not isinstance(strategy, (DDPStrategy, SingleDeviceStrategy)):
        raise ArgumentError("trainer.strategy", allowed="one device (auto), or ddp, ddp_spawn, ddp_fork, "
                            "ddp_notebook (DDPStrategy) with a StructureController", received=name,
                            hint="growth resizes whole parameters in place on every process, which a strategy "
                                 "that shards them cannot do; use --trainer.strategy ddp")


def _world(trainer: Any) -> tuple[int, int]:
    """(rank, processes) of a trainer that is set up; (0, 1) otherwise."""
    if trainer is None:
        return 0, 1
    return int(getattr(trainer, "global_rank", 0) or 0), int(getattr(trainer, "world_size", 1) or 1)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


_DESTROY_REGISTERED = False


def destroy_at_exit() -> None:
    """Destroy the default process group when this process exits (registered once), as Lightning
    does for NCCL only. A gloo group left to the interpreter's own teardown goes down with its
    threads running: a ``ddp_spawn`` worker then aborted after its fit had finished, in the
    interpreter's teardown with no Python frame left ("terminate called without an active
    exception"; 2 of 80 runs of the DDP test's paired job here, 0 of 90 with the group destroyed)."""
    global _DESTROY_REGISTERED
    if not _DESTROY_REGISTERED:
        atexit.register(_destroy)
        _DESTROY_REGISTERED = True


def _destroy() -> None:
    if _distributed():
        torch.distributed.destroy_process_group()


def summed(t: Tensor) -> Tensor:
    """``t`` summed over the processes of the default group, the same on every process, on ``t``'s
    device and in its dtype (reduced in float64: NCCL on this process's GPU, a host tensor moved
    there and back; gloo on the host). A collective: every process calls it."""
    device = torch.device("cpu")
    if torch.distributed.get_backend() == "nccl":
        device = t.device if t.device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    out = t.detach().to(device=device, dtype=torch.float64).clone()
    torch.distributed.all_reduce(out)
    return out.to(device=t.device, dtype=t.dtype)


# ---------------------------------------------------------------------------------------- replicas
class Replicas:
    """The training processes of one run, as growth sees them. In one process (no ``trainer``, or
    one process) every method is the identity and no collective runs.

    Args:
        trainer: the Lightning trainer, after its strategy set up the process group (a callback's
            ``setup`` hook).
    """

    def __init__(self, trainer: Any = None) -> None:
        self.rank, self.world = _world(trainer)
        self.trainer = trainer
        self.active = self.world > 1 and _distributed()
        strategy = getattr(trainer, "strategy", None)
        self.device = torch.device("cpu")
        if self.active and strategy is not None and torch.distributed.get_backend() == "nccl":
            self.device = strategy.root_device  # NCCL reduces device tensors; gloo host ones
        self.disagreements = 0

    def mean(self, value: float | None) -> float | None:
        """``value`` (a process's training loss) averaged over the processes; ``None`` if no process
        had one. One ``all_reduce`` of two numbers."""
        if not self.active:
            return value
        t = torch.tensor([0.0 if value is None else value, 0.0 if value is None else 1.0],
                         dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        total, count = t.tolist()
        return total / count if count else None

    def across(self, probe: Callable[[], float]) -> Callable[[], float]:
        """``probe`` (a loss measured on this process's rows of the batch) as the mean over the
        processes: the global batch's loss, the same on every process (NaN if any is NaN). Every
        process must call it as often (it is a collective)."""
        if not self.active:
            return probe

        def global_probe() -> float:
            value = self.mean(probe())
            return math.nan if value is None else value
        return global_probe

    def weighted_mean(self, t: Tensor, weight: float) -> Tensor:
        """``t``, a mean over ``weight`` items of this process's rows (a layer's output moments over
        its valid steps), as the mean over every process's items: the same values on every process
        (shape kept). One ``all_reduce``."""
        if not self.active:
            return t
        flat = summed(torch.cat([t.detach().reshape(-1).double() * weight,
                                 torch.tensor([weight], dtype=torch.float64, device=t.device)]))
        return (flat[:-1] / flat[-1]).reshape(t.shape).to(dtype=t.dtype)

    def total(self, t: Tensor) -> Tensor:
        """``t`` summed over the processes (validation losses and target counts of each process's
        rows): the whole batch's, the same on every process (shape and dtype kept). One
        ``all_reduce``."""
        return summed(t) if self.active else t

    def mean_gradients(self, params: Sequence[Tensor], finite: bool) -> bool:
        """Average ``params``' gradients over the processes in place, as DDP's reducer does for the
        network it wraps (a model outside it: the paired trials' copy), in one ``all_reduce``;
        ``finite``: whether this process's loss was. Returns whether every process's was (False:
        no process may step, and the gradients are left as they were). Every process must pass
        the same parameters (the same model, after the same backward)."""
        if not self.active:
            return finite
        grads = [p.grad for p in params if p.grad is not None]
        device = grads[0].device if grads else torch.device("cpu")
        flat = summed(torch.cat([g.reshape(-1).double() for g in grads] +
                                [torch.tensor([0.0 if finite else 1.0], dtype=torch.float64, device=device)]))
        if float(flat[-1]) > 0:
            return False
        flat = flat[:-1] / self.world
        at = 0
        for g in grads:
            g.copy_(flat[at:at + g.numel()].reshape(g.shape))
            at += g.numel()
        return True

    def agree(self, plans: Sequence[UnitMap | None], streaks: list[Tensor], rng: random.Random,
              gen: torch.Generator) -> tuple[list[UnitMap | None], list[Tensor]]:
        """Rank 0's decisions, on every process. ``plans``: this process's decision per layer
        (``None``: unchanged); ``streaks``: the need rule's dead streaks per layer, after this
        decision; ``rng``/``gen``: the rule's and the new weights' generators (set to rank 0's
        states when anything changes). Returns rank 0's plans and streaks."""
        plans = list(plans)
        if not self.active:
            return plans, streaks
        flags = torch.tensor([p is not None for p in plans], dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if not bool(flags.any()):  # the common case: nobody resizes, one small collective
            return plans, streaks
        payload: list[Any] = [None]
        if self.rank == 0:
            payload = [([None if p is None else p.index.cpu() for p in plans], [s.cpu() for s in streaks],
                        rng.getstate(), gen.get_state())]
        torch.distributed.broadcast_object_list(payload, src=0, device=self.device if self.device.type != "cpu"
                                                else None)
        indices, their_streaks, rng_state, gen_state = payload[0]
        theirs = [None if i is None else UnitMap(i) for i in indices]
        if any((a is None) != (b is None) or (a is not None and b is not None and not torch.equal(a.index, b.index))
               for a, b in zip(plans, theirs, strict=True)):
            self.disagreements += 1
            log.warning("rank %d decided other units than rank 0 (its signal's inputs differ); rank 0's "
                        "decision is applied on every process", self.rank)
        rng.setstate(rng_state)
        gen.set_state(gen_state)
        return theirs, [s.to(streaks[k].device) if k < len(streaks) else s for k, s in enumerate(their_streaks)]

    def resized(self, pl_module: Any, optimizer: Any = None, rewrap: bool = True) -> None:
        """After every process resized the same layers: check that the replicas are bit-identical
        (parameters and optimizer state) and, with ``rewrap``, rebuild DDP's reducer through the
        strategy (``configure_ddp``: the module wrapped anew, with the strategy's DDP options; not
        when training has ended: no backward follows, and a reducer built as the processes shut
        down can abort one at exit). Raises :class:`~growrnn.errors.ReplicaError` if the replicas
        differ. In one process under a DDP strategy (``devices: 1``) there is nothing to check, but
        the model is still wrapped, and its reducer is rebuilt all the same."""
        if not self.active:
            if rewrap:
                self.rebuild()
            return
        named = _replica_tensors(pl_module, optimizer)
        mine = torch.stack([fingerprint(t) for _, t in named]).cpu()
        every: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(every, mine)
        for rank, theirs in enumerate(every):
            if theirs.shape != every[0].shape or not torch.equal(theirs, every[0]):  # the same verdict everywhere
                same_shape = theirs.shape == every[0].shape
                rows = (theirs != every[0]).any(dim=1).nonzero().flatten().tolist() if same_shape else [0]
                raise ReplicaError(f"after a resize, rank {rank}'s {named[rows[0]][0]} differs from rank 0's",
                                   hint="every process must apply the same surgery to the same weights; a signal "
                                        "that measures its own batch must reduce it with Signal.across_processes")
        if rewrap:
            self.rebuild()

    def rebuild(self) -> None:
        """Wrap the LightningModule in a new ``DistributedDataParallel`` through the strategy, whose
        reducer registers the parameters' current shapes. The old wrapper (and its reducer's hooks
        on the parameters) is released at once."""
        strategy = getattr(self.trainer, "strategy", None)
        from torch.nn.parallel import DistributedDataParallel
        if strategy is None or not isinstance(strategy.model, DistributedDataParallel):
            return
        old = strategy.model
        # The old reducer must be gone before the new one is built: its autograd hooks would reduce
        # gradients into buckets of the old shapes, and it keeps the parameters' gradient
        # accumulators alive, which remember the old shapes (autograd would refuse the new
        # gradients, and a new reducer would pick the same accumulators up again).
        old._remove_autograd_hooks()
        for handle in getattr(old, "_accum_grad_hooks", []):
            handle.remove()
        old.reducer = old.logger = None  # the logger holds the reducer too
        strategy.model = strategy.lightning_module
        del old
        strategy.configure_ddp()

    def __getstate__(self) -> dict[str, Any]:  # a controller pickled for ddp_spawn's workers
        return {**self.__dict__, "trainer": None, "active": False}


def _replica_tensors(pl_module: Any, optimizer: Any) -> list[tuple[str, Tensor]]:
    """What must be identical on every process, by name: the parameters and every optimizer state
    tensor. (The carried hidden state is each process's own rows; it is resized by the same map.)"""
    out = [(name, p) for name, p in pl_module.named_parameters()]
    names = {id(p): name for name, p in out}
    if optimizer is not None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                for key, value in optimizer.state.get(p, {}).items():
                    if torch.is_tensor(value):
                        out.append((f"optimizer state {key} of {names.get(id(p), '?')}", value))
    return out


def fingerprint(t: Tensor) -> Tensor:
    """Three int64 numbers that change with any bit of ``t``: its bits' sum, a position-weighted
    sum, and its element count (shape ``(3,)``, on ``t``'s device)."""
    b = t.detach().contiguous().reshape(-1)
    if b.dtype == torch.bool:
        b = b.to(torch.uint8)
    elif b.is_floating_point() or b.is_complex():
        b = b.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[b.element_size()])
    b = b.to(torch.int64)
    w = torch.arange(b.numel(), device=b.device, dtype=torch.int64) % 65521 + 1
    return torch.stack([b.sum(), (b * w).sum(), torch.tensor(b.numel(), device=b.device)])


def _leaves(state: Any) -> list[Tensor]:
    if state is None:
        return []
    if torch.is_tensor(state):
        return [state]
    return [t for s in state for t in _leaves(s)]


# ---------------------------------------------------------------------------------------- data
def _rows(n: int, rank: int, world: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of a batch of ``n`` rows that process ``rank`` takes (as
    ``torch.tensor_split``: the first ``n % world`` processes take one row more)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard_batch(batch: Any, rank: int, world: int, training: bool = True) -> Any:
    """Process ``rank``'s rows of ``batch`` (a dict of batch-first tensors, as tasks yield)."""
    if world == 1:
        return batch
    if not isinstance(batch, dict):
        raise ArgumentError("batch", allowed="a dict of batch-first tensors (what growrnn's tasks yield)",
                            received=type(batch).__name__, hint="wrap the task's batches in a dict")
    n = int(next(iter(batch.values())).shape[0])
    if training and n < world:
        raise ArgumentError("data.options.batch_size", allowed=f"training batches of at least one row per process "
                            f"({world})", received=f"a batch of {n} rows",
                            hint="the batch is the global batch, split over the processes: use a batch size whose "
                                 "every batch, the epoch's last included, holds at least that many sequences, or "
                                 "fewer processes")
    start, stop = _rows(n, rank, world)
    return {k: v[start:stop] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n else v
            for k, v in batch.items()}


class RowShard:
    """A loader whose every batch is cut to this process's rows (:func:`shard_batch`). It is not a
    ``DataLoader``, so Lightning leaves its sampler alone (each process reads the same batches, in
    the same order, and keeps its rows); attributes (``sampler``, ``dataset``...) are the loader's."""

    def __init__(self, loader: Any, rank: int, world: int, training: bool = True) -> None:
        self.loader, self.rank, self.world, self.training = loader, rank, world, training

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield shard_batch(batch, self.rank, self.world, self.training)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)


def shard_loader(loader: Any, trainer: Any, training: bool = True) -> Any:
    """``loader`` cut to this process's rows of every batch when ``trainer`` runs on several
    processes; ``loader`` itself in one process. A training loader whose last batch would hold
    fewer rows than there are processes is refused here, before training (where the loader
    says its dataset's length and batch size), rather than at the end of the first epoch."""
    rank, world = _world(trainer)
    if world > 1 and training:
        check_last_batch(loader, world)
    return loader if world == 1 else RowShard(loader, rank, world, training)


def check_last_batch(loader: Any, world: int) -> None:
    """Refuse a training ``loader`` whose epoch would end with a batch of fewer rows than the
    ``world`` processes it is split over (every process trains on at least one row of every
    batch). Checked where the loader has a ``batch_size``, keeps its last batch and its dataset
    has a length; other loaders are checked batch by batch (:func:`shard_batch`)."""
    size = getattr(loader, "batch_size", None)
    try:
        n = len(loader.dataset)
    except (AttributeError, TypeError):
        return
    if not isinstance(size, int) or size < 1 or getattr(loader, "drop_last", False):
        return
    last = n % size
    if 0 < last < world:
        fits = [b for b in range(world, 2 * size + 1) if n % b == 0 or n % b >= world]
        near = sorted(sorted(fits, key=lambda b: (abs(b - size), b))[:2])
        raise ArgumentError("data.options.batch_size", allowed=f"a batch size whose every training batch holds at "
                            f"least one row per process ({world}) of the {n} training sequences",
                            received=f"{size}, whose last batch holds {last}",
                            hint="the batch is the global batch, split over the processes; "
                                 f"{' or '.join(map(str, near)) or 'a larger batch'} would do, or train on fewer "
                                 "processes")


def gather_rows(state: Any, trainer: Any) -> Any:
    """The carried state of the whole batch: every process's rows (dim 1 of each ``(L, B, H)``
    tensor) gathered, in rank order, on every process. A collective: call it on every process
    (Lightning builds a checkpoint on every process)."""
    rank, world = _world(trainer)
    if world == 1 or state is None or not _distributed():
        return state
    every: list[Any] = [None] * world
    torch.distributed.all_gather_object(every, _map(state, lambda t: t.detach().cpu()))
    device = _leaves(state)[0].device
    return _zip_map(every, lambda parts: torch.cat(parts, dim=1).to(device))


def shard_rows(state: Any, trainer: Any) -> Any:
    """This process's rows (dim 1) of a whole batch's carried ``state``, as :class:`RowShard` cuts
    the batches."""
    rank, world = _world(trainer)
    if world == 1 or state is None:
        return state

    def cut(t: Tensor) -> Tensor:
        start, stop = _rows(int(t.shape[1]), rank, world)
        return t[:, start:stop]
    return _map(state, cut)


def _map(state: Any, fn: Any) -> Any:
    return fn(state) if torch.is_tensor(state) else tuple(_map(s, fn) for s in state)


def _zip_map(states: list[Any], fn: Any) -> Any:
    first = states[0]
    if torch.is_tensor(first):
        return fn(states)
    return tuple(_zip_map([s[i] for s in states], fn) for i in range(len(first)))
