"""Criterions: modules called on (prediction, target) nodes that return a scalar loss node.

Each is a composition of primitives, reduced by the mean over all elements (size_average=True, as torch) or
the sum. Integer class targets are 0-based. A float target gets its true gradient.
"""
from __future__ import annotations

from .. import ops
from ..module import Module
from ._util import fail


class Criterion(Module):
    arity = 2

    def __init__(self, size_average: bool = True):
        super().__init__()
        self.size_average = bool(size_average)

    def reduce(self, b, per_element):
        op = ops.Mean if self.size_average else ops.Sum
        return b(op(None), per_element)

    def _same_shape(self, b, x, t):
        if len(x.shape) != len(t.shape) or any(p is not None and q is not None and p != q
                                               for p, q in zip(x.shape, t.shape)):
            from ..errors import fmt_shape
            raise fail(b, f"{type(self).__name__}: prediction {fmt_shape(x.shape)} and target "
                          f"{fmt_shape(t.shape)} must have the same shape")


class ClassNLLCriterion(Criterion):
    """loss = -mean_n x[n, t[n]] for log-probabilities x (batch, classes) and integer targets t (batch,)"""

    def lower(self, b, x, t):
        if len(x.shape) == 1:                      # one sample: (classes,) and a scalar target
            x = b(ops.Reshape((1, x.shape[0])), x)
            t = b(ops.Reshape((1,)), t)
        if len(x.shape) != 2 or len(t.shape) != 1:
            from ..errors import fmt_shape
            raise fail(b, f"ClassNLLCriterion takes log-probabilities (batch, classes) and integer targets "
                          f"(batch,), got {fmt_shape(x.shape)} and {fmt_shape(t.shape)}")
        picked = b(ops.Pick(), x, t)
        return b(ops.Scale(-1.0), self.reduce(b, picked))


class CrossEntropyCriterion(ClassNLLCriterion):
    """loss = ClassNLL(LogSoftMax(x), t): x are unnormalised scores (batch, classes)"""

    def lower(self, b, x, t):
        return super().lower(b, b(ops.LogSoftmax(-1), x), t)


class MSECriterion(Criterion):
    """loss = mean (x - t)^2"""

    def lower(self, b, x, t):
        self._same_shape(b, x, t)
        return self.reduce(b, b(ops.Square(), b(ops.Sub(), x, t)))


class AbsCriterion(Criterion):
    """loss = mean |x - t|"""

    def lower(self, b, x, t):
        self._same_shape(b, x, t)
        return self.reduce(b, b(ops.Abs(), b(ops.Sub(), x, t)))


class SmoothL1Criterion(Criterion):
    """loss = mean of (d^2 / 2 if |d| < 1 else |d| - 1/2), d = x - t"""

    def lower(self, b, x, t):
        self._same_shape(b, x, t)
        return self.reduce(b, b(ops.Huber(), b(ops.Sub(), x, t)))


class BCECriterion(Criterion):
    """loss = -mean (t log x + (1 - t) log(1 - x)), each log clamped at -100 as torch"""

    def lower(self, b, x, t):
        self._same_shape(b, x, t)
        clamp = ops.Threshold(-100.0, -100.0)
        log_x = b(clamp, b(ops.Log(), x))
        log_1mx = b(clamp, b(ops.Log(), b(ops.AddScalar(1.0), b(ops.Scale(-1.0), x))))
        # t log x + (1 - t) log(1 - x) = log(1 - x) + t (log x - log(1 - x))
        inner = b(ops.Add(), log_1mx, b(ops.Mul(), t, b(ops.Sub(), log_x, log_1mx)))
        return b(ops.Scale(-1.0), self.reduce(b, inner))
