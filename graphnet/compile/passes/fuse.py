"""Fusion: maximal groups of elementwise ops become one kernel call each (the numba backend).

A value joins a group when its op has a scalar formula (``kernels.scalar_rule``: arithmetic, activations, their
derivatives ``Deriv``), it has rank >= 2, and every input is either in the group or an array of its dtype whose
shape broadcasts to it (a row vector such as a bias, a column, a scalar); column slices of a group's values (the
gates of a stacked pre-activation, say) join their source's group. All values of a group share the leading
shape (the rows) and the phase (forward or backward: inference never computes backward's derivatives). A group
stays convex: a value does not join (or merge) groups that it also reaches through an outside value, so the
kernel can run where its last member ran. Groups of one single-call op are left to numpy. Class picks (Pick, its
gradient) join in the column forms of ``compile.picks``, their targets read once per row.

The group becomes one ``FusedKernel`` value; each of its results read afterwards is a column slice of the
kernel's output (the group's result itself when it has only one), except those a row stack holds (a value of
every time step, stacked for a GEMM over all steps): the kernel writes each into an array of its own, a
``KernelResult`` value, which the memory plan puts in the stack's rows. The stack is then neither copied nor
strided: its rows are the steps' results, contiguous. Nothing here knows what network it is fusing.
"""
from __future__ import annotations

import copy
import heapq

from ...ops import Concat, Const, Slice
from ..ir import Value
from ..kernel_rules import is_literal
from ..kernels import FusedKernel, KernelResult, plan_kernel
from ..picks import as_columns
from .fusion_groups import FusionGroups, fusable
from .shared_kernels import complete_groups, shape_key, shared_layouts


def fuse(prog):
    prog = as_columns(prog)                      # class picks in the forms kernels compute
    values = prog.values
    fwd = {id(v) for v in prog.forward_values()}
    groups = FusionGroups()
    slices = {}                                  # id(slice member) -> (the member it reads, start column)
    readers = {}                                 # id(value) -> groups with a member reading it
    for v in values:
        groups.see(v)
        if _slice_member(v, groups):
            src = v.args[0]
            start = v.op.span(src.shape[-1])[0]
            base, at = slices.get(id(src), (src, 0))
            slices[id(v)] = (base, at + start)
            groups.add(v, groups.of(src))
            continue
        if not fusable(v):
            continue
        key = (id(v) in fwd, v.shape[:-1], v.dtype.str)
        chosen = []
        for g in sorted({groups.of(a) for a in v.args if groups.of(a) is not None}):
            if groups.key[g] == key and groups.can_join(v, chosen, g):
                chosen.append(g)
        if not chosen:                           # a sibling: joins a group that reads one of its inputs
            for g in sorted({groups.find(h) for a in v.args for h in readers.get(id(a), ())}):
                if groups.key[g] == key and groups.can_join(v, [], g):
                    chosen.append(g)
                    break
        g = groups.merge(chosen) if chosen else groups.new(key)
        groups.add(v, g)
        for a in v.args:
            readers.setdefault(id(a), set()).add(g)
    return _rewrite(prog, [m for m in groups.members.values() if _worth_it(m, slices)], slices)


def _slice_member(v, groups) -> bool:
    """A slice along the last dim of a group's value: the group reads it at an offset of that value's columns."""
    if not isinstance(v.op, Slice) or not v.args or groups.of(v.args[0]) is None or v.shape is None:
        return False
    return v.op.dim % v.ndim == v.ndim - 1


def _worth_it(members, slices) -> bool:
    """Two ops or more, or one that numpy computes in several calls."""
    ops = [m for m in members if id(m) not in slices]
    if len(ops) != 1:
        return len(ops) > 1
    try:
        code = ops[0].op.expr_out("o", lambda c: "k", *["x"] * len(ops[0].args))
    except (TypeError, ValueError):
        code = None
    return code is None or ";" in code


