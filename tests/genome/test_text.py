"""Parsing, formatting and the JSON form."""

import json

import pytest

import growrnn as gr
from growrnn import errors as E
from growrnn.genome import LIBRARY, Genome, library_cell, parse


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_round_trips(name: str) -> None:
    g = library_cell(name)
    assert parse(g.to_text()) == g
    back = Genome.from_json(g.to_json())
    assert back == g and back.to_dict() == g.to_dict()  # node ids survive JSON


@pytest.mark.parametrize(("text", "states", "n_weighted"), [
    (LIBRARY["lstm"], ("h", "c"), 8),
    (LIBRARY["gru"], ("h",), 6),
    (LIBRARY["dual_lstm"], ("h", "c", "m"), 10),
    ("h' = relu(affine(x) + diag(h))  # trailing comment\n\n", ("h",), 2),
    ("m' = 0.5 * m + -0.25 * tanh(linear(x))\nh' = tanh(affine(h) + m')", ("h", "m"), 2),
])
def test_states_and_weighted_calls(text: str, states: tuple, n_weighted: int) -> None:
    g = parse(text)
    assert g.states == states
    assert len(g.weighted) == n_weighted


def test_weight_order_is_reading_order_even_with_forward_references() -> None:
    g = parse("h' = tanh(a + linear(h))\na = affine(x) * diag(h)\n")
    kinds = [(g.nodes[w].op, g.nodes[g.nodes[w].args[0]].op) for w in g.weighted]
    assert kinds == [("linear", "state"), ("affine", "x"), ("diag", "state")]
    again = parse(g.to_text())
    assert [again.nodes[w].op for w in again.weighted] == ["linear", "affine", "diag"]


def test_shared_unnamed_node_gets_a_line_and_keeps_sharing() -> None:
    text = "t = affine(x)\nh' = tanh(t) * sigmoid(t)\n"
    g = parse(text)
    assert g.to_text() == text
    assert len(g.weighted) == 1


@pytest.mark.parametrize(("text", "cls", "match", "line", "column"), [
    ("", E.EmptyGenomeError, "empty", None, None),
    ("# only a comment\n\n", E.EmptyGenomeError, "h' = tanh", None, None),
    ("h' = sigmod(affine(x))", E.UnknownFunctionError, "unknown function 'sigmod'.*did you mean 'sigmoid'", 1, 6),
    ("h' = tanh(affine(x), h)", E.ArityError, "'tanh' takes 1 argument, received 2", 1, 6),
    ("h' = tanh()", E.ArityError, "received 0", 1, 6),
    ("i = sigmoid(affine(x))\nh' = i * tanh(affine(ii))", E.UndefinedNameError, "'ii' is not defined.*'i'", 2, 22),
    ("h' = tanh(affine(x) + c')", E.UndefinedNameError, "c'' is used but never assigned", 1, 23),
    ("h' = tanh(affine(x) + affine(c))", E.StateNotWrittenError, "state 'c' is read but never written", 1, 30),
    ("c' = tanh(affine(x))\nh' = tanh(affine(h) + c')", E.StateNotReadError,
     "state 'c' is written but never read", 1, 1),
    ("c' = c + tanh(affine(x))", E.MissingOutputError, "no output `h'`", None, None),
    ("h' = tanh(x + affine(h))", E.InputOutsideWeightError, "x .* outside a weighted function.*affine\\(x\\)", 1, 13),
    ("h' = tanh(x)", E.InputOutsideWeightError, "depends on x outside a weighted function", 1, 1),
    ("h' = diag(x)", E.InputOutsideWeightError, "'diag' .* cannot take x", 1, 6),
    ("h' = 1 + 2", E.InputOutsideWeightError, "is a constant", 1, 1),
    ("a = b + affine(x)\nb = a * affine(h)\nh' = tanh(a)", E.CycleError,
     "cycle within one step through a -> b\\. HINT", None, None),  # h' reads the cycle: not on it
    ("a = b + affine(x)\nb = a * affine(h)\nc' = c + affine(a)\nh' = tanh(c')", E.CycleError,
     "cycle within one step through a -> b\\. HINT", None, None),
    ("h' = tanh(affine(x))\nh' = tanh(affine(h))", E.DuplicateAssignmentError, "'h'' is assigned twice", 2, 1),
    ("c = affine(x)\nc' = c * h\nh' = tanh(c')", E.DuplicateAssignmentError, "both a local and a memory state", 1, 1),
    ("t = tanh(affine(h))\nh' = tanh(affine(x))", E.UnusedLocalError, "local 't' is assigned but never used", 1, 1),
    ("h' = tanh(affine(x) $ h)", E.GenomeSyntaxError, "unexpected character '\\$'", 1, 21),
    ("h = tanh(affine(x))", E.GenomeSyntaxError, "'h' cannot be assigned.*h' = ", 1, 1),
    ("x = affine(h)\nh' = tanh(x)", E.GenomeSyntaxError, "'x' cannot be assigned", 1, 1),
    ("h' tanh(affine(x))", E.GenomeSyntaxError, "expected '='", 1, 4),
    ("h' = tanh(affine(x)", E.GenomeSyntaxError, "expected '\\)'|ends too early", 1, None),
    ("tanh = affine(x)\nh' = tanh", E.GenomeSyntaxError, "function name", 1, 1),
])
def test_invalid_text_is_rejected_with_position_and_hint(text, cls, match, line, column) -> None:
    with pytest.raises(cls, match=match) as info:
        parse(text)
    assert isinstance(info.value, E.GenomeError) and isinstance(info.value, ValueError)
    if line is not None:
        assert info.value.line == line
    if column is not None:
        assert info.value.column == column
    assert "HINT:" in str(info.value) or cls in (E.GenomeSyntaxError,)


