"""Code in the docs and the README runs, so it cannot rot: every ```python block executes and every
```genome block parses."""

import re
from pathlib import Path

import pytest

from growrnn.genome import parse

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def _blocks(kind: str) -> list[tuple[str, str]]:
    return [(f"{page.name}#{k}", body) for page in PAGES
            for k, (lang, body) in enumerate(FENCE.findall(page.read_text())) if lang == kind]


@pytest.mark.parametrize(("where", "code"), _blocks("python"))
def test_python_blocks_run(where: str, code: str) -> None:
    exec(compile(code, where, "exec"), {"__name__": "docs"})  # noqa: S102


@pytest.mark.parametrize(("where", "text"), _blocks("genome"))
def test_genome_blocks_parse(where: str, text: str) -> None:
    assert parse(text).states[0] == "h"


def test_there_are_blocks_to_check() -> None:
    assert len(_blocks("python")) >= 4 and len(_blocks("genome")) >= 4
