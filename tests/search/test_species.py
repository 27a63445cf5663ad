"""Speciation: niche assignment, the adaptive threshold, survival and tournaments within niches, and
the species state a generation leaves."""

from __future__ import annotations

import doctest
import json
from collections import Counter

import numpy as np
import pytest

from growrnn.errors import ArgumentError
from growrnn.genome import library_cell
from growrnn.search import selection, species
from growrnn.search.config import SpeciationConfig
from growrnn.search.selection import niche_ranks, survive, survive_in_niches
from growrnn.search.species import (
    adapt_threshold,
    initial_species,
    population_niches,
    select_in_niches,
    solve_threshold,
    speciate,
    species_stats,
)
from growrnn.search.storage import CandidateRow


def test_docstring_examples() -> None:
    assert doctest.testmod(species).failed == 0
    assert doctest.testmod(selection).failed == 0


# Bray-Curtis distances: A-B 0.5, A-C 1, B-C 1, A-A2 0.2, B-A2 0.6
A, B, C, A2 = Counter(a=2), Counter(a=1, b=1), Counter(c=2), Counter(a=3)


@pytest.mark.parametrize(("profiles", "reps", "threshold", "next_id", "expected"), [
    ([A, B, C], {}, 0.6, 0, [0, 0, 1]),              # B joins A's species, C founds one
    ([A, B, C], {}, 0.4, 0, [0, 1, 2]),              # a tighter threshold: three species
    ([A, B, C], {}, 0.5, 0, [0, 1, 2]),              # closer than the threshold, strictly
    ([A, B, C], {5: C}, 0.6, 6, [6, 6, 5]),          # carried representative 5; new ids from 6
    ([B], {0: A, 1: B}, 0.6, 2, [1]),                # the nearest representative, not the first
    ([A], {3: A2, 1: A2}, 0.6, 4, [1]),              # equally near: the older (lower) id
    ([A2, A, B], {}, 0.3, 0, [0, 0, 1]),             # a founder represents its species at once
    ([], {2: A}, 0.3, 3, []),
])
def test_speciate_assigns_exact_niches(profiles: list, reps: dict, threshold: float, next_id: int,
                                       expected: list[int]) -> None:
    assert speciate(profiles, reps, threshold, next_id) == expected


@pytest.mark.parametrize(("threshold", "count", "target", "step", "expected"), [
    (0.3, 7, 5, 0.05, 0.35),   # too many species: wider niches
    (0.3, 3, 5, 0.05, 0.25),   # too few: narrower
    (0.3, 5, 5, 0.05, 0.3),    # met
    (0.3, 9, None, 0.05, 0.3),  # no target: fixed
    (0.98, 9, 5, 0.05, 1.0),   # kept within [step, 1]
    (0.06, 1, 5, 0.05, 0.05),
])
def test_adapt_threshold_moves_toward_the_target(threshold: float, count: int, target: int | None, step: float,
                                                 expected: float) -> None:
    assert adapt_threshold(threshold, count, target, step) == pytest.approx(expected)


# A chain of fronts: row k is dominated by every row before it (ranks 0..4).
CHAIN = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])


@pytest.mark.parametrize(("F", "niches", "mu", "elites", "expected"), [
    (CHAIN, [0, 0, 1, 1, 2], 3, 1, [0, 2, 4]),      # each niche keeps its best; plain survival: [0, 1, 2]
    (CHAIN, [0, 0, 1, 1, 2], 4, 1, [0, 1, 2, 4]),   # one place left: the global order fills it
    (CHAIN, [0, 0, 1, 1, 2], 4, 2, [0, 1, 2, 4]),   # second bests after every first: 0, 2, 4, then 1
    (CHAIN, [0, 0, 1, 1, 2], 2, 1, [0, 2]),         # more niches than places: the best niches' bests
    (CHAIN, [2, 2, 2, 2, 0], 2, 1, [0, 4]),         # labels are names, not an order
    (CHAIN, [0, 0, 0, 0, 0], 3, 1, [0, 1, 2]),      # one niche: plain survival
    (CHAIN, [0, 1, 2, 3, 4], 3, 0, [0, 1, 2]),      # elites 0: plain survival
    (CHAIN, [0, 1, 2, 3, 4], 9, 1, [0, 1, 2, 3, 4]),
    # a failed row (+inf) is no niche's best: niche 2 has no finite row, so nothing is kept for it
    (np.vstack([CHAIN[:4], [[np.inf, np.inf]]]), [0, 0, 1, 1, 2], 3, 1, [0, 1, 2]),
    # one front: the best of niche 1 is its boundary point (crowding inf), row 3
    (np.array([[0.0, 4.0], [1.0, 3.0], [2.0, 2.0], [4.0, 0.0]]), [0, 0, 1, 1], 2, 1, [0, 3]),
])
def test_survive_in_niches_keeps_each_niches_best(F: np.ndarray, niches: list[int], mu: int, elites: int,
                                                  expected: list[int]) -> None:
    assert survive_in_niches(F, niches, mu, elites).tolist() == expected


