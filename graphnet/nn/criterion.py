"""Criterions: modules called on (prediction, target) nodes that return a scalar loss node.

Each is a composition of primitives, reduced by the mean over all elements (size_average=True, as torch) or
the sum. Integer class targets are 0-based. A float target gets its true gradient.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import fmt_shape
from ..module import Module, _bump
from ..node import shapes_agree
from ._util import build_error, check_int, fail


class Criterion(Module):
    """Called on (prediction, target) nodes it makes the loss node; run directly it speaks torch7:
    ``crit.forward(input, target)`` is the loss, ``crit.backward(input, target)`` its gradient w.r.t. input."""
    arity = 2
    compile_attrs = ("size_average",)

    def __init__(self, size_average: bool = True):
        super().__init__()
        self.size_average = size_average

    @property
    def size_average(self) -> bool:
        """Mean (True, torch's default) or sum; may be set at any time (torch7's ``crit.sizeAverage = false``)."""
        return self._size_average

    @size_average.setter
    def size_average(self, value):
        object.__setattr__(self, "_size_average", bool(value))
        _bump()                 # plans read their modules' compile_attrs again: the next run uses the new reduction
        self._record()

    sizeAverage = size_average

    def _record(self):
        """The constructor arguments that rebuild this criterion as it is now (for save/load and summaries)."""
        object.__setattr__(self, "_config", ((), {"size_average": self.size_average}))

    def backward(self, input, target, grad_output=None):
        """torch7: ``backward(input, target)`` -> d loss / d input. graphnet: ``backward([input, target], g)``
        -> the gradient of each input."""
        if isinstance(input, (list, tuple, dict)):
            return super().backward(input, target)
        return super().backward([input, target], 1.0 if grad_output is None else grad_output)[0]

    def reduce(self, b, per_element):
        op = ops.Mean if self.size_average else ops.Sum
        return b(op(None), per_element)

    def _same_shape(self, b, x, t):
        if not shapes_agree(x.shape, t.shape):
            raise fail(b, f"{type(self).__name__}: prediction {fmt_shape(x.shape)} and target "
                          f"{fmt_shape(t.shape)} must have the same shape")


class ClassNLLCriterion(Criterion):
    """loss = -sum_n w[t_n] x[n, t_n] / sum_n w[t_n] for log-probabilities x (batch, classes) and integer targets
    t (batch,); w: ``weights`` per class (default 1); targets equal to ``ignore_index`` count for nothing
    (torch's nll_loss(weight=..., ignore_index=...)); ``size_average=False``: the sum, not divided."""

    def __init__(self, weights=None, size_average: bool = True, ignore_index: int | None = None):
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.ndim != 1 or not np.all(np.isfinite(w)):
                raise build_error(f"{type(self).__name__}: weights must be a 1-d array of finite numbers (one per "
                                 f"class), got {np.shape(weights)}")
            weights = w
        Module.__init__(self)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "ignore_index",
                           None if ignore_index is None else check_int("ignore_index", ignore_index,
                                                                       module=type(self).__name__))
        self.size_average = size_average

    def _record(self):
        w = getattr(self, "weights", None)
        object.__setattr__(self, "_config", ((), {"weights": None if w is None else w.tolist(),
                                                  "size_average": self.size_average,
                                                  "ignore_index": getattr(self, "ignore_index", None)}))

    def lower(self, b, x, t):
        if len(x.shape) == 1:                      # one sample: (classes,) and a scalar target
            x = b(ops.Reshape((1, x.shape[0])), x)
            t = b(ops.Reshape((1,)), t)
        if len(x.shape) != 2 or len(t.shape) != 1:
            raise fail(b, f"ClassNLLCriterion takes log-probabilities (batch, classes) and integer targets "
                          f"(batch,), got {fmt_shape(x.shape)} and {fmt_shape(t.shape)}")
        if self.weights is None and self.ignore_index is None:
            return b(ops.Scale(-1.0), self.reduce(b, b(ops.Pick(), x, t)))
        return self._weighted(b, x, t)

    def _weighted(self, b, x, t):
        n_classes, dt = x.shape[1], x.dtype or self.dtype
        w = np.ones(n_classes or 1) if self.weights is None else self.weights
        if self.weights is not None and n_classes is not None and len(w) != n_classes:
            raise fail(b, f"{type(self).__name__}: {len(w)} class weights for {n_classes} classes")
        keep = None
        if self.ignore_index is not None:
            # eq_n = [t_n == ignore_index]; an ignored target is pointed at class 0 and weighted 0
            tf, ig = b(ops.Cast(dt), t), b.const(np.array(self.ignore_index, dt))
            eq = b(ops.Mul(), b(ops.Compare("ge"), tf, ig), b(ops.Compare("le"), tf, ig))
            t = b(ops.Cast(t.dtype or np.int64), b(ops.Sub(), tf, b(ops.Mul(), eq, ig)))
            keep = b(ops.AddScalar(1.0), b(ops.Scale(-1.0), eq))
        if self.weights is None:
            wt = keep
        else:
            wt = b(ops.Index(1, 0), b(ops.Take(), b.const(w.reshape(-1, 1).astype(dt)), t))
            wt = wt if keep is None else b(ops.Mul(), wt, keep)
        total = b(ops.Sum(None), b(ops.Mul(), b(ops.Pick(), x, t), wt))
        if self.size_average:
            total = b(ops.Div(), total, b(ops.Sum(None), wt))
        return b(ops.Scale(-1.0), total)


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
