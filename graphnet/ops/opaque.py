"""Opaque steps: a user's module written torch7-style in numpy, run inside a compiled plan as single calls.

The module defines ``update_output(*xs) -> y`` and ``update_grad_input(*xs, grad_output) -> grad(s)`` (and
``acc_grad_parameters(*xs, grad_output)``, adding into its parameters' ``.grad``, when it has parameters). The
compiler cannot see inside: the forward is one op, the input gradients one op, the parameter gradients one
op. Output shape and dtype come from one call on zeros when the plan is compiled (shapes are concrete then);
every later call is checked against them, so a module returning the wrong shape is named, not silently used.
"""
from __future__ import annotations

import numpy as np

from .base import Op
from .leaf import GRAD_LOCK
from .shape import Reshape, Slice


class OpaqueResultError(Exception):
    """A user module's method returned something that does not fit (wrapped by the plan with the node)."""


class _Opaque(Op):
    arity = None
    family = "misc"

    def __init__(self, module, n_inputs, shape, dtype):
        self.module = module
        self.n_inputs = n_inputs
        self._shape = shape
        self._dtype = dtype

    def attrs(self):
        return (("module", self.module.label()), ("id", id(self.module)), ("shape", self._shape))

    def shape(self, *shapes):
        return self._shape

    def dtype(self, *dtypes):
        return self._dtype

    def _who(self, method):
        return f"{type(self.module).__name__}.{method}"


class OpaqueForward(_Opaque):
    """y = module.update_output(*xs) (the parameters are further arguments, read by the module itself)"""

    def forward(self, *args):
        y = self.module.update_output(*args[:self.n_inputs])
        return _checked(y, self._shape, self._dtype, f"{self._who('update_output')} returned")

    def vjp(self, b, g, y, *args):
        xs, params = args[:self.n_inputs], args[self.n_inputs:]
        grads = [None] * len(args)
        floats = [i for i, x in enumerate(xs) if x.dtype is not None and x.dtype.kind == "f"]
        if floats:
            shapes = tuple(xs[i].shape for i in floats)
            flat = b(OpaqueGradInput(self.module, self.n_inputs, floats, shapes, xs[floats[0]].dtype), g, *xs)
            for i, part in zip(floats, _unpack(b, flat, shapes)):
                grads[i] = part
        if params and hasattr(self.module, "acc_grad_parameters"):
            shapes = tuple(p.shape for p in params)
            flat = b(OpaqueGradParams(self.module, self.n_inputs, shapes, params[0].dtype), g, *xs)
            for j, part in enumerate(_unpack(b, flat, shapes)):
                grads[self.n_inputs + j] = part
        return grads


class OpaqueGradInput(_Opaque):
    """the float inputs' gradients from module.update_grad_input(*xs, g), one array (flat when several)"""
    grad_only = True

    def __init__(self, module, n_inputs, which, shapes, dtype):
        super().__init__(module, n_inputs, _packed_shape(shapes), dtype)
        self.which, self.shapes = tuple(which), tuple(shapes)

    def attrs(self):
        return super().attrs() + (("which", self.which),)

    def forward(self, g, *xs):
        res = self.module.update_grad_input(*xs, g)
        if self.n_inputs == 1 and not isinstance(res, (list, tuple)):
            res = [res]
        who = self._who("update_grad_input")
        if not isinstance(res, (list, tuple)) or len(res) != self.n_inputs:
            raise OpaqueResultError(f"{who} must return one gradient per input ({self.n_inputs}), got "
                                    f"{type(res).__name__}" + (f" of {len(res)}" if isinstance(res, (list, tuple))
                                                               else ""))
        parts = [_checked(res[i], s, self._dtype, f"{who} returned, for input {i},")
                 for i, s in zip(self.which, self.shapes)]
        return _pack(parts)


class OpaqueGradParams(_Opaque):
    """the parameters' gradients that module.acc_grad_parameters(*xs, g) adds, one array (flat when several)"""
    grad_only = True

    def __init__(self, module, n_inputs, shapes, dtype):
        super().__init__(module, n_inputs, _packed_shape(shapes), dtype)
        self.shapes = tuple(shapes)

    def forward(self, g, *xs):
        params = list(self.module._params.values())
        with GRAD_LOCK:                     # .grad is lent to the module: no other thread may add meanwhile
            kept = [p.grad for p in params]
            try:                            # the module adds into .grad: give it zeros, take what it added
                for p in params:
                    p.grad = np.zeros_like(p.data)
                self.module.acc_grad_parameters(*xs, g)
                parts = [_checked(p.grad, s, self._dtype, f"{self._who('acc_grad_parameters')} left, in "
                                                           f"{p.name}.grad,") for p, s in zip(params, self.shapes)]
            finally:
                for p, k in zip(params, kept):
                    p.grad = k
        return _pack(parts)


def lower_opaque(module, b, *xs):
    """The IR of a torch7-style module: one OpaqueForward over its inputs and parameters."""
    params = list(module._params.values())
    shape, dtype = None, None
    if all(x.shape is not None and None not in x.shape and x.dtype is not None for x in xs):
        probe = module.update_output(*[np.zeros(x.shape, x.dtype) for x in xs])
        probe = np.asarray(probe)
        shape = probe.shape
        dtype = module.dtype if probe.dtype.kind == "f" else probe.dtype
    return b(OpaqueForward(module, len(xs), shape, dtype), *xs, *[b.param(p) for p in params])


def _checked(y, shape, dtype, what):
    if y is None or not hasattr(y, "shape"):
        raise OpaqueResultError(f"{what} {type(y).__name__}, not a numpy array")
    if shape is not None and tuple(y.shape) != tuple(shape):
        raise OpaqueResultError(f"{what} an array of shape {tuple(y.shape)}; expected {tuple(shape)}")
    return np.array(y, dtype=dtype, copy=True)      # its own memory: the module may reuse its buffer


def _packed_shape(shapes):
    return shapes[0] if len(shapes) == 1 else (sum(int(np.prod(s)) for s in shapes),)


def _pack(parts):
    return parts[0] if len(parts) == 1 else np.concatenate([p.ravel() for p in parts])


def _unpack(b, flat, shapes):
    if len(shapes) == 1:
        return [flat]
    out, at = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(b(Reshape(tuple(s)), b(Slice(0, at, n), flat)))
        at += n
    return out
