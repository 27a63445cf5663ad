"""Tasks are found through the growrnn.tasks entry-point group."""

import pytest

import tasks
from growrnn.errors import ArgumentError
from growrnn.task import Task
from tests.conftest import need_data

ALL = ["adding", "anbncn", "char_stream", "copy", "imdb", "jsb", "miconi_easy", "miconi_hard", "miconi_switch",
       "musedata", "nottingham", "piano_midi", "ptb", "wikitext2"]


def test_every_task_is_registered() -> None:
    assert tasks.names() == ALL


@pytest.mark.parametrize(("name", "options", "metric", "direction"), [
    ("miconi_hard", {"train_windows": 3}, "nats_per_40", "min"),
    ("anbncn", {}, "accuracy", "max"),
    ("adding", {"length": 10}, "mse", "min"),
    ("copy", {"delay": 5}, "nll", "min"),
    ("jsb", {}, "nll_per_frame", "min"),
    ("ptb", {}, "ppl", "min"),
    ("char_stream", {"path": "README.md"}, "bpc", "min"),
])
def test_specs(name: str, options: dict, metric: str, direction: str, request: pytest.FixtureRequest) -> None:
    need_data(request, name)
    task = tasks.get(name, **options)
    assert isinstance(task, Task)
    assert (task.spec.name, task.spec.metric, task.spec.direction) == (name, metric, direction)


@pytest.mark.parametrize(("name", "options", "match"), [
    ("ptbb", {}, "'task'.*Received: ptbb.*did you mean 'ptb'"),
    ("ptb", {"batch": 3}, "options of task 'ptb'.*batch_size, bptt, eval_batch_size.*Received: \\['batch'\\]"),
    ("adding", {"length": 1}, "'length'.*>= 2"),
    ("miconi_easy", {"p": 1.5}, "'p'.*probability"),
    ("copy", {"delay": 0}, "'delay'.*>= 1"),
    ("char_stream", {"path": "no/such/file.txt"}, "'path'.*existing text file"),
])
def test_bad_names_and_options(name: str, options: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        tasks.get(name, **options)
