"""Elementwise ops. Binary ops broadcast like numpy; their VJPs undo broadcasting with ``unbroadcast``.

A unary op gives its function ``fn`` and its derivative ``deriv`` (of x, of y = fn(x), or of both, as
``uses`` says); its VJP multiplies the incoming gradient by the generic ``Deriv`` op, the derivative alone, so
that the compiler can compute derivatives that do not depend on the incoming gradient apart from it (for all
time steps of a recurrent net at once, say).
"""
from __future__ import annotations

import numpy as np

from .base import Op, broadcast_shapes, elementwise_rows, unbroadcast


# --- binary, broadcasting -----------------------------------------------------------------------------------

class Binary(Op):
    arity = 2
    family = "arith"
    elementwise = True
    inplace = True
    ufunc = None                   # the numpy ufunc's name, for code that writes into a preallocated array

    def expr_out(self, out, k, a, b):
        if self.ufunc is None:
            return None
        # np.maximum/minimum take the output by keyword only (a third positional is deprecated there)
        return f"np.{self.ufunc}({a}, {b}, out={out})" if self.ufunc in ("maximum", "minimum") else \
            f"np.{self.ufunc}({a}, {b}, {out})"

    def shape(self, a, b):
        return broadcast_shapes(a, b)

    def row_pattern(self, a, b):
        return elementwise_rows(self.shape(a, b), a, b)


class Add(Binary):
    """y = a + b"""
    ufunc = "add"
    def forward(self, a, b): return a + b
    def expr(self, a, b): return f"{a} + {b}"
    def vjp(self, b, g, y, x1, x2): return unbroadcast(b, g, x1.shape), unbroadcast(b, g, x2.shape)


class Sub(Binary):
    """y = a - b"""
    ufunc = "subtract"
    def forward(self, a, b): return a - b
    def expr(self, a, b): return f"{a} - {b}"
    def vjp(self, b, g, y, x1, x2): return unbroadcast(b, g, x1.shape), unbroadcast(b, b(Scale(-1.0), g), x2.shape)


class Mul(Binary):
    """y = a * b"""
    ufunc = "multiply"
    def forward(self, a, b): return a * b
    def expr(self, a, b): return f"{a} * {b}"

    def vjp(self, b, g, y, x1, x2):
        return unbroadcast(b, b(Mul(), g, x2), x1.shape), unbroadcast(b, b(Mul(), g, x1), x2.shape)


class Div(Binary):
    """y = a / b"""
    ufunc = "divide"
    def forward(self, a, b): return a / b
    def expr(self, a, b): return f"{a} / {b}"

    def vjp(self, b, g, y, x1, x2):
        ga = b(Div(), g, x2)
        gb = b(Scale(-1.0), b(Mul(), ga, y))          # -g a / b^2 = -(g / b) * y
        return unbroadcast(b, ga, x1.shape), unbroadcast(b, gb, x2.shape)


class Maximum(Binary):
    """y = max(a, b); ties send the gradient to a"""
    ufunc = "maximum"
    def forward(self, a, b): return np.maximum(a, b)
    def expr(self, a, b): return f"np.maximum({a}, {b})"

    def vjp(self, b, g, y, x1, x2):
        return (unbroadcast(b, b(Mul(), g, b(Compare("ge"), x1, x2)), x1.shape),
                unbroadcast(b, b(Mul(), g, b(Compare("lt"), x1, x2)), x2.shape))


class Minimum(Binary):
    """y = min(a, b); ties send the gradient to a"""
    ufunc = "minimum"
    def forward(self, a, b): return np.minimum(a, b)
    def expr(self, a, b): return f"np.minimum({a}, {b})"

    def vjp(self, b, g, y, x1, x2):
        return (unbroadcast(b, b(Mul(), g, b(Compare("le"), x1, x2)), x1.shape),
                unbroadcast(b, b(Mul(), g, b(Compare("gt"), x1, x2)), x2.shape))


class Compare(Binary):
    """y = (a <cmp> b) as 0/1 in the inputs' float type; no gradient"""
    _FNS = {"ge": np.greater_equal, "gt": np.greater, "le": np.less_equal, "lt": np.less}

    def __init__(self, cmp):
        if cmp not in self._FNS:
            raise ValueError(f"Compare takes one of {sorted(self._FNS)}, got {cmp!r}")
        self.cmp = cmp

    def forward(self, a, b):
        return self._FNS[self.cmp](a, b).astype(np.result_type(a, b))

    def vjp(self, b, g, y, x1, x2):
        return None, None


class AddN(Op):
    """y = x1 + x2 + ... (inputs of one shape)"""
    arity = None
    family = "arith"

    def shape(self, *shapes):
        return broadcast_shapes(*shapes)

    def row_pattern(self, *shapes):
        return elementwise_rows(self.shape(*shapes), *shapes)

    def forward(self, *xs):
        out = xs[0] + xs[1] if len(xs) > 1 else xs[0].copy()
        for x in xs[2:]:
            out += x
        return out

    def expr(self, *xs): return " + ".join(xs)

    def expr_out(self, out, k, *xs):
        if len(xs) < 2:
            return None
        return "; ".join([f"np.add({xs[0]}, {xs[1]}, {out})"] + [f"np.add({out}, {x}, {out})" for x in xs[2:]])

    def vjp(self, b, g, y, *xs):
        return tuple(unbroadcast(b, g, x.shape) for x in xs)


