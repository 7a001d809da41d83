"""Row batching: k independent applications of one row-wise op become one application on stacked rows.

An op that works row by row along dim 0 (``Op.row_pattern``: elementwise ops, softmax along the last dim, class
picking, ``x @ W``) applied to k inputs of one shape, none depending on another's result, is computed once on
the inputs stacked by rows; each result is a row slice of the one output. Stacking is free when the inputs are
already the row slices of one array, in order (a previous batch's output): so a chain of such ops (the head
``log_softmax(h_t @ W + b)`` at every time step, the derivatives of the gates at every step in backward) is
batched link by link, one call per link instead of one per time step.

``sum_of_reductions``: a sum of means (or sums) over the row blocks of one array is one mean over the array.

Both are algebra on the IR, not pattern matching on layers.
"""
from collections import defaultdict

from ...ops import Add, AddN, Mean, Scale, Slice, Sum
from ..ir import Value
from ..lower import clone, prune, rewire
from .batch import best_order, concats_of, row_block as _row_slice, toposort as _toposort

MAX_ROUNDS = 64


def _candidates(values, phase):
    """Groups of values that one batched application could compute, keyed by what must be equal."""
    groups = defaultdict(list)
    for v in values:
        op = v.op
        if not v.args or not op.pure or not v.shape or any(a.shape is None for a in v.args):
            continue
        pattern = op.row_pattern(*[a.shape for a in v.args])
        if pattern is None or not any(pattern):
            continue
        key = (op.key(), phase[id(v)], v.dtype.str, pattern,
               tuple(a.shape if r else a.id for a, r in zip(v.args, pattern)),
               tuple(a.dtype.str for a in v.args))
        groups[key].append(v)
    return [g for g in groups.values() if len(g) > 1]


def _ancestry(values):
    """For each value id, a bitmask of its ancestors (bit i = the value at position i)."""
    pos = {v.id: i for i, v in enumerate(values)}
    anc = {}
    for v in values:
        m = 0
        for a in v.args:
            m |= anc[a.id] | (1 << pos[a.id])
        anc[v.id] = m
    return pos, anc


def _one_round(p):
    values = p.values
    present = {v.id for v in values}
    existing = concats_of(values)
    fwd = {id(v) for v in p.forward_values()}
    phase = {id(v): id(v) in fwd for v in values}
    pos, anc = _ancestry(values)
    merged_mask, sub, new, n_merged = 0, {}, [], 0
    for group in _candidates(values, phase):
        pattern = group[0].op.row_pattern(*[a.shape for a in group[0].args])
        chosen, mask = [], 0
        for m in sorted(group, key=lambda v: pos[v.id]):
            bit = 1 << pos[m.id]
            if anc[m.id] & (mask | merged_mask) or bit & merged_mask:
                continue                      # depends on a member, or on what this round already moved
            chosen.append(m)
            mask |= bit
        if len(chosen) < 2:
            continue
        chosen, stacks, copies = best_order(chosen, [j for j, r in enumerate(pattern) if r], existing)
        first = chosen[0]
        args, made = [], []
        for j, r in enumerate(pattern):
            if not r:
                args.append(first.args[j])
                continue
            stacked = stacks[j]
            if stacked.id not in present:
                made.append(stacked)
            args.append(stacked)
        calls_saved = (0 if first.op.view else len(chosen) - 1) - copies
        if calls_saved < 0 or (calls_saved == 0 and copies):
            continue
        rows = first.shape[0]
        big = Value(first.op, tuple(args), (rows * len(chosen),) + tuple(first.shape[1:]), first.dtype, first.src)
        made.append(big)
        for i, m in enumerate(chosen):
            piece = Value(Slice(0, i * rows, rows), (big,), m.shape, m.dtype, m.src)
            made.append(piece)
            sub[m.id] = piece
        new += made
        merged_mask |= mask
        # everything downstream of a member now also waits for the other members' inputs
        for v in values:
            if anc[v.id] & mask:
                merged_mask |= 1 << pos[v.id]
        n_merged += 1
    if not n_merged:
        return p, 0
    p.values = values + new
    p = rewire(p, sub)
    p.values = _toposort(p.values)
    return prune(p), n_merged


def batch_rows(prog):
    p = clone(prog)
    for _ in range(MAX_ROUNDS):
        p, n = _one_round(p)
        if not n:
            break
    return p


# --- invariant addends next to row blocks ---------------------------------------------------------------------

def _addends(v, users, rooted):
    """The terms of the addition tree under v, through single-use additions."""
    out = []
    for a in v.args:
        if isinstance(a.op, (Add, AddN)) and users[a.id] == 1 and a.id not in rooted:
            out += _addends(a, users, rooted)
        else:
            out.append(a)
    return out


