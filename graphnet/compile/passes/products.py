"""Products reassociated so that what backward multiplies by forward values alone is done apart from it.

- (g * a) * b, a and b forward values, g a gradient -> g * (a * b): a * b no longer waits for g, so row
  batching computes it for every time step in one call (an LSTM's dh * o * tanh'(c), say).
- concat(p_1, ..., p_k) * s along one dim, each p_i a product of a gradient and a forward value used there
  alone -> concat(p_1 * s_1, ..., p_k * s_k), s_i the matching slice of s; by the rule above each p_i * s_i
  folds s_i into its forward factor, and the product of the whole stack disappears.

Pure algebra on the IR: nothing here knows a layer.
"""
from ...ops import Concat, Mul, Slice
from ..ir import Value
from ..lower import clone
from .batch import finish, gradient_ids, use_counts


def _context(p):
    """(ids of values no gradient flows into, use counts)."""
    grad = gradient_ids(p.values)
    fwd = {v.id for v in p.values if v.id not in grad}
    users = use_counts(p.values)
    for v in p.outputs + p.input_grads + p.param_grads:
        if v is not None:
            users[v.id] += 1                  # a root is used by the caller
    return fwd, users


def _split(m, fwd):
    """(gradient factor, forward factor) of a product of one of each, else None."""
    if not isinstance(m.op, Mul) or len(m.args) != 2 or any(tuple(a.shape) != tuple(m.shape) for a in m.args):
        return None
    a, b = m.args
    if a.id in fwd and b.id not in fwd:
        return b, a
    if b.id in fwd and a.id not in fwd:
        return a, b
    return None


def distribute_over_stacks(prog):
    p = clone(prog)
    fwd, users = _context(p)
    sub, new = {}, []
    for v in list(p.values):
        if not isinstance(v.op, Mul) or v.id in fwd:
            continue
        for c, s in ((v.args[0], v.args[1]), (v.args[1], v.args[0])):
            if (isinstance(c.op, Concat) and users[c.id] == 1 and s.id in fwd
                    and tuple(c.shape) == tuple(s.shape) == tuple(v.shape)
                    and all(users[x.id] == 1 and _split(x, fwd) for x in c.args)):
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


def reassociate_products(prog):
    p = clone(prog)
    fwd, users = _context(p)
    sub, new = {}, []
    for v in list(p.values):
        if not isinstance(v.op, Mul) or v.id in fwd or any(tuple(a.shape) != tuple(v.shape) for a in v.args):
            continue
        for inner, b in ((v.args[0], v.args[1]), (v.args[1], v.args[0])):
            ga = _split(inner, fwd) if users[inner.id] == 1 and b.id in fwd else None
            if ga is not None:
                break
        else:
            continue
        g, a = ga
        ab = Value(Mul(), (a, b), v.shape, v.dtype, v.src)
        out = Value(Mul(), (g, ab), v.shape, v.dtype, v.src)
        fwd.add(ab.id)                        # forward values only: it can run with the forward pass
        new += [ab, out]
        sub[v.id] = out
        users[inner.id] -= 1
    return finish(p, new, sub)
