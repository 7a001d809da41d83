"""The primitive op: shape rule, dtype rule, forward and VJP side by side.

An op instance carries its attributes (``Slice(dim=1, start=0, length=4)``); it is applied to IR values by a
builder (``graphnet.compile.ir.Builder``). ``shape`` works on shapes that may contain ``None`` (a size unknown
at build time); ``forward`` works on numpy arrays; ``vjp`` builds the gradient of each input out of further ops
on the same builder, so the backward pass is itself a graph the compiler can optimize.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeMismatch


class Op:
    arity: int | None = 1          # number of inputs; None: any number (at least one)
    pure = True                    # False: not to be merged, folded or dropped (random, side effects)
    family = "misc"                # colour family for drawings
    grad_only = False              # True for ops that only appear in backward graphs
    view = False                   # True: the output may share memory with the first input (no new buffer)
    always_view = False            # True: forward always returns a view of its input (basic indexing)

    # --- rules ---------------------------------------------------------------------------------------------
    def shape(self, *shapes):
        """Output shape from input shapes (``None`` entries: unknown sizes)."""
        return shapes[0]

    def dtype(self, *dtypes):
        """Output dtype from input dtypes: the float result type of the float inputs."""
        floats = [d for d in dtypes if d is not None and d.kind == "f"]
        return np.result_type(*floats) if floats else np.dtype(np.float64)

    def forward(self, *xs):
        raise NotImplementedError

    def vjp(self, b, g, y, *xs):
        """Gradient of each input (IR values built on ``b``), or None where an input gets none."""
        raise NotImplementedError(f"{type(self).__name__} has no gradient")

    def row_pattern(self, *shapes):
        """Whether the op works row by row along dim 0, so that k applications on inputs stacked by rows are
        one application: per input, True if row r of the output reads only row r of it, False if every row
        reads it whole (a bias); None if the op mixes rows."""
        return None

    # --- code generation -----------------------------------------------------------------------------------
    elementwise = False            # True: out[i] depends on the inputs at i only (may write into a strided view)
    inplace = False                # True: ``expr_out`` may write over an input of the output's shape
    over = None                    # with ``inplace``: the positions of the inputs it may write over (None: any)
    written_by_arg = False         # True: its input's op writes it, given its array (a kernel's second output;
                                   # ``index``: the place of that array among the op's call's extra arguments)

    def expr(self, *args: str) -> str | None:
        """A numpy expression computing the output from argument expressions, or None to call ``forward``."""
        return None

    def expr_out(self, out: str, k, *args: str) -> str | None:
        """Statements writing the output into the preallocated array ``out`` (None: no such form). ``k(c)`` names
        the constant c as a 0-d array of the output's dtype (a Python float costs numpy a conversion per call)."""
        return None

    # --- identity ------------------------------------------------------------------------------------------
    def attrs(self) -> tuple:
        """The attributes that, with the op's class, define what it computes (for printing and merging)."""
        return tuple(sorted(self.__dict__.items()))

    def key(self):
        return (type(self), self.attrs())

    def __eq__(self, other):
        return type(self) is type(other) and self.attrs() == other.attrs()

    def __hash__(self):
        return hash((type(self), repr(self.attrs())))

    def __repr__(self):
        a = ", ".join(f"{k}={v!r}" for k, v in self.attrs())
        return f"{type(self).__name__}({a})"


# --- shape helpers shared by the op families --------------------------------------------------------------

def dim_eq(a, b) -> bool:
    """Two sizes agree (an unknown size agrees with anything)."""
    return a is None or b is None or a == b


def broadcast_shapes(*shapes):
    """numpy broadcasting over shapes that may contain None; raises ShapeMismatch."""
    nd = max(len(s) for s in shapes)
    out = []
    for i in range(nd):
        dims = [s[len(s) - nd + i] for s in shapes if len(s) - nd + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeMismatch("shapes " + " and ".join(_fmt(s) for s in shapes) + " do not broadcast")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def norm_dim(dim: int, ndim: int, what: str = "dim") -> int:
    """A dimension index, negative counting from the end; raises ShapeMismatch when out of range."""
    if not -ndim <= dim < ndim:
        raise ShapeMismatch(f"{what} {dim} is out of range for a {ndim}-d input")
    return dim % ndim


def _fmt(s):
    return "(" + ", ".join("?" if d is None else str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def elementwise_rows(out, *shapes):
    """``Op.row_pattern`` for a broadcasting elementwise op with output shape ``out``."""
    if not out or out[0] is None:
        return None
    res = []
    for s in shapes:
        if len(s) == len(out) and s[0] == out[0]:
            res.append(True)
        elif len(s) < len(out) or s[0] == 1:
            res.append(False)
        else:
            return None
    return tuple(res)


def size_of(shape):
    """Number of elements, or None when a size is unknown."""
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= d
    return n


def unbroadcast(b, g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched, to give a gradient of ``shape``."""
    gshape = g.shape
    if tuple(gshape) == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and gshape[lead + i] != 1)
    from .reduce import Sum  # local: reduce imports this module
    from .shape import Reshape
    if axes:
        g = b(Sum(axes=axes, keepdims=False), g)
    if tuple(g.shape) != tuple(shape):
        g = b(Reshape(tuple(shape)), g)
    return g
