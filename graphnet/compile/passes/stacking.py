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
    if all(blocks) and len({id(b[0]) for b in blocks}) == 1:
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
    """The values as maximal runs that each stack for free, one piece per run. A run that goes on as row
    blocks of one array in order, or as the next arguments of a stack made already, is extended without
    checking it whole again (the check that follows would say free): linear in the values, not quadratic."""
    out, i = [], 0
    while i < len(vals):
        j = i + 1
        block, made = row_block(vals[i]), None
        while j < len(vals):
            b = row_block(vals[j])
            if block is not None and b is not None and b[0] is block[0] and b[1] == block[1] + block[2]:
                block, j = b, j + 1           # the next rows of the same array
                continue
            if made is not None and made[1] < len(made[0]) and made[0][made[1]] == vals[j].id:
                made, j = (made[0], made[1] + 1), j + 1      # the next argument of a stack made already
                continue
            if _free_stack(vals[i:j + 1], src, existing, partial) is None:
                break
            block = None                      # the run is no longer row blocks in order
            made = _run_of_made(vals[i:j + 1], existing) if partial else None
            j += 1
        out.append(vals[i] if j == i + 1 else _free_stack(vals[i:j], src, existing, partial))
        i = j
    return out


def _run_of_made(vals, existing):
    """(arguments of a stack made already, where ``vals`` ends in them) if ``vals`` is a run of its arguments."""
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
            orders.append(sorted(items, key=lambda v: made.index(v.args[j].id)))
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
