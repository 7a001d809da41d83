"""Reductions: sum, mean and max over axes, and the broadcast that undoes them."""
from __future__ import annotations

import numpy as np

from .base import Op, norm_dim, size_of
from ..errors import ShapeMismatch


def _axes(axes, ndim):
    if axes is None:
        return tuple(range(ndim))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    out = tuple(sorted({norm_dim(a, ndim, "axis") for a in axes}))
    return out


def _reduced(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


class Reduce(Op):
    family = "reduce"

    def __init__(self, axes=None, keepdims=False):
        self.axes = axes if axes is None or isinstance(axes, int) else tuple(axes)
        self.keepdims = bool(keepdims)

    def shape(self, x):
        return _reduced(x, _axes(self.axes, len(x)), self.keepdims)

    def _expand(self, b, g, x):
        """g reshaped to keepdims form and broadcast to x's shape."""
        from .shape import Reshape
        kept = _reduced(x.shape, _axes(self.axes, x.ndim), True)
        if tuple(g.shape) != kept:
            g = b(Reshape(kept), g)
        return b(BroadcastTo(tuple(x.shape)), g)


class Sum(Reduce):
    """y = sum of x over axes"""
    def forward(self, x): return np.sum(x, axis=self.axes, keepdims=self.keepdims)

    def expr(self, x):
        return f"{x}.sum(axis={self.axes!r}, keepdims={self.keepdims})"

    def vjp(self, b, g, y, x): return (self._expand(b, g, x),)


class Mean(Reduce):
    """y = mean of x over axes"""
    def forward(self, x): return np.mean(x, axis=self.axes, keepdims=self.keepdims)

    def expr(self, x):
        if self.axes is None:        # np.mean's own sum and division, without its Python wrapper (4 us -> 1 us)
            return f"np.add.reduce({x}, axis=None, keepdims={self.keepdims}) / {x}.size"
        return f"{x}.mean(axis={self.axes!r}, keepdims={self.keepdims})"

    def vjp(self, b, g, y, x):
        from .elementwise import Scale
        n = 1
        for a in _axes(self.axes, x.ndim):
            n *= x.shape[a]
        # n == 0: x is empty, and so is its gradient (whatever the scale)
        return (self._expand(b, b(Scale(1.0 / n if n else 0.0), g), x),)


class Max(Reduce):
    """y = max of x over one axis; the gradient goes to the first maximum"""
    def __init__(self, axis, keepdims=False):
        if not isinstance(axis, int):
            raise ShapeMismatch("Max reduces over one axis")
        super().__init__(axis, keepdims)

    def forward(self, x): return np.max(x, axis=self.axes, keepdims=self.keepdims)

    def vjp(self, b, g, y, x): return (b(MaxGrad(self.axes, self.keepdims), g, x),)


class MaxGrad(Reduce):
    """the gradient of Max: g placed at the first argmax, zeros elsewhere"""
    arity = 2
    grad_only = True
    family = "grad"

    def shape(self, g, x): return x

    def forward(self, g, x):
        ax = self.axes % x.ndim
        idx = np.expand_dims(np.argmax(x, axis=ax), ax)
        out = np.zeros_like(x)
        gk = g if self.keepdims else np.expand_dims(g, ax)
        np.put_along_axis(out, idx, gk, axis=ax)
        return out


class BroadcastTo(Op):
    """y = x broadcast to ``shape`` (a read-only view)"""
    family = "shape"
    view = True

    def __init__(self, shape):
        self.to = tuple(shape)

    def shape(self, x):
        if len(x) > len(self.to) or any(
                d is not None and t is not None and d not in (1, t) for d, t in zip(x[::-1], self.to[::-1])):
            raise ShapeMismatch(f"cannot broadcast to {self.to}")
        return self.to

    def forward(self, x): return np.broadcast_to(x, self.to)
    def expr(self, x): return f"np.broadcast_to({x}, {self.to!r})"

    def vjp(self, b, g, y, x):
        from .base import unbroadcast
        return (unbroadcast(b, g, x.shape),)


__all__ = ["Sum", "Mean", "Max", "MaxGrad", "BroadcastTo", "size_of"]
