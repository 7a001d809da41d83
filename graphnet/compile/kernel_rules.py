"""The formulas fused kernels compute: per op, a scalar expression (elementwise ops, derivatives) or, for ops along
the last dim of a row (softmax, log-softmax and their gradients), statements reducing the row first and then a
scalar expression per column.

Arguments arrive as expressions reading column j; ``c(x)`` spells the constant x in the kernel's dtype. NaN
propagates where numpy's form propagates it.
"""
from __future__ import annotations

import numpy as np

from ..ops import (Abs, Add, AddN, AddScalar, Compare, Const, Deriv, Div, Exp, HardTanh, LeakyReLU, Log,
                   LogSoftmax, LogSoftmaxGrad, Maximum, Minimum, Mul, ReLU, Scale, Sigmoid, Softmax, SoftmaxGrad, Sqrt,
                   Square, Sub, Tanh, Threshold)
from .picks import TARGET_CHECK, PickColumn, PickGradColumn

_CMP = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}

# op class -> scalar formula over argument names; c(x) is the literal x in the kernel's dtype
_RULES = {
    Add: lambda op, a, c: f"{a[0]} + {a[1]}",
    Sub: lambda op, a, c: f"{a[0]} - {a[1]}",
    Mul: lambda op, a, c: f"{a[0]} * {a[1]}",
    Div: lambda op, a, c: f"{a[0]} / {a[1]}",
    AddN: lambda op, a, c: " + ".join(a),
    # NaN propagates from either side, as np.maximum / np.minimum
    Maximum: lambda op, a, c: f"{a[0]} if ({a[0]} >= {a[1]} or {a[0]} != {a[0]}) else {a[1]}",
    Minimum: lambda op, a, c: f"{a[0]} if ({a[0]} <= {a[1]} or {a[0]} != {a[0]}) else {a[1]}",
    Compare: lambda op, a, c: f"{c(1)} if {a[0]} {_CMP[op.cmp]} {a[1]} else {c(0)}",
    Scale: lambda op, a, c: f"{a[0]} * {c(op.c)}",
    AddScalar: lambda op, a, c: f"{a[0]} + {c(op.c)}",
    Tanh: lambda op, a, c: f"_tanh({a[0]})",
    Sigmoid: lambda op, a, c: f"_tanh({a[0]} * {c(0.5)}) * {c(0.5)} + {c(0.5)}",   # as Sigmoid.fn computes it
    ReLU: lambda op, a, c: f"{a[0]} if ({a[0]} >= {c(0)} or {a[0]} != {a[0]}) else {c(0)}",
    LeakyReLU: lambda op, a, c: f"{a[0]} if {a[0]} > {c(0)} else {a[0]} * {c(op.slope)}",
    HardTanh: lambda op, a, c: f"{c(op.lo)} if {a[0]} < {c(op.lo)} else ({c(op.hi)} if {a[0]} > {c(op.hi)} else {a[0]})",
    Threshold: lambda op, a, c: f"{a[0]} if {a[0]} > {c(op.threshold)} else {c(op.value)}",
    Exp: lambda op, a, c: f"_exp({a[0]})",
    Log: lambda op, a, c: f"math.log({a[0]})",
    Sqrt: lambda op, a, c: f"math.sqrt({a[0]})",
    Abs: lambda op, a, c: f"abs({a[0]})",
    Square: lambda op, a, c: f"{a[0]} * {a[0]}",
    PickGradColumn: lambda op, a, c: f"{a[0]} if j == {a[1]} else {c(0)}",     # a row's g at its target column
}

# the derivative of a unary op (``Deriv(op)``), over x, y or both as the op's ``uses`` says
_DERIV_RULES = {
    Tanh: lambda op, a, c: f"{c(1)} - {a[0]} * {a[0]}",
    Sigmoid: lambda op, a, c: f"({c(1)} - {a[0]}) * {a[0]}",
    ReLU: lambda op, a, c: f"{c(1)} if {a[0]} > {c(0)} else {c(0)}",
    LeakyReLU: lambda op, a, c: f"{c(1)} if {a[0]} > {c(0)} else {c(op.slope)}",
    HardTanh: lambda op, a, c: f"{c(1)} if ({a[0]} > {c(op.lo)} and {a[0]} < {c(op.hi)}) else {c(0)}",
    Threshold: lambda op, a, c: f"{c(1)} if {a[0]} > {c(op.threshold)} else {c(0)}",
    Square: lambda op, a, c: f"{c(2)} * {a[0]}",
    Log: lambda op, a, c: f"{c(1)} / {a[0]}",
    Sqrt: lambda op, a, c: f"{c(0.5)} / {a[0]}",
    Abs: lambda op, a, c: f"{c(1)} if {a[0]} > {c(0)} else ({c(-1)} if {a[0]} < {c(0)} else {a[0]} * {c(0)})",
}


