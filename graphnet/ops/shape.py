"""Ops that move data without arithmetic: reshape, transpose, slice, index, concat, pad."""
from __future__ import annotations

import numpy as np

from .base import Op, dim_eq, norm_dim, size_of
from ..errors import ShapeMismatch


class _Move(Op):
    """An op that moves entries without arithmetic: the output keeps the input's dtype (integers stay integer;
    unknown while a graph is built, when an input's dtype is)."""
    family = "shape"

    def dtype(self, *dtypes):
        return None if any(d is None for d in dtypes) else np.result_type(*dtypes)


class Reshape(_Move):
    """y = x reshaped to ``spec`` (one -1 entry: whatever is left)"""
    family = "shape"
    view = True

    def __init__(self, spec):
        self.spec = tuple(None if d is None else int(d) for d in spec)   # None: unknown (build time only)
        if sum(d == -1 for d in self.spec) > 1 or any(d is not None and d < -1 for d in self.spec):
            raise ShapeMismatch(f"reshape spec {self.spec} may hold one -1 and no other negative size")

    def shape(self, x):
        if None in self.spec:
            return tuple(None if d == -1 else d for d in self.spec)
        n, known = size_of(x), size_of([d for d in self.spec if d != -1])
        if -1 not in self.spec:
            if n is not None and n != known:
                raise ShapeMismatch(f"cannot reshape {n} elements into {self.spec} ({known} elements)")
            return self.spec
        if n is None:
            return tuple(None if d == -1 else d for d in self.spec)
        if known == 0 or n % known:
            raise ShapeMismatch(f"cannot reshape {n} elements into {self.spec}")
        return tuple(n // known if d == -1 else d for d in self.spec)

    def forward(self, x): return x.reshape(self.spec)
    def expr(self, x): return f"{x}.reshape({self.spec!r})"
    def vjp(self, b, g, y, x): return (b(Reshape(x.shape), g),)


class Transpose(_Move):
    """y = x with its dims permuted by ``perm``"""
    family = "shape"
    view = True
    always_view = True

    def __init__(self, perm):
        self.perm = tuple(int(p) for p in perm)

    def shape(self, x):
        if sorted(self.perm) != list(range(len(x))):
            raise ShapeMismatch(f"permutation {self.perm} does not fit a {len(x)}-d input")
        return tuple(x[p] for p in self.perm)

    def forward(self, x): return np.transpose(x, self.perm)
    def expr(self, x): return f"{x}.transpose({self.perm!r})"
    def vjp(self, b, g, y, x): return (b(Transpose(tuple(np.argsort(self.perm))), g),)


class Contiguous(_Move):
    """y = x, stored as a C-contiguous copy. BLAS packs a transposed operand more slowly than a plain one (small
    row counts pay up to 2x per product), so a weight read transposed by many products is copied once."""
    family = "shape"

    # always a copy (np.ascontiguousarray would hand back x itself when it is contiguous already: an alias of a
    # value the memory plan takes for a new array, and of the caller's input when it is an output)
    def forward(self, x):
        out = np.empty(np.shape(x), np.asarray(x).dtype)
        copy_in_tiles(out, x)
        return out

    def expr(self, x): return f"np.array({x}, order='C')"
    def expr_out(self, out, k, x): return f"copy_in_tiles({out}, {x})"
    def plan_globals(self, line): return {"copy_in_tiles": copy_in_tiles}
    def vjp(self, b, g, y, x): return (g,)


TILE_ROWS, TILE_COLS = 512, 16
TILED_FROM = 1 << 17         # elements; below, x fits in L2 and one np.copyto is faster


def copy_in_tiles(out, x):
    """out[...] = x, for a C-contiguous ``out``. A large transposed x (a weight's W.T) goes over in tiles of
    512 x 16 of out, each reading 16 whole rows of W: np.copyto alone walks out in order and W by columns, a cache
    miss per element (measured 1.7x-6x slower: 30 ms against 4.9 ms for a 4096 x 1024 float32 weight)."""
    if np.ndim(x) != 2 or x.flags.c_contiguous or x.size < TILED_FROM:
        np.copyto(out, x)
        return
    rows, cols = x.shape
    for j in range(0, cols, TILE_COLS):
        for i in range(0, rows, TILE_ROWS):
            np.copyto(out[i:i + TILE_ROWS, j:j + TILE_COLS], x[i:i + TILE_ROWS, j:j + TILE_COLS])


def _index(ndim, dim, sl):
    return (slice(None),) * dim + (sl,)


class Slice(_Move):
    """y = x[..., s:s+n, ...] along ``dim`` (a view); start < 0 counts from the end, length < 0 runs to the end
    (-1: up to the last entry, -2: all but the last, as torch.nn.Narrow)"""
    family = "shape"
    view = True
    always_view = True

    def __init__(self, dim, start, length):
        self.dim, self.start, self.length = int(dim), int(start), int(length)

    def span(self, size):
        """(start, length) resolved for a dim of ``size`` (None if unknown)."""
        if (self.start < 0 or self.length < 0) and size is None:
            return None
        s = self.start + size if self.start < 0 else self.start
        n = size - s + self.length + 1 if self.length < 0 else self.length
        return s, n

    def shape(self, x):
        d = norm_dim(self.dim, len(x))
        sp = self.span(x[d])
        if sp is None:
            return x[:d] + (None,) + x[d + 1:]
        s, n = sp
        if s < 0 or n < 1 or (x[d] is not None and s + n > x[d]):
            raise ShapeMismatch(f"narrow(dim={self.dim}, start={self.start}, length={self.length}) selects "
                                f"[{s}:{s + n}], outside dim {self.dim} of size {x[d]}")
        return x[:d] + (n,) + x[d + 1:]

    def row_pattern(self, x):
        return (True,) if len(x) > 1 and self.dim % len(x) != 0 else None

    def forward(self, x):
        d = self.dim % x.ndim
        s, n = self.span(x.shape[d])
        return x[_index(x.ndim, d, slice(s, s + n))]

    def expr(self, x):
        if self.start < 0 or self.length < 0 or self.dim < 0:
            return None
        return f"{x}[{':, ' * self.dim}{self.start}:{self.start + self.length}]"

    def vjp(self, b, g, y, x):
        d = self.dim % x.ndim
        s, _ = self.span(x.shape[d])
        return (b(Unslice(d, s, x.shape[d]), g),)


class Unslice(Op):
    """the gradient of Slice: g placed at [start:start+len] of a zero array whose ``dim`` has size ``size``"""
    family = "grad"
    grad_only = True

    def __init__(self, dim, start, size):
        self.dim, self.start, self.size = int(dim), int(start), int(size)

    def shape(self, g):
        return g[:self.dim] + (self.size,) + g[self.dim + 1:]

    def forward(self, g):
        shp = list(g.shape)
        shp[self.dim] = self.size
        out = np.zeros(shp, g.dtype)
        out[_index(g.ndim, self.dim, slice(self.start, self.start + g.shape[self.dim]))] = g
        return out

    def vjp(self, b, g, y, x):
        return (b(Slice(self.dim, self.start, x.shape[self.dim]), g),)


class Index(_Move):
    """y = x[..., i, ...] along ``dim``, that dim removed (a view)"""
    family = "shape"
    view = True
    always_view = True

    def __init__(self, dim, index):
        self.dim, self.index = int(dim), int(index)

    def shape(self, x):
        d = norm_dim(self.dim, len(x))
        if x[d] is not None and not -x[d] <= self.index < x[d]:
            raise ShapeMismatch(f"index {self.index} is out of range for dim {self.dim} of size {x[d]}")
        return x[:d] + x[d + 1:]

    def forward(self, x):
        return x[_index(x.ndim, self.dim % x.ndim, self.index)]

    def vjp(self, b, g, y, x):
        d = self.dim % x.ndim
        return (b(Unslice(d, self.index % x.shape[d], x.shape[d]), b(Reshape(_unsqueezed(g.shape, d)), g)),)


def _unsqueezed(shape, d):
    return tuple(shape[:d]) + (1,) + tuple(shape[d:])


class Concat(_Move):
    """y = the inputs joined along ``dim``"""
    arity = None
    family = "shape"

    def __init__(self, dim):
        self.dim = int(dim)

    def shape(self, *xs):
        nd = len(xs[0])
        d = norm_dim(self.dim, nd)
        for x in xs[1:]:
            if len(x) != nd or not all(dim_eq(a, c) for i, (a, c) in enumerate(zip(xs[0], x)) if i != d):
                raise ShapeMismatch(f"all inputs must match except in dim {self.dim}")
        rest = tuple(next((x[i] for x in xs if x[i] is not None), None) for i in range(nd))
        total = None if any(x[d] is None for x in xs) else sum(x[d] for x in xs)
        return rest[:d] + (total,) + rest[d + 1:]

    def row_pattern(self, *xs):
        return (True,) * len(xs) if len(xs[0]) > 1 and self.dim % len(xs[0]) != 0 else None

    def forward(self, *xs): return np.concatenate(xs, axis=self.dim)

    def expr(self, *xs): return f"np.concatenate(({', '.join(xs)},), axis={self.dim})"

    def expr_out(self, out, k, *xs): return f"np.concatenate(({', '.join(xs)},), axis={self.dim}, out={out})"

    def vjp(self, b, g, y, *xs):
        d, at, out = self.dim % g.ndim, 0, []
        for x in xs:
            out.append(b(Slice(d, at, x.shape[d]), g))
            at += x.shape[d]
        return tuple(out)


class Pad(_Move):
    """y = x with ``before``/``after`` entries of ``value`` added along ``dim``"""
    family = "shape"

    def __init__(self, dim, before, after, value=0.0):
        self.dim, self.before, self.after, self.value = int(dim), int(before), int(after), float(value)

    def shape(self, x):
        d = norm_dim(self.dim, len(x))
        n = None if x[d] is None else x[d] + self.before + self.after
        return x[:d] + (n,) + x[d + 1:]

    def forward(self, x):
        w = [(0, 0)] * x.ndim
        w[self.dim % x.ndim] = (self.before, self.after)
        return np.pad(x, w, constant_values=self.value)

    def vjp(self, b, g, y, x):
        d = self.dim % x.ndim
        return (b(Slice(d, self.before, x.shape[d]), g),)
