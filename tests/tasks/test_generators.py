"""The synthetic generators do what their papers say."""

import math
import random
import re

import pytest
import torch

import tasks
from growrnn.errors import ArgumentError
from tasks.miconi import ALPHABET, FLOORS, easy_text, hard_text


def test_easy_groups_and_their_entropy() -> None:
    text = easy_text(random.Random(0), 200_000)
    groups = re.findall(r"\((?:ab)+\)", text)
    assert "".join(groups) == text[: sum(map(len, groups))]
    extra = [len(g[1:-1]) // 2 - 1 for g in groups]  # further "ab"s after the first
    assert abs(sum(extra) / len(extra) - 0.6 / 0.4) < 0.05  # geometric with p = 0.6
    assert FLOORS["easy"] == pytest.approx(9.61, abs=0.01)


def test_hard_groups_reverse_with_one_flip() -> None:
    groups = re.findall(r"\(([ab]{6})\)", hard_text(random.Random(1), 8 * 500))
    assert len(groups) == 500
    prev = "abbaab"
    for g in groups:
        assert sum(a != b for a, b in zip(prev[::-1], g, strict=True)) == 1
        prev = g
    assert FLOORS["hard"] == pytest.approx(8.96, abs=0.01)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_switch_is_easy_hard_easy_in_every_stream_the_batches_read(batch_size: int) -> None:
    """Each of the streams a batch holds side by side switches to hard at a third of training and
    back at two thirds (cutting one switching stream into rows gave some rows only easy text)."""
    from tasks.base import batchify
    dm = tasks.get("miconi_switch", train_windows=300, batch_size=batch_size).datamodule()
    dm.setup()
    for row in batchify(dm.tokens["train"], batch_size):
        text = "".join(ALPHABET[i] for i in row.tolist())
        third = len(text) // 3
        parts = [text[k * third:(k + 1) * third] for k in range(3)]
        hard_like = [bool(re.search(r"(aa|bb)", part)) for part in parts]  # never in an easy group
        easy_like = ["(ab)" in part for part in parts]                      # never a hard group
        assert hard_like == [False, True, False] and easy_like == [True, False, True]


def test_miconi_streams_are_seeded() -> None:
    def stream(seed: int) -> torch.Tensor:
        dm = tasks.get("miconi_hard", train_windows=5, seed=seed).datamodule()
        dm.setup()
        return dm.tokens["train"]
    assert torch.equal(stream(3), stream(3)) and not torch.equal(stream(3), stream(4))


def test_anbncn_targets_are_the_next_symbol_sets() -> None:
    from tasks.synthetic import _anbncn_example
    x, y = _anbncn_example(2)                         # S a a b b c c -> sets
    assert x.tolist() == [0, 1, 1, 2, 2, 3, 3]
    sets = [[k for k in range(5) if v[k]] for v in y]
    assert sets == [[1], [1, 2], [1, 2], [2], [3], [3], [4]]


def test_adding_targets_sum_the_marked_values() -> None:
    dm = tasks.get("adding", length=12, n_train=20, n_eval=4).datamodule()
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["x"], batch["y"]
    assert x.shape == (20, 12, 2) and y.shape == (20, 1)
    assert (x[..., 1].sum(1) == 2).all()
    torch.testing.assert_close((x[..., 0] * x[..., 1]).sum(1, keepdim=True), y)


def test_copy_layout() -> None:
    dm = tasks.get("copy", delay=5, n_train=8, n_eval=2).datamodule()
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["x"], batch["y"]
    assert x.shape == (8, 25)
    assert (x[:, 14] == 9).all() and (y[:, 15:] == x[:, :10]).all() and (y[:, :15] == 0).all()
    assert math.isclose(10 * math.log(8) / 25, 0.8318, abs_tol=1e-3)


def test_flipflop_targets_follow_the_last_pulse_on_each_bit() -> None:
    bits = 3
    task = tasks.get("flipflop", bits=bits, length=30, n_train=16, n_eval=2, batch_size=16)
    assert task.spec.input_size == 7 and task.spec.output_size == bits and task.info["floor"] == 0.0
    batch = next(iter(task.datamodule().train_dataloader()))
    x, y = batch["x"], batch["y"]
    state = torch.zeros(x.shape[0], bits)
    for t in range(x.shape[1]):  # token 1 + 2i sets bit i, 2 + 2i clears it, 0 leaves every bit
        for row, token in enumerate(x[:, t].tolist()):
            if token:
                state[row, (token - 1) // 2] = float(token % 2 == 1)
        torch.testing.assert_close(y[:, t], state)
    assert 0 < (x > 0).float().mean() < 1 and 0 < y.mean() < 1


@pytest.mark.parametrize("options, argument", [({"rate": 0.0}, "rate"), ({"rate": 1.5}, "rate"), ({"bits": 0}, "bits")])
def test_flipflop_bad_options_are_named(options: dict, argument: str) -> None:
    with pytest.raises(ArgumentError, match=argument):
        tasks.get("flipflop", **options)
