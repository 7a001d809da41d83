"""Neural-net ops that are not plain elementwise: softmax, log-softmax, class picking, embedding lookup."""
from __future__ import annotations

import numpy as np

from .base import Op, dim_eq, norm_dim
from ..errors import ShapeMismatch


class _AlongAxis(Op):
    """The softmax family: ops along ``axis``, row by row unless the axis is the rows' own."""

    def __init__(self, axis=-1):
        self.axis = int(axis)

    def row_pattern(self, *xs): return _along(self.axis, xs)


class _Normalizer(_AlongAxis):
    family = "nnet"

    def shape(self, x):
        norm_dim(self.axis, len(x))
        return x


class _NormalizerGrad(_AlongAxis):
    """The gradient of a normalizer from its output y and the incoming gradient g."""
    arity = 2
    grad_only = True
    family = "grad"


class Softmax(_Normalizer):
    """y = exp(x - max) / sum(exp(x - max)) along ``axis``"""

    def forward(self, x):
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        e /= e.sum(axis=self.axis, keepdims=True)
        return e

    def vjp(self, b, g, y, x): return (b(SoftmaxGrad(self.axis), g, y),)


class SoftmaxGrad(_NormalizerGrad):
    """y (g - sum(g y)): the gradient of Softmax from its output"""

    def forward(self, g, y):
        gy = g * y
        return gy - y * gy.sum(axis=self.axis, keepdims=True)


class LogSoftmax(_Normalizer):
    """y = x - max - log(sum(exp(x - max))) along ``axis``"""

    def forward(self, x):
        z = x - x.max(axis=self.axis, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=self.axis, keepdims=True))
        return z

    def vjp(self, b, g, y, x): return (b(LogSoftmaxGrad(self.axis), g, y),)


class LogSoftmaxGrad(_NormalizerGrad):
    """g - exp(y) sum(g): the gradient of LogSoftmax from its output"""

    def forward(self, g, y):
        return g - np.exp(y) * g.sum(axis=self.axis, keepdims=True)


def _along(axis, shapes):
    """Ops along ``axis`` work row by row unless the axis is the rows' own."""
    nd = len(shapes[0])
    return (True,) * len(shapes) if nd > 1 and axis % nd != 0 else None


def _check_index_dtype(d, what):
    if d is not None and d.kind not in "iu":
        raise ShapeMismatch(f"{what} must hold integer indices, got dtype {d}")


TARGET_OUT_OF_RANGE = "target class {} is out of range for {} classes (targets are 0-based)"


class Pick(Op):
    """y[n] = x[n, t[n]]: one entry per row, chosen by integer targets t (0-based)"""
    arity = 2
    family = "nnet"

    def shape(self, x, t):
        if len(x) != 2 or len(t) != 1:
            raise ShapeMismatch("needs scores of shape (batch, classes) and targets of shape (batch,)")
        if not dim_eq(x[0], t[0]):
            raise ShapeMismatch(f"batch sizes differ: {x[0]} scores vs {t[0]} targets")
        return (x[0] if x[0] is not None else t[0],)

    def dtype(self, dx, dt):
        _check_index_dtype(dt, "the target")
        return super().dtype(dx)

    def row_pattern(self, x, t): return (True, True)

    def forward(self, x, t):
        if t.size and (t.min() < 0 or t.max() >= x.shape[1]):
            bad = t[(t < 0) | (t >= x.shape[1])][0]
            raise IndexError(TARGET_OUT_OF_RANGE.format(bad, x.shape[1]))
        return x[np.arange(x.shape[0]), t]

    def vjp(self, b, g, y, x, t): return b(PickGrad(x.shape[1]), g, t), None


class PickGrad(Op):
    """the gradient of Pick: g[n] placed at [n, t[n]] of a zero (batch, classes) array"""
    arity = 2
    grad_only = True
    family = "grad"

    def __init__(self, classes):
        self.classes = int(classes)

    def shape(self, g, t): return (g[0], self.classes)
    def row_pattern(self, g, t): return (True, True)
    def dtype(self, dg, dt): return dg

    def forward(self, g, t):
        out = np.zeros((g.shape[0], self.classes), g.dtype)
        out[np.arange(g.shape[0]), t] = g
        return out


class Take(Op):
    """y = w[idx]: rows of a table (an embedding lookup); y has shape idx.shape + (d,)"""
    arity = 2
    family = "nnet"

    def shape(self, w, idx):
        if len(w) != 2:
            raise ShapeMismatch("the table must be 2-d (entries, size)")
        return tuple(idx) + (w[1],)

    def dtype(self, dw, didx):
        _check_index_dtype(didx, "the index input")
        return dw

    def forward(self, w, idx):
        if idx.size and (idx.min() < 0 or idx.max() >= w.shape[0]):
            bad = idx[(idx < 0) | (idx >= w.shape[0])][0]
            raise IndexError(f"index {bad} is out of range for a table of {w.shape[0]} entries (0-based)")
        return w[idx]

    def vjp(self, b, g, y, w, idx): return b(TakeGrad(w.shape[0]), g, idx), None


class TakeGrad(Op):
    """the gradient of Take: each row of g added into row idx of a zero table (repeats add up)"""
    arity = 2
    grad_only = True
    family = "grad"

    def __init__(self, rows):
        self.rows = int(rows)

    def shape(self, g, idx): return (self.rows, g[-1])
    def dtype(self, dg, didx): return dg

    def forward(self, g, idx):
        out = np.zeros((self.rows, g.shape[-1]), g.dtype)
        np.add.at(out, idx.ravel(), g.reshape(-1, g.shape[-1]))
        return out
