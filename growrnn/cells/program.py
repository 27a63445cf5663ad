"""A plan's time step as a compact op list ("bytecode") for the fused native layer.

The fused layer (``growrnn/cells/csrc/fused.cpp``) is ONE library for every genome: it runs the
time loop of a layer natively and interprets this program at every step, forward and backward.
Building a program is cheap and torch-free, so a search pays no compile per candidate.

Values live in (B, H)-row buffers: a column block of a whole-sequence slot (what the plan's
``seq`` function returns), a column block of a step group's product, a register (one per
element-wise node), the previous value of a state, or a constant. The encoding, all ints:

    header   ns, nst, ng, nr, nv, ni, nd   (slots, states, step groups, registers, values,
                                            instructions, diag calls)
    ns       slot widths in units of H
    ng       step group widths in units of H
    3*nv     values: kind, a, b
    6*ni     instructions: op, then operands
    nst      the value each state's next value is

Instructions: an activation / ``add`` / ``sub`` / ``mul`` / ``copy`` ``(op, out, a, b)``;
``diag`` ``(op, out, a, diag index)``; and ``mm`` ``(op, step group, argument register, mode,
slot, column offset)``: the group's product of the step, whose input is nothing, the group's
bias, or a column block of a slot (a step group fused with a sequence group, its bias folded there).
"""

from __future__ import annotations

from dataclasses import dataclass

from growrnn.genome.graph import ACTIVATIONS, BINARY

__all__ = ["Program", "lower"]

K_SLOT, K_GROUP, K_REG, K_STATE, K_CONST = range(5)
OPS = {"sigmoid": 0, "tanh": 1, "relu": 2, "identity": 3, "add": 4, "sub": 5, "mul": 6}
O_DIAG, O_COPY, O_MM = 7, 8, 9
M_NONE, M_BIAS, M_SLOT = range(3)


@dataclass(frozen=True)
class Program:
    """``ints``/``consts`` go to the native layer as they are. ``step_groups`` are the plan's
    group indices whose products run per step (in program order), ``modes`` their product input
    (none, bias, slot); ``num_slots`` the number of tensors the plan's ``seq`` returns."""

    ints: tuple[int, ...]
    consts: tuple[float, ...]
    step_groups: tuple[int, ...]
    modes: tuple[int, ...]
    num_slots: int


def lower(p, slots: list) -> Program | None:  # noqa: ANN001 - the planner, duck-typed (no cycle)
    """The program of planner ``p`` whose ``seq`` returns ``slots``; ``None`` when a node has no
    native form (an activation registered at run time)."""
    g, nodes = p.g, p.nodes
    if any(nodes[n].op in ACTIVATIONS and nodes[n].op not in OPS for n in g.topological):
        return None
    state_index = {s: k for k, s in enumerate(g.states)}
    step_groups = [j for j in range(len(p.members)) if not p.seq[p.args[j]]]
    sj_of = {j: i for i, j in enumerate(step_groups)}
    values: list[tuple[int, int, int]] = []
    consts: list[float] = []
    vid: dict[int, int] = {}
    instrs: list[tuple[int, ...]] = []
    modes: list[int] = [M_NONE] * len(step_groups)
    n_regs = 0

    def new(kind: int, a: int, b: int = 0) -> int:
        values.append((kind, a, b))
        return len(values) - 1

    def reg() -> int:
        nonlocal n_regs
        n_regs += 1
        return new(K_REG, n_regs - 1)

    def value(nid: int) -> int:
        if nid in vid:
            return vid[nid]
        n = nodes[nid]
        if nid in p.folded:
            v = new(K_CONST, len(consts))
            consts.append(p.folded[nid])
        elif n.op == "state":
            v = new(K_STATE, state_index[str(n.name)])
        elif nid in p.group_of:  # a member of a sequence group: a column block of its slot
            j = p.group_of[nid]
            v = new(K_SLOT, slots.index(("g", j)), p.order[j].index(nid))
        else:
            v = new(K_SLOT, slots.index(nid))
        vid[nid] = v
        return v

    done: set[int] = set()
    for nid in g.topological:
        n = nodes[nid]
        if p.seq[nid] or nid in p.folded or n.op in ("x", "state") or nid in vid:
            continue
        if nid in p.group_of:
            j = p.group_of[nid]
            if j in done:
                continue
            done.add(j)
            arg = value(p.args[j])
            if values[arg][0] != K_REG:  # products read a contiguous register
                r = reg()
                instrs.append((O_COPY, r, arg, 0, 0, 0))
                arg = r
            sj = sj_of[j]
            if j in p.full:  # the product's input is the paired block of a sequence group
                x, off = p.block[j]
                modes[sj] = M_SLOT
                for pos, m in enumerate(p.order[j]):
                    vid[p.pair_add[m]] = new(K_GROUP, sj, pos)
                instrs.append((O_MM, sj, arg, M_SLOT, slots.index(("g", x)), off))
            else:
                modes[sj] = M_BIAS if any(p._affine(m) for m in p.members[j]) else M_NONE
                for pos, m in enumerate(p.order[j]):
                    vid[m] = new(K_GROUP, sj, pos)
                instrs.append((O_MM, sj, arg, modes[sj], 0, 0))
            continue
        out = reg()
        if n.op in ACTIVATIONS:
            instrs.append((OPS[n.op], out, value(n.args[0]), 0, 0, 0))
        elif n.op in BINARY:
            instrs.append((OPS[n.op], out, value(n.args[0]), value(n.args[1]), 0, 0))
        elif n.op == "diag":
            instrs.append((O_DIAG, out, value(n.args[0]), p.diags.index(nid), 0, 0))
        else:  # pragma: no cover - every node kind is handled above
            raise AssertionError(n.op)
        vid[nid] = out
    sout = [value(g.outputs[s]) for s in g.states]
    widths = [len(p.members[k[1]]) if isinstance(k, tuple) else 1 for k in slots]
    ints = [len(slots), len(g.states), len(step_groups), n_regs, len(values), len(instrs), len(p.diags)]
    ints += widths + [len(p.members[j]) for j in step_groups]
    for v in values:
        ints += v
    for ins in instrs:
        ints += ins
    ints += sout
    return Program(tuple(ints), tuple(consts), tuple(step_groups), tuple(modes), len(slots))
