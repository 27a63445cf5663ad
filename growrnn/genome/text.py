"""The text form of a genome: the parser (:func:`parse`); the formatter is
:func:`growrnn.genome.formatter.emit` (re-exported here).

Grammar (one equation per line, ``#`` starts a comment)::

    line   := NAME ["'"] "=" expr
    expr   := term (("+" | "-") term)*
    term   := factor ("*" factor)*
    factor := NUMBER | "-" NUMBER | NAME "(" expr ")" | NAME ["'"] | "(" expr ")"

Node ids are given in reading order (line by line, each expression in pre-order), so weighted
call sites are numbered as the text reads; names may be used before the line that defines them.

Constants are finite numbers. Expressions nest at most ``MAX_DEPTH`` (100) levels deep, and no
output may sit more than ``MAX_DEPTH`` nodes above a terminal (through locals too): deeper genomes
are refused with the line, never with a ``RecursionError``.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass

from growrnn.errors import (
    ArityError,
    CycleError,
    DuplicateAssignmentError,
    GenomeSyntaxError,
    StateNotWrittenError,
    UndefinedNameError,
    UnknownFunctionError,
)
from growrnn.genome.formatter import emit
from growrnn.genome.graph import Genome, make_genome
from growrnn.genome.nodes import ACTIVATIONS, BINARY, MAX_DEPTH, TERMINALS, WEIGHTED, Node
from growrnn.genome.validate import unknown_function_hint

__all__ = ["parse", "emit"]

_OP_OF = {v: k for k, v in BINARY.items()}
_TOKEN = re.compile(r"""(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
                       |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
                       |(?P<op>[-+*()=,'])
                       |(?P<space>[ \t\r]+)
                       |(?P<bad>.)""", re.X)


# --------------------------------------------------------------------------------- parser
@dataclass
class _Tok:
    kind: str
    text: str
    line: int
    col: int


def _tokenize(line_text: str, lineno: int) -> list[_Tok]:
    code = line_text.split("#", 1)[0]
    toks: list[_Tok] = []
    for m in _TOKEN.finditer(code):
        kind = m.lastgroup or "bad"
        if kind == "space":
            continue
        if kind == "bad":
            raise GenomeSyntaxError(f"unexpected character {m.group()!r}", line=lineno,
                                    column=m.start() + 1,
                                    hint="equations use names, numbers, + - *, parentheses and '")
        toks.append(_Tok(kind, m.group(), lineno, m.start() + 1))
    return toks


# AST: ("call", name, [args], tok) | ("bin", op, left, right, tok) | ("num", value, tok)
#      | ("name", ident, primed, tok)
class _LineParser:
    def __init__(self, toks: list[_Tok], lineno: int, eol_col: int):
        self.toks, self.i, self.lineno, self.eol_col = toks, 0, lineno, eol_col
        self.depth = 0  # parentheses and calls open at the current token

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise GenomeSyntaxError(f"the expression nests deeper than {MAX_DEPTH} parentheses and calls",
                                    line=tok.line, column=tok.col,
                                    hint="name an inner part as a local on its own line, or simplify it")

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise GenomeSyntaxError("the equation ends too early", line=self.lineno,
                                    column=self.eol_col, hint="complete the expression")
        self.i += 1
        return tok

    def expect(self, text: str) -> _Tok:
        tok = self.take()
        if tok.text != text:
            raise GenomeSyntaxError(f"expected '{text}', found '{tok.text}'", line=tok.line,
                                    column=tok.col)
        return tok

    def expr(self) -> tuple:
        node = self.term()
        while (tok := self.peek()) is not None and tok.text in "+-" and tok.kind == "op":
            self.take()
            node = ("bin", _OP_OF[tok.text], node, self.term(), tok)
        return node

    def term(self) -> tuple:
        node = self.factor()
        while (tok := self.peek()) is not None and tok.text == "*":
            self.take()
            node = ("bin", "mul", node, self.factor(), tok)
        return node

    def number(self, tok: _Tok, sign: float = 1.0) -> tuple:
        value = sign * float(tok.text)
        if not math.isfinite(value):
            raise GenomeSyntaxError(f"the constant {tok.text} is not a finite number", line=tok.line,
                                    column=tok.col, hint="write a finite constant such as 1 or 0.5")
        return ("num", value, tok)

    def factor(self) -> tuple:
        tok = self.take()
        if tok.kind == "num":
            return self.number(tok)
        if tok.text == "-" and (nxt := self.peek()) is not None and nxt.kind == "num":
            self.take()
            return (*self.number(nxt, -1.0)[:2], tok)
        if tok.text == "(":
            self.nest(tok)
            inner = self.expr()
            self.expect(")")
            self.depth -= 1
            return inner
        if tok.kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                self.nest(tok)
                self.take()
                args = []
                if (p := self.peek()) is not None and p.text != ")":
                    args.append(self.expr())
                    while (p := self.peek()) is not None and p.text == ",":
                        self.take()
                        args.append(self.expr())
                self.expect(")")
                self.depth -= 1
                return ("call", tok.text, args, tok)
            if nxt is not None and nxt.text == "'":
                self.take()
                return ("name", tok.text, True, tok)
            return ("name", tok.text, False, tok)
        raise GenomeSyntaxError(f"expected a value, found '{tok.text}'", line=tok.line, column=tok.col,
                                hint="a value is a name, a number, a function call or (expression)")


_RESERVED_HINT = {"x": "x is the input; name the value something else",
                  "h": "h is the output at t-1; to give the next output write h' = ..."}


def parse(text: str) -> Genome:
    """Parse genome text into a validated :class:`Genome`.

    >>> g = parse("h' = tanh(affine(x) + affine(h))")
    >>> g.states
    ('h',)
    """
    if not isinstance(text, str):
        from growrnn.errors import ArgumentError
        raise ArgumentError("text", allowed="genome text (str)", received=type(text).__name__,
                            hint="for a file, pass Path(...).read_text()")
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write: an encoding mark, not text
    if "\x00" in text:
        at = text.index("\x00")
        raise GenomeSyntaxError("the text holds NUL characters: it looks like a binary file, not genome text",
                                line=text.count("\n", 0, at) + 1, column=at - text.rfind("\n", 0, at),
                                hint="a genome is a UTF-8 text file of equations like h' = tanh(affine(x) + affine(h))")
    lines: list[tuple[str, tuple, _Tok]] = []
    targets: dict[str, _Tok] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        toks = _tokenize(raw, lineno)
        if not toks:
            continue
        target, primed, tok = _target(toks, lineno)
        name = target + ("'" if primed else "")
        if name in targets:
            first = targets[name]
            raise DuplicateAssignmentError(f"'{name}' is assigned twice (first on line {first.line})",
                                           line=tok.line, column=tok.col,
                                           hint="give each value its own name; assign each state once")
        targets[name] = tok
        p = _LineParser(toks, lineno, len(raw.split("#", 1)[0]) + 1)
        p.i = 3 if primed else 2
        ast = p.expr()
        if (extra := p.peek()) is not None:
            raise GenomeSyntaxError(f"unexpected '{extra.text}' after the expression", line=extra.line,
                                    column=extra.col, hint="one equation per line")
        lines.append((name, ast, tok))
    for name, tok in targets.items():
        if not name.endswith("'") and name + "'" in targets:
            raise DuplicateAssignmentError(
                f"'{name}' is both a local and a memory state (`{name}'` on line "
                f"{targets[name + chr(39)].line})", line=tok.line, column=tok.col,
                hint="rename the local")
    return _Builder(targets).build(lines)


def _target(toks: list[_Tok], lineno: int) -> tuple[str, bool, _Tok]:
    tok = toks[0]
    if tok.kind != "name":
        raise GenomeSyntaxError(f"an equation starts with a name, found '{tok.text}'", line=lineno,
                                column=tok.col, hint="write `name = expression`")
    primed = len(toks) > 1 and toks[1].text == "'"
    eq = toks[2 if primed else 1] if len(toks) > (2 if primed else 1) else None
    if eq is None or eq.text != "=":
        where = eq or tok
        raise GenomeSyntaxError(f"expected '=' after '{tok.text}{chr(39) if primed else ''}'",
                                line=lineno, column=where.col, hint="write `name = expression`")
    if tok.text in ACTIVATIONS or tok.text in WEIGHTED:
        raise GenomeSyntaxError(f"'{tok.text}' is a function name and cannot be assigned",
                                line=lineno, column=tok.col, hint="choose another name")
    if tok.text == "x" or (tok.text == "h" and not primed):
        raise GenomeSyntaxError(f"'{tok.text}' cannot be assigned", line=lineno, column=tok.col,
                                hint=_RESERVED_HINT[tok.text])
    return tok.text, primed, tok


class _Builder:
    """Turns line ASTs into nodes with reading-order ids, then resolves names."""

    def __init__(self, targets: dict[str, _Tok]):
        self.targets = targets
        self.nodes: dict[int, list] = {}  # id -> [op, args, name, value]
        self.pos: dict[int, tuple[int, int]] = {}
        self.ids = itertools.count()
        self.terminal: dict[tuple, int] = {}

    def build(self, lines: list[tuple[str, tuple, _Tok]]) -> Genome:
        roots: dict[str, int | tuple] = {}
        for name, ast, _ in lines:
            roots[name] = self.node(ast)
        resolved: dict[str, int] = {}

        def resolve(ref: int | tuple, chain: tuple[str, ...] = ()) -> int:
            if isinstance(ref, int):
                return ref
            _, name, tok = ref
            if len(chain) > MAX_DEPTH:
                raise GenomeSyntaxError(f"a chain of more than {MAX_DEPTH} names each defined as the next",
                                        line=tok.line, column=tok.col,
                                        hint="use the value directly instead of renaming it")
            if name in chain:
                raise CycleError(f"cycle within one step through {' -> '.join((*chain, name))}",
                                 line=tok.line, column=tok.col,
                                 hint="a name cannot be defined as itself")
            if name not in resolved:
                resolved[name] = resolve(roots[name], (*chain, name))
            return resolved[name]

        for nid, (_op, args, _, _) in list(self.nodes.items()):
            self.nodes[nid][1] = tuple(resolve(a) for a in args)
        bindings = [(name, resolve(roots[name], (name,))) for name, _, _ in lines]
        nodes = [Node(nid, op, args, name, value) for nid, (op, args, name, value) in self.nodes.items()]
        bpos = {name: (tok.line, tok.col) for name, tok in self.targets.items()}
        return make_genome(nodes, bindings, self.pos, bpos)

    def new(self, op: str, tok: _Tok, name: str | None = None, value: float | None = None) -> int:
        key = (op, name, value)
        if op in TERMINALS and key in self.terminal:
            return self.terminal[key]
        nid = next(self.ids)
        self.nodes[nid] = [op, (), name, value]
        self.pos[nid] = (tok.line, tok.col)
        if op in TERMINALS:
            self.terminal[key] = nid
        return nid

    def node(self, ast: tuple, depth: int = 1) -> int | tuple:
        kind = ast[0]
        if depth > MAX_DEPTH:
            tok = ast[-1]
            raise GenomeSyntaxError(f"the expression is more than {MAX_DEPTH} operations deep",
                                    line=tok.line, column=tok.col,
                                    hint="split a long sum or product into locals on their own lines")
        if kind == "num":
            return self.new("const", ast[2], value=ast[1])
        if kind == "name":
            return self.name(ast[1], ast[2], ast[3])
        if kind == "bin":
            nid = self.new(ast[1], ast[4])
            self.nodes[nid][1] = (self.node(ast[2], depth + 1), self.node(ast[3], depth + 1))
            return nid
        _, fname, args, tok = ast
        if fname not in WEIGHTED and fname not in ACTIVATIONS:
            raise UnknownFunctionError(
                f"unknown function '{fname}'. Allowed: {', '.join(sorted([*WEIGHTED, *ACTIVATIONS]))}",
                line=tok.line, column=tok.col, hint=unknown_function_hint(fname))
        if len(args) != 1:
            raise ArityError(f"'{fname}' takes 1 argument, received {len(args)}", line=tok.line,
                             column=tok.col,
                             hint="functions take one expression; combine values with + - * first")
        nid = self.new(fname, tok)
        self.nodes[nid][1] = (self.node(args[0], depth + 1),)
        return nid

    def name(self, ident: str, primed: bool, tok: _Tok) -> int | tuple:
        if primed:
            if ident + "'" not in self.targets:
                raise UndefinedNameError(f"'{ident}'' is used but never assigned", line=tok.line,
                                         column=tok.col, hint=f"add a line `{ident}' = ...`")
            return ("ref", ident + "'", tok)
        if ident == "x":
            return self.new("x", tok)
        if ident in ACTIVATIONS or ident in WEIGHTED:
            raise GenomeSyntaxError(f"'{ident}' is a function; call it as {ident}(...)",
                                    line=tok.line, column=tok.col)
        if ident in self.targets:
            return ("ref", ident, tok)
        if ident == "h" or ident + "'" in self.targets:
            return self.new("state", tok, name=ident)
        locals_ = [t for t in self.targets if not t.endswith("'")]
        close = difflib.get_close_matches(ident, locals_, n=1, cutoff=0.6)
        if close:
            raise UndefinedNameError(f"name '{ident}' is not defined", line=tok.line, column=tok.col,
                                     hint=f"did you mean '{close[0]}'?")
        raise StateNotWrittenError(
            f"state '{ident}' is read but never written", line=tok.line, column=tok.col,
            hint=f"give its next value with a line `{ident}' = ...`, or define a local `{ident} = ...`")
