"""The one genome loader: library names, text, and genome files, with every failure naming the file."""

from pathlib import Path

import pytest

from growrnn import errors as E
from growrnn.genome import library_cell, load


@pytest.mark.parametrize(("content", "suffix"), [
    (library_cell("gru").to_text().encode(), ".txt"),
    (b"\xef\xbb\xbf" + library_cell("gru").to_text().encode(), ".txt"),  # a UTF-8 byte-order mark
    (library_cell("gru").to_json().encode(), ".json"),
    (b"\xef\xbb\xbf" + library_cell("gru").to_json().encode(), ".json"),
])
def test_genome_files_load(tmp_path: Path, content: bytes, suffix: str) -> None:
    path = tmp_path / f"cell{suffix}"
    path.write_bytes(content)
    assert load(str(path)) == library_cell("gru") == load(path)


@pytest.mark.parametrize(("content", "name", "cls", "match"), [
    (None, "missing.txt", E.ArgumentError, "invalid argument 'cell'.*missing.txt.*no such file"),
    (None, "sub/missing", E.ArgumentError, "invalid argument 'cell'.*no such file"),
    ("folder", "cells", E.ArgumentError, r"cells \(a folder\)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff", "cell.txt", E.GenomeError, r"cell.txt is not a UTF-8 text.*0x89"),
    (b"h' = tanh(affine(x))\n\x00\x00", "cell.txt", E.GenomeSyntaxError, "cell.txt: line 2.*NUL"),
    (b"h' = tanh(x)\n", "cell.txt", E.InputOutsideWeightError, "cell.txt: line 1, column 1"),
    (b"[1, 2]", "cell.json", E.GenomeSyntaxError, "cell.json: not a growrnn genome JSON"),
])
def test_bad_genome_files_name_the_file(tmp_path: Path, content: object, name: str, cls: type, match: str) -> None:
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(cls, match=match):
        load(str(path))


def test_an_unknown_name_lists_the_library_and_suggests() -> None:
    with pytest.raises(E.ArgumentError, match="invalid argument 'model.cell'.*lstm.*did you mean 'lstm'"):
        load("lsmt", "model.cell")
