"""The terms of an addition tree, shared by the passes that regroup sums (``hoist_invariants``,
``sum_of_reductions``, ``simplify``)."""
from ...ops import Add, AddN
from ..ir import Value


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


def is_tree_root(v, users, rooted, user) -> bool:
    """v is an addition that no single-use addition reads: the root of an addition tree (``user``: id -> a
    value reading it)."""
    return isinstance(v.op, (Add, AddN)) and bool(v.shape) and not (
        users[v.id] == 1 and v.id not in rooted and isinstance(user[v.id].op, (Add, AddN)))


def sum_of(terms, shape, dtype, src):
    """The value adding ``terms``: an Add for two (the memory plan may write it over a term's array, as it does
    a Linear's bias add), else an AddN."""
    return Value(Add() if len(terms) == 2 else AddN(), tuple(terms), shape, dtype, src)
