"""A product of a stack of gradient products with a forward value goes into its pieces.

concat(p_1, ..., p_k) * s along one dim, each p_i a product of a gradient and a forward value used there alone
-> concat(p_1 * s_1, ..., p_k * s_k), s_i the matching slice of s; ``reassociate_products`` then folds each s_i
into its forward factor, and the product of the whole stack disappears. Pure algebra on the IR.
"""
from ...ops import Concat, Mul, Slice
from ..ir import Value, clone, finish
from .factors import phases, split_product


def distribute_over_stacks(prog):
    p = clone(prog)
    fwd, users = phases(p)
    sub, new = {}, []
    for v in list(p.values):
        if not isinstance(v.op, Mul) or v.id in fwd:
            continue
        for c, s in ((v.args[0], v.args[1]), (v.args[1], v.args[0])):
            if (isinstance(c.op, Concat) and users[c.id] == 1 and s.id in fwd
                    and tuple(c.shape) == tuple(s.shape) == tuple(v.shape)
                    and all(users[x.id] == 1 and split_product(x, fwd) for x in c.args)):
                break
        else:
            continue
        d, at, parts = c.op.dim % len(c.shape), 0, []
        for x in c.args:
            n = x.shape[d]
            s_i = Value(Slice(d, at, n), (s,), x.shape, s.dtype, v.src)
            q = Value(Mul(), (x, s_i), x.shape, v.dtype, v.src)
            new += [s_i, q]
            parts.append(q)
            at += n
        joined = Value(Concat(d), tuple(parts), v.shape, v.dtype, v.src)
        new.append(joined)
        sub[v.id] = joined
    return finish(p, new, sub)
