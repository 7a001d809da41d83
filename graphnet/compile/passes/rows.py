"""Row batching: k independent applications of one row-wise op become one application on stacked rows.

An op that works row by row along dim 0 (``Op.row_pattern``: elementwise ops, softmax along the last dim, class
picking, ``x @ W``) applied to k inputs of one shape, none depending on another's result, is computed once on
the inputs stacked by rows; each result is a row slice of the one output. Stacking is free when the inputs are
already the row slices of one array, in order (a previous batch's output): so a chain of such ops (the head
``log_softmax(h_t @ W + b)`` at every time step, the derivatives of the gates at every step in backward) is
batched link by link, one call per link instead of one per time step.

``hoist_invariants``: a bias added to a row block is moved next to it, so the block sums batch too.
``sum_of_reductions``: a sum of means (or sums) over the row blocks of one array is one mean over the array.

All algebra on the IR, not pattern matching on layers.
"""
from collections import defaultdict

from ...ops import Add, AddN, Mean, Scale, Slice, Sum
from ..ir import Value
from ..lower import clone
from .batch import Stacks, best_order, finish, gradient_ids, new_values, row_block as _row_slice, use_counts

MAX_ROUNDS = 16


def _pattern(v, patterns):
    """``Op.row_pattern`` of v, cached by value id (shapes do not change under rewriting)."""
    pat = patterns.get(v.id, False)
    if pat is False:
        pat = None
        if v.args and v.op.pure and v.shape and all(a.shape is not None for a in v.args):
            pat = v.op.row_pattern(*[a.shape for a in v.args])
            pat = pat if pat is not None and any(pat) else None
        patterns[v.id] = pat
    return pat


def _candidates(values, fwd, patterns):
    """Groups of values that one batched application could compute, keyed by what must be equal."""
    groups = defaultdict(list)
    for v in values:
        pattern = _pattern(v, patterns)
        if pattern is None:
            continue
        key = (v.op.key(), id(v) in fwd, v.dtype.str, pattern,
               tuple(a.shape if r else a.id for a, r in zip(v.args, pattern)),
               tuple(a.dtype.str for a in v.args))
        groups[key].append(v)
    return [g for g in groups.values() if len(g) > 1]


class _Ancestry:
    """Ancestor sets as bitmasks, one bit per candidate member, kept exact while values are merged.

    One per phase: a forward value never depends on a backward one, and a group is all forward or all backward,
    so each phase tracks its own values and its own members' bits (half the width, a quarter of the work)."""

    def __init__(self, values, members):
        self.bit, self.anc, self.members, self.values = {}, {}, members, []
        for v in values:
            self.add(v)

    def add(self, v):
        anc, bit = self.anc, self.bit
        m = 0
        for a in v.args:
            m |= anc.get(a.id, 0) | bit.get(a.id, 0)
        anc[v.id] = m
        if v.id in self.members:
            bit[v.id] = 1 << len(bit)
        self.values.append(v)

    def merged(self, members_mask, big):
        """Every value downstream of a member now also depends on the batched value (and its inputs)."""
        add = self.anc[big.id]
        anc = self.anc
        for v in self.values:
            if anc[v.id] & members_mask:
                anc[v.id] |= add