def _rewrite(prog, groups, slices):
    """The program with each group replaced by its kernel (a new program; the given one is not changed)."""
    users = {}
    for v in prog.values:
        for a in v.args:
            users.setdefault(id(a), []).append(v)
    pos = {id(v): i for i, v in enumerate(prog.values)}
    groups = complete_groups(_dependencies_first(groups, slices), slices)
    # planned twice: the first time tells which groups can share a kernel, and how (``shared_kernels``)
    first_try = _place_groups(prog, groups, slices, users, {})
    made, replaced, order, part_values, fused_ops, _ = _place_groups(
        prog, groups, slices, users, shared_layouts(groups, first_try[-1]))
    new = {}

    kernels = {id(k) for k, _ in made} | {id(pv) for pv in part_values}

    def get(v):
        if v is None or id(v) in kernels:
            return v
        return replaced[id(v)] if id(v) in replaced else new[id(v)]

    kept = [v for v in prog.values if id(v) not in replaced]
    for v in kept:
        new[id(v)] = nv = _value(v.op, v.shape, v.dtype, v.src, v.id)
        order[id(nv)] = (pos[id(v)], 0)
    for v in kept:
        new[id(v)].args = tuple(get(a) for a in v.args)
    slice_values = [s for s in replaced.values() if s is not None and isinstance(s.op, Slice)]
    for k, ext in made:
        k.args = tuple(get(a) for a in ext)
    res = copy.copy(prog)
    res.values = _topological([new[id(v)] for v in kept] + [k for k, _ in made] + part_values + slice_values,
                              order)
    res.args = [get(a) for a in prog.args]
    res.outputs = [get(o) for o in prog.outputs]
    res.seeds = [get(s) for s in prog.seeds]
    res.params = [(p, get(v)) for p, v in prog.params]
    res.input_grads = [get(g) for g in prog.input_grads]
    res.param_grads = [get(g) for g in prog.param_grads]
    res.meta = dict(prog.meta, fused_groups=len(groups), fused_ops=fused_ops)
    return res


