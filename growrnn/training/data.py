"""``TaskData``: the datamodule of any registered task, by name — what configs name as ``data``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L

from growrnn.task import TaskSpec, get_task
from growrnn.training.distributed import shard_loader

__all__ = ["TaskData"]


class TaskData(L.LightningDataModule):
    """Args:
        task: a registered task name (``growrnn tasks`` lists them).
        options: the task's options (e.g. ``{batch_size: 20, bptt: 35}``).
    """

    def __init__(self, task: str, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._made_with = (task, dict(options or {}))
        self.task = get_task(task, **(options or {}))
        self.spec: TaskSpec = self.task.spec
        self.inner = self.task.datamodule()

    def __getstate__(self) -> dict[str, Any]:
        # tasks hold closures, which cannot be pickled (ddp_spawn sends the data to its workers by
        # pickle): the task is made again from its name and options
        return {k: v for k, v in self.__dict__.items() if k not in ("task", "inner")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        task, options = self._made_with
        self.task = get_task(task, **options)
        self.inner = self.task.datamodule()

    def setup(self, stage: str | None = None) -> None:
        self.inner.setup(stage)

    def train_dataloader(self) -> Any:
        trainer = self.trainer
        if trainer is None:
            return self.inner.train_dataloader()
        progress = trainer.fit_loop.epoch_loop.batch_progress
        # on many processes each trains on its rows of every (global) batch (training/distributed.py)
        return ResumableLoader(shard_loader(self.inner.train_dataloader(), trainer),
                               lambda: progress.current.processed)  # type: ignore[attr-defined]

    def val_dataloader(self) -> Any:
        return shard_loader(self.inner.val_dataloader(), self.trainer, training=False)

    def test_dataloader(self) -> Any:
        return shard_loader(self.inner.test_dataloader(), self.trainer, training=False)


class ResumableLoader:
    """A training loader that resumes mid-epoch: Lightning stores its ``state_dict`` (the batches
    this epoch has processed) in checkpoints and hands it back on ``fit(ckpt_path=...)``; the next
    pass then skips those batches, so a resumed run sees the same data as an uninterrupted one
    (Lightning alone restarts a plain loader at its first batch)."""

    def __init__(self, loader: Any, processed: Callable[[], int]) -> None:
        self.loader, self._processed, self._skip = loader, processed, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.loader), skip, None)

    def __getattr__(self, name: str) -> Any:  # sampler, dataset, batch_size, ... as the wrapped loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def state_dict(self) -> dict[str, int]:
        processed = int(self._processed())
        # an epoch whose every batch was processed resumes with the next epoch, from its start
        return {"processed": processed if processed < len(self.loader) else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = int(state.get("processed", 0))
