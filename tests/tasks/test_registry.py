"""Tasks are found through the growrnn.tasks entry-point group."""

import os
from pathlib import Path

import pytest

import tasks
from growrnn.errors import ArgumentError
from growrnn.task import Task
from tests.conftest import need_data

ALL = ["adding", "anbncn", "char_stream", "copy", "flipflop", "imdb", "jsb", "miconi_easy", "miconi_hard",
       "miconi_switch", "musedata", "nottingham", "piano_midi", "ptb", "teacher", "wikitext2"]


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
    ("ptb", {"bpt": 35, "batch_size": 20}, "Received: \\['batch_size', 'bpt'\\].*did you mean 'bpt' for 'bptt'\\?"),
    ("adding", {"length": 1}, "'length'.*>= 2"),
    ("miconi_easy", {"p": 1.5}, "'p'.*probability"),
    ("copy", {"delay": 0}, "'delay'.*>= 1"),
    ("anbncn", {"test_max_n": 0}, "'test_max_n'.*>= 1.*Received: 0"),     # not max_n in disguise
    ("copy", {"seed": 1.5}, r"'seed'.*an int in \[0, 2\*\*31\).*Received: 1.5"),
    ("teacher", {"seed": 2**62}, r"'seed'.*Received: 4611686018427387904"),
    ("jsb", {"seed": -1}, r"'seed'.*Received: -1"),
    ("flipflop", {"rate": "0.5"}, r"'rate'.*a number in \(0, 1\]"),
    ("miconi_easy", {"p": "0.6"}, r"'p'.*probability.*HINT"),
    ("teacher", {"gain": float("nan")}, r"'gain'.*a finite number > 0.*Received: nan"),
    ("teacher", {"sharpness": 0}, r"'sharpness'.*Received: 0"),
    ("char_stream", {"path": "no/such/file.txt"}, "'path'.*existing text file"),
    ("char_stream", {}, "options of task 'char_stream'.*required: path.*Received: \\[\\].*missing"),
])
def test_bad_names_and_options(name: str, options: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        tasks.get(name, **options)


@pytest.mark.parametrize("value", [0, -3, 2.5])
@pytest.mark.parametrize(("name", "options"), [
    ("miconi_hard", {"train_windows": 4, "eval_windows": 2}),    # a stream
    ("teacher", {"units": 4, "n_train": 16, "n_eval": 16}),      # sequences
])
def test_eval_batch_size_is_checked_by_name(name: str, options: dict, value: object) -> None:
    """``eval_batch_size`` 0 no longer means ``batch_size``, and a bad value names the option,
    not ``batch_size`` or a bare TypeError when the validation loader is made."""
    from tasks.base import SequenceData, StreamData
    task = tasks.get(name, **options)
    data = task.datamodule()
    cls = type(data)
    assert cls in (StreamData, SequenceData)
    with pytest.raises(ArgumentError, match=f"'eval_batch_size'.*an int >= 1.*Received: {value}"):
        if cls is StreamData:
            StreamData(data._splits, 2, 5, eval_batch_size=value)
        else:
            SequenceData(data._splits, 2, True, eval_batch_size=value)


@pytest.mark.parametrize(("content", "options", "match"), [
    (b"", {}, r"'path'.*at least 40 characters.*Received: .*t.txt \(empty\)"),
    (b"abc", {}, r"'path'.*at least 40 characters.*\(3 characters\)"),
    (b"ab" * 30, {"batch_size": 4}, r"'path'.*at least 160 characters \(with batch_size 4.*\(60 characters\)"),
    (b"\x89PNG\r\n\x1a\n\xff\x00", {}, r"'path'.*a UTF-8 text file.*binary file"),
])
def test_char_stream_names_the_file_not_the_batch_size(tmp_path: Path, content: bytes, options: dict,
                                                       match: str) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(ArgumentError, match=match):
        tasks.get("char_stream", path=str(path), **options)


def test_a_data_folder_that_is_a_file_or_unreadable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.data import DataError
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("")
    monkeypatch.setenv("GROWRNN_DATA", str(not_a_folder))
    with pytest.raises(DataError, match=f"the data folder {not_a_folder} .* is a file, not a folder"):
        tasks.get("ptb")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    monkeypatch.setenv("GROWRNN_DATA", str(locked))
    try:
        if os.access(locked, os.R_OK):  # root reads any folder: nothing to refuse
            return
        with pytest.raises(DataError, match="cannot be read \\(permissions\\).*chmod u\\+rx"):
            tasks.get("jsb")
    finally:
        locked.chmod(0o755)
