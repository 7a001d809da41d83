"""Ops with no inputs: graph inputs, parameters, output-gradient seeds, constants and random masks."""
from __future__ import annotations

import threading

import numpy as np

from .base import Op

# Parameter gradients are shared (by clones, by threads running one plan): whatever adds into a parameter's
# .grad, or lends it to a module's own acc_grad_parameters, holds this lock while it does.
GRAD_LOCK = threading.Lock()

_generator = np.random.default_rng      # what DropoutMask draws from: a function giving a numpy Generator


def draw_from(get_generator) -> None:
    """Where random ops draw from: ``get_generator()`` gives the numpy Generator to use at each run. The layer
    that owns the generator (graphnet.module: ``manual_seed``) registers it here, so ops import nothing above."""
    global _generator
    _generator = get_generator


class Leaf(Op):
    arity = 0
    family = "input"

    def shape(self):
        return self._shape

    def dtype(self):
        return self._dtype


class Arg(Leaf):
    """Graph input number ``index``."""

    def __init__(self, index, shape, dtype):
        self.index = index
        self._shape = None if shape is None else tuple(shape)
        self._dtype = None if dtype is None else np.dtype(dtype)

    def attrs(self):
        return (("index", self.index),)


class Seed(Arg):
    """The gradient flowing into graph output number ``index`` (given to backward)."""


class Param(Leaf):
    """A parameter's current data, read at run time."""
    family = "param"

    def __init__(self, param):
        self.param = param

    @property
    def _shape(self):
        return self.param.data.shape

    @property
    def _dtype(self):
        return self.param.data.dtype

    def attrs(self):
        return (("param", self.param.name or "?"), ("id", id(self.param)))


class Const(Leaf):
    """A constant array, known when the plan is compiled."""
    family = "const"

    def __init__(self, value):
        self.value = np.asarray(value)
        self._shape = self.value.shape
        self._dtype = self.value.dtype

    def attrs(self):
        v = self.value
        shown = v.tolist() if v.size <= 4 else f"<{v.dtype} array {v.shape}>"
        return (("value", shown), ("hash", hash(v.tobytes()) if v.size > 4 else 0))

    def forward(self):
        return self.value

    def expr(self):
        return None


class DropoutMask(Leaf):
    """Bernoulli(1-p) mask scaled by 1/(1-p), drawn afresh on every run from graphnet's generator."""
    pure = False
    family = "random"

    def __init__(self, p, shape, dtype):
        self.p = float(p)
        self._shape = tuple(shape)
        self._dtype = np.dtype(dtype)

    def attrs(self):
        return (("p", self.p), ("shape", self._shape))

    def forward(self):
        keep = _generator().random(self._shape) >= self.p
        return keep.astype(self._dtype) * self._dtype.type(1.0 / (1.0 - self.p))
