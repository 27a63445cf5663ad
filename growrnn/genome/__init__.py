"""Genomes: the text/JSON format of a cell's step equations, validation, canonical keys, library
cells, complexity figures, random genomes and a structural distance. Standard library only (no torch)."""

from growrnn.genome.complexity import Complexity, complexity
from growrnn.genome.distance import PROFILE_DEPTH, genome_distance, profile_distance, structure_profile
from growrnn.genome.generate import GenomeSpace, random_genome
from growrnn.genome.graph import ACTIVATIONS, WEIGHTED, Genome, Node, make_genome, register_activation
from growrnn.genome.library import (
    LIBRARY,
    dual_lstm,
    elman,
    gru,
    indrnn,
    library_cell,
    library_equivalent,
    lstm,
    mgu,
)
from growrnn.genome.source import load
from growrnn.genome.text import parse

__all__ = [
    "ACTIVATIONS", "WEIGHTED", "Genome", "Node", "make_genome", "register_activation", "parse",
    "Complexity", "complexity", "GenomeSpace", "random_genome", "LIBRARY", "library_cell", "library_equivalent",
    "lstm", "gru", "elman", "mgu", "indrnn", "dual_lstm", "load", "PROFILE_DEPTH", "genome_distance",
    "profile_distance", "structure_profile",
]
