"""The terms of an addition tree, shared by the passes that regroup sums (``hoist_invariants``,
``sum_of_reductions``)."""
from ...ops import Add, AddN


def addends(v, users, rooted, scalar=False):
    """The terms of the addition tree under v, through single-use additions (``scalar``: of scalars only), left to
    right. An explicit stack, not recursion: a loss summed over a thousand time steps is a tree a thousand deep."""
    out, todo = [], list(reversed(v.args))
    while todo:
        a = todo.pop()
        if isinstance(a.op, (Add, AddN)) and users[a.id] == 1 and a.id not in rooted and \
                (not scalar or a.shape == () and all(x.shape == () for x in a.args)):
            todo.extend(reversed(a.args))
        else:
            out.append(a)
    return out
