"""Class picking in the forms fused kernels compute: the targets, and the gradient of the picked entries, as
columns (n, 1) read once per row. A Pick then joins the kernel of the log-softmax it reads, its gradient the
kernel of the log-softmax's gradient, where as numpy ops they cost a call each and a dense (n, classes) array.
``as_columns`` rewrites a program's Pick and PickGrad values into these forms (the fusion pass runs it first);
the rank-1 results the rest of the program reads are views of the columns.
"""
from __future__ import annotations

import re

from ..ops import Op, Pick, PickGrad, Reshape
from ..ops.nnet import TARGET_OUT_OF_RANGE
from .ir import Value, clone, resolve, substitute

TARGET_CHECK = "# target check"       # ends a kernel's line returning a target out of range for its classes


def target_checks(source: str) -> list[int]:
    """The numbers of classes the targets are checked against in a kernel's source."""
    return [int(c) for c in re.findall(rf">= (\d+): return .*{TARGET_CHECK}$", source, flags=re.M)]


def readable_errors(kernel, classes):
    """``kernel`` (a compiled kernel that checks targets against ``classes``, returning a bad one, else 0), with a
    bad target raised as the IndexError Pick.forward raises. (Of several numbers of classes, the message names
    the least the target is out of range for: a true statement whichever check found it.)"""
    def call(*args):
        bad = kernel(*args)
        if bad:
            c = min(c for c in classes if not 0 <= bad < c)
            raise IndexError(TARGET_OUT_OF_RANGE.format(bad, c))
    call.__name__ = call.__qualname__ = getattr(kernel, "__name__", "kernel")
    return call


class PickColumn(Op):
    """y[n, 0] = x[n, t[n, 0]]: Pick with its targets and its result as columns"""
    arity = 2
    family = "nnet"
    axis = -1                      # a row-wise op: reads a whole row of x, at the target's column
    index_arg = 1                  # an integer column, not an array of the result's dtype

    def __init__(self, classes):
        self.classes = int(classes)

    def attrs(self):
        return (("classes", self.classes),)

    def shape(self, x, t): return (x[0], 1)
    def dtype(self, dx, dt): return dx
    def forward(self, x, t): return Pick().forward(x, t[:, 0])[:, None]


class PickGradColumn(Op):
    """the gradient of Pick from a column of gradients g and a column of targets t: g[n, 0] at [n, t[n, 0]]"""
    arity = 2
    family = "grad"
    grad_only = True
    index_arg = 1

    def __init__(self, classes):
        self.classes = int(classes)

    def attrs(self):
        return (("classes", self.classes),)

    def shape(self, g, t): return (g[0], self.classes)
    def dtype(self, dg, dt): return dg
    def forward(self, g, t): return PickGrad(self.classes).forward(g[:, 0], t[:, 0])


def as_columns(prog):
    """The program with each Pick (of float scores) and PickGrad in its column form (a new program)."""
    p = clone(prog)
    sub, values, columns = {}, [], {}

    def column(u, src):                         # one column view per array (a pick and its gradient share t)
        if u.id not in columns:
            columns[u.id] = Value(Reshape((-1, 1)), (u,), (u.shape[0], 1), u.dtype, src)
            values.append(columns[u.id])
        return columns[u.id]

    for v in p.values:
        v.args = tuple(resolve(sub, a) for a in v.args)
        if isinstance(v.op, Pick) and v.shape is not None and v.args[0].dtype.kind == "f":
            x, t = v.args
            picked = Value(PickColumn(x.shape[1]), (x, column(t, v.src)), (x.shape[0], 1), x.dtype, v.src)
            sub[v.id] = y = Value(Reshape((-1,)), (picked,), v.shape, v.dtype, v.src)
            values += [picked, y]
        elif isinstance(v.op, PickGrad) and v.shape is not None and v.dtype.kind == "f":
            g, t = v.args
            sub[v.id] = y = Value(PickGradColumn(v.op.classes), (column(g, v.src), column(t, v.src)), v.shape,
                                  v.dtype, v.src)
            values.append(y)
        else:
            values.append(v)
    if not sub:
        return prog
    p.values = values
    return substitute(p, sub)
