"""Tables as values: the structure of a gModule's inputs and outputs, and the run-time values that fill it.

A compiled plan takes and returns flat lists of arrays. A graph's inputs and outputs may be tables (nngraph's
Lua tables: lists of arrays, nested): an input ``s = gn.Input()`` unpacked with ``s.split(n)`` or ``s[k]``, an
output that is a multi-output node or a Python list of nodes. A ``Spec`` records that structure once, when the
graph is packed; ``flatten`` turns a user's nested lists (or a dict keyed by input name) into the plan's flat
list, checking every level, and ``unflatten`` builds the nested results back.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .node import INPUT, Node


class Spec:
    """One input or output: a leaf (one array) or a table of entries.

    ``entries``: None for a leaf; else a list of (index, Spec). ``size``: the table's length (None: an open
    table, indexed with ``s[k]`` but never given a size, whose run-time list may be longer than what is used).
    """
    __slots__ = ("node", "entries", "size")

    def __init__(self, node, entries=None, size=None):
        self.node = node
        self.entries = entries
        self.size = size

    @property
    def is_leaf(self) -> bool:
        return self.entries is None

    def leaves(self) -> list:
        """The leaf nodes, depth first: the order of the plan's flat list."""
        if self.is_leaf:
            return [self.node]
        return [leaf for _, e in self.entries for leaf in e.leaves()]

    def describe(self) -> str:
        """The expected structure, e.g. ``[array, [array, array]]``."""
        if self.is_leaf:
            return "array"
        if self.size is None:
            top = max(i for i, _ in self.entries)
            return f"a list of at least {top + 1} entries"
        return "[" + ", ".join(e.describe() for _, e in self.entries) + "]"


def input_spec(node: Node) -> Spec:
    """The structure of a declared input: its table entries (as far as the graph unpacks them), or a leaf."""
    if not node.is_table_input:
        return Spec(node)
    if node.n_outputs is None:
        return Spec(node, [(i, input_spec(node._items[i])) for i in sorted(node._items)])
    items = node.split(node.n_outputs)
    return Spec(node, [(i, input_spec(it)) for i, it in enumerate(items)], node.n_outputs)


def output_spec(value, where: str, error) -> Spec:
    """The structure of a declared output: a node, a multi-output node (a table) or a list of those."""
    if isinstance(value, (list, tuple)):
        entries = [(i, output_spec(v, f"{where}[{i}]", error)) for i, v in enumerate(value)]
        return Spec(None, entries, len(entries))
    if not isinstance(value, Node):
        raise error(value, where)
    if value.is_multi:
        if value.n_outputs is None:
            raise error(value, where)
        items = value.split(value.n_outputs)
        return Spec(value, [(i, output_spec(it, f"{where}[{i}]", error)) for i, it in enumerate(items)],
                    value.n_outputs)
    return Spec(value)


