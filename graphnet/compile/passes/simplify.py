"""Algebraic simplification.

- A sum of Unslices that tile one dim (the gradient of several Narrows of one value, e.g. gates cut from one
  pre-activation) becomes one Concat: no zero arrays, no additions.
- Ops that do nothing (Scale(1), a Reshape or Transpose that keeps the layout, a one-argument AddN) vanish.
- ``flatten_stacks``: a stack of stacks along one dim is one stack.
- ``shared_transposes``: a weight used transposed by several products is transposed once.
"""
from ...ops import AddN, Concat, MatMul, Reshape, Scale, Transpose, Unslice
from ..ir import Value
from ..lower import clone, prune, substitute
from .batch import finish


def _identity(v):
    op = v.op
    if isinstance(op, Scale) and op.c == 1.0:
        return v.args[0]
    if isinstance(op, Reshape) and v.args[0].shape == v.shape:
        return v.args[0]
    if isinstance(op, Transpose) and op.perm == tuple(range(len(op.perm))):
        return v.args[0]
    if isinstance(op, AddN) and len(v.args) == 1 and v.args[0].shape == v.shape:
        return v.args[0]
    return None


def _tiling_concat(v):
    """Concat(dim)(pieces in order) if v = AddN(Unslice...) whose pieces exactly tile the dim, else None."""
    if not isinstance(v.op, AddN) or not all(isinstance(a.op, Unslice) for a in v.args):
        return None
    dims = {a.op.dim for a in v.args}
    if len(dims) != 1:
        return None
    d = dims.pop()
    pieces = sorted(v.args, key=lambda a: a.op.start)
    at = 0
    for a in pieces:
        if a.op.start != at:
            return None
        at += a.args[0].shape[d]
    if at != v.shape[d]:
        return None
    return Value(Concat(d), tuple(a.args[0] for a in pieces), v.shape, v.dtype, v.src)


def simplify(prog):
    p = clone(prog)
    sub = {}
    for i, v in enumerate(p.values):
        v.args = tuple(_resolve(sub, a) for a in v.args)
        same = _identity(v)
        if same is not None:
            sub[v.id] = same
            continue
        cat = _tiling_concat(v)
        if cat is not None:
            p.values[i] = cat
            sub[v.id] = cat
    return substitute(p, sub)


def _resolve(sub, v):
    while v.id in sub:
        v = sub[v.id]
    return v


def flatten_stacks(prog):
    """concat(concat(a, b), c) along one dim, the inner one used there alone -> concat(a, b, c): one stack,
    which the memory plan can then fill in place."""
    p = clone(prog)
    users = {}
    for v in p.values:
        for a in v.args:
            users[a.id] = users.get(a.id, 0) + 1
    rooted = {v.id for v in p.outputs + p.input_grads + p.param_grads if v is not None}
    changed = False
    for v in p.values:
        if not isinstance(v.op, Concat):
            continue
        d = v.op.dim % len(v.shape)
        flat = []
        for a in v.args:
            if (isinstance(a.op, Concat) and a.op.dim % len(a.shape) == d and users.get(a.id) == 1
                    and a.id not in rooted):
                flat += list(a.args)
            else:
                flat.append(a)
        if len(flat) != len(v.args):
            v.args = tuple(flat)
            changed = True
    return prune(p) if changed else p


def shared_transposes(prog):
    """x_i @ W.T for several x_i -> one view W.T, made once, that every product reads (no transposing per use,
    as a weight used at every time step would be)."""
    p = clone(prog)
    uses = {}
    for v in p.values:
        if isinstance(v.op, MatMul) and v.op.tb and not v.op.ta and len(v.args[1].shape) == 2:
            uses.setdefault(v.args[1].id, []).append(v)
    new, changed = [], False
    for users in uses.values():
        if len(users) < 2:
            continue
        w = users[0].args[1]
        wt = Value(Transpose((1, 0)), (w,), (w.shape[1], w.shape[0]), w.dtype, w.src)
        new.append(wt)
        for u in users:
            u.op, u.args = MatMul(False, False), (u.args[0], wt)
        changed = True
    return finish(p, new, {}) if changed else p
