"""Each primitive op's ONNX form: one translation per op class, forward values only (evaluation mode).

A translation gets the graph being built (``OnnxGraph``), the IR value and its inputs' tensor names, and returns
the name of the tensor holding the value. Shapes come from ``g.shape(value)``, whose batch-sized entries
(``Batch``) are computed at run time, so the model takes any batch size.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ops.conv import Im2Col
from ..ops.norm import RunningStat
from .onnx_graph import Batch

TRANSLATIONS: dict = {}
INT64_MAX = np.iinfo(np.int64).max


def translates(*classes):
    def register(fn):
        for c in classes:
            TRANSLATIONS[c] = fn
        return fn
    return register


def translate(g, v):
    """The tensor name holding ``v``, or None when its op has no ONNX form. ONNX's arithmetic takes one type: a
    float input of another float type than the value's (numpy promotes) is cast to it first."""
    fn = TRANSLATIONS.get(type(v.op))
    if fn is None:
        return None
    xs = [g.name(a) for a in v.args]
    if v.dtype is not None and v.dtype.kind == "f" and type(v.op) is not ops.Cast:
        xs = [_cast(g, x, v.dtype, hint(v)) if a.dtype.kind == "f" and a.dtype != v.dtype else x
              for x, a in zip(xs, v.args)]
    return fn(g, v, xs)


def hint(v) -> str:
    return v.src.display_name() if v.src is not None else "value"


# --- leaves ---------------------------------------------------------------------------------------------------

@translates(ops.Param)
def _param(g, v, xs):
    return g.initializer(v.op.param.data, f"{hint(v)}.{v.op.param.name or 'param'}")


@translates(RunningStat)
def _running_stat(g, v, xs):
    return g.initializer(v.op.forward(), f"{hint(v)}.{v.op.which}")


@translates(ops.Const)
def _const(g, v, xs):
    dims, value = g.shape(v), v.op.value
    batch_axes = [i for i, d in enumerate(dims) if isinstance(d, Batch)]
    if not batch_axes:
        return g.initializer(value, f"{hint(v)}.const")
    # a constant as long as the batch: the same along the batch axes, stored once and expanded at run time
    one = value[tuple(slice(0, 1) if i in batch_axes else slice(None) for i in range(value.ndim))]
    if not np.array_equal(np.broadcast_to(one, value.shape), value):
        return None
    return g.add("Expand", [g.initializer(one, f"{hint(v)}.const"), g.shape_tensor(dims, hint(v))], hint(v))


# --- elementwise ----------------------------------------------------------------------------------------------

_SAME_NAME = {ops.Add: "Add", ops.Sub: "Sub", ops.Mul: "Mul", ops.Div: "Div", ops.Maximum: "Max",
              ops.Minimum: "Min", ops.Tanh: "Tanh", ops.Sigmoid: "Sigmoid", ops.ReLU: "Relu", ops.Exp: "Exp",
              ops.Log: "Log", ops.Sqrt: "Sqrt", ops.Abs: "Abs", ops.AddN: "Sum"}


@translates(*_SAME_NAME)
def _same_name(g, v, xs):
    return g.add(_SAME_NAME[type(v.op)], xs, hint(v))


def _scalar(g, v, c):
    return g.const(c, v.dtype)


@translates(ops.Scale)
def _scale(g, v, xs):
    return g.add("Mul", [xs[0], _scalar(g, v, v.op.c)], hint(v))


@translates(ops.AddScalar)
def _add_scalar(g, v, xs):
    return g.add("Add", [xs[0], _scalar(g, v, v.op.c)], hint(v))


@translates(ops.Square)
def _square(g, v, xs):
    return g.add("Mul", [xs[0], xs[0]], hint(v))


@translates(ops.Pow)
def _pow(g, v, xs):
    return g.add("Pow", [xs[0], _scalar(g, v, v.op.p)], hint(v))


@translates(ops.LeakyReLU)
def _leaky_relu(g, v, xs):
    return g.add("LeakyRelu", xs, hint(v), alpha=v.op.slope)


@translates(ops.ELU)
def _elu(g, v, xs):
    return g.add("Elu", xs, hint(v), alpha=v.op.alpha)


@translates(ops.HardTanh)
def _hard_tanh(g, v, xs):
    return g.add("Clip", [xs[0], _scalar(g, v, v.op.lo), _scalar(g, v, v.op.hi)], hint(v))


@translates(ops.Threshold)
def _threshold(g, v, xs):
    above = g.add("Greater", [xs[0], _scalar(g, v, v.op.threshold)], hint(v))
    return g.add("Where", [above, xs[0], _scalar(g, v, v.op.value)], hint(v))


