"""Language modelling on text: word-level PTB and WikiText-2 (vocabulary from train, ``<eos>``
per line, contiguous batches, truncated BPTT), and next-character prediction on any text file."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from growrnn.errors import ArgumentError
from growrnn.task import TaskSpec
from tasks.base import SimpleTask, StreamData, check_positive
from tasks.data import DataError, require

__all__ = ["Vocabulary", "ptb", "wikitext2", "char_stream", "read_words"]


class Vocabulary:
    """Token <-> id, in order of first appearance (as pytorch/examples' Corpus)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        if token not in self.ids:
            self.ids[token] = len(self.tokens)
            self.tokens.append(token)
        return self.ids[token]

    def __len__(self) -> int:
        return len(self.tokens)


def read_words(path: Path, vocab: Vocabulary, grow: bool) -> torch.Tensor:
    """Token ids of a file, one ``<eos>`` appended per line (blank lines included)."""
    ids: list[int] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            for tok in [*line.split(), "<eos>"]:
                if grow:
                    ids.append(vocab.add(tok))
                elif tok in vocab.ids:
                    ids.append(vocab.ids[tok])
                else:
                    raise DataError(f"{path} has the token {tok!r}, which train does not: the file "
                                    "is not the expected one. HINT: re-download it")
    return torch.tensor(ids, dtype=torch.long)


def _word_task(name: str, files: tuple[str, str, str], batch_size: int, bptt: int,
               eval_batch_size: int) -> SimpleTask:
    paths = require(name)  # fail now, with where we looked, rather than at fit time
    vocab = Vocabulary()
    train = read_words(paths[files[0]], vocab, grow=True)

    def splits() -> dict[str, torch.Tensor]:
        return {"train": train, "valid": read_words(paths[files[1]], vocab, grow=False),
                "test": read_words(paths[files[2]], vocab, grow=False)}

    spec = TaskSpec(name=name, input_kind="tokens", input_size=len(vocab), output_kind="tokens",
                    output_size=len(vocab), metric="ppl", direction="min", stateful=True,
                    description=f"{name} word-level language model (perplexity)")
    return SimpleTask(spec, lambda: StreamData(splits, batch_size, bptt, eval_batch_size), vocab=vocab)


def ptb(batch_size: int = 20, bptt: int = 35, eval_batch_size: int = 10) -> SimpleTask:
    """Penn Treebank (Mikolov's version), word-level LM. Metric: perplexity."""
    return _word_task("ptb", ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"), batch_size, bptt,
                      eval_batch_size)


def wikitext2(batch_size: int = 20, bptt: int = 35, eval_batch_size: int = 10) -> SimpleTask:
    """WikiText-2 (v1, with ``<unk>``), word-level LM. Metric: perplexity."""
    return _word_task("wikitext2", ("train.txt", "valid.txt", "test.txt"), batch_size, bptt, eval_batch_size)


def char_stream(path: str, batch_size: int = 1, bptt: int = 40, valid_fraction: float = 0.05,
                test_fraction: float = 0.05) -> SimpleTask:
    """Next character of any UTF-8 text file (``path``), split in order. Metric: bits per char."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ArgumentError("path", allowed="an existing text file", received=str(file),
                            hint="give the path of any UTF-8 text file")
    if not (0 < valid_fraction < 0.5 and 0 < test_fraction < 0.5):
        raise ArgumentError("valid_fraction/test_fraction", allowed="fractions in (0, 0.5)",
                            received=(valid_fraction, test_fraction))
    check_positive(batch_size=batch_size, bptt=bptt)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ArgumentError("path", allowed="a UTF-8 text file", received=str(file),
                            hint=f"byte {e.start} is not UTF-8 ({e.reason}): is it a binary file?") from None
    except OSError as e:
        raise ArgumentError("path", allowed="a readable text file", received=str(file),
                            hint=f"it cannot be read: {e.strerror or e}") from None
    n_valid, n_test = int(len(text) * valid_fraction), int(len(text) * test_fraction)
    n_train = len(text) - n_valid - n_test
    # every split needs two characters per stream (an input and its next character)
    need = max(math.ceil(2 * batch_size / valid_fraction), math.ceil(2 * batch_size / test_fraction),
               6 * batch_size)
    if min(n_train, n_valid, n_test) < 2 * batch_size:
        raise ArgumentError("path", allowed=f"a text file of at least {need} characters (with batch_size "
                            f"{batch_size}, valid_fraction {valid_fraction}, test_fraction {test_fraction})",
                            received=f"{file} ({'empty' if not text else f'{len(text)} characters'})",
                            hint="use a longer file; each split needs 2 characters per stream of the batch")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)

    def splits() -> dict[str, torch.Tensor]:
        return {"train": ids[:n_train], "valid": ids[n_train:n_train + n_valid], "test": ids[n_train + n_valid:]}

    spec = TaskSpec(name="char_stream", input_kind="tokens", input_size=len(chars), output_kind="tokens",
                    output_size=len(chars), metric="bpc", direction="min", stateful=True,
                    description=f"next character of {file.name} (bits per character)")
    return SimpleTask(spec, lambda: StreamData(splits, batch_size, bptt), alphabet="".join(chars))
