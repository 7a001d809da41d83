"""Algebraic simplification.

- A sum of Unslices that tile one dim (the gradient of several Narrows of one value, e.g. gates cut from one
  pre-activation) becomes one Concat: no zero arrays, no additions.
- Ops that do nothing (Scale(1), a Reshape or Transpose that keeps the layout, a one-argument AddN) vanish.
- A sum of a full array and several smaller ones that broadcast to it (a cell's input projection plus its two
  biases) adds the smaller ones first: X + (b + c) is one pass over X, (X + b) + c two (and, on the numba
  backend, a kernel to compile).
- A stack of copies of one broadcast value is that value broadcast to the whole stack (a loss summed over time
  steps seeds every step's gradient with one broadcast scalar; batching the steps stacks the copies): a view,
  not a copy per piece.
"""
import math

from ...ops import AddN, BroadcastTo, Concat, Reshape, Scale, Transpose, Unslice
from ...ops.base import broadcast_shapes
from ..ir import Value, clone, resolve, roots, substitute, use_counts
from .addition_trees import addends, is_tree_root, sum_of


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


def _stacked_broadcast(v):
    """BroadcastTo(stack shape)(x) if v = Concat(copies of one BroadcastTo(x)) along a dim x broadcasts over."""
    if not isinstance(v.op, Concat) or len(v.args) < 2 or v.shape is None or None in v.shape:
        return None
    b = v.args[0]
    if not isinstance(b.op, BroadcastTo) or any(a is not b for a in v.args):
        return None
    x = b.args[0]
    if x.shape is None or len(x.shape) > len(v.shape):
        return None
    d = v.op.dim % len(v.shape)
    lead = len(v.shape) - len(x.shape)
    if d >= lead and x.shape[d - lead] != 1:
        return None
    return Value(BroadcastTo(v.shape), (x,), v.shape, v.dtype, v.src)


def _small_terms_first(v, users, rooted, user):
    """[sum of the smaller terms, v's new form] if v is the root of an addition tree with a term of v's shape and
    two or more that broadcast to it with fewer elements; else None."""
    if not is_tree_root(v, users, rooted, user) or None in v.shape:
        return None
    terms = addends(v, users, rooted)
    if any(t.shape is None or None in t.shape for t in terms):
        return None
    size = math.prod(v.shape)
    small = [t for t in terms if math.prod(t.shape) < size]
    full = [t for t in terms if t.shape == v.shape]
    if len(small) < 2 or not full or len(small) + len(full) != len(terms):
        return None
    bias = Value(AddN(), tuple(small), broadcast_shapes(*[t.shape for t in small]), v.dtype, v.src)
    return [bias, sum_of([*full, bias], v.shape, v.dtype, v.src)]


def simplify(prog):
    p = clone(prog)
    sub = {}
    users, rooted = use_counts(p.values), {v.id for v in roots(p)}
    user = {a.id: u for u in p.values for a in u.args}
    values = []
    for v in p.values:
        v.args = tuple(resolve(sub, a) for a in v.args)
        same = _identity(v)
        if same is not None:
            sub[v.id] = same
            values.append(v)
            continue
        cat = _tiling_concat(v) or _stacked_broadcast(v)
        new = [cat] if cat is not None else _small_terms_first(v, users, rooted, user) or [v]
        values += new
        if new[-1] is not v:
            sub[v.id] = new[-1]
    p.values = values
    return substitute(p, sub)