@translates(ops.SoftPlus)
def _softplus(g, v, xs):
    h, op = hint(v), v.op
    bx = g.add("Mul", [xs[0], _scalar(g, v, op.beta)], h)
    soft = g.add("Div", [g.add("Softplus", [bx], h), _scalar(g, v, op.beta)], h)
    return g.add("Where", [g.add("Greater", [bx, _scalar(g, v, op.threshold)], h), xs[0], soft], h)


@translates(ops.Huber)
def _huber(g, v, xs):
    h, x = hint(v), xs[0]
    a = g.add("Abs", [x], h)
    quad = g.add("Mul", [g.add("Mul", [x, x], h), _scalar(g, v, 0.5)], h)
    lin = g.add("Sub", [a, _scalar(g, v, 0.5)], h)
    return g.add("Where", [g.add("Less", [a, _scalar(g, v, 1.0)], h), quad, lin], h)


_COMPARE = {"ge": "GreaterOrEqual", "gt": "Greater", "le": "LessOrEqual", "lt": "Less"}


@translates(ops.Compare)
def _compare(g, v, xs):
    return _cast(g, g.add(_COMPARE[v.op.cmp], xs, hint(v)), v.dtype, hint(v))


@translates(ops.Cast)
def _cast_op(g, v, xs):
    return _cast(g, xs[0], v.dtype, hint(v))


