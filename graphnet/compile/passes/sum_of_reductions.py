"""A sum of means (or sums) over the row blocks of one array is one mean (or sum) over the array: the T
per-step losses of an unrolled net, one reduction."""
from collections import defaultdict

from ...ops import Add, AddN, Mean, Scale, Sum
from ..ir import Value, clone, finish, roots, use_counts
from .addition_trees import addends
from .stacking import row_block


def _reduction_term(t, users):
    """(coefficient, kind, base, start, rows) for t = c * mean/sum of a row block of base, else None."""
    c = 1.0
    while isinstance(t.op, Scale) and users[t.args[0].id] == 1:
        c *= t.op.c
        t = t.args[0]
    if not isinstance(t.op, (Mean, Sum)) or t.op.axes is not None or users[t.id] > 1:
        return None
    b = row_block(t.args[0])
    return None if b is None else (c, type(t.op), b[0], b[1], b[2])


def sum_of_reductions(prog):
    """sum_i c * mean(X[block_i]) over equal blocks tiling X -> c * k * mean(X) (likewise for sums)."""
    p = clone(prog)
    users = use_counts(p.values)
    rooted = {v.id for v in roots(p)}
    sub, new = {}, []
    for v in list(p.values):
        if not isinstance(v.op, (Add, AddN)) or v.shape != () or (users[v.id] == 1 and v.id not in rooted):
            continue                                  # only the root of an addition tree
        terms = addends(v, users, rooted, scalar=True)
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
