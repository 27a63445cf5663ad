"""docs/reproductions/scripts/head_start.py: a new unit's head start under an adaptive optimizer."""

from __future__ import annotations

import math

import pytest

from tests.reproductions import load_script


def closed_form(after: int, optimizer: str, warm: int = 3000) -> float:
    """A constant gradient: an old entry steps lr (Adam's bias correction is exact for it); a fresh
    one, n steps after its moments were zeroed, lr x m_n / sqrt(v_n) with m_n = 1 - beta1^n (1 for
    RMSprop) and v_n = 1 - beta2^n, Adam's v_n divided by the tensor's own correction,
    1 - beta2^(warm + n) (the fresh entries share the tensor's step count)."""
    if optimizer == "adam":
        return sum((1 - 0.9 ** n) / math.sqrt((1 - 0.999 ** n) / (1 - 0.999 ** (warm + n)))
                   for n in range(1, after + 1)) / after
    return sum(1 / math.sqrt(1 - 0.99 ** n) for n in range(1, after + 1)) / after


@pytest.mark.parametrize("optimizer, after", [("adam", 100), ("adam", 334), ("rmsprop", 100), ("rmsprop", 334)])
def test_the_head_start_matches_its_closed_form(optimizer: str, after: int) -> None:
    ratio = load_script("head_start").head_start(optimizer, [after], noise=0.0, warm=3000)[after]
    assert ratio == pytest.approx(closed_form(after, optimizer), rel=1e-3)
    assert ratio > 1.3  # a head start, not the old entry's pace


@pytest.mark.parametrize("optimizer, after", [("rmsprop", 100), ("sgd", 100), ("sgd", 334)])
def test_the_librarys_head_start_is_adams_under_any_optimizer(optimizer: str, after: int) -> None:
    """Through the library's HeadStart a fresh entry travels as under Adam with an old entry long
    settled (the factors within 1e-3 of 1 left out)."""
    ratio = load_script("head_start").head_start(optimizer, [after], noise=0.0, warm=3000, library=True)[after]
    assert ratio == pytest.approx(closed_form(after, "adam", warm=10**6), rel=2e-3)