def test_survive_in_niches_with_one_niche_is_survive() -> None:
    F = np.random.default_rng(0).random((12, 2))
    assert survive_in_niches(F, [7] * 12, 5).tolist() == survive(F, 5).tolist()


def test_niche_ranks_are_each_niches_own() -> None:
    ranks, crowding = niche_ranks(CHAIN, [0, 0, 1, 1, 2])
    assert ranks.tolist() == [0, 1, 0, 1, 0]
    assert np.isinf(crowding).all(), "every rank of a two-point niche is a boundary point"
    ranks, _ = niche_ranks(CHAIN, [0, 0, 0, 0, 0])
    assert ranks.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("profiles", "reps", "target", "expected"), [
    ([A, B, C], {}, 3, 2 ** -20),      # three species at any threshold: the smallest
    ([A, B, C], {}, 2, 0.5),           # B joins A once 0.5 is no longer the threshold's bound
    ([A, B, C], {}, 1, 1.0),           # C shares nothing with A: never one species
    ([A2, A, B], {}, 1, 0.6),          # A2 represents: A is 0.2 away, B 0.6
    ([B], {0: A, 1: C}, 1, 2 ** -20),  # one profile is one species
])
def test_solve_threshold_finds_the_smallest_that_meets_the_target(profiles: list, reps: dict, target: int,
                                                                  expected: float) -> None:
    t = solve_threshold(profiles, reps, 2, target)
    assert t == pytest.approx(expected, abs=2 ** -19)
    if t < 1.0:  # met at t, and not just below it
        assert len(set(speciate(profiles, reps, t, 2))) <= target
        assert t < 2 ** -19 or len(set(speciate(profiles, reps, t - 2 ** -18, 2))) > target


def test_a_solved_threshold_holds_the_target_every_generation() -> None:
    rows = [_row(1, "lstm"), _row(2, "gru"), _row(3, "dual_lstm"), _row(4, "mgu"), _row(5, "elman")]
    F = np.array([[1.0, 5.0], [2.0, 4.0], [0.5, 6.0], [3.0, 3.0], [9.0, 9.0]])
    config = SpeciationConfig(threshold=0.3, target_species=2, threshold_rule="solve")
    lookup = {r.id: r for r in rows}
    keep, state = select_in_niches(rows, F, 4, config, initial_species(config), 0, lookup.__getitem__, {})
    assert len(state["species"]) == 2 and state["threshold"] == state["used"] > 0.3
    lookup[6] = _row(6, "indrnn")
    rows2 = [lookup[i] for i in [*(rows[k].id for k in keep), 6]]
    _, state2 = select_in_niches(rows2, np.vstack([F[keep], [[0.1, 0.1]]]), 4, config, state, 1,
                                 lookup.__getitem__, {})
    assert len(state2["species"]) <= 2


def _row(i: int, cell: str) -> CandidateRow:
    g = library_cell(cell)
    return CandidateRow(i, g.key, g.to_json(), g.to_text(), (), "init", 0, 0, "done", None, None, None, None, 1,
                        None, None, None)


