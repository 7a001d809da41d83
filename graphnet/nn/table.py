"""Table modules: they take several nodes (or one list, or a multi-output node) as nngraph's tables."""
from __future__ import annotations

from .. import ops
from ..errors import GraphError
from ..module import Module, call_arguments
from .basic import PassThrough
from ..node import Node
from ._util import build_error, check_int, fail


class _Fold(Module):
    """y = x1 (op) x2 (op) ... with numpy broadcasting."""
    arity = None
    op = None

    def lower(self, b, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = b(self.op(), y, x)
        return y


class CAddTable(_Fold):
    """y = x1 + x2 + ..."""
    op = ops.Add


class CMulTable(_Fold):
    """y = x1 * x2 * ..."""
    op = ops.Mul


class CMaxTable(_Fold):
    """y = max(x1, x2, ...) elementwise"""
    op = ops.Maximum


class CMinTable(_Fold):
    """y = min(x1, x2, ...) elementwise"""
    op = ops.Minimum


class CSubTable(Module):
    """y = x1 - x2"""
    arity = 2

    def lower(self, b, x1, x2):
        return b(ops.Sub(), x1, x2)


class CDivTable(Module):
    """y = x1 / x2"""
    arity = 2

    def lower(self, b, x1, x2):
        return b(ops.Div(), x1, x2)


class JoinTable(Module):
    """y = the inputs concatenated along ``dim``"""
    arity = None

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim, module="JoinTable")

    def label(self):
        return f"JoinTable({self.dim})"

    def lower(self, b, *xs):
        return b(ops.Concat(self.dim), *xs)


class SplitTable(Module):
    """the input's slices along ``dim``, that dim removed: one output per slice"""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim, module="SplitTable")

    def label(self):
        return f"SplitTable({self.dim})"

    def num_outputs(self, shape):
        if shape is None:
            return None
        if not -len(shape) <= self.dim < len(shape):
            return 1                    # lower() reports the dim out of range, naming the node
        return shape[self.dim]

    def lower(self, b, x):
        if not -len(x.shape) <= self.dim < len(x.shape):
            raise fail(b, f"SplitTable({self.dim}): dim {self.dim} is out of range for a {len(x.shape)}-d input")
        n = x.shape[self.dim]
        out = [b(ops.Index(self.dim, i), x) for i in range(n)]
        return out if n != 1 else out[0]


def _one_table(args):
    """The node a table module was called on, when it was called on one node (or a list of one)."""
    args = call_arguments(args)
    return args[0] if len(args) == 1 and isinstance(args[0], Node) else None


class SelectTable(Module):
    """y = input number ``index`` (0-based; negative counts from the end). On an input that carries a table (or
    a table whose entry is itself a table) it is that entry itself, as ``s[index]``."""
    arity = None

    def _apply(self, args):
        t = _one_table(args)
        if t is not None and t.can_be_table:
            return t.item(self.index)
        if t is not None and t.is_multi and t.n_outputs is not None and t.item(self.index).is_multi:
            return t.item(self.index)
        return super()._apply(args)

    def __init__(self, index: int):
        super().__init__()
        self.index = check_int("index", index, module="SelectTable")

    def label(self):
        return f"SelectTable({self.index})"

    def lower(self, b, *xs):
        if not -len(xs) <= self.index < len(xs):
            raise fail(b, f"SelectTable({self.index}): the table has {len(xs)} entries", GraphError)
        return xs[self.index]


class NarrowTable(Module):
    """inputs offset .. offset+length-1, as several outputs"""
    arity = None

    def _apply(self, args):
        t = _one_table(args)
        if t is not None and t.can_be_table:       # an input table: its first offset+length entries
            entries = [t.item(i) for i in range(self.offset + self.length)]
            if any(e.is_multi for e in entries):
                raise build_error(f"{self.label()} on table '{t.display_name()}', whose entries are tables: "
                                  f"select them one by one with SelectTable or [k]")
            return super()._apply(entries)
        return super()._apply(args)

    def table_outputs(self):
        return self.length

    def __init__(self, offset: int, length: int = 1):
        super().__init__()
        self.offset = check_int("offset", offset, 0, "NarrowTable")
        self.length = check_int("length", length, 1, "NarrowTable")

    def label(self):
        return f"NarrowTable({self.offset}, {self.length})"

    def num_outputs(self, *shapes):
        return self.length

    def lower(self, b, *xs):
        if self.offset + self.length > len(xs):
            raise fail(b, f"{self.label()}: the table has only {len(xs)} entries", GraphError)
        out = list(xs[self.offset:self.offset + self.length])
        return out if self.length != 1 else out[0]


class FlattenTable(PassThrough):
    """the entries of a nested table, depth first, as one flat table (several outputs)"""
