"""A stack of stacks along one dim is one stack (which the memory plan can then fill in place)."""
from ...ops import Concat
from ..ir import clone, prune, roots, use_counts


def flatten_stacks(prog):
    """concat(concat(a, b), c) along one dim, the inner one used there alone -> concat(a, b, c): one stack,
    which the memory plan can then fill in place."""
    p = clone(prog)
    users = use_counts(p.values)
    rooted = {v.id for v in roots(p)}
    changed = False
    for v in p.values:
        if not isinstance(v.op, Concat):
            continue
        d = v.op.dim % len(v.shape)
        flat = []
        for a in v.args:
            if (isinstance(a.op, Concat) and a.op.dim % len(a.shape) == d and users[a.id] == 1
                    and a.id not in rooted):
                flat += list(a.args)
            else:
                flat.append(a)
        if len(flat) != len(v.args):
            v.args = tuple(flat)
            changed = True
    return prune(p) if changed else p
