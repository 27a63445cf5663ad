"""Genome -> plan: which weighted calls share one matmul, what runs once over the whole sequence,
and the generated Python source of one layer.

A *group* is the set of weighted calls (affine/linear) on one argument node. Its weights are one
stacked matrix, rows in weight order (the layout the module stores and ``cell_weights`` slices);
the plan may use the rows in another order (``plan_order``), gathered once per forward.

- Groups whose argument does not depend on a state (``affine(x)``, ``linear(tanh(affine(x)))``)
  run as **one matmul over all T*B rows before the time loop**, as do element-wise nodes of the
  same kind.
- Each other group runs as one matmul per step. When its members are each added to a member of a
  sequence group (``affine(x) + affine(h)``), the precomputed block is the ``addmm`` input, and the
  step group's bias is folded into the precomputation: one ``addmm`` per step, as in hand-written
  LSTMs. ``a + diag(s)`` becomes one ``addcmul``.

Plans are torch-free to build and cached by the genome's canonical key plus its weight numbering
(two genomes sharing both compute the same function, up to the floating-point association of a
flattened ``+``/``*`` chain).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from growrnn.cells.program import Program, lower
from growrnn.genome.canonical import canonical_form
from growrnn.genome.graph import ACTIVATIONS, BINARY, Genome
from growrnn.genome.validate import INPUT, value_spaces

__all__ = ["WeightGroup", "Plan", "plan_for", "ACTIVATION_CODE"]

#: How each activation is written in generated code; ``growrnn.cells.register_activation`` adds
#: ``_act["name"]`` entries, looked up in the namespace the generated code runs in.
ACTIVATION_CODE: dict[str, str] = {"sigmoid": "torch.sigmoid", "tanh": "torch.tanh",
                                   "relu": "torch.relu", "identity": ""}


@dataclass(frozen=True)
class WeightGroup:
    """Weighted calls on one argument. ``members`` are weight indices (positions in
    ``genome.weighted``) in layout order; ``plan_order[p]`` is the layout position used at plan
    position ``p``; ``fold`` lists ``(plan offset, step group index)`` whose bias this sequence group
    absorbs; ``fused`` marks a step group computed as one addmm on a precomputed block."""

    index: int
    tag: str
    members: tuple[int, ...]
    affine: tuple[bool, ...]
    input_sized: bool
    seq: bool
    plan_order: tuple[int, ...]
    fold: tuple[tuple[int, int], ...] = ()
    fused: bool = False

    @property
    def has_bias(self) -> bool:
        return any(self.affine)


@dataclass(frozen=True)
class Plan:
    """A compiled plan: groups, diag calls (weight indices) and the generated layer source."""

    groups: tuple[WeightGroup, ...]
    diags: tuple[int, ...]
    num_states: int
    source: str = field(repr=False)
    #: the time step as the fused native layer's op list (None: no native form; see program.py)
    program: Program | None = field(default=None, repr=False)


def weight_map(g: Genome) -> tuple[int, ...]:
    order = canonical_form(g)[1]
    where = {nid: k for k, nid in enumerate(order)}
    return tuple(where[w] for w in g.weighted)


def plan_for(g: Genome) -> Plan:
    """The (cached) plan of ``g``."""
    return _cached_plan(g.canonical, weight_map(g), _GenomeRef(g))


class _GenomeRef:
    """Carries the genome into the cache without making it part of the key."""

    def __init__(self, g: Genome):
        self.g = g

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _GenomeRef)


@lru_cache(maxsize=4096)
def _cached_plan(canonical: str, wmap: tuple[int, ...], ref: _GenomeRef) -> Plan:
    return _Planner(ref.g).plan()


class _Planner:
    def __init__(self, g: Genome):
        self.g, self.nodes = g, g.nodes
        self.space = value_spaces(g)
        self.wpos = {nid: k for k, nid in enumerate(g.weighted)}
        self.seq: dict[int, bool] = {}
        for nid in g.topological:
            n = self.nodes[nid]
            self.seq[nid] = n.op != "state" and all(self.seq[a] for a in n.args)
        # constant-only subexpressions (``relu(1)``, ``1 * 0.5``) are folded to a number here:
        # torch functions do not take Python floats, and the value never changes anyway
        self.folded: dict[int, float] = {}
        for nid in g.topological:
            n = self.nodes[nid]
            if n.op == "const":
                self.folded[nid] = float(n.value or 0.0)
            elif n.args and all(a in self.folded for a in n.args) and (n.op in BINARY or n.op in FOLD):
                self.folded[nid] = _fold(n.op, [self.folded[a] for a in n.args])
        self.uses = {i: len(p) for i, p in g.parents.items()}
        for nid in g.outputs.values():
            self.uses[nid] += 1
        self.outputs = set(g.outputs.values())

    # ------------------------------------------------------------------ grouping and fusion
    def plan(self) -> Plan:
        g, nodes = self.g, self.nodes
        by_arg: dict[int, list[int]] = {}
        self.diags = [w for w in g.weighted if nodes[w].op == "diag"]
        for w in g.weighted:
            if nodes[w].op != "diag":
                by_arg.setdefault(nodes[w].args[0], []).append(w)
        self.args = list(by_arg)
        self.members = [by_arg[a] for a in self.args]
        self.group_of = {m: j for j, ms in enumerate(self.members) for m in ms}
        pairs = self._pairs()
        self.order = {j: list(ms) for j, ms in enumerate(self.members)}
        self.block: dict[int, tuple[int, int]] = {}  # step group -> (seq group, plan offset)
        used: dict[int, list[int]] = {j: [] for j in self.order}
        for j, mine in pairs.items():  # step group j: paired members first
            x = self.group_of[mine[0][2]]
            paired = [m for m, _, _ in mine]
            self.order[j] = paired + [m for m in self.members[j] if m not in paired]
            self.block[j] = (x, len(used[x]))
            used[x].extend(o for _, _, o in mine)
        for x, taken in used.items():
            if taken:
                self.order[x] = taken + [m for m in self.members[x] if m not in taken]
        self.pair_add = {m: a for mine in pairs.values() for m, a, _ in mine}
        self.full = {j for j, mine in pairs.items() if len(mine) == len(self.members[j])}
        groups = []
        for j, ms in enumerate(self.members):
            arg = self.nodes[self.args[j]]
            tag = ("ih" if arg.op == "x" else "hh" if arg.op == "state" and arg.name == "h"
                   else f"g{j}")
            fold = tuple((self.block[s][1], s) for s in sorted(self.full)
                         if self.block[s][0] == j and any(self._affine(m) for m in self.members[s]))
            groups.append(WeightGroup(
                index=j, tag=tag, members=tuple(self.wpos[m] for m in ms),
                affine=tuple(self._affine(m) for m in ms),
                input_sized=self.space[self.args[j]] == INPUT, seq=self.seq[self.args[j]],
                plan_order=tuple(ms.index(m) for m in self.order[j]), fold=fold,
                fused=j in self.full))
        self.groups = groups
        writer = _Writer(self)
        source = writer.write()
        program = lower(self, [k for k in writer.slots if not _is_carrier(k)])
        return Plan(tuple(groups), tuple(self.wpos[d] for d in self.diags), len(g.states), source, program)

    def _affine(self, m: int) -> bool:
        return self.nodes[m].op == "affine"

    def _pairs(self) -> dict[int, list[tuple[int, int, int]]]:
        """Step group -> [(member, add node, sequence partner)] for members each added to a
        member of one sequence group."""
        nodes, taken = self.nodes, set[int]()
        out: dict[int, list[tuple[int, int, int]]] = {}
        for j, ms in enumerate(self.members):
            if self.seq[self.args[j]]:
                continue
            cands = []
            for m in ms:
                if self.uses[m] != 1 or m in self.outputs:
                    continue
                p = self.g.parents[m][0]
                pn = nodes[p]
                if pn.op != "add" or pn.args[0] == pn.args[1]:
                    continue
                o = pn.args[1] if pn.args[0] == m else pn.args[0]
                if (nodes[o].op in ("affine", "linear") and self.seq[o] and self.uses[o] == 1
                        and o not in self.outputs and o not in taken):
                    cands.append((m, p, o))
            if not cands:
                continue
            best = Counter(self.group_of[o] for _, _, o in cands).most_common(1)[0][0]
            mine = [c for c in cands if self.group_of[c[2]] == best]
            taken.update(o for _, _, o in mine)
            out[j] = mine
        return out

    def groups_info(self, j: int) -> bool:
        """Whether group j's matmul takes a bias input (its own, or folded step biases)."""
        own = any(self._affine(m) for m in self.members[j])
        if j in self.full:
            return False
        folds = any(self.block[s][0] == j and any(self._affine(m) for m in self.members[s])
                    for s in self.full)
        return own or folds

    def partner(self, add_node: int, member: int) -> int:
        a, b = self.nodes[add_node].args
        return b if a == member else a