def _json(nodes, bindings) -> str:
    return json.dumps({"format": "growrnn-genome", "version": 1, "nodes": nodes, "bindings": bindings})


@pytest.mark.parametrize(("text", "cls", "match"), [
    ("{", E.GenomeSyntaxError, "does not decode"),
    ('{"format": "other"}', E.GenomeSyntaxError, "not a growrnn genome JSON"),
    ('{"format": "growrnn-genome", "version": 9}', E.GenomeSyntaxError, "unsupported genome JSON version 9"),
    (_json([{"id": 0}], [["h'", 0]]), E.GenomeSyntaxError, "malformed"),
    (_json([{"id": 0, "op": "tanh", "args": [1]}, {"id": 1, "op": "add", "args": [0, 2]},
            {"id": 2, "op": "x"}], [["h'", 0]]), E.CycleError, "cycle"),
    (_json([{"id": 0, "op": "softmax", "args": [1]}, {"id": 1, "op": "x"}], [["h'", 0]]),
     E.UnknownFunctionError, "softmax"),
    (_json([{"id": 0, "op": "tanh", "args": [1, 1]}, {"id": 1, "op": "x"}], [["h'", 0]]), E.ArityError, "takes 1"),
    (_json([{"id": 0, "op": "affine", "args": [1]}, {"id": 1, "op": "x"}, {"id": 2, "op": "const", "value": 1}],
           [["h'", 0]]), E.GenomeSyntaxError, "node 2 .* not used"),
    (_json([{"id": 0, "op": "add", "args": [1, 2]}, {"id": 1, "op": "affine", "args": [3]},
            {"id": 2, "op": "affine", "args": [4]}, {"id": 3, "op": "x"}, {"id": 4, "op": "x"}], [["h'", 0]]),
     E.GenomeSyntaxError, "nodes 3 and 4 are both x"),
    (_json([{"id": 0, "op": "affine", "args": [7]}], [["h'", 0]]), E.GenomeSyntaxError, "node 7, which does not exist"),
])
def test_invalid_json_is_rejected(text: str, cls: type, match: str) -> None:
    with pytest.raises(cls, match=match):
        Genome.from_json(text)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(gr.ArgumentError, match="'text'.*Received: bytes"):
        parse(b"h' = tanh(affine(x))")  # type: ignore[arg-type]


