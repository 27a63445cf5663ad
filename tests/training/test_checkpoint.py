"""Checkpoints a user hands us: nothing in them runs, and every bad file is a clear error that
names it (``SequenceModel.load_from_checkpoint``, ``growrnn test --ckpt_path``, parent weights)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import lightning as L
import pytest
import torch

import tasks
from growrnn.cli import main
from growrnn.errors import ArgumentError
from growrnn.training import SequenceModel
from growrnn.training.checkpoint import load_checkpoint

DEBUG = Path(__file__).resolve().parents[2] / "configs" / "debug"
COPY = str(DEBUG / "copy.yaml")  # a gru; the checkpoint below is an lstm's


class _Exploit:
    """Unpickling this object runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of the debug copy config's model (lstm, 8 units)."""
    tmp = tmp_path_factory.mktemp("good")
    t = tasks.get("copy", delay=2, n_train=16, n_eval=8, batch_size=8)
    model = SequenceModel(t.spec, cell="lstm", hidden_size=8)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp))
    trainer.fit(model, t.datamodule())
    trainer.save_checkpoint(tmp / "good.ckpt")
    return tmp / "good.ckpt"


def _crafted(tmp_path: Path, good: Path, how: str) -> tuple[Path, Path]:
    marker, path = tmp_path / "marker", tmp_path / "evil.ckpt"
    if how == "torch.save":  # a real checkpoint with one more entry that runs code
        checkpoint = torch.load(good, weights_only=True)
        checkpoint["extra"] = _Exploit(marker)
        torch.save(checkpoint, path)
    else:  # a plain pickle, as torch.load's legacy format reads it
        path.write_bytes(pickle.dumps({"state_dict": {}, "x": _Exploit(marker)}, protocol=2))
    return path, marker


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
@pytest.mark.parametrize("load", ["load_checkpoint", "load_from_checkpoint", "cli test", "cli fit"])
def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path, good: Path, how: str, load: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path, marker = _crafted(tmp_path, good, how)
    match = r"evil.ckpt.*could run code.*nothing in it was run"
    if load == "load_checkpoint":
        with pytest.raises(ArgumentError, match=match):
            load_checkpoint(path)
    elif load == "load_from_checkpoint":
        with pytest.raises(ArgumentError, match="'checkpoint_path'.*" + match):
            SequenceModel.load_from_checkpoint(path)
    else:
        command = load.split()[1]
        assert main([command, "--config", COPY, "--trainer.logger", "false", "--trainer.default_root_dir",
                     str(tmp_path), "--ckpt_path", str(path)]) == 2
        assert "could run code" in capsys.readouterr().err
    assert not marker.exists(), "the crafted checkpoint ran code"


@pytest.mark.parametrize(("content", "match"), [
    ("half", r"half.ckpt.*truncated or not a checkpoint"),
    (b"", r"half.ckpt.*truncated or not a checkpoint"),
    (b"epoch,loss\n1,0.5\n", r"half.ckpt.*not a checkpoint"),
    ("list", r"half.ckpt.*holds a list, not a checkpoint"),
    ("missing", r"half.ckpt.*no such file"),
    ("folder", r"half.ckpt.*a folder"),
])
def test_a_bad_checkpoint_file_is_a_clear_error(tmp_path: Path, good: Path, content: object, match: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "half.ckpt"
    if content == "half":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif content == "list":
        torch.save([torch.zeros(2)], path)
    elif content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ArgumentError, match="'ckpt_path'.*" + match):
        load_checkpoint(path)
    assert main(["test", "--config", COPY, "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
                 "--ckpt_path", str(path)]) == 2
    assert "half.ckpt" in capsys.readouterr().err


def test_a_checkpoint_of_another_task_is_refused(tmp_path: Path, good: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "--config", str(DEBUG / "adding.yaml"), "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(good)]) == 2
    assert re.search(r"'ckpt_path'.*a checkpoint of task adding.*Received: a checkpoint of task copy",
                     capsys.readouterr().err, re.S)


def test_a_checkpoint_of_another_cell_is_refused(tmp_path: Path, good: Path) -> None:
    """Refused by name before the weights load (equal shapes would load into other equations)."""
    t = tasks.get("copy", delay=2, n_train=16, n_eval=8, batch_size=8)
    other = SequenceModel(t.spec, cell="gru", hidden_size=8)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    match = r"'ckpt_path'.*this model's cell.*another cell \(i = .*c' = f \* c \+ i \* g"
    with pytest.raises(ArgumentError, match=match):
        trainer.test(other, t.datamodule(), ckpt_path=good, verbose=False)


def test_the_good_checkpoint_still_tests_and_says_what_it_is(tmp_path: Path, good: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="growrnn")
    assert main(["test", "--config", COPY, "--model.cell", "lstm", "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(good)]) == 0
    assert "task copy, 1 steps, cell:" in caplog.text and "c' = f * c + i * g" in caplog.text
