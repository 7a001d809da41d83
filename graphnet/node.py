"""Node: a symbolic value in a graph under construction.

There are three kinds, told apart by ``kind``: an ``input`` (made by ``gn.Input``), an ``apply`` (a module called
on input nodes; it has ``module.num_outputs`` outputs) and an ``item`` (output ``index`` of a multi-output node).
Nodes never change what they compute once made; only their display name and drawing attributes can be set.
"""
from __future__ import annotations

import itertools
from numbers import Integral, Number

from . import hooks
from .errors import GraphError, caller_site, fmt_shape

INPUT, APPLY, ITEM = "input", "apply", "item"
_ids = itertools.count(1)


class Node:
    __slots__ = ("kind", "module", "inputs", "index", "name", "site", "shape", "n_outputs", "attrs", "id",
                 "_items", "table", "__weakref__")

    def __init__(self, kind, module=None, inputs=(), index=None, name=None, shape=None, n_outputs=1, site=None):
        self.kind = kind
        self.module = module
        self.inputs = tuple(inputs)
        self.index = index
        self.name = name
        self.site = site or caller_site()
        self.shape = shape
        self.n_outputs = n_outputs      # None: a multi-output node whose count is not known yet
        self.attrs = {}
        self.id = next(_ids)
        self._items = {}
        self.table = False              # an input (or an entry of one) that carries a table, of any size

    # --- naming --------------------------------------------------------------------------------------------
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.kind == ITEM:
            return f"{self.inputs[0].display_name()}[{self.index}]"
        if self.kind == INPUT:
            return f"Input_{self.id}"
        return f"{type(self.module).__name__}_{self.id}"

    def op_label(self) -> str:
        if self.kind == INPUT:
            return "Input"
        if self.kind == ITEM:
            return f"output {self.index} of {self.inputs[0].op_label()}"
        return self.module.label()

    def annotate(self, name: str | None = None, graphAttributes: dict | None = None, **graphviz_attrs) -> "Node":
        """Name the node and set graphviz attributes for its drawing; returns the node. nngraph's spelling,
        ``annotate(graphAttributes={"color": "red"})``, sets the same attributes as ``annotate(color="red")``."""
        if graphAttributes is not None:
            if not isinstance(graphAttributes, dict) or not all(isinstance(k, str) for k in graphAttributes):
                raise self._error(f"annotate(graphAttributes=...) takes a dict of graphviz attributes, got "
                                  f"{type(graphAttributes).__name__}")
            graphviz_attrs = {**graphAttributes, **graphviz_attrs}
        if name is not None:
            if not isinstance(name, str) or not name:
                raise self._error(f"annotate(name=...) takes a non-empty string, got {name!r}")
            self.name = name
        self.attrs.update({k: str(v) for k, v in graphviz_attrs.items()})
        return self

    def __repr__(self):
        return f"<Node {self.display_name()}: {self.op_label()} {fmt_shape(self.shape)} at {self.site}>"

    # --- multi-output nodes and tables ---------------------------------------------------------------------
    @property
    def is_multi(self) -> bool:
        return self.n_outputs != 1 or self.table

    @property
    def can_be_table(self) -> bool:
        """An input without a declared shape (or an entry of an input table) may carry a table of arrays."""
        n = self
        while n.kind == ITEM and n.inputs[0].kind == ITEM:
            n = n.inputs[0]
        root = n.inputs[0] if n.kind == ITEM else n
        return root.kind == INPUT and self.shape is None and (self is root or root.is_multi)

    @property
    def is_table_input(self) -> bool:
        """An input (or an entry of one) that carries a table: its entries are the graph's inputs."""
        return self.is_multi and self.can_be_table

    def as_table(self) -> "Node":
        """Mark an unshaped input as carrying a table whose size is not known yet (open)."""
        if not self.is_multi:
            if not self.can_be_table:
                raise self._error(f"node '{self.display_name()}' ({self.op_label()}) has a single output; only a "
                                  "node with several outputs, or an input without a declared shape, is a table")
            self.n_outputs, self.table = None, True
        return self

    def _error(self, message) -> GraphError:
        return GraphError(f"{message} (at {caller_site()})", self)

    def item(self, i: int) -> "Node":
        """Output ``i`` of a multi-output node, or entry ``i`` of an input table (the same node object each time)."""
        if not self.is_multi and not self.can_be_table:
            raise self._error(f"node '{self.display_name()}' has a single output; only a node with several "
                              f"outputs can be indexed by an integer (to slice it, write x[:, {i}])")
        if not self.is_multi:
            self.as_table()
        n = self.n_outputs
        if n is not None and not -n <= i < n:
            raise self._error(f"output {i} is out of range: node '{self.display_name()}' has {n} outputs")
        if n is None and i < 0:
            raise self._error(f"entry {i} of table '{self.display_name()}': its size is not known yet, so "
                              f"entries count from 0 (or give it a size first with .split(n))")
        if n is not None:
            i %= n
        if i not in self._items:
            shape = self.shape[i] if isinstance(self.shape, list) else None
            self._items[i] = Node(ITEM, inputs=(self,), index=i, shape=shape, site=self.site)
        return self._items[i]

    def split(self, k: int) -> tuple:
        """The k outputs of a multi-output node (or the k entries of an input table), as nngraph's
        ``node:split(k)``."""
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise self._error(f"split(n) takes a positive int, got {k!r}")
        if not self.is_multi:
            if k == 1 and not self.can_be_table:
                return (self,)
            if not self.can_be_table:
                raise self._error(f"node '{self.display_name()}' ({self.op_label()}) has a single output; "
                                  f"split({k}) needs a node with {k} outputs")
            self.as_table()
        if self.n_outputs is None and k == 1 and not self.table:    # a table of unknown size that has one entry
            self.n_outputs = 1
            return (self,)
        if self.n_outputs is None:
            too_far = [i for i in self._items if i >= k]
            if too_far:
                raise self._error(f"split({k}) on table '{self.display_name()}', whose entry {max(too_far)} is "
                                  "already used")
            self.n_outputs = k
        elif self.n_outputs != k:
            raise self._error(f"split({k}) on node '{self.display_name()}' ({self.op_label()}), which has "
                              f"{self.n_outputs} outputs")
        return tuple(self.item(i) for i in range(k))

    def __iter__(self):
        if not self.is_multi:
            raise self._error(f"node '{self.display_name()}' ({self.op_label()}) has a single output and cannot "
                              "be unpacked")
        if self.n_outputs is None:
            raise self._error(f"node '{self.display_name()}' has an unknown number of outputs; use .split(k)")
        return iter(self.split(self.n_outputs))

    def __len__(self):
        if not self.is_multi or self.n_outputs is None:
            raise self._error(f"node '{self.display_name()}' has no known number of outputs")
        return self.n_outputs

    # --- sugar: the same nodes as the table modules --------------------------------------------------------
    # ``a + b``, ``x[2:5]``, ``-x`` build nn modules. nn sits above this file (its modules make nodes), so it is
    # looked up where graphnet registers it (graphnet.hooks) rather than imported: node.py names nothing above
    # its layer, and the layering test holds it to that with no exception.
    def __getitem__(self, key):
        if isinstance(key, int) and (self.is_multi or (self.kind == INPUT and self.can_be_table)):
            return self.item(key)           # an entry of a table (an unshaped input becomes one: s[k])
        if self.is_multi and isinstance(key, slice):
            return tuple(self)[key]            # like a tuple of its outputs: c, h = cell(...)[:2]
        nn = hooks.need("nn")
        keys = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in keys):
            raise self._error("slicing a node does not support '...'; index each dimension")
        picks = []
        for dim, k in enumerate(keys):
            if isinstance(k, slice):
                if k.step not in (None, 1):
                    raise self._error(f"slicing a node takes no step (got {k.step}) in dim {dim}")
                if k.start is None and k.stop is None:
                    continue
                start = k.start or 0
                if k.stop is None:
                    picks.append(nn.Narrow(dim, start, -1))
                elif (k.stop >= 0) == (start >= 0) and k.stop > start:
                    picks.append(nn.Narrow(dim, start, k.stop - start))
                elif start >= 0 and k.stop < 0:
                    picks.append(nn.Narrow(dim, start, k.stop - 1))   # negative length: up to the end, less -stop-1
                else:
                    raise self._error(f"slice {start}:{k.stop} in dim {dim} selects nothing")
            elif isinstance(k, int):
                picks.append(nn.Select(dim, k))
            else:
                raise self._error(f"a node can be indexed by ints and slices, not {type(k).__name__}")
        out = self
        for m in reversed(picks):       # last dim first, so earlier dims keep their numbers
            out = m(out)
        return out

    # numpy must not broadcast a node as an object (``array + node``): it defers to the node's operators
    __array_ufunc__ = None

    def _binary(self, other, table, const, swap=False, symbol="+"):
        if isinstance(other, Node):
            return table()(other, self) if swap else table()(self, other)
        if isinstance(other, Number) and not isinstance(other, bool):
            return const(other)
        raise self._operand_error(other, symbol)

    def _operand_error(self, other, symbol):
        kind = type(other).__name__
        hint = (": arrays are given at run time to forward(); in a graph, make the array an input (gn.Input()) "
                "or a parameter (nn.Add, nn.Mul)" if hasattr(other, "shape") or isinstance(other, (list, tuple))
                else "")
        return self._error(f"node '{self.display_name()}' {symbol} {kind}: a node combines with other nodes and "
                          f"with Python numbers, not with {kind}{hint}")

    def __add__(self, o):
        nn = hooks.need("nn")
        return self._binary(o, nn.CAddTable, lambda c: nn.AddConstant(c)(self))

    __radd__ = __add__

    def __sub__(self, o):
        nn = hooks.need("nn")
        return self._binary(o, nn.CSubTable, lambda c: nn.AddConstant(-c)(self), symbol="-")

    def __rsub__(self, o):
        nn = hooks.need("nn")
        return self._binary(o, nn.CSubTable, lambda c: nn.AddConstant(c)(nn.MulConstant(-1)(self)), swap=True,
                            symbol="-")

    def __mul__(self, o):
        nn = hooks.need("nn")
        return self._binary(o, nn.CMulTable, lambda c: nn.MulConstant(c)(self), symbol="*")

    __rmul__ = __mul__

    def __truediv__(self, o):
        nn = hooks.need("nn")
        if isinstance(o, Number) and not isinstance(o, bool) and o == 0:
            raise self._error(f"node '{self.display_name()}' / 0: division by zero")
        return self._binary(o, nn.CDivTable, lambda c: nn.MulConstant(1.0 / c)(self), symbol="/")

    def __rtruediv__(self, o):
        nn = hooks.need("nn")
        return self._binary(o, nn.CDivTable, lambda c: nn.MulConstant(c)(nn.Power(-1)(self)), swap=True,
                            symbol="/")

    def __matmul__(self, o):
        nn = hooks.need("nn")
        if not isinstance(o, Node):
            raise self._operand_error(o, "@")
        return nn.MM()(self, o)

    def __rmatmul__(self, o):
        raise self._operand_error(o, "@")

    def __pow__(self, p):
        nn = hooks.need("nn")
        if isinstance(p, Number) and not isinstance(p, bool):
            return nn.Power(p)(self)
        raise self._operand_error(p, "**")

    def __abs__(self):
        nn = hooks.need("nn")
        return nn.Abs()(self)

    def _no_compare(self, other):
        raise self._error(f"node '{self.display_name()}' is symbolic and cannot be compared until the graph runs "
                         "(use a module: Threshold, CMaxTable, CMinTable)")

    __lt__ = __le__ = __gt__ = __ge__ = _no_compare

    def _no_number(self):
        raise self._error(f"node '{self.display_name()}' is symbolic: it has no value until the graph runs "
                         "(forward() returns arrays)")

    __float__ = __int__ = __complex__ = _no_number

    def __neg__(self):
        nn = hooks.need("nn")
        return nn.MulConstant(-1)(self)

    def __bool__(self):
        raise self._error(f"node '{self.display_name()}' is symbolic: it has no truth value until the graph "
                         "runs (use a module such as Threshold or CMaxTable instead of Python 'if')")


def shapes_agree(a, b) -> bool:
    """Two shapes agree where known: the same rank, and equal sizes wherever both are known (None: any size,
    as in ``gn.Input((None, 3))``)."""
    return len(a) == len(b) and all(p is None or q is None or p == q for p, q in zip(a, b))


def Input(shape=None, name: str | None = None) -> Node:
    """A graph input. ``shape``: a tuple whose ``None`` entries are any size (``(None, 3)``), or None: any."""
    if shape is not None:
        if isinstance(shape, Integral) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not all(
                d is None or (isinstance(d, Integral) and not isinstance(d, bool)) for d in shape):
            raise GraphError(f"gn.Input(shape=...) takes a tuple of ints and None (None: any size), got {shape!r} "
                             f"(at {caller_site()})")
        shape = tuple(None if d is None else int(d) for d in shape)
        if any(d is not None and d < 0 for d in shape):
            raise GraphError(f"gn.Input(shape={shape}) has a negative size (at {caller_site()})")
    if name is not None and (not isinstance(name, str) or not name):
        raise GraphError(f"gn.Input(name=...) takes a non-empty string, got {name!r} (at {caller_site()})")
    return Node(INPUT, name=name, shape=shape)
