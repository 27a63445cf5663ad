"""growrnn's task suite: a leaf package (torch, numpy, Lightning's datamodule and growrnn's small
Task protocol). Tasks are registered in the ``growrnn.tasks`` entry-point group (see
``pyproject.toml``), so ``tasks.get`` finds third-party tasks the same way as these."""

from __future__ import annotations

from typing import Any

from growrnn.task import Task, get_task, task_names

__all__ = ["get", "names"]


def get(name: str, **options: Any) -> Task:
    """The task registered as ``name``, built with ``options`` (e.g. ``get("ptb", batch_size=20)``)."""
    return get_task(name, **options)


def names() -> list[str]:
    """Every registered task name."""
    return task_names()
