"""Datamodules shared by the tasks: streams read in consecutive windows (truncated BPTT), and
sets of variable-length sequences padded and masked."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from growrnn.errors import ArgumentError, check_int
from growrnn.task import TaskSpec

__all__ = ["StreamData", "SequenceData", "SimpleTask", "check_positive"]


def check_positive(**values: int) -> None:
    """Each of ``values`` (a task option by name) an int >= 1, else an ArgumentError naming it."""
    for name, v in values.items():
        check_int(name, v, 1, hint="a count of sequences, steps or items; see growrnn tasks for the task's options")


def _given(**values: int | None) -> dict[str, int]:
    """The optional options of ``values`` that were given (not None)."""
    return {name: v for name, v in values.items() if v is not None}


class _Windows(Dataset):
    """Window k of a (B, N) token matrix: x = [:, kT : kT+T], y shifted by one."""

    def __init__(self, data: Tensor, bptt: int):
        self.data, self.bptt = data, bptt

    def __len__(self) -> int:
        return max(0, (self.data.shape[1] - 2) // self.bptt + 1)

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        i = k * self.bptt
        n = min(self.bptt, self.data.shape[1] - 1 - i)
        return {"x": self.data[:, i:i + n], "y": self.data[:, i + 1:i + 1 + n]}


def batchify(tokens: Tensor, batch_size: int) -> Tensor:
    """(N,) -> (B, N // B): B contiguous streams, the tail dropped (as in Zaremba et al.)."""
    n = tokens.numel() // batch_size
    if n < 2:
        raise ArgumentError("batch_size", allowed=f"at most {tokens.numel() // 2} for this split",
                            received=batch_size, hint="the split is too short for that many streams")
    return tokens[: n * batch_size].view(batch_size, n)


class StreamData(L.LightningDataModule):
    """Token streams read in order, ``bptt`` steps per batch, B parallel streams per split."""

    def __init__(self, splits: Callable[[], dict[str, Tensor]], batch_size: int, bptt: int,
                 eval_batch_size: int | None = None):
        super().__init__()
        check_positive(batch_size=batch_size, bptt=bptt, **_given(eval_batch_size=eval_batch_size))
        self._splits, self.batch_size, self.bptt = splits, batch_size, bptt
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.tokens: dict[str, Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.tokens is None:
            self.tokens = self._splits()

    def _loader(self, split: str, batch: int) -> DataLoader:
        self.setup()
        assert self.tokens is not None
        return DataLoader(_Windows(batchify(self.tokens[split], batch), self.bptt), batch_size=None,
                          shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size)


class _Items(Dataset):
    def __init__(self, items: Sequence[tuple[Tensor, Tensor]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        return self.items[k]


def pad_collate(per_step: bool) -> Callable[[list[tuple[Tensor, Tensor]]], dict[str, Tensor]]:
    """Pad (x_i, y_i) pairs to the longest x in the batch; mask the valid steps."""
    def collate(batch: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        lengths = torch.tensor([x.shape[0] for x, _ in batch])
        x = torch.nn.utils.rnn.pad_sequence([x for x, _ in batch], batch_first=True)
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        if per_step:
            y = torch.nn.utils.rnn.pad_sequence([y for _, y in batch], batch_first=True)
        else:
            y = torch.stack([y for _, y in batch])
        return {"x": x, "y": y, "mask": mask, "lengths": lengths}
    return collate


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A permutation drawn from ``(seed, epoch)`` alone: Lightning calls ``set_epoch`` before each
    epoch, so a run resumed from a checkpoint sees the same order in every epoch as an
    uninterrupted one (a generator that advances from epoch to epoch would restart)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())


class SequenceData(L.LightningDataModule):
    """Sets of (input, target) sequences of any length, shuffled (seeded) for training."""

    def __init__(self, splits: Callable[[], dict[str, list[tuple[Tensor, Tensor]]]], batch_size: int,
                 per_step: bool, seed: int = 0, eval_batch_size: int | None = None):
        super().__init__()
        check_positive(batch_size=batch_size, **_given(eval_batch_size=eval_batch_size))
        self._splits, self.batch_size, self.per_step, self.seed = splits, batch_size, per_step, seed
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.items: dict[str, list[tuple[Tensor, Tensor]]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.items is None:
            self.items = self._splits()

    def _loader(self, split: str, batch: int, shuffle: bool) -> DataLoader:
        self.setup()
        assert self.items is not None
        items = _Items(self.items[split])
        sampler = EpochShuffle(len(items), self.seed) if shuffle else None
        return DataLoader(items, batch_size=batch, sampler=sampler, collate_fn=pad_collate(self.per_step))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, False)


class SimpleTask:
    """A task: its spec, and the datamodule factory it was built with."""

    def __init__(self, spec: TaskSpec, make: Callable[[], L.LightningDataModule], **info: Any):
        self.spec, self._make, self.info = spec, make, info

    def datamodule(self) -> L.LightningDataModule:
        return self._make()

    def __repr__(self) -> str:
        return f"Task({self.spec.name}: {self.spec.description})"