# --- unary ----------------------------------------------------------------------------------------------------

class Unary(Op):
    arity = 1
    family = "activation"
    uses = "x"                 # what deriv() takes: "x", "y" or "xy"
    elementwise = True
    inplace = True             # every expr_out below reads its input before its first write
    ufunc = None               # a numpy ufunc computing fn in one call, for code writing into an array

    def expr_out(self, out, k, x):
        return f"np.{self.ufunc}({x}, {out})" if self.ufunc else None

    def deriv_out(self, out, k, *xy) -> str | None:
        """The derivative written into ``out`` (None: no such form); may not read the inputs after writing."""
        return None

    def forward(self, x):
        return self.fn(x)

    def fn(self, x):
        raise NotImplementedError

    def deriv(self, *xy):
        raise NotImplementedError

    def deriv_expr(self, *xy) -> str | None:
        """The derivative as a numpy expression for generated code (None: call ``deriv``)."""
        return None

    def row_pattern(self, x):
        return (True,)

    def vjp(self, b, g, y, x):
        args = {"x": (x,), "y": (y,), "xy": (x, y)}[self.uses]
        return (b(Mul(), g, b(Deriv(self), *args)),)


class Deriv(Op):
    """op'(x): the derivative of a unary op, from x, y = op(x) or both (as the op's ``uses`` says)"""
    arity = None
    grad_only = True
    family = "grad"

    def __init__(self, op):
        self.op = op

    def attrs(self):
        return (("op", self.op),)

    def shape(self, *xy):
        return xy[0]

    def row_pattern(self, *xy):
        return (True,) * len(xy)

    def forward(self, *xy):
        return np.asarray(self.op.deriv(*xy))

    def expr(self, *xy):
        return self.op.deriv_expr(*xy)

    elementwise = True

    @property
    def inplace(self):
        return getattr(self.op, "deriv_inplace", True)

    def expr_out(self, out, k, *xy):
        return self.op.deriv_out(out, k, *xy)

    def __repr__(self):
        return f"{type(self.op).__name__}Deriv"


class Scale(Unary):
    """y = c * x"""
    family = "arith"

    def __init__(self, c):
        self.c = float(c)

    def fn(self, x): return x * self.c
    def expr(self, x): return f"{x} * {self.c!r}"
    def expr_out(self, out, k, x): return f"np.multiply({x}, {k(self.c)}, {out})"
    def vjp(self, b, g, y, x): return (b(Scale(self.c), g),)


class AddScalar(Unary):
    """y = x + c"""
    family = "arith"

    def __init__(self, c):
        self.c = float(c)

    def fn(self, x): return x + self.c
    def expr(self, x): return f"{x} + {self.c!r}"
    def expr_out(self, out, k, x): return f"np.add({x}, {k(self.c)}, {out})"
    def vjp(self, b, g, y, x): return (g,)


class Tanh(Unary):
    """y = tanh(x); y' = 1 - y^2"""
    uses = "y"
    def fn(self, x): return np.tanh(x)
    def expr(self, x): return f"np.tanh({x})"
    ufunc = "tanh"
    def deriv(self, y): return 1.0 - y * y
    def deriv_expr(self, y): return f"1.0 - {y} * {y}"
    def deriv_out(self, o, k, y): return f"np.multiply({y}, {y}, {o}); np.subtract({k(1.0)}, {o}, {o})"


class Sigmoid(Unary):
    """y = 1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2; y' = y (1 - y)"""
    uses = "y"
    def fn(self, x): return np.tanh(x * 0.5) * 0.5 + 0.5
    def expr(self, x): return f"np.tanh({x} * 0.5) * 0.5 + 0.5"
    def deriv(self, y): return y * (1.0 - y)
    def deriv_expr(self, y): return f"{y} * (1.0 - {y})"

    def expr_out(self, o, k, x):
        h = k(0.5)
        return f"np.multiply({x}, {h}, {o}); np.tanh({o}, {o}); np.multiply({o}, {h}, {o}); np.add({o}, {h}, {o})"

    deriv_inplace = False      # y (1 - y) reads y after its first write

    def deriv_out(self, o, k, y): return f"np.subtract({k(1.0)}, {y}, {o}); np.multiply({o}, {y}, {o})"


class ReLU(Unary):
    """y = max(x, 0); y' = [y > 0]"""
    uses = "y"
    def fn(self, x): return np.maximum(x, 0)
    def expr(self, x): return f"np.maximum({x}, 0)"
    def expr_out(self, o, k, x): return f"np.maximum({x}, {k(0.0)}, out={o})"
    def deriv(self, y): return y > 0
    def deriv_expr(self, y): return f"{y} > 0"
    def deriv_out(self, o, k, y): return f"np.greater({y}, {k(0.0)}, {o})"


