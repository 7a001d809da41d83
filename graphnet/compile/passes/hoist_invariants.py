"""A bias added to a row block moved next to it, so that the block sums batch too."""
from ...ops import AddN
from ..ir import Value, clone, finish, roots, use_counts
from .addition_trees import addends, is_tree_root, sum_of
from .stacking import row_block


def hoist_invariants(prog):
    """X[block] + u + b, with b the same for every row (a bias) -> (X[block] + b) + u.

    Summed with a row block, the bias is added once to all of X once the block sums are batched (the input
    projection of every time step plus both biases of a recurrent cell: one addition, not one per step).
    """
    p = clone(prog)
    users = use_counts(p.values)
    rooted = {v.id for v in roots(p)}
    user = {a.id: u for u in p.values for a in u.args}
    sub, new = {}, []
    for v in p.values:
        if not is_tree_root(v, users, rooted, user):
            continue
        terms = addends(v, users, rooted)
        block = next((i for i, t in enumerate(terms) if row_block(t) is not None and t.shape == v.shape), None)
        fixed = [i for i, t in enumerate(terms) if len(t.shape) < len(v.shape)]
        if block is None or not fixed or len(terms) == 1 + len(fixed):
            continue
        inner = sum_of([terms[i] for i in [block] + fixed], v.shape, v.dtype, v.src)
        rest = tuple(t for i, t in enumerate(terms) if i != block and i not in fixed)
        outer = Value(AddN(), (inner,) + rest, v.shape, v.dtype, v.src)
        new += [inner, outer]
        sub[v.id] = outer
    return finish(p, new, sub)
