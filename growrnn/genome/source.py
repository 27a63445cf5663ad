"""The one genome loader: a library cell name, genome text, or a ``.txt``/``.json`` genome file
-> a :class:`~growrnn.genome.graph.Genome`. The CLI, ``SequenceModel`` and the search and compare
configs all read cells through :func:`load`, so a missing file, a binary file or a bad genome
gets the same clear error everywhere."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from growrnn.errors import ArgumentError, GenomeError
from growrnn.genome.graph import Genome
from growrnn.genome.library import LIBRARY, library_cell
from growrnn.genome.text import parse

__all__ = ["load", "read_genome_file"]

GENOME_SUFFIXES = (".txt", ".json")


def _looks_like_path(spec: str) -> bool:
    return Path(spec).suffix in GENOME_SUFFIXES or os.sep in spec or "/" in spec


def load(spec: Genome | str | os.PathLike[str], argument: str = "cell") -> Genome:
    """A genome from a :class:`Genome`, a library name (``"lstm"``), genome text (it holds ``=``)
    or a genome file (``.json``: the JSON form; anything else: the text form).

    ``argument`` names the option in errors (``"cell"``, ``"model.cell"``, ``"entries[0].cell"``).
    Raises :class:`~growrnn.errors.ArgumentError` for a name that is neither a library cell nor a
    file, and :class:`~growrnn.errors.GenomeError` (naming the file) for a file that is not a
    valid genome.

    >>> load("elman").states
    ('h',)
    """
    if isinstance(spec, Genome):
        return spec
    if isinstance(spec, os.PathLike):
        return read_genome_file(Path(spec), argument)
    if not isinstance(spec, str):
        raise ArgumentError(argument, allowed="a Genome, a library cell name, genome text or a genome file",
                            received=type(spec).__name__)
    if "=" in spec:
        return parse(spec)
    if spec in LIBRARY:
        return library_cell(spec)
    path = Path(spec)
    if path.exists() or _looks_like_path(spec):
        return read_genome_file(path, argument)
    close = difflib.get_close_matches(spec, LIBRARY, n=1)
    raise ArgumentError(argument, allowed=f"a library cell ({', '.join(sorted(LIBRARY))}), genome text or a "
                        "genome file", received=spec,
                        hint=f"did you mean '{close[0]}'?" if close else "check the spelling, or the file's path")


def read_genome_file(path: Path, argument: str = "cell") -> Genome:
    """Read and parse one genome file; every failure names the file."""
    allowed = "an existing, readable genome file (.txt equations or .json)"
    if not path.exists():
        raise ArgumentError(argument, allowed=allowed, received=str(path),
                            hint=f"there is no such file (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise ArgumentError(argument, allowed=allowed, received=f"{path} (a folder)",
                            hint="name a file inside it, e.g. a cell_<id>.txt that growrnn search export wrote")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ArgumentError(argument, allowed=allowed, received=str(path),
                            hint=f"it cannot be read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")  # -sig: a byte-order mark is not part of the text
    except UnicodeDecodeError as err:
        raise GenomeError(f"{path} is not a UTF-8 text file (byte 0x{data[err.start]:02x} at offset {err.start})",
                          hint="a genome file holds equations like h' = tanh(affine(x) + affine(h)), or the "
                               "JSON that Genome.to_json() writes") from None
    try:
        return Genome.from_json(text) if path.suffix == ".json" else parse(text)
    except GenomeError as err:
        err.args = (f"{path}: {err}",)  # same class, line and column; the message names the file
        raise