def _is_carrier(slot: object) -> bool:
    return isinstance(slot, tuple) and slot[0] == "c"


class _Writer:
    """Writes the generated source of one layer: ``seq`` (whole-sequence part), ``step`` (one time
    step) and ``layer`` (the time loop). ``P`` is the layer's prepared parameter tuple: for group j,
    ``P[2j]`` its transposed weight in plan order and ``P[2j+1]`` its bias in plan order (folded
    into the sequence group for fused step groups, then ``None``); then one vector per diag call."""

    def __init__(self, p: _Planner):
        self.p, self.nodes, self.g = p, p.nodes, p.g
        self.diag_fuse: dict[int, int] = {}  # diag node -> the add it becomes an addcmul of
        for d in p.diags:
            parent = self.g.parents[d][0] if p.uses[d] == 1 and d not in p.outputs else None
            if (parent is not None and not p.seq[d] and self.nodes[parent].op == "add"
                    and parent not in p.pair_add.values() and parent not in self.diag_fuse.values()
                    and len(set(self.nodes[parent].args)) == 2
                    and not any(a in p.folded for a in self.nodes[parent].args)):  # addcmul needs a tensor
                self.diag_fuse[d] = parent
        self.fused_adds = {a: d for d, a in self.diag_fuse.items()}

    # slots: what the step reads of the sequence part at time t: ("g", j) = sequence group j's
    # whole output, or a sequence node id (an element-wise value).
    def _slots(self) -> list:
        p, nodes, slots = self.p, self.nodes, []

        def need(nid: int) -> None:
            key = ("g", p.group_of[nid]) if nid in p.group_of else nid
            if key not in slots:
                slots.append(key)

        for nid in self.g.topological:
            if not p.seq[nid]:
                for a in nodes[nid].args:
                    if p.seq[a] and nodes[a].op != "x" and a not in p.folded:
                        need(a)
        for j in sorted(p.block):
            if ("g", p.block[j][0]) not in slots:
                slots.append(("g", p.block[j][0]))
        for nid in self.g.outputs.values():
            if p.seq[nid]:
                need(nid)
        # Step groups not fused into a sequence block read their matmul input from a carrier
        # (their bias, or zeros, broadcast over T and B) that also collects their weight gradient.
        slots += [("c", j) for j in range(len(p.members))
                  if not p.seq[p.args[j]] and j not in p.full]
        return slots

    def write(self) -> str:
        slots = self.slots = self._slots()
        return "\n\n".join([self._seq(slots), self._step(slots), self._layer(slots)]) + "\n"

    def _seq(self, slots: list) -> str:
        p, nodes = self.p, self.nodes
        lines = ["def seq(x, P, H):", "    T, B = x.shape[0], x.shape[1]",
                 "    x2 = x.reshape(T * B, x.shape[2])"]
        val: dict[int, str] = {}
        chunked: set[int] = set()

        def v(nid: int) -> str:
            n = nodes[nid]
            if n.op == "x":
                return "x2"
            if nid in p.folded:
                return repr(p.folded[nid])
            if nid in val:
                return val[nid]
            j = p.group_of[nid]
            if len(p.members[j]) == 1:
                return f"q{j}"
            if j not in chunked:
                chunked.add(j)
                lines.append(f"    q{j}c = q{j}.chunk({len(p.members[j])}, 1)")
            return f"q{j}c[{p.order[j].index(nid)}]"

        done: set[int] = set()
        for nid in self.g.topological:
            n = nodes[nid]
            if not p.seq[nid] or n.op == "x" or nid in p.folded:
                continue
            if nid in p.group_of:
                j = p.group_of[nid]
                if j not in done:
                    done.add(j)
                    lines.append(f"    q{j} = {self._matmul(j, v(p.args[j]))}")
                continue
            lines.append(f"    v{nid} = {self._expr(n, v)}")
            val[nid] = f"v{nid}"
        outs = [f"q{k[1]}" if isinstance(k, tuple) else v(k) for k in slots if not _is_carrier(k)]
        lines.append("    return (" + "".join(f"{o}.reshape(T, B, -1), " for o in outs) + ")")
        return "\n".join(lines)

    def _matmul(self, j: int, arg: str, inp: str | None = None) -> str:
        if inp is not None:  # a step group: P[2j] is its RecurrentWeight
            return f"_rmm({inp}, {arg}, P[{2 * j}])"
        bias = f"P[{2 * j + 1}]" if self.p.groups_info(j) else "None"
        return f"_lin({arg}, P[{2 * j}], {bias})"

    def _diag_param(self, nid: int) -> str:
        return f"P[{2 * len(self.p.members) + self.p.diags.index(nid)}]"

    def _expr(self, n, v) -> str:  # noqa: ANN001
        if n.op in ACTIVATIONS:
            if n.op not in ACTIVATION_CODE:
                from growrnn.errors import ArgumentError
                raise ArgumentError("genome", allowed=f"activations the compiler knows: {sorted(ACTIVATION_CODE)}",
                                    received=n.op, hint="register it with growrnn.cells.register_activation(name, fn)")
            code = ACTIVATION_CODE[n.op]
            return f"{code}({v(n.args[0])})" if code else v(n.args[0])
        if n.op in BINARY:
            return f"{v(n.args[0])} {BINARY[n.op]} {v(n.args[1])}"
        if n.op == "diag":
            return f"{self._diag_param(n.id)} * {v(n.args[0])}"
        raise AssertionError(n.op)

    def _step(self, slots: list) -> str:
        p, nodes, g = self.p, self.nodes, self.g
        self.step_args: list[tuple[int, str]] = []  # (step group, its matmul argument)
        lines = ["def step(H, slots, states, P):"]
        if slots:
            lines.append("    " + "".join(f"z{k}, " for k in range(len(slots))) + "= slots")
        lines.append("    " + "".join(f"s{k}, " for k in range(len(g.states))) + "= states")
        state_index = {s: k for k, s in enumerate(g.states)}
        val: dict = {key: f"z{k}" for k, key in enumerate(slots)}
        chunked: set[int] = set()

        def v(nid: int) -> str:
            n = nodes[nid]
            if nid in p.folded:
                return repr(p.folded[nid])
            if n.op == "state":
                return f"s{state_index[str(n.name)]}"
            if nid in val:
                return val[nid]
            j = p.group_of[nid]  # a member of a sequence group, read on its own
            if len(p.members[j]) == 1:
                return val[("g", j)]
            if j not in chunked:
                chunked.add(j)
                lines.append(f"    z{j}c = {val[('g', j)]}.chunk({len(p.members[j])}, 1)")
            return f"z{j}c[{p.order[j].index(nid)}]"

        done: set[int] = set()
        for nid in g.topological:
            n = nodes[nid]
            if (p.seq[nid] or n.op in ("x", "state") or nid in p.folded or nid in self.diag_fuse
                    or nid in val):
                continue
            if nid in p.group_of:
                j = p.group_of[nid]
                if j not in done:
                    done.add(j)
                    self._step_group(j, lines, v, val)
                continue
            if nid in self.fused_adds:
                d = self.fused_adds[nid]
                lines.append(f"    v{nid} = torch.addcmul({v(p.partner(nid, d))}, "
                             f"{self._diag_param(d)}, {v(nodes[d].args[0])})")
            else:
                lines.append(f"    v{nid} = {self._expr(n, v)}")
            val[nid] = f"v{nid}"
        lines.append("    return (" + "".join(v(g.outputs[s]) + ", " for s in g.states) + "), ("
                     + "".join(f"{a}, " for _, a in self.step_args) + ")")
        return "\n".join(lines)

    def _step_group(self, j: int, lines: list[str], v, val: dict) -> None:  # noqa: ANN001
        p = self.p
        order, arg = p.order[j], v(p.args[j])
        k = sum(1 for m in order if m in p.pair_add) if j in p.block else 0
        if k:
            x, off = p.block[j]
            blk = val[("g", x)]
            if not (off == 0 and k == len(p.members[x])):
                blk = f"{blk}.narrow(1, {off} * H, {k} * H)"
            if j in p.full:
                lines.append(f"    a{j} = {self._matmul(j, arg, inp=blk)}")
            else:
                lines.append(f"    r{j} = {self._matmul(j, arg, inp=val[('c', j)])}")
                lines.append(f"    a{j} = r{j}.narrow(1, 0, {k} * H) + {blk}")
            self._unpack(lines, [p.pair_add[m] for m in order[:k]], f"a{j}", val)
        else:
            lines.append(f"    r{j} = {self._matmul(j, arg, inp=val[('c', j)])}")
        self.step_args.append((j, arg))
        rest = order[k:]
        if rest:
            src = f"r{j}" if k == 0 else f"r{j}.narrow(1, {k} * H, {len(rest)} * H)"
            self._unpack(lines, rest, src, val)

    @staticmethod
    def _unpack(lines: list[str], targets: list[int], src: str, val: dict) -> None:
        if len(targets) == 1:
            lines.append(f"    v{targets[0]} = {src}")
        else:
            lines.append("    " + "".join(f"v{t}, " for t in targets) + f"= {src}.chunk({len(targets)}, 1)")
        for t in targets:
            val[t] = f"v{t}"

    def _layer(self, slots: list) -> str:
        """The time loop. With ``track`` (gradients wanted), every step group's weight gradient is
        computed once over the whole sequence (``_seq_wgrad``) instead of once per step: the
        per-step matmuls use detached weights, their arguments are stacked after the loop."""
        p = self.p
        seq_slots = [k for k in slots if not _is_carrier(k)]
        lines = ["def layer(x, states, P, R, H, track, step=step):", "    T, B = x.shape[0], x.shape[1]"]
        if seq_slots:
            lines.append("    " + "".join(f"z{slots.index(k)}, " for k in seq_slots) + "= seq(x, P, H)")
        for k, key in enumerate(slots):
            if _is_carrier(key):
                j = key[1]
                bias = f"P[{2 * j + 1}]" if any(p._affine(m) for m in p.members[j]) else "None"
                lines.append(f"    z{k} = _carrier({bias}, x, T, B, {len(p.members[j])} * H)")
        args = [j for j, _ in self.step_args]
        for j in args:
            if j in p.full:
                x_group, off = p.block[j]
                k, cols = slots.index(("g", x_group)), f"{off} * H, {len(p.members[j])} * H"
            else:
                k, cols = slots.index(("c", j)), f"0, {len(p.members[j])} * H"
            lines.append(f"    hold{j} = []")
            lines.append(f"    z{k} = _seq_wgrad(z{k}, R[{j}], hold{j}, {cols}) if track else z{k}")
        lines += [f"    args{j} = []" for j in args]
        # unbind once: indexing z[t] in the loop would make backward fill a (T, B, ·) zero
        # tensor per step (quadratic in T); unbind's backward stacks the step gradients once.
        lines += [f"    z{k} = z{k}.unbind(0)" for k in range(len(slots))]
        lines += ["    outs = []", "    for t in range(T):",
                  "        states, sa = step(H, (" + "".join(f"z{k}[t], " for k in range(len(slots)))
                  + "), states, P)",
                  "        outs.append(states[0])"]
        lines += [f"        args{j}.append(sa[{i}])" for i, j in enumerate(args)]
        if args:
            lines.append("    if track:")
            lines += [f"        hold{j}.append(torch.stack(args{j}).detach().reshape(T * B, -1))"
                      for j in args]
        lines.append("    return torch.stack(outs, 0), states")
        return "\n".join(lines)


#: activations the planner can fold when their operand is a constant
FOLD: dict[str, Callable[[float], float]] = {
    "sigmoid": lambda a: 0.5 * (1.0 + math.tanh(a / 2)), "tanh": math.tanh, "relu": lambda a: max(a, 0.0),
    "identity": lambda a: a,
}


def _fold(op: str, args: list[float]) -> float:
    if op == "add":
        return args[0] + args[1]
    if op == "sub":
        return args[0] - args[1]
    if op == "mul":
        return args[0] * args[1]
    return FOLD[op](args[0])
