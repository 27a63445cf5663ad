"""IMDB sentiment (Maas et al. 2011) from an extracted ``aclImdb/`` folder (``growrnn data download
imdb`` puts one in ``$GROWRNN_DATA/aclImdb``; ``train/{pos,neg}/*.txt``,
``test/{pos,neg}/*.txt``). Words are lower-cased, the vocabulary is
the ``vocab_size`` most frequent training words, reviews are cut to their first ``max_len`` words,
and a seeded ``valid_fraction`` of train is held out. Metric: accuracy."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import torch

from growrnn.errors import ArgumentError, is_number
from growrnn.task import TaskSpec
from tasks.base import SequenceData, SimpleTask, check_positive
from tasks.data import DataError, data_root

__all__ = ["imdb"]
_WORD = re.compile(r"[a-z0-9']+")
PAD, UNK = 0, 1


def _read(folder: Path) -> list[tuple[list[str], int]]:
    out = []
    for label, sub in ((1, "pos"), (0, "neg")):
        d = folder / sub
        if not d.is_dir():
            raise DataError(f"IMDB: {d} is missing. HINT: pass path= the extracted aclImdb folder "
                            f"(with train/pos, train/neg, test/pos, test/neg)")
        for f in sorted(d.glob("*.txt")):
            out.append((_WORD.findall(f.read_text(encoding="utf-8").lower().replace("<br />", " ")), label))
    if not out:
        raise DataError(f"IMDB: no reviews under {folder}")
    return out


def imdb(path: str | None = None, vocab_size: int = 20000, max_len: int = 400, valid_fraction: float = 0.1,
         batch_size: int = 32, seed: int = 0) -> SimpleTask:
    """IMDB sentiment from an extracted aclImdb/ folder (``path``). Metric: accuracy."""
    check_positive(vocab_size=vocab_size, max_len=max_len, batch_size=batch_size)
    if not is_number(valid_fraction) or not 0.0 < valid_fraction < 1.0:
        raise ArgumentError("valid_fraction", allowed="a fraction in (0, 1)", received=valid_fraction)
    root = Path(path).expanduser() if path else data_root() / "aclImdb"
    if not root.is_dir():
        raise DataError(f"IMDB folder {root} does not exist. HINT: run `growrnn data download imdb` (it fetches "
                        "aclImdb_v1.tar.gz from ai.stanford.edu/~amaas/data/sentiment/, checks it and extracts it "
                        "to $GROWRNN_DATA/aclImdb), or pass path=…/aclImdb of a copy you extracted")
    train_docs = _read(root / "train")
    counts = Counter(w for words, _ in train_docs for w in words)
    ids = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(vocab_size))}

    def encode(docs: list[tuple[list[str], int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.tensor([ids.get(w, UNK) for w in words[:max_len]] or [UNK]), torch.tensor(label))
                for words, label in docs]

    def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        order = list(range(len(train_docs)))
        random.Random(seed).shuffle(order)
        n_valid = max(1, int(len(order) * valid_fraction))
        valid = [train_docs[i] for i in order[:n_valid]]
        train = [train_docs[i] for i in order[n_valid:]]
        return {"train": encode(train), "valid": encode(valid), "test": encode(_read(root / "test"))}

    spec = TaskSpec(name="imdb", input_kind="tokens", input_size=len(ids) + 2, output_kind="class", output_size=2,
                    metric="accuracy", direction="max", per_step=False,
                    description="IMDB review sentiment (accuracy)")
    return SimpleTask(spec, lambda: SequenceData(splits, batch_size, per_step=False, seed=seed))
