"""Containers with torch7 nn semantics (0-based dims): Sequential, ConcatTable, ParallelTable, Parallel, Concat.

A container is a module like any other: called on nodes it makes one node (its members are inlined when the
graph is lowered), run directly it compiles itself. ``parameters()``, ``training()``, ``float64()`` ... reach the
members through ``submodules()``. Members are added by ``.add(module)`` (or given to the constructor).
"""
from __future__ import annotations

from .. import ops
from ..errors import GraphError, GraphnetError, fmt_shape
from ..module import Module, as_list, lower_on_shapes
from ._util import build_error, check_int, fail


def _result(outs):
    return outs[0] if len(outs) == 1 else outs


def _lowered_count(module, shapes):
    """How many outputs ``module`` makes from inputs of these shapes, found by lowering it on a scratch builder;
    None when a shape is unknown or lowering fails (the real lowering, with the node in context, will say why)."""
    if not shapes or any(s is None for s in shapes):
        return None
    try:
        return len(as_list(lower_on_shapes(module, shapes)))
    except GraphnetError:
        return None


class Container(Module):
    """Holds an ordered list of member modules."""

    def __init__(self, *modules):
        super().__init__()
        self._members = []
        for m in modules:
            self.add(m)

    def add(self, module: Module) -> "Container":
        """Append a member; returns the container, so calls chain as torch7's ``:add()``."""
        if not isinstance(module, Module):
            raise build_error(f"{type(self).__name__}.add takes a module, got {type(module).__name__}")
        if module is self:
            raise build_error(f"{type(self).__name__}.add: a container cannot contain itself")
        self._members.append(module)
        return self

    def get(self, index: int) -> Module:
        """Member number ``index`` (0-based), as torch7's ``:get()``."""
        return self._members[index]

    def __getitem__(self, index):
        return self._members[index]

    def __len__(self):
        return len(self._members)

    def __iter__(self):
        return iter(self._members)

    def __bool__(self):              # an empty container is still a module, not a false value
        return True

    def submodules(self):
        return list(self._members)

    def label(self):
        return f"{type(self).__name__}({len(self._members)})"

    def __repr__(self):
        inner = "".join(f"\n  ({i}): " + repr(m).replace("\n", "\n  ") for i, m in enumerate(self._members))
        return f"{type(self).__name__} {{{inner}\n}}" if self._members else f"{type(self).__name__} {{}}"

    def num_outputs(self, *shapes):
        n = _lowered_count(self, list(shapes))
        return n if n is not None else self._count_guess(shapes)

    def table_outputs(self):
        return self._count_guess(())

    def _count_guess(self, shapes):
        return 1

    def _need_members(self, b):
        if not self._members:
            raise fail(b, f"{type(self).__name__} has no members; add some with .add(module)", GraphError)


class Sequential(Container):
    """y = m_k(...m_1(m_0(x))): each member's outputs are the next member's inputs (empty: y = x)"""

    @property
    def arity(self):
        return self._members[0].arity if self._members else None

    def lower(self, b, *xs):
        outs = list(xs)
        for m in self._members:
            if m.arity is not None and len(outs) != m.arity:
                raise fail(b, f"Sequential: member {m.label()} takes {m.arity} input(s), but the previous member "
                              f"gives {len(outs)}", GraphError)
            outs = as_list(m.lower(b, *outs))
        return _result(outs)

    def _count_guess(self, shapes):
        if not self._members:
            return len(shapes) or None
        return self._members[-1].num_outputs(*([None] * max(1, len(shapes))))


class ConcatTable(Container):
    """[m_0(x), m_1(x), ...]: every member applied to the same input(s), one output per member (a member with
    several outputs gives them all, flattened)"""

    @property
    def arity(self):
        return self._members[0].arity if self._members else None

    def lower(self, b, *xs):
        self._need_members(b)
        outs = []
        for m in self._members:
            outs.extend(as_list(m.lower(b, *xs)))
        return _result(outs)

    def _count_guess(self, shapes):
        counts = [m.num_outputs(*(shapes or (None,))) for m in self._members]
        return None if None in counts else sum(counts)


class ParallelTable(Container):
    """[m_0(x_0), m_1(x_1), ...]: member i applied to input i"""

    @property
    def arity(self):
        return len(self._members) or None

    def lower(self, b, *xs):
        self._need_members(b)
        if len(xs) != len(self._members):
            raise fail(b, f"ParallelTable has {len(self._members)} members but got {len(xs)} inputs", GraphError)
        outs = []
        for m, x in zip(self._members, xs):
            outs.extend(as_list(m.lower(b, x)))
        return _result(outs)

    def _count_guess(self, shapes):
        known = len(shapes) == len(self._members)       # else the inputs are a table of unknown size
        counts = [m.num_outputs(s if known else None) for m, s in zip(self._members, shapes)] if known else \
            [m.num_outputs(None) for m in self._members]
        return None if None in counts else sum(counts)


class Concat(Container):
    """y = the members' outputs on the same input, concatenated along ``dim`` (torch7 nn.Concat, 0-based)"""

    def __init__(self, dim: int, *modules):
        super().__init__(*modules)
        self.dim = check_int("dim", dim, module="Concat")

    def label(self):
        return f"Concat({self.dim}; {len(self._members)})"

    def lower(self, b, *xs):
        self._need_members(b)
        outs = [_single(b, m, m.lower(b, *xs)) for m in self._members]
        return outs[0] if len(outs) == 1 else b(ops.Concat(self.dim), *outs)

    def num_outputs(self, *shapes):
        return 1


class Parallel(Container):
    """y = concat_i m_i(x.select(input_dim, i)) along ``output_dim``: member i gets slice i of the input (torch7
    nn.Parallel, 0-based dims)"""
    arity = 1

    def __init__(self, input_dim: int, output_dim: int, *modules):
        super().__init__(*modules)
        self.input_dim = check_int("input_dim", input_dim, module="Parallel")
        self.output_dim = check_int("output_dim", output_dim, module="Parallel")

    def label(self):
        return f"Parallel({self.input_dim}, {self.output_dim}; {len(self._members)})"

    def lower(self, b, x):
        self._need_members(b)
        nd = len(x.shape)
        if not -nd <= self.input_dim < nd:
            raise fail(b, f"{self.label()}: input_dim {self.input_dim} is out of range for input shape "
                          f"{fmt_shape(x.shape)}")
        size = x.shape[self.input_dim]
        if size is not None and size < len(self._members):
            raise fail(b, f"{self.label()}: {len(self._members)} members need at least as many slices along dim "
                          f"{self.input_dim}, got input shape {fmt_shape(x.shape)}")
        outs = [_single(b, m, m.lower(b, b(ops.Index(self.input_dim, i), x))) for i, m in enumerate(self._members)]
        return outs[0] if len(outs) == 1 else b(ops.Concat(self.output_dim), *outs)

    def num_outputs(self, *shapes):
        return 1


def _single(b, member, out):
    if isinstance(out, (list, tuple)):
        raise fail(b, f"{member.label()} gives {len(out)} outputs; a member of a Concat or Parallel must give one",
               GraphError)
    return out
