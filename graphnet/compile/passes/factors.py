"""Products of a gradient and a forward value, shared by ``reassociate_products`` and
``distribute_over_stacks``: which values a gradient flows into, and the two factors of such a product."""
from ...ops import Mul
from ..ir import gradient_ids, use_counts


def phases(p):
    """(ids of values no gradient flows into, use counts)."""
    grad = gradient_ids(p.values)
    fwd = {v.id for v in p.values if v.id not in grad}
    return fwd, use_counts(p.values, p)       # a root counts as used once more: by the caller


def split_product(m, fwd):
    """(gradient factor, forward factor) of a product of one of each, else None."""
    if not isinstance(m.op, Mul) or len(m.args) != 2 or any(tuple(a.shape) != tuple(m.shape) for a in m.args):
        return None
    a, b = m.args
    if a.id in fwd and b.id not in fwd:
        return b, a
    if b.id in fwd and a.id not in fwd:
        return a, b
    return None
