"""Products reassociated so that what backward multiplies by forward values alone is done apart from it.

(g * a) * b, a and b forward values, g a gradient -> g * (a * b): a * b no longer waits for g, so row batching
computes it for every time step in one call (an LSTM's dh * o * tanh'(c), say). Pure algebra on the IR: nothing
here knows a layer.
"""
from ...ops import Mul
from ..ir import Value, clone, finish
from .factors import phases, split_product


def reassociate_products(prog):
    p = clone(prog)
    fwd, users = phases(p)
    sub, new = {}, []
    for v in list(p.values):
        if not isinstance(v.op, Mul) or v.id in fwd or any(tuple(a.shape) != tuple(v.shape) for a in v.args):
            continue
        for inner, b in ((v.args[0], v.args[1]), (v.args[1], v.args[0])):
            ga = split_product(inner, fwd) if users[inner.id] == 1 and b.id in fwd else None
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
