"""Speciation (NEAT: Stanley & Miikkulainen 2002; beside novelty in Rawal & Miikkulainen 2018), an
option of the search: cells are grouped into *species* of similar structure, and selection
happens within them, so a new design is not crowded out by the front's well-trained cells
before it has had a few generations to improve.

**Niches, NEAT-style.** Each species has a *representative* cell, carried from one generation to
the next. Every generation, each cell of the pool (parents plus offspring), in candidate-id order,
joins the species of the nearest representative closer than ``threshold``
(:func:`~growrnn.genome.distance.genome_distance`, ties to the older species); a cell near none
founds a new species and is its representative for the cells after it. After survival, a
species' representative is its best surviving cell, and a species left without survivors ends.
With ``target_species`` set, ``threshold`` then moves ``threshold_step`` toward that many species
(up when there are more, down when fewer), as in neat-python and SharpNEAT. That step is slow
against a small population that diversifies fast (measured on JSB: from generation 3 on, every
one of 20 cells was its own species while the threshold crept from 0.36 to 0.5, and selection
within niches of one is no selection); with ``threshold_rule: solve`` each generation's threshold
is instead the smallest that speciates the pool into at most ``target_species`` species
(:func:`solve_threshold`, a bisection), the representatives carried as before.

*Why not clustering?* k-medoids or agglomerative clustering would redraw every niche from
scratch each generation: niche ids, and so the story of a lineage, would not carry over, and a
whole cluster could change hands because one new cell arrived. NEAT's representatives keep a
species stable, cost one distance per cell and representative, and have one readable knob.

**Selection within niches.** Survival keeps each species' ``elites`` best cells before the rest
of the population is filled by the usual NSGA-II order
(:func:`~growrnn.search.selection.survive_in_niches`), and parents are chosen by tournaments on
ranks and crowding computed within each species (:func:`~growrnn.search.selection.niche_ranks`),
so the best cell of a small species wins as often as the best of a large one: the
multi-objective counterpart of NEAT's fitness sharing.

**State.** The species live in the loop's generation state (``state["species"]``: the threshold,
the next species id, and each species' id, representative, members and birth generation as
candidate ids), saved as JSON with the population in one write, so a ``kill -9`` never leaves
niches that disagree with the population, and a resumed search carries on with the same ones.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from growrnn.errors import ArgumentError, check_int, is_number
from growrnn.genome.distance import profile_distance, structure_profile
from growrnn.genome.graph import Genome
from growrnn.search.selection import survive_in_niches
from growrnn.search.storage import CandidateRow

if TYPE_CHECKING:  # pragma: no cover
    from growrnn.search.config import SpeciationConfig

__all__ = ["adapt_threshold", "initial_species", "population_niches", "select_in_niches", "solve_threshold", "speciate",
           "species_stats"]
log = logging.getLogger(__name__)


def _check_unit(name: str, value: object) -> float:
    if not is_number(value) or not 0.0 < value <= 1.0:
        raise ArgumentError(name, allowed="a number in (0, 1]", received=value,
                            hint="genome distances lie in [0, 1]; one variation is about 0.04-0.25 away")
    return float(value)


def speciate(profiles: Sequence[Counter[str]], representatives: Mapping[int, Counter[str]], threshold: float,
             next_id: int) -> list[int]:
    """The species id of each profile (:func:`~growrnn.genome.distance.structure_profile`).

    In order, each profile joins the species whose representative is nearest and closer than
    ``threshold`` (ties to the lower id); a profile near none founds species ``next_id`` (then
    ``next_id + 1``, ...) and represents it for the profiles after it.

    >>> from growrnn.genome import library_cell, structure_profile
    >>> cells = [structure_profile(library_cell(n)) for n in ("gru", "lstm", "dual_lstm", "mgu")]
    >>> speciate(cells, {}, 0.3, 0)   # the dual LSTM is 0.23 from the LSTM, the MGU 0.33 from the GRU
    [0, 1, 1, 2]
    """
    threshold = _check_unit("threshold", threshold)
    next_id = check_int("next_id", next_id, 0)
    reps = dict(sorted(representatives.items()))
    if reps and next_id <= max(reps):
        raise ArgumentError("next_id", allowed=f"an id above every representative's (> {max(reps)})", received=next_id)
    labels = []
    for profile in profiles:
        best, nearest = None, threshold
        for sid, rep in reps.items():
            d = profile_distance(profile, rep)
            if d < nearest:
                best, nearest = sid, d
        if best is None:
            best, next_id = next_id, next_id + 1
            reps[best] = profile
        labels.append(best)
    return labels


def adapt_threshold(threshold: float, species: int, target: int | None, step: float) -> float:
    """NEAT's dynamic threshold: ``threshold + step`` when there are more ``species`` than
    ``target`` (fewer, larger species next time), ``threshold - step`` when there are fewer, kept
    within ``[step, 1]``; unchanged when ``target`` is ``None`` or met.

    >>> adapt_threshold(0.3, 7, 5, 0.05), adapt_threshold(0.05, 1, 5, 0.05)
    (0.35, 0.05)
    """
    threshold = _check_unit("threshold", threshold)
    step = _check_unit("step", step)
    check_int("species", species, 0)
    if target is None or species == check_int("target", target, 1):
        return threshold
    moved = threshold + step if species > target else threshold - step
    return round(min(1.0, max(step, moved)), 12)  # no 0.36000000000000004 in the logs


def solve_threshold(profiles: Sequence[Counter[str]], representatives: Mapping[int, Counter[str]], next_id: int,
                    target: int, iterations: int = 20) -> float:
    """The smallest threshold (to ``2 ** -iterations``) at which :func:`speciate` puts ``profiles``
    (with the ``representatives`` carried) into at most ``target`` species; 1 if none does
    (cells that share no subtree are 1 apart, so each founds a species at any threshold).

    >>> from growrnn.genome import library_cell, structure_profile
    >>> cells = [structure_profile(library_cell(n)) for n in ("gru", "lstm", "dual_lstm", "mgu")]
    >>> t = solve_threshold(cells, {}, 0, 2)
    >>> len(set(speciate(cells, {}, t, 0))), len(set(speciate(cells, {}, t - 1e-5, 0)))
    (2, 3)
    """
    check_int("target", target, 1)

    def count(threshold: float) -> int:
        return len(set(speciate(profiles, representatives, threshold, next_id)))

    lo, hi = 0.0, 1.0
    if count(hi) > target:
        return hi
    for _ in range(check_int("iterations", iterations, 1)):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if count(mid) <= target else (mid, hi)
    return hi


def initial_species(config: SpeciationConfig) -> dict[str, Any]:
    """The species state before generation 0: no species yet, the configured threshold."""
    return {"threshold": _check_unit("speciation.threshold", config.threshold), "next_id": 0, "species": []}


def population_niches(state: Mapping[str, Any], population: Sequence[int]) -> np.ndarray:
    """The species id of each candidate of ``population`` (ids), from a species ``state`` whose
    members they are; shape ``(len(population),)`` int."""
    of = {cid: s["id"] for s in state["species"] for cid in s["members"]}
    missing = [cid for cid in population if cid not in of]
    if missing:
        raise ArgumentError("population", allowed="candidates that are members of a species in the state",
                            received=missing, hint="pass the population saved with this species state")
    return np.array([of[cid] for cid in population], dtype=int)


def select_in_niches(rows: Sequence[CandidateRow], F: np.ndarray, mu: int, config: SpeciationConfig,
                     state: Mapping[str, Any], gen: int, lookup: Callable[[int], CandidateRow],
                     cache: dict[str, Counter[str]]) -> tuple[np.ndarray, dict[str, Any]]:
    """Speciate the pool ``rows`` (parents plus offspring, by id) against ``state``'s
    representatives and keep ``mu`` of them with :func:`~growrnn.search.selection.survive_in_niches`.

    Args:
        rows: the pool; ``F`` its minimised objective matrix ``(len(rows), m)``.
        mu: how many survive.
        config: the search's :class:`~growrnn.search.config.SpeciationConfig`.
        state: the species state after the previous generation (:func:`initial_species` before
            generation 0).
        gen: this generation (new species record it as their birth).
        lookup: candidate id -> its row (``Archive.get``), for the representatives.
        cache: canonical key -> profile, kept by the caller across generations.

    Returns:
        ``(keep, new_state)``: the survivors' indices into ``rows``, best first, and the species
        state after this generation (``threshold`` for the next one, ``used``: this one's).
    """
    def profile(row: CandidateRow) -> Counter[str]:
        if row.key not in cache:  # one canonical form, one profile
            cache[row.key] = structure_profile(Genome.from_json(row.genome_json))
        return cache[row.key]

    threshold = float(state["threshold"])
    old = {s["id"]: s for s in state["species"]}
    reps = {sid: profile(lookup(s["representative"])) for sid, s in old.items()}
    pool = [profile(r) for r in rows]
    if config.threshold_rule == "solve" and config.target_species is not None:
        threshold = solve_threshold(pool, reps, int(state["next_id"]), config.target_species)
    labels = speciate(pool, reps, threshold, int(state["next_id"]))
    keep = survive_in_niches(F, labels, mu, config.elites)
    members: dict[int, list[int]] = {}
    for k in keep:  # best first, so each species' first member is its best survivor
        members.setdefault(labels[k], []).append(rows[k].id)
    species = [{"id": sid, "representative": ids[0], "members": ids,
                "born": old[sid]["born"] if sid in old else gen} for sid, ids in sorted(members.items())]
    following = threshold if config.threshold_rule == "solve" else \
        adapt_threshold(threshold, len(species), config.target_species, config.threshold_step)
    new_state = {"threshold": following,
                 "used": threshold, "next_id": max([int(state["next_id"]) - 1, *labels]) + 1, "species": species}
    log.info("generation %d: %d species (sizes %s) at threshold %.3g", gen, len(species),
             [len(s["members"]) for s in species], threshold)
    return keep, new_state


def species_stats(state: Mapping[str, Any] | None) -> dict[str, float] | None:
    """What a generation's report shows of a species state: ``{"species": how many species the
    population holds, "species_threshold": the threshold they were formed at}`` (``None`` for
    ``None``: a search without speciation)."""
    if state is None:
        return None
    return {"species": float(len(state["species"])), "species_threshold": float(state.get("used", state["threshold"]))}
