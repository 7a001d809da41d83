"""Memory plan for one generated function: which value lives in which preallocated array.

Liveness over the function's schedule decides it. A value whose op can write into a given array
(``Op.expr_out``) gets a view of a segment of one flat array per dtype (the arena), preallocated once per input
signature; a segment is free again for later values, whatever their shape, once everything reading it, views
included, is dead (best fit among free segments, which merge; else the arena grows); an elementwise op may write
over an input that dies there (in place). A row or column stack (Concat) whose inputs are all computed here by elementwise ops, or are such
stacks themselves, is never copied: each input is written straight into its slice of the stack's segment. Values
handed back to the caller (outputs, returned gradients) and everything they are views of stay fresh arrays,
which the caller owns. Views of blocks are made once per binding, in the prelude of the generated code. A value
that its input's op writes (``Op.written_by_arg``: a kernel's result kept in an array of its own) is placed
when that op runs, before the op's dying inputs are freed, and its array is passed to the op's call.

The result is a layout, not code: for each value, where it lives (``Layout.place``); emission writes the lines.
"""
from __future__ import annotations

import bisect
import itertools
import math

import numpy as np

from ..ops import Concat, Param


SEGMENT, STACK_SLICE, IN_PLACE, VIEW, STACK, FRESH = ("segment", "slice of a stack", "in place", "view",
                                                     "stack", "fresh")
WRITTEN = (SEGMENT, STACK_SLICE, IN_PLACE)   # computed into its array by the op's ``expr_out``


class Layout:
    """Where each value of one function lives, and the arrays to preallocate.

    ``place[value.id]``: SEGMENT (a view of an arena segment), STACK_SLICE (its slice of a stack's array),
    IN_PLACE (over an input that dies there), VIEW (a view of a preallocated array, made once per binding), STACK
    (a stack whose pieces were written into it: nothing to compute) or FRESH (a variable of its own)."""

    def __init__(self):
        self.names = {}               # value.id -> variable name (a preallocated array's name, or t<k>)
        self.place = {}               # value.id -> one of the kinds above
        self.steps = []               # value, or a list of variables to free (``del``), in schedule order
        self.buffer = {}              # value.id -> the preallocated block it lives in (else its variable)
        self.arrays = {}              # arena name -> ((elements,), dtype): one flat array per dtype, made once
        self.views = {}               # name -> (name of an arena or a view, the expression of the view of it)
        self.derived = {}             # name -> (name of an array or view, op): a view op applied once, at build
        self.segments = {}            # Value.id -> (arena name, offset, length): the segment a value took
        self.stacks_in_place = 0      # stacks whose pieces were written straight into them (no copy)
        self.in_place = 0             # values written over an input that died there
        self.contiguous = set()       # names of arrays C-contiguous at every batch size: segments, their row blocks
        self.written_with = {}        # value.id -> names of the arrays its op also writes (its KernelResults)

    def nbytes(self) -> int:
        return sum(math.prod(s) * np.dtype(d).itemsize for s, d in self.arrays.values())

    def rekeyed(self, ids):
        """A reference for another program of the same structure: ``ids`` maps this program's Value.id to
        that program's."""
        ref = Layout()
        ref.arrays = dict(self.arrays)
        ref.segments = {ids[k]: seg for k, seg in self.segments.items()}
        return ref


class LayoutMismatch(Exception):
    """A function that cannot take its segments from a reference layout (another structure, a longer value)."""


