"""Values stacked by rows, shared by the batching passes (``batch_rows``, ``sum_of_gemms``).

``stack``/``best_order``/``Stacks``: values stacked by rows, for free where they are already (row blocks of one
array, a stack the program makes or rows of one, a column slice of values that stack for free), else one copy of
as few pieces as possible. Algebra, not pattern matching on layers.
"""
from collections import defaultdict

import numpy as np

from ...ops import Concat, Const, Slice
from ..ir import Value


def row_block(v):
    """(base, start, rows) when v is a block of rows of another value, else None."""
    op = v.op
    if isinstance(op, Slice) and op.dim == 0 and op.start >= 0 and op.length > 0:
        return v.args[0], op.start, op.length
    return None


class Stacks:
    """The row stacks a program makes, to share: by their arguments in order, by the set of them, by each one."""

    def __init__(self, values=()):
        self.exact, self.by_set, self.by_arg = {}, {}, defaultdict(list)
        self.add(values)

    def add(self, values):
        for v in values:
            if isinstance(v.op, Concat) and v.op.dim == 0:
                key = tuple(a.id for a in v.args)
                if key not in self.exact:
                    self.exact[key] = v
                    self.by_set.setdefault(frozenset(key), key)
                    for i, a in enumerate(key):
                        self.by_arg[a].append((key, i, v))


NO_STACKS = Stacks()


def stack(vals, src, existing=NO_STACKS, partial=True):
    """The values stacked by rows, and whether that costs a copy. Free: the row blocks of one array in order
    (that array, or a view of it); a stack the program makes already, or a run of one (``existing``); the
    same column slice of values that stack for free (that slice of their stack); constants (folded). Else one
    copy, of as few pieces as there are runs of values that stack for free."""
    free = _free_stack(vals, src, existing, partial)
    if free is not None:
        return free, False
    shape = (sum(v.shape[0] for v in vals),) + tuple(vals[0].shape[1:])
    return Value(Concat(0), tuple(_runs(vals, src, existing, partial)), shape, vals[0].dtype, src), True


def _free_stack(vals, src, existing, partial):
    blocks = [row_block(v) for v in vals]
    if all(blocks) and len({b[0].id for b in blocks}) == 1:
        base, start = blocks[0][0], blocks[0][1]
        at = start
        for _, s, n in blocks:
            if s != at:
                break
            at += n
        else:
            if start == 0 and at == base.shape[0]:
                return base
            shape = (at - start,) + tuple(base.shape[1:])
            return Value(Slice(0, start, at - start), (base,), shape, base.dtype, src)
    if len(vals) == 1:
        return vals[0]
    shape = (sum(v.shape[0] for v in vals),) + tuple(vals[0].shape[1:])
    ids = tuple(v.id for v in vals)
    made = existing.exact.get(ids)
    if made is not None:
        return made
    for key, i, c in existing.by_arg.get(ids[0], ()) if partial else ():   # a run of a stack made: rows of it
        if len(key) > len(ids) and key[i:i + len(ids)] == ids:
            start = sum(a.shape[0] for a in c.args[:i])
            return Value(Slice(0, start, shape[0]), (c,), shape, vals[0].dtype, src)
    cols = {(v.op.dim % len(v.shape), v.op.start, v.op.length) if isinstance(v.op, Slice) else None for v in vals}
    if len(cols) == 1 and None not in cols:
        d, start, length = cols.pop()
        if d != 0 and start >= 0 and length > 0:
            inner = _free_stack([v.args[0] for v in vals], src, existing, partial)
            if inner is not None:
                return Value(Slice(d, start, length), (inner,), shape, vals[0].dtype, src)
    if all(isinstance(v.op, Const) for v in vals):
        c = np.concatenate([np.broadcast_to(v.op.value, v.shape) for v in vals], axis=0)
        return Value(Const(c), (), shape, vals[0].dtype, src)
    return None


def _runs(vals, src, existing, partial):
    """The values as maximal runs that each stack for free, one piece per run. A growing run is checked one
    value at a time (``_Run``), not whole again at every step: linear in the values, not quadratic."""
    out, i = [], 0
    while i < len(vals):
        j, run = i + 1, _Run([vals[i]], existing, partial)
        while j < len(vals):
            if not run.extend(vals[j]):
                if _free_stack(vals[i:j + 1], src, existing, partial) is None:
                    break
                run = _Run(vals[i:j + 1], existing, partial)   # free in a way the kinds kept did not see
            j += 1
        out.append(vals[i] if j == i + 1 else _free_stack(vals[i:j], src, existing, partial))
        i = j
    return out