class LeakyReLU(Unary):
    """y = x if x > 0 else slope * x"""
    def __init__(self, slope=0.01):
        self.slope = float(slope)

    def fn(self, x): return np.where(x > 0, x, x * self.slope)
    def deriv(self, x): return np.where(x > 0, 1.0, self.slope).astype(x.dtype)
    def deriv_expr(self, x): return None


class ELU(Unary):
    """y = x if x > 0 else alpha (exp(x) - 1); y' = 1 or y + alpha"""
    uses = "xy"

    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def fn(self, x): return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))
    def deriv(self, x, y): return np.where(x > 0, 1.0, y + self.alpha).astype(x.dtype)
    def deriv_expr(self, x, y): return None


class SoftPlus(Unary):
    """y = log(1 + exp(beta x)) / beta, linear where beta x > threshold; y' = sigmoid(beta x)"""
    def __init__(self, beta=1.0, threshold=20.0):
        self.beta, self.threshold = float(beta), float(threshold)

    def fn(self, x):
        bx = x * self.beta
        return np.where(bx > self.threshold, x, np.logaddexp(0, bx) / self.beta).astype(x.dtype)

    def deriv(self, x):
        bx = x * self.beta
        return np.where(bx > self.threshold, 1.0, 0.5 + 0.5 * np.tanh(0.5 * bx)).astype(x.dtype)

    def deriv_expr(self, x): return None


class Threshold(Unary):
    """y = x if x > threshold else value"""
    def __init__(self, threshold=1e-6, value=0.0):
        self.threshold, self.value = float(threshold), float(value)

    def fn(self, x): return np.where(x > self.threshold, x, self.value).astype(x.dtype)
    def deriv(self, x): return x > self.threshold
    def deriv_expr(self, x): return f"{x} > {self.threshold!r}"


class HardTanh(Unary):
    """y = clip(x, lo, hi); y' = [lo < x < hi]"""
    def __init__(self, lo=-1.0, hi=1.0):
        self.lo, self.hi = float(lo), float(hi)

    def fn(self, x): return np.clip(x, self.lo, self.hi)
    def deriv(self, x): return (x > self.lo) & (x < self.hi)
    def deriv_expr(self, x): return f"({x} > {self.lo!r}) & ({x} < {self.hi!r})"


class Exp(Unary):
    """y = exp(x); y' = y"""
    ufunc = "exp"
    uses = "y"
    def fn(self, x): return np.exp(x)
    def expr(self, x): return f"np.exp({x})"
    def deriv(self, y): return y
    def vjp(self, b, g, y, x): return (b(Mul(), g, y),)     # exp' is y itself: no Deriv value aliasing y


class Log(Unary):
    """y = log(x); y' = 1 / x"""
    ufunc = "log"
    def fn(self, x): return np.log(x)
    def expr(self, x): return f"np.log({x})"
    def deriv(self, x): return 1.0 / x
    def deriv_expr(self, x): return f"1.0 / {x}"


class Square(Unary):
    """y = x^2; y' = 2x"""
    def fn(self, x): return x * x
    def expr(self, x): return f"{x} * {x}"
    def expr_out(self, o, k, x): return f"np.multiply({x}, {x}, {o})"
    def deriv(self, x): return 2.0 * x
    def deriv_expr(self, x): return f"2.0 * {x}"


class Sqrt(Unary):
    """y = sqrt(x); y' = 1 / (2y)"""
    ufunc = "sqrt"
    uses = "y"
    def fn(self, x): return np.sqrt(x)
    def expr(self, x): return f"np.sqrt({x})"
    def deriv(self, y): return 0.5 / y
    def deriv_expr(self, y): return f"0.5 / {y}"


class Abs(Unary):
    """y = |x|; y' = sign(x)"""
    ufunc = "absolute"
    def fn(self, x): return np.abs(x)
    def expr(self, x): return f"np.abs({x})"
    def deriv(self, x): return np.sign(x)
    def deriv_expr(self, x): return f"np.sign({x})"


class Pow(Unary):
    """y = x^p; y' = p x^(p-1)"""
    def __init__(self, p):
        self.p = float(p)

    def fn(self, x): return np.power(x, self.p)
    def deriv(self, x): return self.p * np.power(x, self.p - 1.0)
    def deriv_expr(self, x): return None


class Huber(Unary):
    """y = x^2/2 where |x| < 1, else |x| - 1/2 (SmoothL1); y' = clip(x, -1, 1)"""
    def fn(self, x):
        a = np.abs(x)
        return np.where(a < 1.0, 0.5 * x * x, a - 0.5).astype(x.dtype)

    def deriv(self, x): return np.clip(x, -1.0, 1.0)
    def deriv_expr(self, x): return f"np.clip({x}, -1.0, 1.0)"


class Cast(Unary):
    """y = x converted to ``dtype``; the gradient is converted back"""
    family = "shape"

    def __init__(self, dtype):
        self.to = np.dtype(dtype).str

    def dtype(self, d):
        return np.dtype(self.to)

    def fn(self, x): return x.astype(self.to)
    def vjp(self, b, g, y, x): return (b(Cast(x.dtype), g),)
