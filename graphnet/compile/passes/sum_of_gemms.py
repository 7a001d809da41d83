"""Sums of weight-gradient GEMMs folded into one GEMM over stacked rows.

sum_i A_i^T B_i (the gradients of a weight shared by k uses, one per use) -> [A_1; ...]^T [B_1; ...], and a sum
of column sums (the bias gradients) -> one column sum over the stacked rows. The stacks are free where the A_i
or B_i are row blocks of one array already (``stacking``).
"""
from ...ops import AddN, MatMul, Sum
from ..ir import Value, clone, finish, gradient_ids, roots, use_counts
from .stacking import Stacks, best_order, new_values

MIN_GROUP = 2


def sum_of_gemms(prog):
    p = clone(prog)
    users = use_counts(p.values)
    rooted = {v.id for v in roots(p)}

    def private(a):                  # used by this sum alone: safe to fold away
        return users[a.id] == 1 and a.id not in rooted

    sub, inserted = {}, []
    present = {v.id for v in p.values}
    existing = Stacks(p.values)
    grad = gradient_ids(p.values)
    for v in list(p.values):
        if not isinstance(v.op, AddN):
            continue
        gemms = [a for a in v.args if isinstance(a.op, MatMul) and a.op.ta and not a.op.tb and private(a)
                 and len(a.args[0].shape) == 2 and len(a.args[1].shape) == 2]
        sums = [a for a in v.args if isinstance(a.op, Sum) and a.op.axes in (0, (0,)) and not a.op.keepdims
                and len(a.args[0].shape) == 2 and private(a)]
        folded = {a.id for a in gemms} | {a.id for a in sums}     # a set: a sum over T steps has T terms
        parts = [a for a in v.args if a.id not in folded]
        if len(gemms) >= MIN_GROUP:
            # rows of a larger stack make the sum wait for all of it: only where nothing waits for the sum
            _, st, _ = best_order(gemms, [0, 1], existing, grad, partial=not users[v.id])
            parts.append(Value(MatMul(True, False), (st[0], st[1]), v.shape, v.dtype, v.src))
            for x in (st[0], st[1]):
                for y in new_values(x, present):
                    present.add(y.id)
                    inserted.append(y)
            inserted.append(parts[-1])
            existing.add([st[0], st[1]])
        else:
            parts += gemms
        if len(sums) >= MIN_GROUP:
            _, st, _ = best_order(sums, [0], existing, grad, partial=not users[v.id])
            parts.append(Value(Sum(0, False), (st[0],), v.shape, v.dtype, v.src))
            for y in new_values(st[0], present):
                present.add(y.id)
                inserted.append(y)
            inserted.append(parts[-1])
            existing.add([st[0]])
        else:
            parts += sums
        if len(parts) != len(v.args):
            v.args = tuple(parts)
    if not inserted:
        return p
    for v in p.values:               # a one-argument sum is its argument
        if isinstance(v.op, AddN) and len(v.args) == 1:
            sub[v.id] = v.args[0]
    return finish(p, inserted, sub)