def test_select_in_niches_leaves_an_exact_species_state() -> None:
    # distances: lstm-dual_lstm 0.23, gru-mgu 0.33, every other pair > 0.4
    rows = [_row(1, "lstm"), _row(2, "gru"), _row(3, "dual_lstm"), _row(4, "mgu"), _row(5, "elman")]
    # dual_lstm, lstm, gru, mgu on the first front (in NSGA-II order: dual_lstm and mgu at its ends,
    # then gru, then lstm); elman dominated
    F = np.array([[1.0, 5.0], [2.0, 4.0], [0.5, 6.0], [3.0, 3.0], [9.0, 9.0]])
    config = SpeciationConfig(threshold=0.3, target_species=2, threshold_step=0.05)
    lookup = {r.id: r for r in rows}
    keep, state = select_in_niches(rows, F, 3, config, initial_species(config), 0, lookup.__getitem__, {})
    # species 0 {lstm, dual_lstm}, 1 {gru}, 2 {mgu}, 3 {elman}: each species' best by that order is
    # dual_lstm, mgu, gru, elman, and three places go to the first three; the LSTM, on the front, is
    # its species' second and goes
    assert keep.tolist() == [2, 3, 1]
    assert state == {"threshold": pytest.approx(0.35), "used": 0.3, "next_id": 4, "species": [
        {"id": 0, "representative": 3, "members": [3], "born": 0},
        {"id": 1, "representative": 2, "members": [2], "born": 0},
        {"id": 2, "representative": 4, "members": [4], "born": 0}]}
    assert species_stats(state) == {"species": 3.0, "species_threshold": 0.3}
    assert json.loads(json.dumps(state)) == state, "the state is JSON as it is"

    # the next generation: representatives and ids carried over, the MGU joins its own species
    # (0.33 from the GRU's, 0 from its own), an IndRNN dominating all founds species 4
    lookup[6] = _row(6, "indrnn")
    rows2 = [lookup[i] for i in (2, 3, 4, 6)]
    F2 = np.array([[2.0, 4.0], [0.5, 6.0], [3.0, 3.0], [0.1, 0.1]])
    keep2, state2 = select_in_niches(rows2, F2, 3, config, state, 1, lookup.__getitem__, {})
    assert keep2.tolist() == [3, 1, 2]
    assert state2 == {"threshold": pytest.approx(0.4), "used": pytest.approx(0.35), "next_id": 5, "species": [
        {"id": 0, "representative": 3, "members": [3], "born": 0},
        {"id": 2, "representative": 4, "members": [4], "born": 0},
        {"id": 4, "representative": 6, "members": [6], "born": 1}]}


def test_select_in_niches_exact_survivors() -> None:
    rows = [_row(1, "lstm"), _row(2, "dual_lstm"), _row(3, "gru")]
    F = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # a chain: plain survival of 2 keeps lstm, dual
    config = SpeciationConfig(threshold=0.3)
    keep, state = select_in_niches(rows, F, 2, config, initial_species(config), 0,
                                   {r.id: r for r in rows}.__getitem__, {})
    assert keep.tolist() == [0, 2], "the GRU's species keeps its only cell, the LSTM's its best"
    assert [(s["id"], s["members"]) for s in state["species"]] == [(0, [1]), (1, [3])]


def test_population_niches_reads_the_members() -> None:
    state = {"threshold": 0.3, "next_id": 3, "species": [{"id": 0, "representative": 4, "members": [4, 9], "born": 0},
                                                          {"id": 2, "representative": 7, "members": [7], "born": 1}]}
    assert population_niches(state, [9, 7, 4]).tolist() == [0, 2, 0]
    with pytest.raises(ArgumentError, match=r"'population'.*members of a species.*Received: \[5\]"):
        population_niches(state, [4, 5])


@pytest.mark.parametrize(("call", "match"), [
    (lambda: speciate([A], {}, 0.0, 0), r"'threshold'.*\(0, 1\].*Received: 0.0.*HINT: genome distances"),
    (lambda: speciate([A], {}, 1.5, 0), r"'threshold'.*Received: 1.5"),
    (lambda: speciate([A], {3: A}, 0.3, 2), r"'next_id'.*above every representative's \(> 3\).*Received: 2"),
    (lambda: adapt_threshold(0.3, 2, 0, 0.05), r"'target'.*an int >= 1.*Received: 0"),
    (lambda: adapt_threshold(0.3, 2, 1, 0.0), r"'step'.*Received: 0.0"),
    (lambda: survive_in_niches(CHAIN, [0, 1], 2), r"'niches'.*5 ints.*Received: shape \(2,\)"),
    (lambda: survive_in_niches(CHAIN, [0.5] * 5, 2), r"'niches'.*dtype float64"),
    (lambda: survive_in_niches(CHAIN, [0] * 5, 2, elites=-1), r"'elites'.*an int >= 0"),
    (lambda: niche_ranks(CHAIN, [[0]] * 5), r"'niches'.*shape \(5, 1\)"),
])
def test_bad_arguments_are_argument_errors(call, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        call()
