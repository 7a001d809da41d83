"""The IR: single-output values, each an op applied to earlier values, recorded in topological order.

The same ``Builder`` serves three uses: shape inference while a graph is being built (shapes may contain
None), lowering a module to primitives for one input signature (concrete shapes), and building the backward
graph from VJP rules. Shape errors are raised here, with the graph node being lowered named in the message.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..errors import ShapeError, ShapeMismatch, fmt_shape, node_error
from ..ops.leaf import Arg, Param

_ids = itertools.count()


class Value:
    """One IR value: ``op`` applied to ``args``; ``src`` is the graph node whose lowering made it."""
    __slots__ = ("op", "args", "shape", "dtype", "src", "id")

    def __init__(self, op, args, shape, dtype, src):
        self.op = op
        self.args = args
        self.shape = shape
        self.dtype = dtype
        self.src = src
        self.id = next(_ids)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"%{self.id} = {self.op!r}({', '.join('%' + str(a.id) for a in self.args)}) {fmt_shape(self.shape)}"


class Builder:
    """Records values in creation order (which is a topological order)."""

    def __init__(self):
        self.values: list[Value] = []
        self._src: list = []             # stack of graph nodes being lowered (innermost last)
        self._params: dict = {}

    # --- context -------------------------------------------------------------------------------------------
    def push(self, node):
        self._src.append(node)

    def pop(self):
        self._src.pop()

    @property
    def src(self):
        return self._src[-1] if self._src else None

    # --- making values -------------------------------------------------------------------------------------
    def __call__(self, op, *args) -> Value:
        shapes = [a.shape for a in args]
        try:
            if op.arity is not None and len(args) != op.arity:
                raise ShapeMismatch(f"takes {op.arity} inputs, got {len(args)}")
            shape = None if any(s is None for s in shapes) else op.shape(*shapes)
            shape = None if shape is None else tuple(shape)
            dtype = op.dtype(*[a.dtype for a in args])
        except ShapeMismatch as e:
            ins = ", ".join(fmt_shape(s) for s in shapes)
            raise node_error(ShapeError, f"{op!r}: {e} (input shapes {ins})", self.src,
                             context=reversed(self._src[:-1])) from None
        v = Value(op, args, shape, dtype, self.src)
        self.values.append(v)
        return v

    def placeholder(self, shape, dtype=None) -> Value:
        """A stand-in for a graph input during build-time shape inference."""
        return self(Arg(len(self.values), shape, dtype))

    def param(self, p) -> Value:
        """The value of parameter ``p`` (one value however often it is used: gradients add up)."""
        v = self._params.get(id(p))
        if v is None:
            v = self._params[id(p)] = self(Param(p))
        return v

    def const(self, value, dtype=None) -> Value:
        from ..ops.leaf import Const
        return self(Const(np.asarray(value, dtype=dtype)))


def lint(prog, after=None):
    pass