def scalar_rule(op):
    """The scalar formula of ``op`` for a kernel, or None when kernels do not compute it."""
    if type(op) is Deriv:
        rule = _DERIV_RULES.get(type(op.op))
        return None if rule is None else (lambda d, a, c: rule(d.op, a, c))
    return _RULES.get(type(op))


def is_literal(v) -> bool:
    """A constant scalar: spelled in the kernel's source, not passed in."""
    return isinstance(v.op, Const) and v.ndim == 0 and v.op.value.dtype.kind in "fiub"


def literal(dtype):
    """c(x): the constant x spelled in the kernel's dtype (a float64 literal would promote float32 math)."""
    if np.dtype(dtype) == np.float32:
        return lambda x: f"_F({float(x)!r})"
    return lambda x: repr(float(x))




def _max_and_exp_sum(x, p, f):
    """A row's max, then the sum of exp(x - max): softmax's reductions. The max is taken over the values'
    ordered integer keys (kernel_math's ``_key``): an integer max loop is SIMD code, a float compare-and-select
    is not. It is exact and in the kernel's dtype, so x - max and its exp are too. A NaN whose key is not the
    max still reaches every result of its row through the sum of exps, as with np.max."""
    return [(f"{p}k = _key({f('-math.inf')})", f"{p}q = _key({x}); {p}k = {p}q if {p}q > {p}k else {p}k"),
            (f"{p}m = _unkey({p}k); {p}s = 0.0", f"{p}s += _exp({x} - {p}m)")]


# ops along the last dim: (reductions [(init, statement per column)], statements after them, value at column j);
# sums accumulate in float64 whatever the dtype; f(e) converts e to the kernel's dtype
_ROW_RULES = {
    LogSoftmax: lambda op, a, p, f: (_max_and_exp_sum(a[0], p, f), [f"{p}l = math.log({p}s)"], f"({a[0]} - {p}m) - {f(p + 'l')}"),
    Softmax: lambda op, a, p, f: (_max_and_exp_sum(a[0], p, f), [], f"_exp({a[0]} - {p}m) / {f(p + 's')}"),
    LogSoftmaxGrad: lambda op, a, p, f: ([(f"{p}s = 0.0", f"{p}s += {a[0]}")], [],
                                         f"{a[0]} - _exp({a[1]}) * {f(p + 's')}"),
    SoftmaxGrad: lambda op, a, p, f: ([(f"{p}s = 0.0", f"{p}s += {a[0]} * {a[1]}")], [],
                                      f"{a[0]} * {a[1]} - {a[1]} * {f(p + 's')}"),
}


def _pick(op, a, p, f):
    # x's row read at the row's target t (a column: read at its column 0), checked first as Pick.forward checks it.
    # A bad target is the kernel's return value (0 otherwise: in range for any number of classes), which
    # picks.readable_errors words as Pick does: an exception raised in the kernel costs numba 0.1 s more to
    # compile and the call 1 us more (and a message built there, 2 s)
    t = a[1].replace("j]", "0]")
    check = f"if {t} < 0 or {t} >= {op.classes}: return {t}  {TARGET_CHECK}"
    return [], [check], a[0].replace("j]", f"{t}]")


_ROW_RULES[PickColumn] = _pick


def row_rule(op, ndim):
    """The row formula of an op along the last dim (see ``_ROW_RULES``), or None."""
    rule = _ROW_RULES.get(type(op))
    return rule if rule is not None and op.axis % ndim == ndim - 1 else None


def convert(dtype):
    """f(e): the expression e in the kernel's dtype."""
    return (lambda e: f"_F({e})") if np.dtype(dtype) == np.float32 else (lambda e: e)