class _Run:
    """Why a run of values stacks for free, kept while it grows by one value: row blocks of one array in order
    (``block``: the last), arguments of a stack made already in order (``made``: its key, the next index), one
    column slice of values that stack for free (``cols``, ``inner``: the run of what they slice), constants.
    ``extend`` says True only where ``_free_stack`` would find the longer run free; False may still be free
    (the caller then checks the run whole)."""

    def __init__(self, vals, existing, partial):
        self.existing, self.partial = existing, partial
        blocks = [row_block(v) for v in vals]
        self.block = blocks[-1] if all(blocks) and all(
            b[0] is blocks[0][0] and b[1] == p[1] + p[2] for p, b in zip(blocks, blocks[1:])) else None
        self.made = _run_of_made(vals, existing) if partial else None
        cols = {_cols(v) for v in vals}
        self.cols = cols.pop() if len(cols) == 1 else None
        self.inner = None
        if self.cols is not None:
            inner = [v.args[0] for v in vals]
            if len(inner) == 1 or _free_stack(inner, None, existing, partial) is not None:
                self.inner = _Run(inner, existing, partial)
            else:
                self.cols = None
        self.const = all(isinstance(v.op, Const) for v in vals)

    def extend(self, v):
        ok = False
        b = row_block(v)
        if self.block is not None and b is not None and b[0] is self.block[0] and b[1] == sum(self.block[1:]):
            self.block, ok = b, True
        else:
            self.block = None
        key, k = self.made if self.made is not None else ((), 0)
        if k < len(key) and key[k] == v.id:
            self.made, ok = (key, k + 1), True
        else:
            self.made = None
        if self.cols is not None and _cols(v) == self.cols and self.inner.extend(v.args[0]):
            ok = True
        else:
            self.cols = None
        self.const = self.const and isinstance(v.op, Const)
        return ok or self.const


def _cols(v):
    """(dim, start, length) of a column slice (dim not 0), else None."""
    if not isinstance(v.op, Slice):
        return None
    d = v.op.dim % len(v.shape)
    return (d, v.op.start, v.op.length) if d != 0 and v.op.start >= 0 and v.op.length > 0 else None


def _run_of_made(vals, existing):
    """(arguments of a stack made already, the index after ``vals`` in them) if ``vals`` is a run of them."""
    ids = tuple(v.id for v in vals)
    for key, k, _ in existing.by_arg.get(ids[0], ()):
        if key[k:k + len(ids)] == ids:
            return key, k + len(ids)
    return None


def _node_order(v):
    """Where the graph node that made v was built (deterministic: the same graph built again sorts the same)."""
    return getattr(v.src, "id", -1)


def new_values(v, present):
    """v and what it is built from that is not in the program yet (ids in ``present``), inputs first."""
    out = []
    if v.id not in present:
        for a in v.args:
            out += new_values(a, present)
        out.append(v)
    return out


def best_order(items, positions, existing=NO_STACKS, grad=frozenset(), partial=True):
    """``items`` (values) ordered so that stacking their args at ``positions`` copies least. Tried in turn
    (the first of the cheapest wins): the row order of the blocks one of those args is cut from; the time order
    of one of those args, kind by kind, then plain (forward values' first; gradients are made last step first);
    the order of a stack the program makes already (free to share); program order. ``partial``: rows of a
    larger existing stack count as free (the caller makes sure that waiting for all of it closes no cycle).
    Returns (items, {position: stack}, copies)."""
    orders = []
    for j in positions:
        if all(row_block(v.args[j]) for v in items):
            orders.append(sorted(items, key=lambda v: (row_block(v.args[j])[0].id, row_block(v.args[j])[1])))
    def time(a):                               # gradients are made last step first
        return -a.id if a.id in grad else a.id
    for j in sorted(positions, key=lambda j: min(v.args[j].id for v in items)):
        if not all(isinstance(v.args[j].op, Const) for v in items):
            # kind by kind (the graph node that made the arg: the same at every step of an unrolled cell),
            # each kind in time order: later stacks of one kind's values are then blocks in order, free
            orders.append(sorted(items, key=lambda v: (_node_order(v.args[j]), time(v.args[j]))))
            orders.append(sorted(items, key=lambda v: time(v.args[j])))
    for j in positions:
        made = existing.by_set.get(frozenset(v.args[j].id for v in items))
        if made is not None:
            at = {a: i for i, a in enumerate(made)}
            orders.append(sorted(items, key=lambda v: at[v.args[j].id]))
    orders.append(list(items))
    best, tried = None, set()
    for order in orders:                       # the cost first; the copying stacks only for the winner
        seen = tuple(v.id for v in order)      # many positions give few distinct orders of few items
        if seen in tried:
            continue
        tried.add(seen)
        frees = {j: _free_stack([v.args[j] for v in order], order[0].src, existing, partial) for j in positions}
        copies = sum(f is None for f in frees.values())
        if best is None or copies < best[2]:
            best = (order, frees, copies)
            if not copies:
                break
    order, frees, copies = best
    stacks = {j: f if f is not None else stack([v.args[j] for v in order], order[0].src, existing, partial)[0]
              for j, f in frees.items()}
    return order, stacks, copies
