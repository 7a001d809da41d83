"""The IR: single-output values, each an op applied to earlier values, recorded in topological order.

The same ``Builder`` serves three uses: shape inference while a graph is being built (shapes may contain
None), lowering a module to primitives for one input signature (concrete shapes), and building the backward
graph from VJP rules. Shape errors are raised here, with the graph node being lowered named in the message.

A ``Program`` is the joint forward+backward IR of one module for one signature. Everything that reads or
rewrites one lives here, keyed on one identity, ``Value.id`` (``clone`` keeps ids, so a value and its copy in a
rewritten program share it): ``clone``, ``rewire``, ``substitute``, ``prune``, ``finish`` (how a rewriting pass
ends), ``roots``, ``users``, ``use_counts``, ``gradient_ids``, ``toposort``, and ``lint``, which checks the
invariants every pass must keep.
"""
from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..errors import GraphnetError, ShapeError, ShapeMismatch, describe, fmt_shape, node_error
from ..ops.leaf import Arg, Const, Param, Seed

_ids = itertools.count()


class Value:
    """One IR value: ``op`` applied to ``args``; ``src`` is the graph node whose lowering made it."""
    __slots__ = ("op", "args", "shape", "dtype", "src", "id")

    def __init__(self, op, args, shape, dtype, src):
        self.op = op
        self.args = args
        self.shape = shape
        self.dtype = dtype
        self.src = src
        self.id = next(_ids)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"%{self.id} = {self.op!r}({', '.join('%' + str(a.id) for a in self.args)}) {fmt_shape(self.shape)}"


class Builder:
    """Records values in creation order (which is a topological order)."""

    def __init__(self):
        self.values: list[Value] = []
        self._src: list = []             # stack of graph nodes being lowered (innermost last)
        self._params: dict = {}

    # --- context -------------------------------------------------------------------------------------------
    def push(self, node):
        self._src.append(node)

    def pop(self):
        self._src.pop()

    @property
    def src(self):
        return self._src[-1] if self._src else None

    # --- making values -------------------------------------------------------------------------------------
    def __call__(self, op, *args) -> Value:
        shapes = [a.shape for a in args]
        try:
            if op.arity is not None and len(args) != op.arity:
                raise ShapeMismatch(f"takes {op.arity} inputs, got {len(args)}")
            shape = None if any(s is None for s in shapes) else op.shape(*shapes)
            shape = None if shape is None else tuple(shape)
            dtype = op.dtype(*[a.dtype for a in args])
        except ShapeMismatch as e:
            ins = ", ".join(fmt_shape(s) for s in shapes)
            raise node_error(ShapeError, f"{op!r}: {e} (input shapes {ins})", self.src,
                             context=reversed(self._src[:-1])) from None
        v = Value(op, args, shape, dtype, self.src)
        self.values.append(v)
        return v

    def placeholder(self, shape, dtype=None) -> Value:
        """A stand-in for a graph input during build-time shape inference."""
        return self(Arg(len(self.values), shape, dtype))

    def param(self, p) -> Value:
        """The value of parameter ``p`` (one value however often it is used: gradients add up)."""
        v = self._params.get(id(p))
        if v is None:
            v = self._params[id(p)] = self(Param(p))
        return v

    def const(self, value, dtype=None) -> Value:
        return self(Const(np.asarray(value, dtype=dtype)))



class IRError(GraphnetError):
    """A program breaks an invariant of the IR: a compiler bug, named with the pass that made it."""


@dataclass
class Program:
    """The joint forward+backward IR of one module for one input signature."""
    values: list                    # every value, in a topological order
    args: list                      # one Arg value per graph input
    outputs: list                   # the graph's outputs
    seeds: list                     # one Seed per output (None for a non-float output)
    params: list                    # [(Parameter, Param value)]
    input_grads: list               # per input: its gradient value, or None
    param_grads: list               # per entry of params: its gradient value, or None
    meta: dict = field(default_factory=dict)

    def forward_values(self):
        """The values the outputs need, in order, and those their ops write besides (a kernel's results kept in
        arrays of their own are written by its call, wherever they are read)."""
        fwd = ancestors(self.values, self.outputs)
        ids = {v.id for v in fwd}
        if not any(v.op.written_by_arg and v.id not in ids and v.args[0].id in ids for v in self.values):
            return fwd
        ids |= {v.id for v in self.values if v.op.written_by_arg and v.args[0].id in ids}
        return [v for v in self.values if v.id in ids]

    def backward_values(self):
        """The values the gradients need that forward did not compute, in order."""
        fwd = {v.id for v in self.forward_values()}
        targets = [g for g in self.input_grads + self.param_grads if g is not None]
        return [v for v in ancestors(self.values, targets) if v.id not in fwd]


