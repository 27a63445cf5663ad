"""Cell behaviours and the novelty archive."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import growrnn as gr
from growrnn.errors import ArgumentError
from growrnn.genome.graph import Genome
from growrnn.search.novelty import BEHAVIOUR_LIMIT, NoveltyArchive, behaviour


def test_behaviour_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = behaviour(gr.cells.lstm()), behaviour(gr.cells.lstm())
    assert torch.equal(torch.random.get_rng_state(), before)
    assert a.shape == (20 * 8,) and a.dtype == np.float64
    assert np.array_equal(a, b)
    assert not np.array_equal(a, behaviour(gr.cells.lstm(), seed=1))


def test_cells_behave_differently() -> None:
    names = ("lstm", "gru", "elman", "mgu", "indrnn")
    behaviours = {n: behaviour(getattr(gr.cells, n)()) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.linalg.norm(behaviours[a] - behaviours[b]) > 1.0, (a, b)


def test_genomes_equal_as_text_behave_identically_whatever_their_node_ids() -> None:
    lstm = gr.cells.lstm()
    data = lstm.to_dict()
    # the same cell with every node id shifted: equal as text, different ids
    data["nodes"] = [{**n, "id": n["id"] + 100, **({"args": [a + 100 for a in n["args"]]} if "args" in n else {})}
                     for n in data["nodes"]]
    data["bindings"] = [[name, i + 100] for name, i in data["bindings"]]
    shifted = Genome.from_json(data)
    assert shifted == lstm and set(shifted.nodes) != set(lstm.nodes)
    assert np.array_equal(behaviour(shifted), behaviour(lstm))
    assert np.array_equal(behaviour(lstm.to_text()), behaviour(lstm))


def test_exploding_cell_gives_a_finite_behaviour() -> None:
    b = behaviour(gr.parse("h' = 3 * h * h + affine(x) + affine(h)"), steps=30)
    assert np.isfinite(b).all() and np.abs(b).max() == BEHAVIOUR_LIMIT


@pytest.mark.parametrize(("k", "archive", "population", "expected"), [
    (1, [[0.0, 0.0]], [[3.0, 4.0]], 0.0),                 # b = (0, 0) itself is in the archive
    (1, [[3.0, 4.0]], [[0.0, 1.0]], 1.0),
    (2, [[3.0, 4.0]], [[0.0, 1.0]], 3.0),                 # mean of 1 and 5
    (3, [], [[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 9.0]], 2.0),
    (10, [[0.0, 2.0]], [], 2.0),                          # fewer neighbours than k
    (1, [], [], 0.0),                                     # nothing to be novel against
])
def test_score_is_mean_distance_to_k_nearest(k: int, archive: list, population: list, expected: float) -> None:
    nov = NoveltyArchive(k=k)
    for a in archive:
        nov.add(np.array(a))
    assert nov.score(np.zeros(2), [np.array(p) for p in population]) == pytest.approx(expected)


def test_score_skips_the_candidate_itself_in_the_population() -> None:
    b = np.zeros(2)
    population = [b, np.array([0.0, 2.0]), b.copy()]
    assert NoveltyArchive(k=1).score(b, population) == 0.0  # the copy counts
    assert NoveltyArchive(k=1).score(b, population[:2]) == 2.0


def test_add_threshold_and_max_size() -> None:
    nov = NoveltyArchive(k=1, add_threshold=1.0, max_size=2, seed=0)
    kept = [nov.add(np.array(v)) for v in ([0.0], [0.5], [2.0], [4.0])]
    assert kept == [True, False, True, True] and len(nov) == 2
    assert [4.0] in [e.tolist() for e in nov.entries]  # replaced a random entry


def test_state_round_trip_through_json() -> None:
    nov = NoveltyArchive(k=2, max_size=3, seed=5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        nov.add(rng.normal(size=4))
    copy = NoveltyArchive()
    copy.load_state_dict(json.loads(json.dumps(nov.state_dict())))
    probe = rng.normal(size=4)
    assert copy.score(probe) == nov.score(probe) and (copy.k, copy.max_size) == (2, 3)
    for _ in range(4):  # the rng state came back too: the same entries get replaced
        v = rng.normal(size=4)
        nov.add(v)
        copy.add(v)
    assert all(np.array_equal(a, b) for a, b in zip(nov.entries, copy.entries, strict=True))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: NoveltyArchive(k=0), "'k'"),
    (lambda: NoveltyArchive(add_threshold=math.nan), "'add_threshold'"),
    (lambda: NoveltyArchive().score(np.array([math.inf])), "'b'"),
    (lambda: behaviour(gr.cells.gru(), steps=0), "'steps'"),
])
def test_bad_arguments_are_named(call, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        call()


def test_mismatched_behaviour_size_is_named() -> None:
    nov = NoveltyArchive()
    nov.add(np.zeros(3))
    with pytest.raises(ArgumentError, match="3 values like the archive's"):
        nov.score(np.zeros(4))