# Hostile sizes: past MAX_DEPTH a genome is refused with its line, never a RecursionError.
_CHAIN = "a0 = affine(x) + affine(h)\n" + "".join(f"a{k} = tanh(a{k - 1})\n" for k in range(1, 300)) + "h' = a299\n"
_ALIASES = "a0 = affine(x) + affine(h)\n" + "".join(f"a{k} = a{k - 1}\n" for k in range(1, 300)) + "h' = tanh(a299)\n"


@pytest.mark.parametrize(("text", "match", "line"), [
    ("h' = " + "tanh(" * 400 + "affine(x) + affine(h)" + ")" * 400, "nests deeper than 100", 1),
    ("h' = tanh(" + "(" * 400 + "affine(x)" + ")" * 400 + " + affine(h))", "nests deeper than 100", 1),
    ("h' = tanh(" + " + ".join(["affine(h)"] * 1000) + " + affine(x))", "more than 100 operations deep", 1),
    ("h' = tanh(" + " * ".join(["affine(h)"] * 1000) + " + affine(x))", "more than 100 operations deep", 1),
    (_CHAIN, "'a98' is 101 nodes deep, over the limit of 100", 99),
    (_ALIASES, "chain of more than 100 names", None),
    ("h' = tanh(affine(x) + 1e999 * affine(h))", "constant 1e999 is not a finite number", 1),
    ("h' = tanh(affine(x) + -1e999 * affine(h))", "constant 1e999 is not a finite number", 1),
    ("h' = tanh(affine(x))\n\x00\x01binary", "NUL characters.*binary file", 2),
])
def test_hostile_text_is_refused_with_its_line(text: str, match: str, line: int | None) -> None:
    with pytest.raises(E.GenomeSyntaxError, match=match) as info:
        parse(text)
    if line is not None:
        assert info.value.line == line


def test_a_genome_at_the_depth_limit_parses_formats_and_keys() -> None:
    from growrnn.genome.graph import MAX_DEPTH
    # depth: h' = tanh^(k)(affine(x) + affine(h)) is k + 3 nodes deep
    text = "h' = " + "tanh(" * (MAX_DEPTH - 3) + "affine(x) + affine(h)" + ")" * (MAX_DEPTH - 3)
    g = parse(text)
    assert parse(g.to_text()) == g and g.key


def test_a_leading_byte_order_mark_is_ignored() -> None:
    assert parse("\ufeffh' = tanh(affine(x) + affine(h))") == library_cell("elman")


def _const_json(value: object) -> str:
    g = parse("h' = tanh(affine(x) + 0.5 * affine(h))").to_dict()
    for node in g["nodes"]:  # type: ignore[union-attr]
        if node["op"] == "const":
            node["value"] = value
    return json.dumps(g)


def _binding_json(name: str) -> str:
    g = parse("a = affine(x) + affine(h)\nh' = tanh(a)").to_dict()
    g["bindings"][0][0] = name  # type: ignore[index]
    return json.dumps(g)


@pytest.mark.parametrize(("text", "match"), [
    (_const_json("nan"), "constant nan is not a finite number"),
    (_const_json("inf"), "constant inf is not a finite number"),
    (_const_json("-Infinity"), "constant -inf is not a finite number"),
    (_const_json(float("nan")), "constant nan is not a finite number"),  # json.dumps writes NaN
    (_binding_json("not an id"), "binding name 'not an id' is not an identifier"),
    (_binding_json("a\nh' = x"), "is not an identifier"),
    (_binding_json("été"), "is not an identifier"),
    (_binding_json("x"), "'x' cannot be assigned"),
    (_binding_json("tanh"), "'tanh' cannot be assigned"),
    (_binding_json("h"), "'h' cannot be assigned"),
])
def test_hostile_json_is_refused(text: str, match: str) -> None:
    with pytest.raises(E.GenomeSyntaxError, match=match):
        Genome.from_json(text)