def _cast(g, x, dtype, h):
    return g.add("Cast", [x], h, to=g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


# --- products and reductions ------------------------------------------------------------------------------------

@translates(ops.MatMul)
def _matmul(g, v, xs):
    a, b = v.args
    if type(a.op) is Im2Col and not v.op.ta and (a.op.value == 0.0 or not (a.op.ph or a.op.pw)):
        return _conv(g, v, a, xs[1])
    if a.ndim == 2 and b.ndim == 2:
        return g.add("Gemm", xs, hint(v), transA=int(v.op.ta), transB=int(v.op.tb))
    return g.add("MatMul", [_swap_last(g, x, val, t, hint(v)) for x, val, t in zip(xs, v.args, (v.op.ta, v.op.tb))],
                 hint(v))


def _swap_last(g, x, val, swap, h):
    if not swap:
        return x
    perm = list(range(val.ndim))
    perm[-2:] = perm[-1], perm[-2]
    return g.add("Transpose", [x], h, perm=perm)


_REDUCE = {ops.Sum: "ReduceSum", ops.Mean: "ReduceMean", ops.Max: "ReduceMax"}


@translates(*_REDUCE)
def _reduce(g, v, xs):
    x = v.args[0]
    if type(x.op) is Im2Col and type(v.op) in _POOL and _axes(v.op.axes, 2) == [1]:
        pooled = _pool(g, v, x)
        if pooled is not None:
            return pooled
    return g.add(_REDUCE[type(v.op)], [xs[0], g.ints(_axes(v.op.axes, x.ndim))], hint(v),
                 keepdims=int(v.op.keepdims))


def _axes(axes, ndim):
    axes = range(ndim) if axes is None else (axes,) if isinstance(axes, int) else axes
    return sorted({a % ndim for a in axes})


_ALONG_AXIS = {ops.Softmax: "Softmax", ops.LogSoftmax: "LogSoftmax"}


@translates(*_ALONG_AXIS)
def _softmax(g, v, xs):
    return g.add(_ALONG_AXIS[type(v.op)], xs, hint(v), axis=v.op.axis)


# --- moving data -------------------------------------------------------------------------------------------------

@translates(ops.Reshape)
def _reshape(g, v, xs):
    return g.add("Reshape", [xs[0], g.reshape_spec(g.shape(v), hint(v))], hint(v))


@translates(ops.Transpose)
def _transpose(g, v, xs):
    return g.add("Transpose", xs, hint(v), perm=list(v.op.perm))


@translates(ops.Contiguous)
def _contiguous(g, v, xs):
    return g.add("Identity", xs, hint(v))


@translates(ops.BroadcastTo)
def _broadcast_to(g, v, xs):
    return g.add("Expand", [xs[0], g.shape_tensor(g.shape(v), hint(v))], hint(v))


@translates(ops.Slice)
def _slice(g, v, xs):
    op = v.op
    # negative start / length count from the end, as ONNX's starts / ends do: right for any size of the dim
    if op.length < 0:
        end = op.length + 1 if op.length < -1 else INT64_MAX
    else:
        end = op.start + op.length if op.start >= 0 or op.start + op.length < 0 else INT64_MAX
    return g.add("Slice", [xs[0], g.ints([op.start]), g.ints([end]), g.ints([op.dim])], hint(v))


@translates(ops.Index)
def _index(g, v, xs):
    return g.add("Gather", [xs[0], g.const(v.op.index, np.int64)], hint(v), axis=v.op.dim)


@translates(ops.Concat)
def _concat(g, v, xs):
    return g.add("Concat", xs, hint(v), axis=v.op.dim)


@translates(ops.Pad)
def _pad(g, v, xs):
    op = v.op
    return g.add("Pad", [xs[0], g.ints([op.before, op.after]), _scalar(g, v, op.value), g.ints([op.dim])], hint(v))


# --- tables of rows --------------------------------------------------------------------------------------------

@translates(ops.Take)
def _take(g, v, xs):
    return g.add("Gather", [xs[0], _int64(g, v.args[1], xs[1], hint(v))], hint(v), axis=0)


@translates(ops.Pick)
def _pick(g, v, xs):
    h = hint(v)
    t = g.add("Unsqueeze", [_int64(g, v.args[1], xs[1], h), g.ints([1])], h)
    return g.add("Squeeze", [g.add("GatherElements", [xs[0], t], h, axis=1), g.ints([1])], h)


def _int64(g, val, x, h):
    return x if val.dtype in (np.int32, np.int64) else _cast(g, x, np.int64, h)


# --- windows: convolution and pooling ----------------------------------------------------------------------------

def _window_attrs(op):
    return dict(kernel_shape=[op.kh, op.kw], strides=[op.sh, op.sw], pads=[op.ph, op.pw, op.ph, op.pw])


def _conv(g, v, cols, w):
    """Im2Col(x) @ W: a Conv of x with W's rows as filters, laid out as the product's (N OH OW, C_out) rows."""
    op, x, h = cols.op, cols.args[0], hint(v)
    c = x.shape[1]
    if v.op.tb:
        c_out = v.args[1].shape[0]
    else:
        c_out = v.args[1].shape[1]
        w = g.add("Transpose", [w], h, perm=[1, 0])
    filters = g.add("Reshape", [w, g.ints([c_out, c, op.kh, op.kw])], h)
    y = g.add("Conv", [g.name(x), filters], h, **_window_attrs(op))
    return _as_rows(g, y, c_out, h)


def _as_rows(g, y, width, h):
    """(N, C, OH, OW) -> (N OH OW, C): each window's values as one row, as Im2Col orders them."""
    return g.add("Reshape", [g.add("Transpose", [y], h, perm=[0, 2, 3, 1]), g.ints([-1, width])], h)


_POOL = {ops.Max: ("MaxPool", -np.inf), ops.Mean: ("AveragePool", 0.0)}


def _pool(g, v, cols):
    """A Max / Mean over each row of Im2Col on one channel is max / average pooling (None: not that form)."""
    op, x = cols.op, cols.args[0]
    kind, pad_value = _POOL[type(v.op)]
    if x.shape[1] != 1 or (op.value != pad_value and (op.ph or op.pw)):
        return None
    extra = {"count_include_pad": 1} if kind == "AveragePool" else {}
    y = g.add(kind, [g.name(x)], hint(v), **_window_attrs(op), **extra)
    return g.add("Reshape", [y, g.ints([-1, 1] if v.op.keepdims else [-1])], hint(v))


@translates(Im2Col)
def _im2col(g, v, xs):
    """Each window as a row: a grouped Conv whose one-hot filters copy each (channel, u, v) entry out."""
    op, h = v.op, hint(v)
    c = v.args[0].shape[1]
    x, pads = xs[0], [op.ph, op.pw, op.ph, op.pw]
    if op.value != 0.0 and (op.ph or op.pw):       # padded with a value Conv cannot pad with: pad first
        value = np.finfo(v.dtype).min if op.value == -np.inf else op.value
        x = g.add("Pad", [x, g.ints([op.ph, op.pw, op.ph, op.pw]), _scalar(g, v, value), g.ints([2, 3])], h)
        pads = [0, 0, 0, 0]
    k = op.kh * op.kw
    one_hot = np.tile(np.eye(k, dtype=v.dtype).reshape(k, 1, op.kh, op.kw), (c, 1, 1, 1))
    y = g.add("Conv", [x, g.const(one_hot, v.dtype)], h, group=c, kernel_shape=[op.kh, op.kw],
              strides=[op.sh, op.sw], pads=pads)
    return _as_rows(g, y, c * k, h)
