"""Spatial modules on NCHW inputs (or one CHW image): convolution, max and average pooling, all through Im2Col."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import fmt_shape
from ..module import DEFAULT_DTYPE, Module, Parameter, rng
from ..ops.conv import Im2Col, out_size
from ._util import build_error, check_int, fail


def _batched(b, x, what):
    """x as (N, C, H, W) (a 3-d CHW input gets a batch of one), and whether it was 3-d."""
    nd = len(x.shape)
    if nd not in (3, 4):
        raise fail(b, f"{what} takes a 4-d (batch, channels, height, width) or 3-d (channels, "
                                     f"height, width) input, got shape {fmt_shape(x.shape)}")
    if nd == 3:
        return b(ops.Reshape((1,) + tuple(-1 if d is None else d for d in x.shape)), x), True
    return x, False


def _unbatched(b, y, single):
    return b(ops.Reshape(tuple(-1 if d is None else d for d in y.shape[1:])), y) if single else y


def _pairs(module, kh, kw, sh, sw, ph, pw):
    name = type(module).__name__
    kh, kw = check_int("kh", kh, 1, name), check_int("kw", kw, 1, name)
    sh = kh if sh is None else check_int("sh", sh, 1, name)
    sw = kw if sw is None else check_int("sw", sw, 1, name)
    return kh, kw, sh, sw, check_int("ph", ph, 0, name), check_int("pw", pw, 0, name)


class SpatialConvolution(Module):
    """y[n, o] = b[o] + sum_c W[o, c] * x[n, c] (cross-correlation, stride (sh, sw), zero padding (ph, pw));
    W: (c_out, c_in, kh, kw), b: (c_out,), init U(-1/sqrt(c_in kh kw), +) as torch. One Im2Col and one GEMM."""

    def __init__(self, c_in: int, c_out: int, kh: int, kw: int, sh: int = 1, sw: int = 1, ph: int = 0, pw: int = 0,
                 bias: bool = True):
        super().__init__()
        self.c_in = check_int("c_in", c_in, 1, "SpatialConvolution")
        self.c_out = check_int("c_out", c_out, 1, "SpatialConvolution")
        self.kh, self.kw, self.sh, self.sw, self.ph, self.pw = _pairs(self, kh, kw, sh, sw, ph, pw)
        stdv = 1.0 / math.sqrt(c_in * kh * kw)
        self.weight = Parameter(rng().uniform(-stdv, stdv, (c_out, c_in, kh, kw)).astype(DEFAULT_DTYPE))
        self.bias = Parameter(rng().uniform(-stdv, stdv, (c_out,)).astype(DEFAULT_DTYPE)) if bias else None

    def label(self):
        s = f"SpatialConvolution({self.c_in} -> {self.c_out}, {self.kh}x{self.kw}"
        if (self.sh, self.sw) != (1, 1):
            s += f", stride {self.sh},{self.sw}"
        if (self.ph, self.pw) != (0, 0):
            s += f", pad {self.ph},{self.pw}"
        return s + ("" if self.bias is not None else ", no bias") + ")"

    def lower(self, b, x):
        x, single = _batched(b, x, self.label())
        c = x.shape[1]
        if c is not None and c != self.c_in:
            raise fail(b, f"{self.label()} expects {self.c_in} input channels (dim 1), got input "
                                         f"shape {fmt_shape(x.shape)}")
        k = self.c_in * self.kh * self.kw
        cols = b(Im2Col(self.kh, self.kw, self.sh, self.sw, self.ph, self.pw), x)     # (N OH OW, C kh kw)
        w = b(ops.Reshape((self.c_out, k)), b.param(self.weight))
        y = b(ops.MatMul(tb=True), cols, w)                                            # (N OH OW, c_out)
        if self.bias is not None:
            y = b(ops.Add(), y, b.param(self.bias))
        oh, ow = (out_size(x.shape[2], self.kh, self.sh, self.ph), out_size(x.shape[3], self.kw, self.sw, self.pw))
        y = b(ops.Reshape((-1, oh, ow, self.c_out)), y)
        return _unbatched(b, b(ops.Transpose((0, 3, 1, 2)), y), single)


class _Pooling(Module):
    """Windows of each channel as rows (Im2Col on channels folded into the batch), reduced by ``reduce``."""
    pad_value = 0.0

    def __init__(self, kh: int, kw: int, sh: int | None = None, sw: int | None = None, ph: int = 0, pw: int = 0):
        super().__init__()
        self.kh, self.kw, self.sh, self.sw, self.ph, self.pw = _pairs(self, kh, kw, sh, sw, ph, pw)
        if 2 * self.ph > self.kh or 2 * self.pw > self.kw:
            raise build_error(f"{type(self).__name__}: padding ({self.ph}, {self.pw}) must be at most half the "
                             f"kernel size ({self.kh}, {self.kw}), as in torch")

    def label(self):
        s = f"{type(self).__name__}({self.kh}x{self.kw}"
        if (self.sh, self.sw) != (self.kh, self.kw):
            s += f", stride {self.sh},{self.sw}"
        if (self.ph, self.pw) != (0, 0):
            s += f", pad {self.ph},{self.pw}"
        return s + ")"

    def _windows(self, b, x):
        n, c, h, w = x.shape
        folded = b(ops.Reshape((-1, 1, h, w)), x)                                     # (N C, 1, H, W)
        return b(Im2Col(self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.pad_value), folded)

    def lower(self, b, x):
        x, single = _batched(b, x, self.label())
        n, c, h, w = x.shape
        if c is None:
            raise fail(b, f"{self.label()} needs the number of channels (dim 1) to be known, got "
                                         f"input shape {fmt_shape(x.shape)}")
        y = self.reduce(b, self._windows(b, x), x)                                    # (N C OH OW,)
        oh, ow = out_size(h, self.kh, self.sh, self.ph), out_size(w, self.kw, self.sw, self.pw)
        return _unbatched(b, b(ops.Reshape((-1, c, oh, ow)), y), single)


class SpatialMaxPooling(_Pooling):
    """y = max over each kh x kw window (stride (sh, sw), default the kernel; padding counts as -inf); the
    gradient goes to the first maximum of each window, as torch.nn.functional.max_pool2d"""
    pad_value = -np.inf

    def reduce(self, b, cols, x):
        return b(ops.Max(1), cols)


class SpatialAveragePooling(_Pooling):
    """y = mean over each kh x kw window (stride (sh, sw), default the kernel). count_include_pad=True (torch's
    default): zero padding counts in the divisor kh kw; False: only the input entries in the window count"""

    def __init__(self, kh: int, kw: int, sh: int | None = None, sw: int | None = None, ph: int = 0, pw: int = 0,
                 count_include_pad: bool = True):
        super().__init__(kh, kw, sh, sw, ph, pw)
        self.count_include_pad = bool(count_include_pad)

    def reduce(self, b, cols, x):
        if self.count_include_pad or (self.ph, self.pw) == (0, 0):
            return b(ops.Mean(1), cols)
        n, c, h, w = x.shape
        oh, ow = out_size(h, self.kh, self.sh, self.ph), out_size(w, self.kw, self.sw, self.pw)
        ones = np.ones((1, 1, h, w))          # how many input entries each window holds: a constant
        counts = Im2Col(self.kh, self.kw, self.sh, self.sw, self.ph, self.pw).forward(ones).sum(1)
        s = b(ops.Reshape((-1, oh * ow)), b(ops.Sum(1), cols))                         # (N C, OH OW)
        return b(ops.Reshape((-1,)), b(ops.Div(), s, b.const(counts, x.dtype or self.dtype)))
