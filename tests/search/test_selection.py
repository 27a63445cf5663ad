"""NSGA-II selection on small hand-made objective matrices, against hand-computed values."""

import math

import numpy as np
import pytest

from growrnn.errors import ArgumentError
from growrnn.search.selection import (
    OBJECTIVES,
    crowding_distances,
    distinct,
    hypervolume,
    nondominated_ranks,
    objective_matrix,
    survive,
    tournament,
)

INF = math.inf
#: a first front of four points, a second of two, a third of one
LAYERED = [[0, 4], [1, 3], [3, 1], [4, 0], [1, 5], [5, 1], [6, 6]]


@pytest.mark.parametrize(("F", "ranks"), [
    ([[1, 2], [2, 1], [2, 2], [3, 3]], [0, 0, 1, 2]),
    ([[1, 1], [1, 1], [2, 2]], [0, 0, 1]),  # duplicates share a front
    ([[3], [1], [2], [1]], [2, 0, 1, 0]),  # one objective: a plain ranking
    ([[1, 2, 3], [3, 2, 1], [2, 2, 2], [3, 3, 3]], [0, 0, 0, 1]),
    ([[INF, INF], [1, 5], [5, 1], [INF, INF]], [1, 0, 0, 1]),  # failed rows are last
    (LAYERED, [0, 0, 0, 0, 1, 1, 2]),
])
def test_nondominated_ranks(F: list, ranks: list) -> None:
    got = nondominated_ranks(np.array(F, dtype=float))
    assert got.dtype.kind == "i" and got.tolist() == ranks


def test_nondominated_ranks_empty() -> None:
    assert nondominated_ranks(np.zeros((0, 2))).tolist() == []


@pytest.mark.parametrize(("F", "expected"), [
    # one front: gaps / range per objective, averaged over the two objectives
    ([[0, 4], [1, 3], [3, 1], [4, 0]], [INF, 0.75, 0.75, INF]),
    # uneven: p1 = (4/10 + 8/10) / 2, p2 = (9/10 + 6/10) / 2
    ([[0, 10], [1, 6], [4, 2], [10, 0]], [INF, 0.6, 0.75, INF]),
    # fronts of 4, 2 and 1 points: the small fronts are all boundary
    (LAYERED, [INF, 0.75, 0.75, INF, INF, INF, INF]),
    # duplicate (1, 1): the first copy gets (2/3 + 5/6) / 2, the second 0; (2, .5) gets (2/3 + 1/3) / 2
    ([[0, 3], [1, 1], [3, 0], [1, 1], [2, 0.5]], [INF, 0.75, INF, 0.0, 0.5]),
    ([[1, 1], [1, 1], [1, 1]], [INF, 0.0, 0.0]),
    # an objective constant within the front adds 0 and does not divide by zero
    ([[1, 5, 4], [2, 5, 3], [4, 5, 1], [5, 5, 0]], [INF, 0.5, 0.5, INF]),  # (.75 + 0 + .75) / 3
    # failed rows get 0 and do not bound the finite ones
    ([[0, 1], [1, 0], [INF, INF], [INF, INF]], [INF, INF, 0.0, 0.0]),
    ([[2, 2]], [INF]),
])
def test_crowding_distances(F: list, expected: list) -> None:
    F_ = np.array(F, dtype=float)
    got = crowding_distances(F_, nondominated_ranks(F_))
    np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize(("F", "mu", "expected"), [
    (LAYERED, 0, []),
    (LAYERED, 2, [0, 3]),  # boundary points first
    (LAYERED, 3, [0, 3, 1]),  # equal crowding: the lower index
    (LAYERED, 4, [0, 3, 1, 2]),
    (LAYERED, 5, [0, 3, 1, 2, 4]),  # whole first front, then the second front by index
    (LAYERED, 7, [0, 3, 1, 2, 4, 5, 6]),
    (LAYERED, 10, [0, 3, 1, 2, 4, 5, 6]),
    ([[0, 10], [1, 6], [4, 2], [10, 0]], 3, [0, 3, 2]),  # larger crowding survives
    ([[1, 1], [1, 1], [2, 0], [0, 2]], 3, [2, 3, 0]),  # the duplicate copy goes first
    ([[INF, INF], [1, 1], [INF, INF]], 2, [1, 0]),
])
def test_survive(F: list, mu: int, expected: list) -> None:
    assert survive(np.array(F, dtype=float), mu).tolist() == expected


@pytest.mark.parametrize(("keys", "F", "expected"), [
    (["a", "b", "c"], [[1, 1], [2, 2], [3, 3]], [0, 1, 2]),  # nothing repeated: every row
    (["a", "b", "a", "a"], [[1, 1], [2, 2], [1, 1], [1, 1]], [0, 1]),  # copies of a: the first
    (["a", "a", "b"], [[INF, INF], [1, 1], [2, 2]], [1, 2]),  # a failed first copy: the one with results
    (["a", "a"], [[INF, INF], [INF, INF]], [0]),  # every copy failed: the first
    ([], np.zeros((0, 2)), []),
])
def test_distinct_keeps_one_row_per_cell(keys: list, F: list, expected: list) -> None:
    got = distinct(keys, np.array(F, dtype=float))
    assert got.dtype.kind == "i" and got.tolist() == expected


