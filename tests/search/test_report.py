"""Search reporting: TensorBoard scalars/figures/text per generation, the fixed hypervolume
reference, the Pareto figure's baselines, and exporting cells that growrnn reads back."""

import csv
import math
import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import growrnn
from growrnn.errors import ArgumentError, SearchError
from growrnn.genome.generate import random_genome
from growrnn.genome.graph import Genome
from growrnn.genome.library import library_cell
from growrnn.search.export import export_front
from growrnn.search.report import first_front, log_generation, pareto_figure, reference_point
from growrnn.search.selection import hypervolume, objective_matrix
from growrnn.search.storage import Archive

OBJ = ["val", "params"]
# name -> (val, params, in the population); the expected first front is r0, lstm, gru, r1 (best val first)
ROWS = {"lstm": (0.30, 400, True), "gru": (0.35, 300, True), "elman": (0.60, 100, False),
        "r0": (0.20, 900, True), "r1": (0.50, 150, True), "r2": (0.40, 500, True), "r3": (math.nan, 200, True)}


class Built(NamedTuple):
    db: Archive
    ids: dict[str, int]
    population: list[int]


def _genome(name: str, rng: random.Random) -> Genome:
    return library_cell(name) if not name.startswith("r") else random_genome(rng)


@pytest.fixture
def built(tmp_path: Path):
    rng = random.Random(7)
    with Archive.open(tmp_path / "search.db", {"seed": 0, "task": "adding"}) as db:
        ids: dict[str, int] = {}
        for name, (val, params, _) in ROWS.items():
            g = _genome(name, rng)
            i = db.add(g.to_json(), g.to_text(), g.key, [ids["lstm"]] if name == "r2" else [], "init", 0, 0)
            metrics = {"val": val, "test": val + 0.01, "params": params, "macs_per_step": 2 * params,
                       "diverged": math.isnan(val), "direction": "min", "genome": g.to_text(), "curve": []}
            db.finish(i, metrics, [], {"val": val, "params": params}, seconds=0.1)
            ids[name] = i
        g = random_genome(rng)
        ids["pending"] = db.add(g.to_json(), g.to_text(), g.key, [], "init", 0, 0)
        yield Built(db, ids, [ids[n] for n, row in ROWS.items() if row[2]] + [ids["pending"]])


def _F(built: Built, names: list[str]) -> np.ndarray:
    return objective_matrix([built.db.get(built.ids[n]).objectives or {} for n in names], OBJ, {"val": "min"})


def test_log_generation_writes_scalars_figures_and_text(tmp_path: Path, built: Built) -> None:
    stats = log_generation(tmp_path / "tb", built.db, 3, built.population, OBJ)
    ids = built.ids
    assert stats["front"] == [ids["r0"], ids["lstm"], ids["gru"], ids["r1"]]
    assert (stats["front_size"], stats["evaluated"], stats["best_val"]) == (4, 6, 0.20)
    assert stats["ref"] == pytest.approx([0.5 * 1.1, 900 * 1.1])
    finite = _F(built, ["lstm", "gru", "r0", "r1", "r2"])
    assert stats["hypervolume"] == pytest.approx(hypervolume(finite, np.array(stats["ref"])))
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"search/hypervolume", "search/best_val", "search/front_size", "search/evaluated"} <= set(tags["scalars"])
    assert {"search/pareto", *(f"search/front_cell_{k}" for k in range(4))} == set(tags["images"])
    assert "search/front/text_summary" in tags["tensors"]
    (event,) = acc.Scalars("search/hypervolume")
    assert (event.step, event.value) == (3, pytest.approx(stats["hypervolume"], rel=1e-6))
    text = acc.Tensors("search/front/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"cell {ids['gru']}" in text and "sigmoid(affine(x) + affine(h))" in text and "| val | params |" in text


@pytest.mark.parametrize(("ref", "expected"), [(None, [0.55, 990.0]), ([1.0, 1000.0], [1.0, 1000.0]),
                                               ((0.3, 500), [0.3, 500.0])])
def test_reference_is_fixed_when_given(tmp_path: Path, built: Built, ref, expected) -> None:
    stats = log_generation(tmp_path, built.db, 1, built.population, OBJ, baselines=(), ref=ref)
    assert stats["ref"] == pytest.approx(expected)
    F = _F(built, ["lstm", "gru", "r0", "r1", "r2"])
    assert stats["hypervolume"] == pytest.approx(hypervolume(F, np.array(expected)))


def test_empty_population_reports_zero(tmp_path: Path, built: Built) -> None:
    stats = log_generation(tmp_path, built.db, 0, [built.ids["pending"]], OBJ, baselines=())
    assert stats == {"hypervolume": 0.0, "best_val": None, "front_size": 0, "evaluated": 0, "ref": None, "front": []}


def test_extra_scalars_are_logged_and_returned(tmp_path: Path, built: Built) -> None:
    stats = log_generation(tmp_path, built.db, 2, built.population, OBJ, baselines=(),
                           scalars={"species": 3, "species_threshold": 0.25})
    assert (stats["species"], stats["species_threshold"]) == (3.0, 0.25)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("search/species")] == [(2, 3.0)]
    assert [(e.step, e.value) for e in acc.Scalars("search/species_threshold")] == [(2, 0.25)]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"ref": [1.0]}, ArgumentError, "'ref'.*2 finite numbers"),
    ({"ref": [1.0, math.inf]}, ArgumentError, "'ref'"),
    ({"direction": "up"}, ArgumentError, "'direction'.*Allowed: min, max"),
    ({"baselines": ("lsmt",)}, ArgumentError, "'baselines'.*lstm"),
    ({"gen": -1}, ArgumentError, "'gen'"),
    ({"scalars": {"front": 1}}, ArgumentError, "'scalars'.*names other than hypervolume.*Received: \\['front'\\]"),
])
def test_log_generation_errors(tmp_path: Path, built: Built, kwargs: dict, error: type, match: str) -> None:
    args = {"gen": 0, **kwargs}
    with pytest.raises(error, match=match):
        log_generation(tmp_path, built.db, population=built.population, objectives=OBJ, **args)


