"""IMDB from a user-supplied aclImdb folder (here a tiny generated one)."""

from pathlib import Path

import pytest

import tasks
from tasks.data import DataError


def test_loads_a_folder_of_the_same_layout(imdb_dir: Path) -> None:
    task = tasks.get("imdb", path=str(imdb_dir), vocab_size=50, max_len=6, valid_fraction=0.25, batch_size=4)
    assert task.spec.output_kind == "class" and task.spec.metric == "accuracy"
    dm = task.datamodule()
    dm.setup()
    assert {k: len(v) for k, v in dm.items.items()} == {"train": 18, "valid": 6, "test": 8}
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape[1] <= 6 and set(batch["y"].tolist()) <= {0, 1}


@pytest.mark.parametrize(("layout", "match"), [("missing", "does not exist.*aclImdb_v1.tar.gz"),
                                               ("empty", "train/pos is missing")])
def test_bad_folders(tmp_path: Path, layout: str, match: str) -> None:
    root = tmp_path / "aclImdb"
    if layout == "empty":
        root.mkdir()
    with pytest.raises(DataError, match=match):
        tasks.get("imdb", path=str(root))