def plan_memory(values, preset, keep, fresh, computed, writable, prefix, reference=None) -> Layout:
    """Lay out one function. ``preset``: Value.id -> name of values it receives (arguments, saved values);
    ``keep``: values live to its end; ``fresh``: values it returns (they and their bases are never reused);
    ``computed``: Value.ids of the values it computes; ``writable``: ids of those whose op can write into an array.

    ``reference``: a layout of the same function at a larger batch size (its ``segments`` keyed by this
    program's ``Value.id``): each value takes its reference segment instead of a best fit, and the arenas keep
    the reference's sizes. A value that fits in its segment there fits at any smaller size whose every
    dimension is no larger, and what was disjoint there stays disjoint: the segments' offsets are one set of
    numbers for every such size."""
    lay = Layout()
    lay.names.update(preset)
    mine = computed
    root = {}                                   # id -> id of the value owning its memory
    for v in values:
        if v.id in mine and v.op.view and v.args:
            root[v.id] = root.get(v.args[0].id, v.args[0].id)
        else:
            root[v.id] = v.id
    fresh_roots = {root.get(v.id, v.id) for v in fresh}
    buffered = {v.id for v in values if v.id in mine and not v.op.view and v.id in writable
                and v.id not in fresh_roots and v.shape is not None}
    pieces = _stacked_in_place(values, buffered)
    stacks = {c.id for c, _ in pieces.values()}
    lay.stacks_in_place = len(stacks)
    for v in values:                            # again, now that pieces live in their stacks' arrays
        if v.id in pieces:                     # a piece lives in the outermost stack that holds it
            top = v.id
            while top in pieces:
                top = pieces[top][0].id
            root[v.id] = top
        elif v.id in mine and v.op.view and v.args:
            root[v.id] = root.get(v.args[0].id, v.args[0].id)
    keep_ids = {k.id for k in keep}
    last = {}                                   # root id -> the last step reading it (steps only grow)
    for i, v in enumerate(values):
        last[root[v.id]] = i
        for a in v.args:
            ia = a.id
            last[root.get(ia, ia)] = i
    end = len(values)
    for k in keep:
        last[root.get(k.id, k.id)] = end
    value_last = {}                             # per value, for the names of fresh arrays
    for i, v in enumerate(values):
        for a in v.args:
            value_last[a.id] = i
    for k in keep:
        value_last[k.id] = end

    owner = {}                                  # root id -> (arena, offset, length) it holds
    fixed = set()                               # names bound once for the plan's life: arrays and their views
    n_names = [0]

    arenas = {}                                 # dtype -> its _Arena

    def take(v):
        """A segment of v's dtype's arena for v (best fit among freed ones, else the arena grows) and the name
        of v's view of it."""
        n, dt = math.prod(v.shape), np.dtype(v.dtype).str
        if dt not in arenas:
            arenas[dt] = _Arena(f"{prefix}{len(arenas) + 1}", dt)
        arena = arenas[dt]
        if reference is None:
            off, length = arena.take(n)
        else:
            seg = reference.segments.get(v.id)
            if seg is None or seg[0] != arena.name or seg[2] < n:
                raise LayoutMismatch(f"{v} has no segment of {n} elements in the reference layout ({seg})")
            _, off, length = seg
        lay.segments[v.id] = (arena.name, off, length)
        name = f"{arena.name}_{len(lay.views)}"
        shape = tuple(v.shape)
        lay.views[name] = (arena.name, f"{arena.name}[{off}:{off + n}].reshape({shape!r})")
        lay.contiguous.add(name)
        fixed.add(name)
        return (arena, off, length), name

    bounds_of = {}                              # stack.id -> where each piece starts, and the end: made once

    def view_of(array, c, slot):
        d = c.op.dim % len(c.shape)
        bounds = bounds_of.get(c.id)
        if bounds is None:                      # a k-piece stack is walked once, not once per piece
            bounds = bounds_of[c.id] = [0, *itertools.accumulate(a.shape[d] for a in c.args)]
        start, stop = bounds[slot], bounds[slot + 1]
        name = f"{array}_{d}s{slot}"          # structural: the same name at every batch size
        lay.views[name] = (array, f"{array}[{':, ' * d}{start}:{stop}]")
        if d == 0 and array in lay.contiguous:
            lay.contiguous.add(name)
        return name

    home_of = {}

    def home(c):
        """The array (or view of an enclosing stack's array) a stack's pieces are written into."""
        if c.id not in home_of:
            if c.id in pieces:
                outer, slot = pieces[c.id]
                home_of[c.id] = view_of(home(outer), outer, slot)
            else:
                owner[c.id], home_of[c.id] = take(c)
            fixed.add(home_of[c.id])
        return home_of[c.id]

    def fresh_name():                          # never reused: a name is one value (``del`` frees it)
        n_names[0] += 1
        return f"t{n_names[0]}"

    results_of = {}                             # id -> the values its op writes besides its own (written_by_arg)
    for v in values:
        if v.op.written_by_arg:
            results_of.setdefault(v.args[0].id, []).append(v)
    for rs in results_of.values():
        rs.sort(key=lambda r: r.op.index)       # the order the op's call takes their arrays in

    def place(i, v):
        """Where v lives (its name and kind), chosen at step i."""
        vid = v.id
        if vid in stacks:                      # a stack whose pieces were written into it
            name, kind = home(v), STACK
        elif vid in pieces:
            c, slot = pieces[vid]
            name, kind = view_of(home(c), c, slot), STACK_SLICE
            fixed.add(name)
        elif v.op.always_view and lay.names[v.args[0].id] in fixed:
            name, kind = f"{prefix}v{len(lay.derived) + 1}", VIEW     # a view of a preallocated array
            lay.derived[name] = (lay.names[v.args[0].id], v.op)
            fixed.add(name)
        elif vid in buffered:
            over = _in_place(v, i, root, owner, last, keep_ids) if v.op.inplace else None
            if over is None:
                owner[vid], name = take(v)
                kind = SEGMENT
            else:
                owner[vid], name = owner.pop(over.id), lay.names[over.id]
                kind = IN_PLACE
                lay.in_place += 1
        else:
            name, kind = fresh_name(), FRESH
        lay.names[vid], lay.place[vid] = name, kind
        held = owner.get(root.get(vid, vid))
        lay.buffer[vid] = f"{held[0].name}[{held[1]}:]" if held else name

    for i, v in enumerate(values):
        vid = v.id
        if vid not in mine:                    # an argument or a seed: named already
            continue
        if not v.op.written_by_arg:            # (those were placed with the op that writes them)
            place(i, v)
            lay.steps.append(v)
        for r in results_of.get(vid, ()):      # placed before v's dead inputs are freed: v writes them
            if r.id not in buffered:
                raise AssertionError(f"{r} is written by its input's op but has no array of the plan's")
            place(i, r)
        if vid in results_of:
            lay.written_with[vid] = [lay.names[r.id] for r in results_of[vid]]
        # arrays of the function's own variables that nothing reads any more: freed now (views keep their base;
        # a parameter's data is the parameter's)
        dead = [lay.names[a.id] for a in {a.id: a for a in v.args}.values() if value_last.get(a.id) == i
                and a.id not in preset and lay.names.get(a.id, "").startswith("t") and not isinstance(a.op, Param)]
        if vid not in value_last and lay.names[vid].startswith("t"):    # unused (computed for its effect)
            dead.append(lay.names[vid])
        if dead:
            lay.steps.append(dead)
        for r in {root.get(a.id, a.id) for a in v.args} | {root[vid]}:
            if last.get(r) == i and r in owner:     # dead: its segment is free for later values
                arena, off, length = owner.pop(r)
                if reference is None:
                    arena.give(off, length)
    lay.arrays = {a.name: ((a.size,), a.dtype) for a in arenas.values()}
    if reference is not None:
        if not set(lay.arrays) <= set(reference.arrays):
            raise LayoutMismatch(f"arenas {sorted(lay.arrays)}, not those of the reference {sorted(reference.arrays)}")
        lay.arrays = {name: reference.arrays[name] for name in lay.arrays}
    return lay