def _place_groups(prog, groups, slices, users, shared):
    """Each group's kernel, planned in order (a group reads its inputs where earlier kernels put them):
    (kernels made with what they read, {id(old value): what replaces it}, schedule keys, KernelResult values,
    ops fused, per group facts for ``shared_layouts``). ``shared``: per group, what ``shared_layouts`` says."""
    roots = {id(r) for r in prog.outputs + prog.input_grads + prog.param_grads if r is not None}
    pos = {id(v): i for i, v in enumerate(prog.values)}
    order = {}                                   # id(new value) -> where it goes in the schedule
    replaced = {}                                # id(old member) -> its new value, or None (read by no one else)
    made = []                                    # (kernel value, the values it reads: old ones, or kernels)
    placed = {}                                  # id(old value read after its kernel) -> (kernel, column offset)
    fused_ops = 0
    handed_back = _handed_back(prog)
    part_values = []                             # KernelResult values: results kept in arrays of their own
    facts = []                                   # per group: (its key, members read after it, ext's columns)
    for members, (extra, shifted) in zip(groups, shared or [((), ())] * len(groups)):
        mem = {id(m) for m in members}
        ops = [m for m in members if id(m) not in slices]
        where = {id(a): _column_base(a, placed) for m in ops for a in m.args
                 if id(a) not in mem and not is_literal(a)}
        ext = list({id(base): base for base, _ in where.values()}.values())
        outside = [id(m) for m in members
                   if id(m) in roots or any(id(u) not in mem for u in users.get(id(m), ()))]
        mine = {id(m): slices[id(m)] for m in members if id(m) in slices}
        stack = _column_stack(ops, users)
        first = stack.args if stack is not None else _row_stacked(ops, users)
        parts = _kept_apart(stack, first, users, handed_back)
        base = [min(off for b, off in where.values() if b is a) for a in ext]
        facts.append((shape_key(members, slices), {i for i, m in enumerate(members) if id(m) in outside}, base))
        kept = outside + [id(members[i]) for i in extra]       # (results its kernel shares keep, too)
        shifts = {k: base[k] for k in shifted}
        kernel, offsets, width, single_loop = plan_kernel(ops, mine, ext, kept, where, first, parts, shifts)
        if parts and not offsets:                # every result is stacked: the first stays in out
            parts = parts[1:]
            kernel, offsets, width, single_loop = plan_kernel(ops, mine, ext, kept, where, first, parts, shifts)
        single = len(offsets) == 1
        inplace = single and single_loop and not any(a.op.view or isinstance(a.op, Const) for a in ext) \
            and all(off == 0 for _, off in where.values())
        last = max(members, key=lambda m: pos.get(id(m), -1))      # (not a member complete_groups made)
        shape = tuple(ops[0].shape[:-1]) + (width,)
        over = [i for i, a in enumerate(ext) if inplace and tuple(a.shape) == shape and a.dtype == ops[0].dtype
                and i not in shifts]                 # (not one read from a column the call gives)
        k = Value(FusedKernel(kernel, width, len(ops), over, [i for i, a in enumerate(ext) if a.ndim == 0],
                              len(parts), [shifts[i] for i in sorted(shifts)]), (), shape, ops[0].dtype, last.src)
        made.append((k, ext))
        order[id(k)] = (pos[id(last)], 0)
        apart = {}                               # id(member kept apart) -> (its KernelResult, column offset)
        for q, vs in enumerate(parts):
            whole = stack if stack is not None else vs[0]     # (with a column stack, the only part is it)
            pv = _value(KernelResult(q, whole.shape[-1]), whole.shape, whole.dtype, whole.src, whole.id)
            pv.args = (k,)
            order[id(pv)] = (pos[id(last)], 1)
            part_values.append(pv)
            replaced[id(whole)] = pv
            at = 0
            for m in vs:
                apart[id(m)] = (pv, at)
                at += m.shape[-1]
        for m in members:
            if id(m) not in outside:
                replaced[id(m)] = None
                continue
            src, start = (m, 0) if id(m) not in mine else mine[id(m)]
            if id(src) in apart:                 # read from its own array (a slice of it, for a slice member)
                pv, at = apart[id(src)]
                if pv.shape == m.shape:
                    replaced[id(m)] = pv
                    continue
                s = _value(Slice(len(m.shape) - 1, at + start, m.shape[-1]), m.shape, m.dtype, m.src, m.id)
                s.args = (pv,)
                order[id(s)] = (pos[id(last)], 2)
                replaced[id(m)] = s
                placed[id(m)] = (pv, at + start)
                continue
            replaced[id(m)] = None
            off = offsets[id(src)] + start
            placed[id(m)] = (k, off)
            if single and off == 0 and m.shape[-1] == width:
                replaced[id(m)] = k
                continue
            s = _value(Slice(len(m.shape) - 1, off, m.shape[-1]), m.shape, m.dtype, m.src, m.id)
            s.args = (k,)
            order[id(s)] = (pos[id(last)], 1)
            replaced[id(m)] = s
        if stack is not None and not parts:     # the stack is a block of the kernel's output: no copy
            s = _value(Slice(len(stack.shape) - 1, offsets[id(stack.args[0])], stack.shape[-1]), stack.shape,
                       stack.dtype, stack.src, stack.id)
            s.args = (k,)
            order[id(s)] = (pos[id(stack)], 0)
            replaced[id(stack)] = s
            placed[id(stack)] = (k, offsets[id(stack.args[0])])
        fused_ops += len(ops)
    return made, replaced, order, part_values, fused_ops, facts


def _handed_back(prog):
    """ids of the values the plan hands back (outputs, gradients) and of those they are views of: never a
    kernel's result kept apart, whose array the memory plan must place (a handed-back array is the caller's)."""
    out = set()
    for r in prog.outputs + prog.input_grads + prog.param_grads:
        while r is not None and id(r) not in out:
            out.add(id(r))
            r = r.args[0] if r.op.view and r.args else None
    return out


def _column_stack(ops, users):
    """A Concat along the last dim of results of this group only, each once (the first such, if any)."""
    for m in ops:
        for c in users.get(id(m), ()):
            if isinstance(c.op, Concat) and c.shape is not None and c.op.dim % c.ndim == c.ndim - 1 \
                    and all(any(a is o for o in ops) for a in c.args) and len({id(a) for a in c.args}) == len(c.args):
                return c
    return None