class Structure:
    """A graph's input and output specs: flattens run-time values for the plan and nests its results."""

    def __init__(self, who: str, inputs: list, outputs: list):
        self.who = who
        self.inputs = inputs
        self.outputs = outputs

    @property
    def flat(self) -> bool:
        return all(s.is_leaf for s in self.inputs + self.outputs)

    def names(self) -> list:
        return [s.node.display_name() for s in self.inputs]

    # --- inputs --------------------------------------------------------------------------------------------
    def per_input(self, inputs, what: str = "inputs") -> list:
        """One value per declared input from what the user gave: a list, a dict by name, or one value."""
        n = len(self.inputs)
        if isinstance(inputs, dict):
            names = self.names()
            unknown = [k for k in inputs if k not in names]
            missing = [k for k in names if k not in inputs]
            if unknown or missing:
                parts = ([f"unknown name{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}"] if unknown
                         else []) + ([f"missing {', '.join(map(repr, missing))}"] if missing else [])
                raise InputError(f"{self.who}: {what} by name: {'; '.join(parts)} (its inputs are "
                                 f"{', '.join(map(repr, names))})")
            return [inputs[k] for k in names]
        if n == 1:
            spec = self.inputs[0]
            if spec.is_leaf and isinstance(inputs, (list, tuple)) and len(inputs) == 1:
                return [inputs[0]]
            if not spec.is_leaf and isinstance(inputs, (list, tuple)) and len(inputs) == 1 and \
                    isinstance(inputs[0], (list, tuple)) and _fits_size(spec, len(inputs[0])) and \
                    not _fits_size(spec, 1):
                return [inputs[0]]
            return [inputs]
        if not isinstance(inputs, (list, tuple)):
            raise InputError(f"{self.who} takes {n} inputs ({', '.join(map(repr, self.names()))}) as a list (or a "
                             f"dict by name), got {type(inputs).__name__}")
        if len(inputs) != n:
            raise InputError(f"{self.who} takes {n} inputs ({', '.join(map(repr, self.names()))}), got "
                             f"{len(inputs)}")
        return list(inputs)

    def flatten_inputs(self, inputs) -> list:
        flat = []
        for spec, v in zip(self.inputs, self.per_input(inputs)):
            _flatten(spec, v, f"{self.who}: input '{spec.node.display_name()}'", flat)
        return flat

    def nest_input_grads(self, flat_grads, inputs) -> list | np.ndarray:
        """Input gradients shaped as the inputs were given (zeros for entries an open table does not use)."""
        it = iter(flat_grads)
        out = [_nest_grads(spec, v, it) for spec, v in zip(self.inputs, self.per_input(inputs))]
        return out[0] if len(out) == 1 else out

    # --- outputs -------------------------------------------------------------------------------------------
    def nest_outputs(self, flat):
        it = iter(flat)
        out = [_nest(spec, it) for spec in self.outputs]
        return out[0] if len(out) == 1 else out

    def flatten_grads(self, grads) -> list:
        n = len(self.outputs)
        if n == 1:
            spec = self.outputs[0]
            if spec.is_leaf and isinstance(grads, (list, tuple)) and len(grads) == 1:
                grads = grads[0]
            grads = [grads]
        elif not isinstance(grads, (list, tuple)) or len(grads) != n:
            got = f"{len(grads)}" if isinstance(grads, (list, tuple)) else f"a {type(grads).__name__}"
            raise InputError(f"{self.who}: backward takes one gradient per output ({n}, structured as "
                             f"{', '.join(s.describe() for s in self.outputs)}), got {got}")
        flat = []
        for i, (spec, g) in enumerate(zip(self.outputs, grads)):
            _flatten(spec, g, f"{self.who}: gradient of output {i}", flat)
        return flat


def is_table(value) -> bool:
    """A run-time table: a list holding arrays; a list of plain numbers is array data instead."""
    return isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) or is_table(v) for v in value)


def _fits_size(spec, n) -> bool:
    return (spec.size == n) if spec.size is not None else n > max(i for i, _ in spec.entries)


def _flatten(spec, value, where, flat):
    if spec.is_leaf:
        if isinstance(value, (list, tuple, dict)):
            raise InputError(f"{where} is a {type(value).__name__}, but the graph uses it as one array"
                             + _declared(spec))
        flat.append(value)
        return
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where} must be a table (a list) structured as {spec.describe()}, got "
                         f"{type(value).__name__}" + _declared(spec))
    if not _fits_size(spec, len(value)):
        raise InputError(f"{where} must be a table structured as {spec.describe()}, got a list of {len(value)} "
                         f"entries" + _declared(spec))
    for i, e in spec.entries:
        _flatten(e, value[i], f"{where}[{i}]", flat)


def _declared(spec) -> str:
    node = spec.node
    if node is None:
        return ""
    root = node
    while root.kind != INPUT and root.inputs:
        root = root.inputs[0]
    return f" (declared at {root.site})" if root.kind == INPUT else f" (built at {node.site})"


def _nest(spec, it):
    if spec.is_leaf:
        return next(it)
    return [_nest(e, it) for _, e in spec.entries]


def _nest_grads(spec, value, it):
    if spec.is_leaf:
        return next(it)
    out = [None] * len(value)
    for i, e in spec.entries:
        out[i] = _nest_grads(e, value[i], it)
    for i, v in enumerate(value):
        if out[i] is None and i not in dict(spec.entries):
            out[i] = _zeros_like(v)
    return out


def _zeros_like(v):
    if isinstance(v, (list, tuple)):
        return [_zeros_like(x) for x in v]
    a = np.asarray(v)
    return np.zeros(a.shape, a.dtype) if a.dtype.kind == "f" else None