def test_pareto_figure_marks_baselines(built: Built) -> None:
    from growrnn.search.report import find_baselines
    rows = [built.db.get(i) for i in built.population if built.db.get(i).status == "done"]
    found = find_baselines(built.db, ("lstm", "gru", "elman", "mgu"))  # mgu is not in the archive
    assert list(found) == ["LSTM", "GRU", "Elman"] and found["Elman"].id == built.ids["elman"]
    fig = pareto_figure(rows, OBJ, "min", found)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["population", "first front", "LSTM", "GRU", "Elman"]
    markers = {c.get_paths()[0].vertices.round(3).tobytes() for c in ax.collections[1:]}
    assert len(ax.collections) == 4 and len(markers) == 3  # three distinct baseline markers
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [150, 300, 400, 900]  # the front, joined in order of params


@pytest.mark.parametrize(("F", "expected"), [
    ([[0.5, 10.0], [0.2, 30.0]], [0.55, 33.0]),
    ([[-0.9, 10.0], [math.inf, math.inf]], [-0.81, 11.0]),  # a negated accuracy: 10 % further out
    ([[math.inf, math.inf]], None),
])
def test_reference_point(F: list, expected) -> None:
    ref = reference_point(np.array(F))
    assert ref == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(("direction", "expected"), [("min", [0, 1]), ("max", [2, 1])])
def test_first_front_orders_by_val(direction: str, expected: list) -> None:
    rows = [{"val": 0.1, "params": 9}, {"val": 0.5, "params": 1}, {"val": 0.9, "params": 5},
            {"val": 0.05, "params": 2, "diverged": True}]
    assert first_front(rows, OBJ, direction) == expected


@pytest.mark.parametrize(("front_only", "names"), [(True, ["r0", "lstm", "gru", "r1"]),
                                                  (False, ["r0", "lstm", "gru", "r1", "r2", "r3"])])
def test_export_round_trips(tmp_path: Path, built: Built, front_only: bool, names: list) -> None:
    built.db.save_generation(0, built.population, {}, {})
    paths = export_front(built.db.path, tmp_path / "out", front_only=front_only)
    ids = [built.ids[n] for n in names]
    assert [p.name for p in paths] == [f"cell_{i}.{ext}" for i in ids for ext in ("txt", "json")] + ["front.csv"]
    for i in ids:
        stored = built.db.get(i)
        text = (tmp_path / "out" / f"cell_{i}.txt").read_text()
        assert text.startswith(f"# growrnn search cell {i}") and f"# key: {stored.key}" in text
        assert growrnn.parse(text).to_text() == stored.genome_text
        assert Genome.from_json((tmp_path / "out" / f"cell_{i}.json").read_text()).to_json() == stored.genome_json
    with (tmp_path / "out" / "front.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in table] == ids
    assert (table[0]["val"], table[0]["params"], table[0]["macs"]) == ("0.2", "900", "1800")


@pytest.mark.parametrize("front_only", [True, False])
def test_a_genome_held_twice_is_exported_once(tmp_path: Path, built: Built, front_only: bool) -> None:
    """A population can hold one genome under two ids (a child the search had evaluated before):
    the export writes it once, under the first id, in the first's place."""
    lstm = built.db.get(built.ids["lstm"])
    again = built.db.add(lstm.genome_json, lstm.genome_text, lstm.key, [], "init", 1, 0)
    built.db.finish(again, dict(lstm.metrics or {}), [], dict(lstm.objectives or {}), seconds=0.1)
    built.db.save_generation(0, [*built.population, again], {}, {})
    export_front(built.db.path, tmp_path / "out", front_only=front_only)
    with (tmp_path / "out" / "front.csv").open() as fh:
        ids = [int(r["id"]) for r in csv.DictReader(fh)]
    assert ids.count(built.ids["lstm"]) == 1 and again not in ids and len(ids) == len(set(ids))
    assert ids[:4] == [built.ids[n] for n in ("r0", "lstm", "gru", "r1")]


def test_an_export_into_a_file_is_named(tmp_path: Path, built: Built) -> None:
    built.db.save_generation(0, list(built.population), {}, {})
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ArgumentError, match=r"'out'.*a folder.*taken.*HINT: that path is a file"):
        export_front(built.db.path, tmp_path / "taken")