def _one_round(p, patterns):
    values = list(p.values)
    present = {v.id for v in values}
    fwd = {id(v) for v in p.forward_values()}
    # stacks to share, by phase: a forward value may not read a stack that backward makes
    existing = {True: Stacks([v for v in values if id(v) in fwd]), False: Stacks(values)}
    grad = gradient_ids(values)
    order = {v.id: i for i, v in enumerate(values)}
    groups = _candidates(values, fwd, patterns)
    graphs = {phase: _Ancestry([v for v in values if (id(v) in fwd) == phase],
                               {m.id for g in groups if (id(g[0]) in fwd) == phase for m in g})
              for phase in (True, False)}
    sub, new, n_merged = {}, [], 0

    def resolve(a):
        while a.id in sub:
            a = sub[a.id]
        return a
    def select(members, pattern):
        """The members one application can compute: same shared inputs, none depending on another."""
        fixed = [a for a, r in zip(members[0].args, pattern) if not r]
        chosen, mask, above = [], 0, 0
        graph = graphs[id(members[0]) in fwd]
        for m in members:
            if any(a is not f for a, f in zip((a for a, r in zip(m.args, pattern) if not r), fixed)):
                continue                      # a shared input was itself batched: next round
            if graph.anc[m.id] & mask or above & graph.bit[m.id]:
                continue                      # depends on a member already chosen, or one depends on it
            chosen.append(m)
            mask |= graph.bit[m.id]
            above |= graph.anc[m.id]
        return chosen, mask

    def merge(chosen, mask, pattern, ordered):
        chosen, stacks, copies = ordered
        first = chosen[0]
        graph = graphs[id(first) in fwd]
        if (0 if first.op.view else len(chosen) - 1) - copies <= 0 and (copies or not first.op.view):
            return 0                          # no numpy call saved
        for j, r in enumerate(pattern):       # a stack cut from a larger one also waits for the rest of it
            if r and any(graph.anc.get(d.id, 0) & mask or graph.bit.get(d.id, 0) & mask
                         for y in new_values(stacks[j], present) for d in y.args if d.id in present):
                return 0
        args, made = [], []
        for j, r in enumerate(pattern):
            a = stacks[j] if r else first.args[j]
            for y in new_values(a, present):
                made.append(y)
                present.add(y.id)
            args.append(a)
        rows = first.shape[0]
        big = Value(first.op, tuple(args), (rows * len(chosen),) + tuple(first.shape[1:]), first.dtype, first.src)
        made.append(big)
        patterns[big.id] = None               # a batched value is not batched again
        for i, m in enumerate(chosen):
            piece = Value(Slice(0, i * rows, rows), (big,), m.shape, m.dtype, m.src)
            made.append(piece)
            sub[m.id] = piece
        for v in made:
            present.add(v.id)
            graph.add(v)
            if id(first) in fwd:
                fwd.add(id(v))
        for phase in (True, False) if id(first) in fwd else (False,):
            existing[phase].add(made)
        new.extend(made)
        graph.merged(mask, big)
        return 1

    # earlier groups first, so that a chain of row-wise ops is batched link by link within one round
    for group in sorted(groups, key=lambda g: order[g[0].id]):
        pattern = patterns[group[0].id]
        for m in group:
            m.args = tuple(resolve(a) for a in m.args)
        chosen, mask = select(group, pattern)
        if len(chosen) < 2:
            continue
        ordered = best_order(chosen, [j for j, r in enumerate(pattern) if r], existing[id(chosen[0]) in fwd], grad)
        n_merged += merge(chosen, mask, pattern, ordered)
    return finish(p, new, sub), n_merged


def batch_rows(prog):
    p = clone(prog)
    patterns, merged = {}, 0
    for _ in range(MAX_ROUNDS):
        p, n = _one_round(p, patterns)
        merged += n
        if not n:
            break
    p.meta["batched_groups"] = p.meta.get("batched_groups", 0) + merged     # for plan.stats()
    return p


# --- invariant addends next to row blocks ---------------------------------------------------------------------

def _addends(v, users, rooted, scalar=False):
    """The terms of the addition tree under v, through single-use additions (``scalar``: of scalars only)."""
    out = []
    for a in v.args:
        if isinstance(a.op, (Add, AddN)) and users[a.id] == 1 and a.id not in rooted and \
                (not scalar or a.shape == () and all(x.shape == () for x in a.args)):
            out += _addends(a, users, rooted, scalar)
        else:
            out.append(a)
    return out


def hoist_invariants(prog):
    """X[block] + u + b, with b the same for every row (a bias) -> (X[block] + b) + u.

    Summed with a row block, the bias is added once to all of X once the block sums are batched (the input
    projection of every time step plus both biases of a recurrent cell: one addition, not one per step).
    """
    p = clone(prog)
    users = use_counts(p.values)
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
    return finish(p, new, sub)


# --- sums of reductions ---------------------------------------------------------------------------------------

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
    users = use_counts(p.values)
    rooted = {v.id for v in p.outputs + p.input_grads + p.param_grads if v is not None}
    sub, new = {}, []
    for v in list(p.values):
        if not isinstance(v.op, (Add, AddN)) or v.shape != () or (users[v.id] == 1 and v.id not in rooted):
            continue                                  # only the root of an addition tree
        terms = _addends(v, users, rooted, scalar=True)
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
    return finish(p, new, sub)
