"""Modules that select, reshape, reduce or pad: Narrow, Select, Reshape, View, Transpose, Sum, Mean, Max, ..."""
from __future__ import annotations

from .. import ops
from ..module import Module
from ._util import build_error, check_float, check_int, fail


def _dims(args, module):
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(check_int("size", a, -1, module) for a in args)


class Narrow(Module):
    """y = x[..., offset:offset+length, ...] along ``dim``; offset < 0 counts from the end, length < 0 runs
    to the end (-1: through the last entry), as torch.nn.Narrow"""

    def __init__(self, dim: int, offset: int, length: int = 1):
        super().__init__()
        self.dim = check_int("dim", dim, module="Narrow")
        self.offset = check_int("offset", offset, module="Narrow")
        self.length = check_int("length", length, module="Narrow")
        if self.length == 0:
            raise build_error("Narrow: length must not be 0")

    def label(self):
        return f"Narrow({self.dim}, {self.offset}, {self.length})"

    def lower(self, b, x):
        return b(ops.Slice(self.dim, self.offset, self.length), x)


class Select(Module):
    """y = x[..., index, ...] along ``dim``, that dim removed"""

    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim = check_int("dim", dim, module="Select")
        self.index = check_int("index", index, module="Select")

    def label(self):
        return f"Select({self.dim}, {self.index})"

    def lower(self, b, x):
        return b(ops.Index(self.dim, self.index), x)


class _ToShape(Module):
    """A module made with a target shape: ``Reshape(3, 4)``, ``View(-1, 4)``."""
    example = ""                    # a shape for the error when none is given

    def __init__(self, *shape):
        super().__init__()
        name = type(self).__name__
        self.size = _dims(shape, name)
        if not self.size:
            raise build_error(f"{name} needs a shape: {name}({self.example})")

    def label(self):
        return f"{type(self).__name__}({', '.join(map(str, self.size))})"


class Reshape(_ToShape):
    """y = x reshaped to (batch, *shape): the batch dim (dim 0) is kept, as torch nn in batch mode"""
    example = "3, 4"

    def lower(self, b, x):
        if len(x.shape) == 0:
            raise fail(b, f"{self.label()} keeps the batch dim (dim 0), but the input is a 0-d scalar; "
                          f"View({', '.join(map(str, self.size))}) reshapes without a batch dim")
        batch = x.shape[0] if x.shape[0] is not None else -1
        return b(ops.Reshape((batch,) + self.size), x)


class View(_ToShape):
    """y = x reshaped to exactly ``shape`` (one -1: whatever is left)"""
    example = "-1, 4"

    def lower(self, b, x):
        return b(ops.Reshape(self.size), x)


class Transpose(Module):
    """y = x with dims ``dim0`` and ``dim1`` swapped"""

    def __init__(self, dim0: int, dim1: int):
        super().__init__()
        self.dim0 = check_int("dim0", dim0, module="Transpose")
        self.dim1 = check_int("dim1", dim1, module="Transpose")

    def label(self):
        return f"Transpose({self.dim0}, {self.dim1})"

    def lower(self, b, x):
        nd = len(x.shape)
        if not (-nd <= self.dim0 < nd and -nd <= self.dim1 < nd):
            raise fail(b, f"{self.label()}: dims out of range for a {nd}-d input")
        perm = list(range(nd))
        i, j = self.dim0 % nd, self.dim1 % nd
        perm[i], perm[j] = perm[j], perm[i]
        return b(ops.Transpose(perm), x)


class Contiguous(Module):
    """y = x in a contiguous copy (torch7's nn.Contiguous, after a Transpose, say): the values are x's"""

    def lower(self, b, x):
        return b(ops.Contiguous(), x)


class _Reduce(Module):
    op = None

    def __init__(self, dim: int, keepdim: bool = False):
        super().__init__()
        self.dim = check_int("dim", dim, module=type(self).__name__)
        self.keepdim = bool(keepdim)

    def label(self):
        return f"{type(self).__name__}({self.dim})"

    def lower(self, b, x):
        return b(self.op(self.dim, self.keepdim), x)


class Sum(_Reduce):
    """y = sum of x along ``dim``"""
    op = ops.Sum


class Mean(_Reduce):
    """y = mean of x along ``dim``"""
    op = ops.Mean


class Max(_Reduce):
    """y = max of x along ``dim`` (values; the gradient goes to the first maximum)"""
    op = ops.Max


def _insert(shape, d, n):
    return tuple(shape[:d]) + (n,) + tuple(shape[d:])


class Unsqueeze(Module):
    """y = x with a new dim of size 1 at ``dim``"""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim, module="Unsqueeze")

    def label(self):
        return f"Unsqueeze({self.dim})"

    def lower(self, b, x):
        nd = len(x.shape) + 1
        if not -nd <= self.dim < nd:
            raise fail(b, f"{self.label()}: dim out of range for a {nd - 1}-d input")
        return b(ops.Reshape(_insert(x.shape, self.dim % nd, 1)), x)


class Squeeze(Module):
    """y = x without its size-1 dims (or only ``dim``, if given and of size 1)"""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = None if dim is None else check_int("dim", dim, module="Squeeze")

    def label(self):
        return "Squeeze" if self.dim is None else f"Squeeze({self.dim})"

    def lower(self, b, x):
        nd = len(x.shape)
        if self.dim is None:
            keep = [d for d in x.shape if d != 1]
        else:
            if not -nd <= self.dim < nd:
                raise fail(b, f"{self.label()}: dim out of range for a {nd}-d input")
            d = self.dim % nd
            keep = list(x.shape) if x.shape[d] != 1 else list(x.shape[:d] + x.shape[d + 1:])
        return b(ops.Reshape(tuple(keep)), x)


class Replicate(Module):
    """y = x repeated ``n_features`` times along a new dim ``dim`` (a broadcast view, as torch)"""

    def __init__(self, n_features: int, dim: int = 0):
        super().__init__()
        self.n_features = check_int("n_features", n_features, 1, "Replicate")
        self.dim = check_int("dim", dim, module="Replicate")

    def label(self):
        return f"Replicate({self.n_features}, {self.dim})"

    def lower(self, b, x):
        nd = len(x.shape) + 1
        if not -nd <= self.dim < nd:
            raise fail(b, f"{self.label()}: dim out of range for a {nd - 1}-d input")
        d = self.dim % nd
        y = b(ops.Reshape(_insert(x.shape, d, 1)), x)
        return b(ops.BroadcastTo(_insert(x.shape, d, self.n_features)), y)


class Padding(Module):
    """y = x with |pad| entries of ``value`` added along ``dim``: after the end if pad > 0, before if pad < 0"""

    def __init__(self, dim: int, pad: int, value: float = 0.0):
        super().__init__()
        self.dim = check_int("dim", dim, module="Padding")
        self.pad = check_int("pad", pad, module="Padding")
        self.value = check_float("value", value, "Padding")

    def label(self):
        return f"Padding({self.dim}, {self.pad})"

    def lower(self, b, x):
        before, after = (0, self.pad) if self.pad >= 0 else (-self.pad, 0)
        return b(ops.Pad(self.dim, before, after, self.value), x)
