"""Matrix products."""
from __future__ import annotations

import numpy as np

from .base import Op, broadcast_shapes, dim_eq, unbroadcast
from ..errors import ShapeMismatch


class MatMul(Op):
    """y = op(a) @ op(b), op = transpose of the last two dims where ``ta``/``tb``; batch dims broadcast"""
    arity = 2
    family = "linalg"

    def __init__(self, ta=False, tb=False):
        self.ta, self.tb = bool(ta), bool(tb)

    def _mk(self, s, t, which):
        if len(s) < 2:
            raise ShapeMismatch(f"matmul needs inputs of 2 or more dims; {which} is {len(s)}-d")
        return s[:-2] + ((s[-1], s[-2]) if t else (s[-2], s[-1]))

    def shape(self, a, b):
        a, b = self._mk(a, self.ta, "a"), self._mk(b, self.tb, "b")
        if not dim_eq(a[-1], b[-2]):
            raise ShapeMismatch(f"inner sizes differ: {a[-1]} (columns of a) vs {b[-2]} (rows of b)")
        return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])

    def row_pattern(self, a, b):
        return (True, False) if not self.ta and len(a) == 2 and len(b) == 2 else None

    def forward(self, a, b):
        return np.matmul(a.mT if self.ta else a, b.mT if self.tb else b)

    def expr(self, a, b):
        return f"{a}{'.mT' if self.ta else ''} @ {b}{'.mT' if self.tb else ''}"

    def expr_out(self, out, k, a, b):
        return f"np.matmul({a}{'.mT' if self.ta else ''}, {b}{'.mT' if self.tb else ''}, {out})"

    def expr_out_2d(self, out, k, a, b):
        """Into a C-contiguous ``out``, of 2-D operands: np.dot, whose call costs about half of np.matmul's
        (0.7-1.1 us against 1.2-1.6 us for a batch of one here), the same BLAS call."""
        return f"np.dot({a}{'.T' if self.ta else ''}, {b}{'.T' if self.tb else ''}, {out})"

    def vjp(self, b, g, y, x1, x2):
        from .shape import Reshape
        if x1.ndim > 2 and x2.ndim == 2 and not self.ta:
            # (..., k) @ (k, m): one GEMM over all the rows for the weight gradient
            rows = int(np.prod(x1.shape[:-1]))
            a2 = b(Reshape((rows, x1.shape[-1])), x1)
            g2 = b(Reshape((rows, g.shape[-1])), g)
            gb = b(MatMul(ta=True), a2, g2) if not self.tb else b(MatMul(ta=True), g2, a2)
            ga = b(MatMul(tb=not self.tb), g, x2)
            return ga, gb
        ga = b(MatMul(tb=not self.tb), g, x2) if not self.ta else b(MatMul(ta=self.tb, tb=True), x2, g)
        gb = b(MatMul(ta=not self.ta), x1, g) if not self.tb else b(MatMul(ta=True, tb=self.ta), g, x1)
        return unbroadcast(b, ga, x1.shape), unbroadcast(b, gb, x2.shape)