def hoist_invariants(prog):
    """X[block] + u + b, with b the same for every row (a bias) -> (X[block] + b) + u.

    Summed with a row block, the bias is added once to all of X once the block sums are batched (the input
    projection of every time step plus both biases of a recurrent cell: one addition, not one per step).
    """
    p = clone(prog)
    users = _users(p.values)
    rooted = {v.id for v in p.outputs + p.input_grads + p.param_grads if v is not None}
    user = {a.id: u for u in p.values for a in u.args}
    sub, new = {}, []
    for v in p.values:
        if not isinstance(v.op, (Add, AddN)) or not v.shape or (users[v.id] == 1 and v.id not in rooted
                                                               and isinstance(user[v.id].op, (Add, AddN))):
            continue                                  # only the root of an addition tree
        terms = _addends(v, users, rooted)
        block = next((i for i, t in enumerate(terms) if _row_slice(t) is not None and t.shape == v.shape), None)
        fixed = [i for i, t in enumerate(terms) if len(t.shape) < len(v.shape)]
        if block is None or not fixed or len(terms) == 1 + len(fixed):
            continue
        inner = Value(AddN(), tuple(terms[i] for i in [block] + fixed), v.shape, v.dtype, v.src)
        rest = tuple(t for i, t in enumerate(terms) if i != block and i not in fixed)
        outer = Value(AddN(), (inner,) + rest, v.shape, v.dtype, v.src)
        new += [inner, outer]
        sub[v.id] = outer
    if not sub:
        return p
    p.values = p.values + new
    p = rewire(p, sub)
    p.values = _toposort(p.values)
    return prune(p)


# --- sums of reductions ---------------------------------------------------------------------------------------

def _users(values):
    users = defaultdict(int)
    for v in values:
        for a in v.args:
            users[a.id] += 1
    return users


def _leaves(v, users, rooted):
    """The terms of an addition tree under v (through single-use scalar additions)."""
    out = []
    for a in v.args:
        if isinstance(a.op, (Add, AddN)) and a.shape == () and users[a.id] == 1 and a.id not in rooted \
                and all(x.shape == () for x in a.args):
            out += _leaves(a, users, rooted)
        else:
            out.append(a)
    return out


def _reduction_term(t, users):
    """(coefficient, kind, base, start, rows) for t = c * mean/sum of a row block of base, else None."""
    c = 1.0
    while isinstance(t.op, Scale) and users[t.args[0].id] == 1:
        c *= t.op.c
        t = t.args[0]
    if not isinstance(t.op, (Mean, Sum)) or t.op.axes is not None or users[t.id] > 1:
        return None
    b = _row_slice(t.args[0])
    return None if b is None else (c, type(t.op), b[0], b[1], b[2])


def sum_of_reductions(prog):
    """sum_i c * mean(X[block_i]) over equal blocks tiling X -> c * k * mean(X) (likewise for sums)."""
    p = clone(prog)
    users = _users(p.values)
    rooted = {v.id for v in p.outputs + p.input_grads + p.param_grads if v is not None}
    sub, new = {}, []
    for v in list(p.values):
        if not isinstance(v.op, (Add, AddN)) or v.shape != () or (users[v.id] == 1 and v.id not in rooted):
            continue                                  # only the root of an addition tree
        terms = _leaves(v, users, rooted)
        groups, rest = defaultdict(list), []
        for t in terms:
            r = _reduction_term(t, users)
            if r is None:
                rest.append(t)
            else:
                groups[(r[0], r[1], r[2].id, r[4])].append((t, r))
        changed = False
        for (c, kind, _, n), members in groups.items():
            base = members[0][1][2]
            starts = sorted(r[3] for _, r in members)
            if len(members) < 2 or starts != list(range(0, base.shape[0], n)) or len(starts) * n != base.shape[0]:
                rest += [t for t, _ in members]
                continue
            red = Value(kind(None, False), (base,), (), v.dtype, v.src)
            term = Value(Scale(c * (len(members) if kind is Mean else 1)), (red,), (), v.dtype, v.src)
            new += [red, term]
            rest.append(term)
            changed = True
        if changed:
            total = rest[0] if len(rest) == 1 else Value(AddN(), tuple(rest), (), v.dtype, v.src)
            if len(rest) > 1:
                new.append(total)
            sub[v.id] = total
    if not sub:
        return p
    p.values = p.values + new
    p = rewire(p, sub)
    p.values = _toposort(p.values)
    return prune(p)
