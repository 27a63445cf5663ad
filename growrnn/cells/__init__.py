"""The cell compiler: genome -> plan -> ``GenomeRNN`` module, plus the library cells."""

from growrnn.cells.rnn import GenomeRNN, as_genome, register_activation
from growrnn.genome.library import dual_lstm, elman, gru, indrnn, library_cell, lstm, mgu

__all__ = ["GenomeRNN", "as_genome", "register_activation", "lstm", "gru", "elman", "mgu", "indrnn", "dual_lstm",
           "library_cell"]