@pytest.mark.parametrize(("ranks", "crowding", "winner"), [
    ([0, 1], [0.0, INF], 0),  # rank first
    ([1, 0], [INF, 0.0], 1),
    ([0, 0], [1.0, 2.0], 1),  # then crowding
    ([3], [0.0], 0),  # one candidate plays itself
])
def test_tournament_known_winner(ranks: list, crowding: list, winner: int) -> None:
    got = tournament(np.array(ranks), np.array(crowding), 20, np.random.default_rng(0))
    assert got.shape == (20,) and set(got.tolist()) == {winner}


def test_tournament_is_seeded_and_never_picks_the_worst() -> None:
    ranks, crowding = np.arange(10), np.zeros(10)
    a = tournament(ranks, crowding, 500, np.random.default_rng(7))
    b = tournament(ranks, crowding, 500, np.random.default_rng(7))
    assert a.tolist() == b.tolist()
    assert 9 not in a and 0 in a  # the worst loses every tournament; the best wins all it plays


@pytest.mark.parametrize(("F", "ref", "area"), [
    ([[1, 1]], [3, 3], 4.0),
    ([[1, 2], [2, 1]], [3, 3], 3.0),  # two 2x1 boxes overlapping in a 1x1 square
    ([[1, 1], [2, 2]], [3, 3], 4.0),  # a dominated point adds nothing
    ([[1, 1], [4, 0]], [3, 3], 4.0),  # a point outside ref is ignored
    ([[3, 1]], [3, 3], 0.0),  # on the boundary: no volume
    ([[INF, INF], [2, 2]], [3, 3], 1.0),
    ([[1, 1, 1]], [2, 3, 4], 6.0),
])
def test_hypervolume(F: list, ref: list, area: float) -> None:
    assert hypervolume(np.array(F, dtype=float), np.array(ref, dtype=float)) == pytest.approx(area)


def test_hypervolume_empty() -> None:
    assert hypervolume(np.zeros((0, 2)), np.array([1.0, 1.0])) == 0.0


def test_objective_matrix() -> None:
    rows = [{"val": 0.9, "params": 10, "macs_per_step": 7},
            {"val": 0.8, "params": 5, "macs": 3, "diverged": False},
            {"val": 0.5, "params": 1, "macs": 1, "diverged": True},
            {"val": float("nan"), "params": 1, "macs": 1},
            {"val": -INF, "params": 1, "macs": 1}]
    F = objective_matrix(rows, ["val", "params", "macs"], {"val": "max"})
    np.testing.assert_array_equal(F, [[-0.9, 10, 7], [-0.8, 5, 3], [INF] * 3, [INF] * 3, [INF] * 3])
    assert objective_matrix(rows[:1], ["params"], {"params": "max"}).tolist() == [[-10.0]]
    assert set(OBJECTIVES) == {"val", "params", "macs", "weighted_nodes", "latency"}


@pytest.mark.parametrize(("names", "directions", "rows", "match"), [
    (["flops"], {}, [{}], "'names'.*Allowed: val, params, macs, weighted_nodes, latency.*Received: flops"),
    ([], {}, [{}], "'names'.*non-empty"),
    (["val"], {}, [{"val": 1.0}], r"directions\['val'\].*Allowed: min, max.*Received: task.*HINT"),
    (["params"], {"params": "up"}, [{"params": 1}], r"directions\['params'\].*Received: up"),
    (["val", "latency"], {"val": "min"}, [{"val": 1.0}], r"'rows\[0\]'.*'latency'"),
])
def test_objective_matrix_errors(names: list, directions: dict, rows: list, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        objective_matrix(rows, names, directions)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: nondominated_ranks(np.array([[1.0, np.nan]])), "'F'.*NaN.*HINT: build F with objective_matrix"),
    (lambda: nondominated_ranks(np.array([1.0, 2.0])), "'F'.*2-D"),
    (lambda: survive(np.ones((2, 2)), -1), "'mu'.*int >= 0"),
    (lambda: crowding_distances(np.ones((2, 2)), np.zeros(3)), r"'ranks'.*shape \(2,\)"),
    (lambda: hypervolume(np.ones((1, 2)), np.ones(3)), "'ref'.*2 finite numbers"),
    (lambda: tournament(np.zeros(2), np.zeros(2), 1, 0), "'rng'.*Generator"),
    (lambda: tournament(np.zeros(2), np.zeros(3), 1, np.random.default_rng()), "'crowding'"),
    (lambda: distinct(["a"], np.ones((2, 2))), "'keys'.*2 keys, one per row of F"),
])
def test_errors(call, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        call()
