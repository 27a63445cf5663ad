"""The growrnn command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from growrnn.cli import main
from growrnn.genome import library_cell


def test_show_library_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "lstm", "--input-size", "10", "--hidden-size", "20"]) == 0
    out = capsys.readouterr().out
    assert "c' = f * c + i * g" in out
    assert "params=2,560" in out and "states: h, c" in out


@pytest.mark.parametrize("suffix", [".txt", ".json"])
def test_show_genome_file(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    g = library_cell("mgu")
    path = tmp_path / f"cell{suffix}"
    path.write_text(g.to_json() if suffix == ".json" else g.to_text())
    assert main(["show", str(path)]) == 0
    assert g.to_text() in capsys.readouterr().out


@pytest.mark.parametrize(("text", "match"), [
    ("lsmt", "invalid argument 'cell'.*a library cell"),
])
def test_show_bad_cell(text: str, match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", text]) == 2
    assert "growrnn: error:" in capsys.readouterr().err


def test_show_invalid_genome_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("h' = tanh(x)\n")
    assert main(["show", str(bad)]) == 2
    assert "line 1, column 1" in capsys.readouterr().err


def test_bench_cells_quick_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    assert main(["bench", "cells", "--quick", "--batch", "4", "--steps", "5", "--layers", "1", "--out", str(out)]) == 0
    table = out.read_text()
    for needle in ("| 64 | nn.LSTM | torch |", "| 64 | lstm | generic |", "| 64 | dual_lstm | hand-written |",
                   "| 64 | evolved_156 | generic |"):
        assert needle in table
    from growrnn.cells import fused
    assert ("| 64 | gru | fused |" in table) == fused.available()


def test_console_script_help() -> None:
    res = subprocess.run([sys.executable, "-m", "growrnn.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "bench" in res.stdout and "show" in res.stdout


def test_show_writes_the_diagram_as_png_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "gru", "--hidden-size", "8", "--out", str(tmp_path / "d" / "gru")]) == 0
    png, svg = tmp_path / "d" / "gru.png", tmp_path / "d" / "gru.svg"
    assert png.read_bytes()[:4] == b"\x89PNG" and b"<svg" in svg.read_bytes()[:400]
    assert f"# diagram: {png}" in capsys.readouterr().out