def test_a_library_cell_rediscovered_is_named(tmp_path: Path, built: Built) -> None:
    """A search's child that is an LSTM with a negated recurrent matrix in its output gate (as the
    PTB search's cell 121) is exported, and shown on the front in TensorBoard, as the library's
    lstm up to its weights; the seeded LSTM itself and new cells are not marked."""
    twin = growrnn.parse(growrnn.genome.LIBRARY["lstm"].replace("o = sigmoid(affine(x) + affine(h))",
                                                                 "o = sigmoid(affine(x) - affine(h))"))
    i = built.db.add(twin.to_json(), twin.to_text(), twin.key, [built.ids["lstm"]], "point_mutation", 1, 0)
    built.db.finish(i, {"val": 0.1, "params": 2000, "direction": "min"}, [], {"val": 0.1, "params": 2000}, seconds=0.1)
    built.db.save_generation(0, [*built.population, i], {}, {})
    export_front(built.db.path, tmp_path / "out", front_only=False)
    with (tmp_path / "out" / "front.csv").open() as fh:
        same = {int(r["id"]): r["same_as"] for r in csv.DictReader(fh)}
    assert same[i] == "lstm" and same[built.ids["lstm"]] == "" and same[built.ids["r0"]] == ""
    assert "# the library's lstm up to the values of its weights" in (tmp_path / "out" / f"cell_{i}.txt").read_text()
    log_generation(tmp_path / "tb", built.db, 1, [*built.population, i], OBJ, baselines=())
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("search/front/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"cell {i} (key `{twin.key}`, point_mutation, parents [{built.ids['lstm']}]; the library's lstm" in text
    assert text.count("the library's") == 1


def test_the_front_is_over_the_searchs_own_objectives(tmp_path: Path) -> None:
    """Candidates record more figures among their objectives than a search may select on: the
    exported front is the one over the config's objectives (here val alone: one cell), as the
    confirmation's is, not over every recorded figure (where the cheaper cell is on it too)."""
    rng = random.Random(3)
    with Archive.open(tmp_path / "s.db", {"seed": 0, "task": "adding", "objectives": ["val"]}) as db:
        ids = []
        for val, macs in ((0.2, 900), (0.3, 100)):
            g = random_genome(rng)
            i = db.add(g.to_json(), g.to_text(), g.key, [], "init", 0, 0)
            db.finish(i, {"val": val, "direction": "min"}, [], {"val": val, "params": 50, "macs": macs}, seconds=0.1)
            ids.append(i)
        db.save_generation(0, ids, {}, {})
    export_front(tmp_path / "s.db", tmp_path / "out")
    with (tmp_path / "out" / "front.csv").open() as fh:
        assert [int(r["id"]) for r in csv.DictReader(fh)] == ids[:1]


def test_exported_cells_load_in_a_model(tmp_path: Path, built: Built) -> None:
    from growrnn.task import TaskSpec
    from growrnn.training.model import SequenceModel
    built.db.save_generation(0, built.population, {}, {})
    export_front(built.db.path, tmp_path)
    spec = TaskSpec("toy", "features", 3, "real", 2, "mse")
    for ext in ("txt", "json"):
        model = SequenceModel(spec, cell=str(tmp_path / f"cell_{built.ids['lstm']}.{ext}"), hidden_size=4)
        assert model.genome.key == library_cell("lstm").key


def test_export_errors(tmp_path: Path, built: Built) -> None:
    with pytest.raises(SearchError, match="no search archive at .*HINT: pass the --db the search was run with"):
        export_front(tmp_path / "missing.db", tmp_path / "out")
    with pytest.raises(SearchError, match="no saved generation.*HINT"):
        export_front(built.db.path, tmp_path / "out")
    built.db.save_generation(0, [built.ids["pending"]], {}, {})
    with pytest.raises(SearchError, match="no finished candidate.*HINT"):
        export_front(built.db.path, tmp_path / "out")
    (tmp_path / "junk.db").write_text("not sqlite")
    with pytest.raises(SearchError, match="not a readable SQLite|not a growrnn search archive"):
        export_front(tmp_path / "junk.db", tmp_path / "out")
