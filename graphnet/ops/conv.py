"""Patch extraction for convolution and pooling: im2col and its adjoint col2im.

A convolution is ``Im2Col`` followed by ONE matrix product with the reshaped filters; max and average pooling are
``Im2Col`` (on the channels folded into the batch) followed by a ``Max`` or ``Mean`` over each row. So only these
two ops carry derivative rules: each is the other's VJP.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Op
from ..errors import ShapeMismatch


def out_size(n, k, s, p):
    """Output length of a window of size k, stride s, padding p on both sides over n entries (None: unknown)."""
    return None if n is None else (n + 2 * p - k) // s + 1


class _Window(Op):
    family = "nnet"

    def _window(self):
        return self.kh, self.kw, self.sh, self.sw, self.ph, self.pw

    def _out_hw(self, h, w):
        oh, ow = out_size(h, self.kh, self.sh, self.ph), out_size(w, self.kw, self.sw, self.pw)
        if (oh is not None and oh < 1) or (ow is not None and ow < 1):
            raise ShapeMismatch(f"a {self.kh}x{self.kw} window with padding ({self.ph}, {self.pw}) does not fit "
                                f"a {h}x{w} input")
        return oh, ow


class Im2Col(_Window):
    """cols[(n, i, j), (c, u, v)] = xpad[n, c, i sh + u, j sw + v]: each window of an NCHW input as one row,
    xpad = x padded by (ph, pw) with ``value`` (-inf: the lowest finite number of the dtype, for max pooling)"""

    def __init__(self, kh, kw, sh=1, sw=1, ph=0, pw=0, value=0.0):
        self.kh, self.kw, self.sh, self.sw, self.ph, self.pw = (int(a) for a in (kh, kw, sh, sw, ph, pw))
        self.value = float(value)

    def shape(self, x):
        if len(x) != 4:
            raise ShapeMismatch(f"needs a 4-d (batch, channels, height, width) input, got {len(x)}-d")
        n, c, h, w = x
        oh, ow = self._out_hw(h, w)
        rows = None if None in (n, oh, ow) else n * oh * ow
        return rows, (None if c is None else c * self.kh * self.kw)

    def forward(self, x):
        kh, kw, sh, sw, ph, pw = self._window()
        n, c, h, w = x.shape
        oh, ow = self._out_hw(h, w)
        if ph or pw:
            # -inf would trip gn.debug(check_finite=True); every window holds a real entry (pad <= kernel / 2)
            v = np.finfo(x.dtype).min if self.value == -np.inf else self.value
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=v)
        win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)     # (N, OH, OW, C, kh, kw)
        # reshape copies except in degenerate layouts (e.g. one window covering the image): never alias x
        return cols.copy() if np.may_share_memory(cols, x) else cols

    def vjp(self, b, g, y, x):
        return (b(Col2Im(*self._window(), *x.shape[1:]), g),)


class Col2Im(_Window):
    """the adjoint of Im2Col: each row's entries added back into the (c, h, w) positions they came from"""
    grad_only = True

    def __init__(self, kh, kw, sh, sw, ph, pw, c, h, w):
        self.kh, self.kw, self.sh, self.sw, self.ph, self.pw = (int(a) for a in (kh, kw, sh, sw, ph, pw))
        self.c, self.h, self.w = int(c), int(h), int(w)

    def shape(self, g):
        oh, ow = self._out_hw(self.h, self.w)
        if len(g) != 2 or (g[1] is not None and g[1] != self.c * self.kh * self.kw):
            raise ShapeMismatch(f"needs a (rows, {self.c * self.kh * self.kw}) input")
        return (None if g[0] is None else g[0] // (oh * ow)), self.c, self.h, self.w

    def forward(self, g):
        kh, kw, sh, sw, ph, pw = self._window()
        oh, ow = self._out_hw(self.h, self.w)
        n = g.shape[0] // (oh * ow)
        g6 = g.reshape(n, oh, ow, self.c, kh, kw).transpose(0, 3, 1, 2, 4, 5)       # (N, C, OH, OW, kh, kw)
        out = np.zeros((n, self.c, self.h + 2 * ph, self.w + 2 * pw), g.dtype)
        for u in range(kh):                          # kh * kw strided adds: overlapping windows add up
            for v in range(kw):
                out[:, :, u:u + (oh - 1) * sh + 1:sh, v:v + (ow - 1) * sw + 1:sw] += g6[..., u, v]
        return out[:, :, ph:ph + self.h, pw:pw + self.w] if ph or pw else out

    def vjp(self, b, g, y, cols):
        return (b(Im2Col(*self._window()), g),)
