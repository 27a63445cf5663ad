"""The growrnn command line."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from growrnn.cli import main
from growrnn.genome import library_cell


def test_show_library_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "lstm", "--input-size", "10", "--hidden-size", "20"]) == 0
    out = capsys.readouterr().out
    assert "c' = f * c + i * g" in out
    assert "params=2,560" in out and "states: h, c" in out


@pytest.mark.parametrize(("cell", "says"), [
    ("configs/cells/ptb/confirmed/cell_121.txt", True),  # the PTB search's LSTM with a negated matrix
    ("lstm", False), ("configs/cells/ptb/confirmed/cell_143.txt", False),
])
def test_show_names_the_library_cell_a_cell_is(cell: str, says: bool, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(Path(__file__).parents[1] / cell) if "/" in cell else cell]) == 0
    out = capsys.readouterr().out
    assert f"equivalence key {library_cell('lstm').equivalence_key}" in out or not says
    assert ("# the library's lstm up to the values of its weights" in out) == says


@pytest.mark.parametrize(("argv", "says"), [
    (["-v", "search", "--help"], "--db"), (["--verbose", "grow", "--help"], "seeds"),
    (["-v", "compare", "--help"], "--config"), (["-v", "fit", "--help"], "--trainer"),
    (["-v", "tasks"], "jsb"),
])
def test_verbose_comes_before_any_subcommand(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as e:  # --help
        code = e.code
    assert code == 0
    assert says in capsys.readouterr().out


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


@pytest.mark.parametrize("command", [["show", "lstm", "--out", "{file}/sub/diagram"],
                                     ["bench", "cells", "--quick", "--out", "{file}/table.md"]])
def test_out_under_a_file_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                command: list[str]) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder should be")
    assert main([c.replace("{file}", str(blocker)) for c in command]) == 2
    err = capsys.readouterr().err
    assert "invalid argument '--out'" in err and f"HINT: {blocker} is a file, not a folder" in err


def test_tasks_gives_each_factorys_first_paragraph_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """A description that runs over its docstring's first line is not cut mid-sentence."""
    assert main(["tasks"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "copy Copy memory (Arjovsky et al.'s layout): 10 symbols, `delay - 1` blanks" in out
    assert "(targets blank until then). Metric: cross-entropy per step. flipflop The `bits`-bit" in out


@pytest.mark.parametrize("command", [["tasks"], ["show", "dual_lstm", "--json"]])
def test_output_into_a_closed_pipe_ends_quietly(command: list[str]) -> None:
    """`growrnn tasks | head -1`: the reader goes away; no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "growrnn.cli", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_show_names_a_missing_genome_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path / "cell_12.txt")]) == 2
    assert "cell_12.txt. HINT: there is no such file" in capsys.readouterr().err


def test_bench_growth_one_case_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--case`` picks the cases by name: one row, a ratio; an unknown name is refused."""
    out = tmp_path / "growth.md"
    assert main(["bench", "growth", "--quick", "--case", "ablation", "--out", str(out)]) == 0
    rows = [r for r in out.read_text().splitlines() if r.startswith("| copy")]
    assert len(rows) == 1 and "ablation regress" in rows[0] and float(rows[0].split("|")[4]) > 0
    assert main(["bench", "growth", "--quick", "--case", "no such case"]) != 0
    assert "--case" in capsys.readouterr().err


@pytest.mark.parametrize("device, said", [
    ("tpu", "Allowed: cpu or cuda"),
    pytest.param("cuda", "torch.cuda.is_available() is False",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")),
])
def test_bench_growth_names_a_device_it_cannot_use(device: str, said: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "growth", "--quick", "--device", device]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and said in err


def test_a_ctrl_c_ends_with_one_line_and_status_130(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(argv: list[str] | None) -> int:
        raise KeyboardInterrupt
    monkeypatch.setattr("growrnn.cli._dispatch", interrupted)
    assert main(["grow", "seeds"]) == 130
    assert capsys.readouterr().err == "growrnn: interrupted\n"


@pytest.mark.parametrize("command", [["fit"], ["validate"], ["grow", "seeds", "--out", "OUT"], ["search"],
                                     ["compare", "--out", "OUT"]])
def test_every_command_names_a_missing_config_file_alike(tmp_path: Path, command: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A ``--config`` that is not there is one line with the same words in every command (fit's
    parser, LightningCLI's, said 'Parser key "config": File does not exist' under its usage)."""
    missing = tmp_path / "nope.yaml"
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in command]
    for config in (["--config", str(missing)], [f"--config={missing}"]):
        assert main([*argv[:1], *config, *argv[1:]] if argv[0] != "grow" else [*argv[:2], *config, *argv[2:]]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [f"growrnn: error: invalid argument '--config'. Allowed: an existing YAML "
                                            f"file. Received: {missing}. HINT: the shipped configs are in configs/ "
                                            f"(paths start at {Path.cwd()})"]