class _Arena:
    """One flat array per dtype, carved into segments while planning: a value takes the best-fitting freed
    segment (the shortest that fits, the first of those), else the arena grows; freed neighbours merge. Segments
    start on 64-byte boundaries. Free segments are kept twice, by offset (to merge) and by length (to fit):
    both found by bisection."""
    ALIGN = 16                                  # elements

    def __init__(self, name, dtype):
        self.name, self.dtype, self.size = name, dtype, 0
        self.free, self.by_length = [], []      # sorted (offset, length); the same as sorted (length, offset)

    def _drop(self, k):
        off, length = self.free.pop(k)
        del self.by_length[bisect.bisect_left(self.by_length, (length, off))]
        return off, length

    def _add(self, k, off, length):
        self.free.insert(k, (off, length))
        bisect.insort(self.by_length, (length, off))

    def take(self, n):
        n = max(self.ALIGN, -(-n // self.ALIGN) * self.ALIGN)
        j = bisect.bisect_left(self.by_length, (n, -1))
        if j < len(self.by_length):
            length, off = self.by_length[j]
            k = bisect.bisect_left(self.free, (off,))
            self._drop(k)
            if length > n:
                self._add(k, off + n, length - n)
            return off, n
        if self.free and sum(self.free[-1]) == self.size:    # a free tail: grow it
            off, _ = self._drop(len(self.free) - 1)
        else:
            off = self.size
        self.size = off + n
        return off, n

    def give(self, off, n):
        k = bisect.bisect_left(self.free, (off,))                            # the first free segment after off
        if k < len(self.free) and off + n == self.free[k][0]:                  # merge with the next
            n += self._drop(k)[1]
        if k > 0 and sum(self.free[k - 1]) == off:                             # and with the previous
            off, length = self._drop(k - 1)
            n += length
            k -= 1
        self._add(k, off, n)


def _in_place(v, i, root, owner, last, keep_ids):
    """An input to write v over: one that dies here, of v's shape and dtype, whose block it owns outright, at a
    position the op allows (``Op.over``)."""
    for k, a in enumerate(v.args):
        if v.op.over is not None and k not in v.op.over:
            continue
        if (root.get(a.id) == a.id and a.id in owner and last.get(a.id) == i and a.id not in keep_ids
                and tuple(a.shape) == tuple(v.shape) and a.dtype == v.dtype):
            return a
    return None


def _stacked_in_place(values, buffered):
    """Inputs of a Concat to be written straight into its array: piece.id -> (concat, slot). A piece may be
    a stack itself (its own pieces then go straight into the enclosing array)."""
    pieces, stacks = {}, set()
    for c in values:
        if not isinstance(c.op, Concat) or c.id not in buffered:
            continue
        ids = [a.id for a in c.args]
        if len(set(ids)) != len(ids):
            continue
        rows = c.op.dim % len(c.shape) == 0    # a piece's slot is then a block of rows: contiguous
        if all(a.id not in pieces and (a.id in stacks or a.id in buffered and (a.op.elementwise or rows)
                                        and not isinstance(a.op, Concat)) for a in c.args):
            stacks.add(c.id)
            for slot, a in enumerate(c.args):
                pieces[a.id] = (c, slot)
    return pieces
