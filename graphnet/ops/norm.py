"""The two ops BatchNormalization needs beyond arithmetic: updating its running statistics while training, and
reading them back in evaluation. The normalisation itself is composed of Mean, Sub, Square, Sqrt, Div, ...
"""
from __future__ import annotations

import numpy as np

from .base import Op
from .leaf import Leaf


class UpdateRunningStats(Op):
    """y = mean (unchanged); as a side effect, running_mean/var of ``module`` move towards the batch statistics:
    r <- (1 - m) r + m s, with the unbiased variance var * n / (n - 1), as torch (m = None: cumulative average).

    Its output is what the normalisation uses, so the update runs whenever the output is computed; ``pure =
    False`` keeps the compiler from merging, folding or dropping it.
    """
    arity = 2
    pure = False
    family = "nnet"

    def __init__(self, module, count):
        self.module = module
        self.count = int(count)           # values per channel in the batch (n)

    def attrs(self):
        return (("module", id(self.module)), ("count", self.count))

    def shape(self, mean, var):
        return mean

    def forward(self, mean, var):
        m = self.module
        m.num_batches_tracked += 1
        momentum = m.momentum if m.momentum is not None else 1.0 / m.num_batches_tracked
        unbiased = var.reshape(-1) * (self.count / (self.count - 1))
        dtype = mean.dtype       # the buffers follow the dtype the module runs in (float32 / float64)
        m.running_mean = (1.0 - momentum) * m.running_mean.astype(dtype) + momentum * mean.reshape(-1)
        m.running_var = (1.0 - momentum) * m.running_var.astype(dtype) + momentum * unbiased
        return mean.copy()       # a fresh array: later in-place ops must not write into the batch mean

    def vjp(self, b, g, y, mean, var):
        return g, None


class RunningStat(Leaf):
    """``module.running_mean`` or ``module.running_var`` (``which``), read when the plan runs, reshaped to
    ``shape``; it changes between runs, so it is neither a constant nor to be merged"""
    pure = False
    family = "param"

    def __init__(self, module, which, shape, dtype):
        if which not in ("running_mean", "running_var"):
            raise ValueError(f"RunningStat reads running_mean or running_var, not {which!r}")
        self.module, self.which = module, which
        self._shape = tuple(shape)
        self._dtype = np.dtype(dtype)

    def attrs(self):
        return (("module", id(self.module)), ("which", self.which), ("shape", self._shape))

    def forward(self):
        return getattr(self.module, self.which).astype(self._dtype).reshape(self._shape)
