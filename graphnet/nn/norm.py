"""Normalisation modules: BatchNormalization (batch statistics while training, running ones in evaluation) and
LayerNorm. Both are compositions of primitives; only the running statistics need ops of their own (ops/norm.py)."""
from __future__ import annotations

import numbers

import numpy as np

from .. import ops
from ..errors import fmt_shape
from ..module import DEFAULT_DTYPE, Module, Parameter
from ..ops.norm import RunningStat, UpdateRunningStats
from ._util import build_error, check_float, check_int, fail


def _normalise(b, x, mean, var, eps):
    """(x - mean) / sqrt(var + eps)"""
    return b(ops.Div(), b(ops.Sub(), x, mean), b(ops.Sqrt(), b(ops.AddScalar(eps), var)))


def _affine(b, y, weight, bias, shape):
    """y * weight + bias, the parameters reshaped to ``shape`` to broadcast"""
    if weight is not None:
        y = b(ops.Mul(), y, b(ops.Reshape(shape), b.param(weight)))
    if bias is not None:
        y = b(ops.Add(), y, b(ops.Reshape(shape), b.param(bias)))
    return y


class BatchNormalization(Module):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias per feature (dim 1) of (N, C), (N, C, L) or (N, C, H, W)
    inputs. Training: statistics of the batch (biased variance), and running_mean/var updated with momentum
    (unbiased variance) as torch; evaluation: the running statistics. weight = 1, bias = 0 at first."""

    def __init__(self, n_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True):
        super().__init__()
        self.n_features = check_int("n_features", n_features, 1, "BatchNormalization")
        self.eps = check_float("eps", eps, "BatchNormalization")
        self.momentum = None if momentum is None else check_float("momentum", momentum, "BatchNormalization")
        self.affine = bool(affine)
        self.weight = Parameter(np.ones(n_features, DEFAULT_DTYPE)) if affine else None
        self.bias = Parameter(np.zeros(n_features, DEFAULT_DTYPE)) if affine else None
        self.reset_running_stats()

    def reset_running_stats(self) -> None:
        self.running_mean = np.zeros(self.n_features, DEFAULT_DTYPE)
        self.running_var = np.ones(self.n_features, DEFAULT_DTYPE)
        self.num_batches_tracked = 0

    def buffers(self) -> dict:
        """The state that is not learnt but belongs to the model (to save along with the parameters)."""
        return {"running_mean": self.running_mean, "running_var": self.running_var,
                "num_batches_tracked": np.asarray(self.num_batches_tracked)}

    def label(self):
        return f"BatchNormalization({self.n_features}{'' if self.affine else ', no affine'})"

    def lower(self, b, x):
        nd = len(x.shape)
        if nd < 2 or (x.shape[1] is not None and x.shape[1] != self.n_features):
            raise fail(b, f"{self.label()} expects inputs (batch, {self.n_features}, ...), got "
                                         f"shape {fmt_shape(x.shape)}")
        axes = (0,) + tuple(range(2, nd))
        shape = (1, self.n_features) + (1,) * (nd - 2)            # the statistics, broadcastable against x
        if self.train:
            mean = b(ops.Mean(axes, keepdims=True), x)
            var = b(ops.Mean(axes, keepdims=True), b(ops.Square(), b(ops.Sub(), x, mean)))
            count = None if any(x.shape[a] is None for a in axes) else int(np.prod([x.shape[a] for a in axes]))
            if count is not None:
                if count < 2:
                    raise fail(b, f"{self.label()}: training needs more than one value per feature, "
                                                 f"got input shape {fmt_shape(x.shape)} (call .evaluate() to use "
                                                 f"the running statistics)")
                mean = b(UpdateRunningStats(self, count), mean, var)
        else:
            dtype = x.dtype or self.dtype
            mean = b(RunningStat(self, "running_mean", shape, dtype))
            var = b(RunningStat(self, "running_var", shape, dtype))
        return _affine(b, _normalise(b, x, mean, var, self.eps), self.weight, self.bias, shape)


class LayerNorm(Module):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias, statistics over the last dims ``normalized_shape``
    (biased variance), as torch.nn.LayerNorm; weight = 1, bias = 0 at first"""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
        if not shape:
            raise build_error("LayerNorm: normalized_shape must hold at least one size")
        self.normalized_shape = tuple(check_int("normalized_shape", d, 1, "LayerNorm") for d in shape)
        self.eps = check_float("eps", eps, "LayerNorm")
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = Parameter(np.ones(self.normalized_shape, DEFAULT_DTYPE)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, DEFAULT_DTYPE)) if elementwise_affine else None

    def label(self):
        return f"LayerNorm({', '.join(map(str, self.normalized_shape))})"

    def lower(self, b, x):
        k = len(self.normalized_shape)
        if len(x.shape) < k or any(d is not None and d != n for d, n in zip(x.shape[-k:], self.normalized_shape)):
            raise fail(b, f"{self.label()} expects inputs whose last dims are "
                                         f"{fmt_shape(self.normalized_shape)}, got shape {fmt_shape(x.shape)}")
        axes = tuple(range(len(x.shape) - k, len(x.shape)))
        mean = b(ops.Mean(axes, keepdims=True), x)
        var = b(ops.Mean(axes, keepdims=True), b(ops.Square(), b(ops.Sub(), x, mean)))
        return _affine(b, _normalise(b, x, mean, var, self.eps), self.weight, self.bias, self.normalized_shape)