def ancestors(values, targets):
    """The values (in their order) that ``targets`` need, themselves included."""
    need = {r.id for r in targets}
    add = need.add
    for v in reversed(values):
        if v.id in need:
            for a in v.args:
                add(a.id)
    return [v for v in values if v.id in need]


@contextlib.contextmanager
def collector_paused():
    """The cyclic garbage collector off while IR is built or rewritten (then back as it was): the IR is a DAG of
    plain objects with no cycles to collect, and the collector would otherwise walk every live value again and
    again while passes allocate, a cost that grows with the square of the graph."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- rewriting ------------------------------------------------------------------------------------------------

def clone(prog: Program) -> Program:
    """A copy of the program with fresh Value objects (same ids): passes mutate the copy, never their input."""
    m = {}
    new = Value.__new__
    for v in prog.values:
        nv = new(Value)
        nv.op, nv.shape, nv.dtype, nv.src, nv.id = v.op, v.shape, v.dtype, v.src, v.id
        nv.args = tuple([m[a.id] for a in v.args])
        m[v.id] = nv

    def f(v):
        return None if v is None else m[v.id]
    return Program(values=list(m.values()), args=[f(a) for a in prog.args],
                   outputs=[f(o) for o in prog.outputs], seeds=[f(s) for s in prog.seeds],
                   params=[(p, f(v)) for p, v in prog.params], input_grads=[f(g) for g in prog.input_grads],
                   param_grads=[f(g) for g in prog.param_grads], meta=dict(prog.meta))


def resolve(sub: dict, v):
    """What ``v`` is replaced by under ``sub`` (Value.id -> Value), following replacements of replacements."""
    while v is not None and v.id in sub:
        v = sub[v.id]
    return v


def rewire(prog: Program, sub: dict) -> Program:
    """Every use of a value in ``sub`` (Value.id -> Value) now uses its replacement (in place)."""
    if not sub:
        return prog

    def r(v):
        return resolve(sub, v)
    for v in prog.values:
        for a in v.args:
            if a.id in sub:
                v.args = tuple([r(a) for a in v.args])
                break
    prog.outputs = [r(o) for o in prog.outputs]
    prog.input_grads = [r(g) for g in prog.input_grads]
    prog.param_grads = [r(g) for g in prog.param_grads]
    return prog


def substitute(prog: Program, sub: dict) -> Program:
    """Rewire every use of a value in ``sub`` (Value.id -> Value) to its replacement, then drop dead values."""
    return prune(rewire(prog, sub))


def roots(prog: Program) -> list:
    """The values the program hands back: outputs and wanted gradients."""
    return [v for v in prog.outputs + prog.input_grads + prog.param_grads if v is not None]


def prune(prog: Program) -> Program:
    """Keep only values that some output or wanted gradient needs (and impure ones that ran before)."""
    # arguments and parameters stay even when no output needs them: the program's signature names them
    keep = ancestors(prog.values, roots(prog) + prog.args + [v for _, v in prog.params]
                     + [v for v in prog.values if not v.op.pure])
    keep_ids = {v.id for v in keep}
    prog.values = keep
    prog.seeds = [s if s is not None and s.id in keep_ids else None for s in prog.seeds]
    return prog


def finish(prog: Program, new, sub) -> Program:
    """Add ``new`` values, send every use of a value in ``sub`` (id -> value) to its replacement, restore a
    topological order and drop what is dead: how every rewriting pass ends."""
    if not sub and not new:
        return prog
    prog.values = prog.values + list(new)
    prog = rewire(prog, sub)
    prog.values = toposort(prog.values)
    return prune(prog)


# --- reading --------------------------------------------------------------------------------------------------

def users(values) -> dict:
    """Value.id -> the values that read it (once each, in program order)."""
    out = defaultdict(list)
    for v in values:
        args = v.args
        if len(args) == 1:
            out[args[0].id].append(v)
        elif args:
            for aid in dict.fromkeys([a.id for a in args]):
                out[aid].append(v)
    return out


def use_counts(values, prog: Program | None = None) -> dict:
    """How many times each value (by id) is an argument; with ``prog``, a root counts once more (the caller
    uses it)."""
    counts = defaultdict(int)
    for v in values:
        for a in v.args:
            counts[a.id] += 1
    if prog is not None:
        for v in roots(prog):
            counts[v.id] += 1
    return counts


def gradient_ids(values) -> set:
    """Ids of the values a gradient flows into (descendants of a seed): made in reverse time order."""
    grad = set()
    for v in values:
        if isinstance(v.op, Seed):
            grad.add(v.id)
            continue
        for a in v.args:
            if a.id in grad:
                grad.add(v.id)
                break
    return grad


def toposort(values) -> list:
    """Stable topological order: each value as early as its position in ``values`` allows, after its args
    (networkx's lexicographical_topological_sort keyed on position gives the same order, 2.5 times slower).
    Values are taken in order as a scan reaches them ready; only those that became ready after the scan passed
    them wait in a heap, so a nearly sorted program (a pass's rewrites appended at the end) costs little more
    than one scan. Values are handled by position (lists, not dicts keyed by id)."""
    n = len(values)
    pos = {v.id: i for i, v in enumerate(values)}
    where = pos.get
    readers = [[] for _ in range(n)]          # position -> positions of the values reading it, once each
    indeg = [0] * n                           # position -> how many distinct args are not out yet
    for k, v in enumerate(values):
        args = v.args
        if args:
            # an argument outside the program counts (as ~id: never negative for a position) and is never out
            at = {where(a.id, ~a.id) for a in args} if len(args) > 1 else (where(args[0].id, -1),)
            indeg[k] = len(at)
            for j in at:
                if j >= 0:
                    readers[j].append(k)
    out, late, i = [], [], 0
    while True:
        while i < n and indeg[i]:
            i += 1                            # not ready: it joins ``late`` once its last argument is out
        if late and (i >= n or late[0] < i):
            k = heapq.heappop(late)
        elif i < n:
            k = i
            i += 1
        else:
            break
        out.append(values[k])
        for u in readers[k]:
            indeg[u] -= 1
            if not indeg[u] and u < i:
                heapq.heappush(late, u)
    if len(out) != n:
        done = {v.id for v in out}
        left = [v for v in values if v.id not in done]
        missing = [a for v in left for a in v.args if a.id not in pos]
        raise IRError(f"no topological order: {len(left)} values wait on each other or on values outside the "
                      f"program, e.g. {left[:3]}; args not in the program: {missing[:3]}")
    return out


# --- invariants -----------------------------------------------------------------------------------------------

def lint(prog: Program, after: str | None = None) -> Program:
    """Check the IR's invariants; raise IRError naming the first value that breaks one (and ``after``, the pass
    that made the program). Ids are unique; every argument is a value of the program, placed before its use;
    the args, seeds, params, outputs and gradients are values of the program; each value's arity, shape and
    dtype are what its op's rules give for its arguments."""
    def fail(msg, v=None):
        where = f" (after {after})" if after else ""
        at = f"\n  value: {v!r}" if v is not None else ""
        if v is not None and v.src is not None:
            at += "\n  made while lowering " + describe(v.src)
        raise IRError(f"IR invariant broken{where}: {msg}{at}")
    every = {v.id: v for v in prog.values}
    seen = {}
    for v in prog.values:
        if v.id in seen:
            fail(f"two values with id %{v.id}", v)
        for a in v.args:
            if seen.get(a.id) is not a:
                where = "placed after its use" if every.get(a.id) is a else "not a value of the program"
                fail(f"argument %{a.id} is {where}", v)
        _check_rules(v, fail)
        seen[v.id] = v
    named = [("arg", a) for a in prog.args] + [("seed", s) for s in prog.seeds] + \
        [("param", v) for _, v in prog.params] + [("output", o) for o in prog.outputs] + \
        [("input gradient", g) for g in prog.input_grads] + [("parameter gradient", g) for g in prog.param_grads]
    for what, v in named:
        if v is not None and seen.get(v.id) is not v:
            fail(f"the program's {what} %{v.id} is not one of its values", v)
    if len(prog.params) != len(prog.param_grads) or len(prog.args) != len(prog.input_grads):
        fail("one gradient slot per arg and per param expected")
    return prog


def _check_rules(v, fail):
    op = v.op
    if op.arity is not None and len(v.args) != op.arity:
        fail(f"{op!r} takes {op.arity} arguments, has {len(v.args)}", v)
    if v.args and all(a.shape is not None for a in v.args):
        try:
            shape = op.shape(*[a.shape for a in v.args])
        except ShapeMismatch as e:
            fail(f"the shapes of its arguments break {op!r}'s rule: {e}", v)
        if v.shape is not None and tuple(shape) != tuple(v.shape):
            fail(f"shape {fmt_shape(v.shape)}, but {op!r}'s rule gives {fmt_shape(shape)}", v)
    elif not v.args and v.shape is not None and op.shape() is not None and tuple(op.shape()) != tuple(v.shape):
        fail(f"shape {fmt_shape(v.shape)}, but {op!r} has {fmt_shape(op.shape())}", v)
    if v.dtype is not None and all(a.dtype is not None for a in v.args) and \
            op.dtype(*[a.dtype for a in v.args]) != v.dtype:
        fail(f"dtype {v.dtype}, but {op!r}'s rule gives {op.dtype(*[a.dtype for a in v.args])}", v)