def _is_row_stack(c) -> bool:
    return isinstance(c.op, Concat) and c.shape is not None and c.ndim >= 2 and c.op.dim % c.ndim == 0


def _kept_apart(stack, first, users, handed_back):
    """The results a kernel writes into arrays of their own (``KernelResult``), each a list of members side by
    side: those a row stack holds, or the column stack of results when a row stack holds it; never one handed
    back to the caller (the memory plan places these arrays, in the row stack's rows)."""
    if stack is not None:
        held = any(_is_row_stack(c) for c in users.get(id(stack), ())) and id(stack) not in handed_back
        return [list(stack.args)] if held else []
    return [[m] for m in first if id(m) not in handed_back]


def _row_stacked(ops, users):
    """Results of this group that a Concat stacks by rows (a value of every time step, say), in the order of
    those stacks: laid out first, so that each step's kernel keeps them at the same columns (one kernel for
    every step). (Stacking the steps' outputs whole would spare copying those columns, but the GEMMs reading
    the stack then read rows as far apart as a whole output: 1.2-1.6x slower than over the copy.)"""
    stacks = {}
    for m in ops:
        for c in users.get(id(m), ()):
            if _is_row_stack(c):
                stacks[id(m)] = min(stacks.get(id(m), c.id), c.id)
    # the same order at every step: by stack, then by the graph node that made it (a stack may hold several)
    return tuple(sorted((m for m in ops if id(m) in stacks),
                        key=lambda m: (stacks[id(m)], getattr(m.src, "id", -1), repr(m.op))))


def _column_base(a, placed):
    """(array, column offset): an input that is a column slice of an array (a kernel's output among them) is
    read from that array."""
    off = 0
    while True:
        if id(a) in placed:
            k, at = placed[id(a)]
            return k, off + at
        if not (isinstance(a.op, Slice) and a.args and a.ndim and a.op.dim % a.ndim == a.ndim - 1
                and a.args[0].shape is not None):
            return a, off
        off += a.op.span(a.args[0].shape[-1])[0]
        a = a.args[0]


def _dependencies_first(groups, slices):
    """The groups, each after the groups whose results it reads (their layout decides where it reads them)."""
    index = {id(m): i for i, g in enumerate(groups) for m in g}
    needs = [{index[id(a)] for m in g if id(m) not in slices for a in m.args if id(a) in index} - {i}
             for i, g in enumerate(groups)]
    done, out = set(), []
    while len(out) < len(groups):
        before = len(out)
        for i, g in enumerate(groups):
            if i not in done and needs[i] <= done:
                done.add(i)
                out.append(g)
        assert len(out) > before, "fused groups depend on each other in a cycle"
    return out


def _value(op, shape, dtype, src, vid):
    """A new IR value (arguments set by the caller) keeping the identity ``vid`` of the value it stands for."""
    v = Value.__new__(Value)
    v.op, v.args, v.shape, v.dtype, v.src, v.id = op, (), shape, dtype, src, vid
    return v


def _topological(values, order):
    """The values in a topological order, as close to ``order``'s keys as their dependencies allow."""
    ids = {id(v) for v in values}
    waiting = {id(v): sum(1 for a in set(map(id, v.args)) if a in ids) for v in values}
    users = {}
    for v in values:
        for a in {id(a) for a in v.args}:
            if a in ids:
                users.setdefault(a, []).append(v)
    heap = [(order[id(v)], n, v) for n, v in enumerate(values) if waiting[id(v)] == 0]
    heapq.heapify(heap)
    count, out = len(values), []
    while heap:
        _, _, v = heapq.heappop(heap)
        out.append(v)
        for u in users.get(id(v), ()):
            waiting[id(u)] -= 1
            if waiting[id(u)] == 0:
                count += 1
                heapq.heappush(heap, (order[id(u)], count, u))
    assert len(out) == len(values), "fusion made a cycle"
    return out
