"""Modules with parameters and pointwise modules: Linear, MM, Add, Mul, the activations, Dropout, LookupTable."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import fmt_shape
from ..module import DEFAULT_DTYPE, Module, Parameter, rng
from ..node import Input
from ._util import build_error, check_float, check_int, fail


def _uniform(stdv, shape):
    return rng().uniform(-stdv, stdv, shape).astype(DEFAULT_DTYPE)


class PassThrough(Module):
    """Its inputs, unchanged, as its outputs (one input: one output). Identity, and FlattenTable: the entries of a
    table are already flat when lowered."""
    arity = None

    def num_outputs(self, *shapes):
        return len(shapes)

    def lower(self, b, *xs):
        return xs[0] if len(xs) == 1 else list(xs)


class Identity(PassThrough):
    """y = x (several inputs: passed through as several outputs). ``Identity()()`` is ``gn.Input()``."""

    def __call__(self, *args, **kwargs):
        if not args and not kwargs:
            return Input()
        return super().__call__(*args, **kwargs)


class Linear(Module):
    """y = x W^T + b, W: (out, in), b: (out,); init U(-1/sqrt(in), 1/sqrt(in)) as torch"""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1, "Linear")
        self.out_features = check_int("out_features", out_features, 1, "Linear")
        stdv = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_uniform(stdv, (out_features, in_features)))
        self.bias = Parameter(_uniform(stdv, (out_features,))) if bias else None

    def label(self):
        return f"Linear({self.in_features} -> {self.out_features}{'' if self.bias is not None else ', no bias'})"

    def lower(self, b, x):
        if len(x.shape) == 0:
            raise fail(b, f"{self.label()} takes an input of shape (..., {self.in_features}), got a 0-d scalar")
        if x.shape[-1] is not None and x.shape[-1] != self.in_features:
            raise fail(b, f"{self.label()} expects {self.in_features} features in the last dim, got input shape "
                          f"{fmt_shape(x.shape)}")
        vec = len(x.shape) == 1
        if vec:
            x = b(ops.Reshape((1, self.in_features)), x)
        y = b(ops.MatMul(tb=True), x, b.param(self.weight))
        if self.bias is not None:
            y = b(ops.Add(), y, b.param(self.bias))
        return b(ops.Reshape((self.out_features,)), y) if vec else y


class MM(Module):
    """y = op(a) @ op(b) for two nodes (batched when 3-d), op = transpose where trans_a / trans_b"""
    arity = 2

    def __init__(self, trans_a: bool = False, trans_b: bool = False):
        super().__init__()
        self.trans_a, self.trans_b = bool(trans_a), bool(trans_b)

    def lower(self, b, x1, x2):
        return b(ops.MatMul(self.trans_a, self.trans_b), x1, x2)


class Add(Module):
    """y = x + bias, bias of shape ``size`` (a scalar bias when scalar=True); init U(-1/sqrt(n), 1/sqrt(n))"""

    def __init__(self, size, scalar: bool = False):
        super().__init__()
        if scalar:
            self.size = (1,)
        else:
            dims = size if isinstance(size, (tuple, list)) else (size,)
            self.size = tuple(check_int("size", d, 1, "Add") for d in dims)
            if not self.size:
                raise build_error("Add needs the bias shape: Add(3) or Add((2, 3))")
        n = int(np.prod(self.size))
        self.bias = Parameter(_uniform(1.0 / math.sqrt(n), self.size))

    def label(self):
        return f"Add({'x'.join(map(str, self.size))})"

    def lower(self, b, x):
        return b(ops.Add(), x, b.param(self.bias))


class Mul(Module):
    """y = w x with one learnable scalar w; init U(-1, 1) as torch"""

    def __init__(self):
        super().__init__()
        self.weight = Parameter(_uniform(1.0, (1,)))

    def lower(self, b, x):
        return b(ops.Mul(), x, b.param(self.weight))


class MulConstant(Module):
    """y = c x. ``inplace`` (torch7's flag) is accepted: the memory planner decides in-place writes itself."""

    def __init__(self, constant_scalar: float, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)
        self.constant_scalar = check_float("constant_scalar", constant_scalar, "MulConstant")

    def label(self):
        return f"MulConstant({self.constant_scalar:g})"

    def lower(self, b, x):
        return b(ops.Scale(self.constant_scalar), x)


class AddConstant(Module):
    """y = x + c. ``inplace`` (torch7's flag) is accepted: the memory planner decides in-place writes itself."""

    def __init__(self, constant_scalar: float, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)
        self.constant_scalar = check_float("constant_scalar", constant_scalar, "AddConstant")

    def label(self):
        return f"AddConstant({self.constant_scalar:g})"

    def lower(self, b, x):
        return b(ops.AddScalar(self.constant_scalar), x)


class _Pointwise(Module):
    """A module that applies one unary op (``self.op``) elementwise."""

    def lower(self, b, x):
        return b(self.op, x)

    def label(self):
        extra = ", ".join(f"{v:g}" for _, v in self.op.attrs() if isinstance(v, float))
        return f"{type(self).__name__}({extra})" if extra else type(self).__name__


def _pointwise(name, make_op, doc, signature=()):
    """Define a pointwise module class whose constructor arguments are passed to ``make_op``."""
    defaults = dict(signature)

    def __init__(self, *args, **kwargs):
        _Pointwise.__init__(self)
        names = list(defaults)
        if len(args) > len(names):
            raise build_error(f"{name} takes at most {len(names)} arguments, got {len(args)}")
        vals = dict(defaults)
        vals.update(zip(names, args))
        for k, v in kwargs.items():
            if k not in defaults:
                raise build_error(f"{name} got an unexpected argument {k!r}")
            vals[k] = v
        for k, v in vals.items():
            check_float(k, v, name)
        self.op = make_op(**vals)
    cls = type(name, (_Pointwise,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})
    return cls


Tanh = _pointwise("Tanh", ops.Tanh, "y = tanh(x)")
Sigmoid = _pointwise("Sigmoid", ops.Sigmoid, "y = 1 / (1 + exp(-x))")
ReLU = _pointwise("ReLU", ops.ReLU, "y = max(x, 0)")
LeakyReLU = _pointwise("LeakyReLU", lambda negval: ops.LeakyReLU(negval), "y = x if x > 0 else negval x",
                       [("negval", 0.01)])
ELU = _pointwise("ELU", lambda alpha: ops.ELU(alpha), "y = x if x > 0 else alpha (exp(x) - 1)", [("alpha", 1.0)])
SoftPlus = _pointwise("SoftPlus", lambda beta, threshold: ops.SoftPlus(beta, threshold),
                      "y = log(1 + exp(beta x)) / beta (linear above threshold)", [("beta", 1.0), ("threshold", 20.0)])
Threshold = _pointwise("Threshold", lambda th, v: ops.Threshold(th, v), "y = x if x > th else v",
                       [("th", 1e-6), ("v", 0.0)])
Exp = _pointwise("Exp", ops.Exp, "y = exp(x)")
Log = _pointwise("Log", ops.Log, "y = log(x)")
Square = _pointwise("Square", ops.Square, "y = x^2")
Sqrt = _pointwise("Sqrt", ops.Sqrt, "y = sqrt(x)")
Abs = _pointwise("Abs", ops.Abs, "y = |x|")
Power = _pointwise("Power", lambda pow: ops.Pow(pow), "y = x^pow", [("pow", 1.0)])


class HardTanh(_Pointwise):
    """y = clip(x, min_value, max_value)"""

    def __init__(self, min_value: float = -1.0, max_value: float = 1.0):
        super().__init__()
        lo = check_float("min_value", min_value, "HardTanh")
        hi = check_float("max_value", max_value, "HardTanh")
        if lo > hi:
            raise build_error(f"HardTanh needs min_value <= max_value, got {lo} > {hi}")
        self.op = ops.HardTanh(lo, hi)


class _AlongDim(Module):
    """One primitive that normalises x along ``dim`` (default: the last): SoftMax and LogSoftMax."""
    primitive = None                # the op class, called with the dim

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = check_int("dim", dim, module=type(self).__name__)

    def lower(self, b, x):
        return b(self.primitive(self.dim), x)


class SoftMax(_AlongDim):
    """y = softmax(x) along ``dim`` (default: the last)"""
    primitive = ops.Softmax


class LogSoftMax(_AlongDim):
    """y = log(softmax(x)) along ``dim`` (default: the last)"""
    primitive = ops.LogSoftmax


class Dropout(Module):
    """training: y = x * mask / (1 - p), mask ~ Bernoulli(1 - p), drawn per run; evaluation: y = x.

    torch7's flags: ``v1`` (the first version: training y = x * mask, evaluation y = (1 - p) x); ``inplace``
    (accepted: the memory planner decides in-place writes itself); ``stochastic_inference`` (masks in evaluation
    too)."""

    def __init__(self, p: float = 0.5, v1: bool | None = False, inplace: bool = False,
                 stochastic_inference: bool = False):
        super().__init__()
        self.v1, self.inplace, self.stochastic_inference = bool(v1), bool(inplace), bool(stochastic_inference)
        p = check_float("p", p, "Dropout")
        if not 0.0 <= p < 1.0:
            raise build_error(f"Dropout(p={p}): p must be in [0, 1)")
        self.p = p

    def label(self):
        return f"Dropout({self.p:g})"

    def lower(self, b, x):
        if self.p == 0.0:
            return x
        if not self.train and not self.stochastic_inference:
            return b(ops.Scale(1.0 - self.p), x) if self.v1 else x
        y = b(ops.Mul(), x, b(ops.DropoutMask(self.p, x.shape, x.dtype or self.dtype)))
        return b(ops.Scale(1.0 - self.p), y) if self.v1 else y


class LookupTable(Module):
    """y = W[idx] for integer indices (0-based); W: (n_index, n_output), init N(0, 1) as torch"""

    def __init__(self, n_index: int, n_output: int):
        super().__init__()
        self.n_index = check_int("n_index", n_index, 1, "LookupTable")
        self.n_output = check_int("n_output", n_output, 1, "LookupTable")
        self.weight = Parameter(rng().standard_normal((n_index, n_output)).astype(DEFAULT_DTYPE))

    def label(self):
        return f"LookupTable({self.n_index} -> {self.n_output})"

    def lower(self, b, idx):
        return b(ops.Take(), b.param(self.weight), idx)
