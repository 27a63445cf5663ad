"""The dependency arrows of DESIGN.md: what a fresh interpreter imports, and which package's source
may import which (read from the source, module-level and function-level imports alike)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "growrnn"

#: Each layer, lowest first: a module may import its own layer and the layers before it, never
#: one after it (errors.py imports nothing from growrnn, files.py only errors.py).
LAYERS = [("errors", "files"), ("executors",), ("genome",), ("cells",), ("growth",), ("task", "training"),
          ("evaluation",), ("search",), ("compare",), ("commands", "cli")]


@pytest.mark.parametrize(("module", "absent"), [
    ("growrnn", "torch"),
    ("growrnn.errors", "torch"),
    ("growrnn.files", "torch"),
    ("growrnn.executors", "torch"),
    ("growrnn.executors", "ray"),
    ("growrnn.genome", "torch"),
    ("growrnn.genome", "matplotlib"),
    ("growrnn.cells", "lightning"),
    ("growrnn.growth", "lightning"),
    ("growrnn.evaluation.config", "lightning"),
    ("growrnn.search.config", "torch"),
    ("growrnn.compare.config", "torch"),
    ("growrnn.search.variation.operators", "torch"),
])
def test_import_leaves_heavier_layers_out(module: str, absent: str) -> None:
    code = f"import sys, {module}; sys.exit(int({absent!r} in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imported {absent}"


def _imports(path: Path, type_hints: bool = True) -> set[str]:
    """The growrnn modules ``path`` imports anywhere in its source; ``type_hints``: also those
    imported only under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if not type_hints and isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m == "growrnn" or m.startswith("growrnn.")}


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((k for k, names in enumerate(LAYERS) if top in names), None)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_arrow_runs_back_up(path: Path) -> None:
    module = "growrnn." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    mine = _layer(module)
    if mine is None:
        return  # growrnn/__init__.py: lazy names of every layer
    upward = sorted(m for m in _imports(path) if (k := _layer(m)) is not None and k > mine)
    assert not upward, f"{module} (layer {LAYERS[mine]}) imports {upward}, which sit above it"


def test_compare_uses_no_private_name_of_search() -> None:
    for path in (PACKAGE / "compare").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("growrnn.search"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                parts = [p for p in node.module.split(".") if p.startswith("_")]
                assert not private and not parts, f"{path.name} imports {node.module}: {private or parts}"


def test_genome_modules_import_one_way() -> None:
    """No cycle inside growrnn/genome: the vocabulary, then validation, canonical key and
    formatter, then the DAG, then the parser and what builds on it."""
    graph = {p.stem: {m.split(".")[2] for m in _imports(p, type_hints=False) if m.startswith("growrnn.genome.")}
             for p in (PACKAGE / "genome").glob("*.py") if p.stem != "__init__"}
    order: list[str] = []
    while len(order) < len(graph):
        ready = sorted(name for name, deps in graph.items() if name not in order and deps <= set(order))
        assert ready, f"an import cycle among {sorted(set(graph) - set(order))}"
        order += ready


def test_lazy_public_names_resolve() -> None:
    import growrnn as gr
    assert gr.parse("h' = tanh(affine(x) + affine(h))").states == ("h",)
    assert gr.cells.lstm() == gr.genome.lstm()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gr.nope  # noqa: B018
