"""Code in the docs and the README runs, so it cannot rot: every ```python block executes, every
```genome block parses, and every script (a python block with a title, run by the reader on a
search archive: ``python check_front.py runs/search/jsb.db``) runs on a debug search's archive."""

import re
import sys
from pathlib import Path

import pytest

from growrnn.genome import parse

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.joinpath("docs").rglob("*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)
TITLE = re.compile(r'title="([\w.]+\.py)"')


def _blocks(kind: str, scripts: bool = False) -> list[tuple[str, str]]:
    """``(where, body)`` of every ``kind`` block: plain blocks, or with ``scripts`` titled ones."""
    found = []
    for page in PAGES:
        for k, (lang, info, body) in enumerate(FENCE.findall(page.read_text())):
            title = TITLE.search(info)
            if lang == kind and bool(title) == scripts:
                found.append((f"{page.relative_to(ROOT)}#{k}" + (f" ({title.group(1)})" if title else ""), body))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks("python"))
def test_python_blocks_run(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # blocks run as from the repository root (they read configs/), but write runs/ into tmp_path
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, where, "exec"), {"__name__": "docs"})  # noqa: S102


@pytest.fixture(scope="module")
def debug_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from growrnn.search import load_config, run_search

    db = tmp_path_factory.mktemp("docs") / "search.db"
    run_search(load_config(ROOT / "configs/debug/search.yaml"), db)
    return db


@pytest.mark.parametrize(("where", "code"), _blocks("python", scripts=True))
def test_scripts_run_on_a_search_archive(where: str, code: str, debug_archive: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # the debug search validates every 5 of 20 steps: 4 points per curve, so the predictor sees 2
    monkeypatch.setattr(sys, "argv", [where, str(debug_archive), "2"])
    exec(compile(code, where, "exec"), {"__name__": "__main__"})  # noqa: S102
    assert capsys.readouterr().out.strip(), f"{where} printed nothing"


@pytest.mark.parametrize(("where", "text"), _blocks("genome"))
def test_genome_blocks_parse(where: str, text: str) -> None:
    assert parse(text).states[0] == "h"


def test_there_are_blocks_to_check() -> None:
    assert len(_blocks("python")) >= 4 and len(_blocks("genome")) >= 4 and len(_blocks("python", scripts=True)) >= 3
