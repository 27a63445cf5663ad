"""``TaskData``: the datamodule of any registered task, by name — what configs name as ``data``."""

from __future__ import annotations

from typing import Any

import lightning as L

from growrnn.task import TaskSpec, get_task

__all__ = ["TaskData"]


class TaskData(L.LightningDataModule):
    """Args:
        task: a registered task name (``growrnn tasks`` lists them).
        options: the task's options (e.g. ``{batch_size: 20, bptt: 35}``).
    """

    def __init__(self, task: str, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.task = get_task(task, **(options or {}))
        self.spec: TaskSpec = self.task.spec
        self.inner = self.task.datamodule()

    def setup(self, stage: str | None = None) -> None:
        self.inner.setup(stage)

    def train_dataloader(self) -> Any:
        return self.inner.train_dataloader()

    def val_dataloader(self) -> Any:
        return self.inner.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.inner.test_dataloader()
