"""The groups the fusion pass forms: which values may run as one kernel (``fusable``), and groups kept convex
as they grow (``FusionGroups``: a group that a path leaves and re-enters could not run as one call)."""
from __future__ import annotations

from ..kernel_rules import is_literal, row_rule, scalar_rule


class FusionGroups:
    """Groups being formed (union-find over group ids) and what depends on what: per value outside the groups,
    the groups it reads (directly or through other outside values); per group, the same for its inputs. A group
    runs as one call, so a path through it counts from any of its inputs to any of its results."""

    def __init__(self):
        self.parent, self.members, self.key, self.reads = {}, {}, {}, {}
        self.span = {}                           # group id -> (schedule position of its first, last member)
        # group id -> the groups reading it; -> the last position of any member of it or of a group it reads
        # from, directly or not (a group reached from a target has a value after the target's first: it or one
        # of the groups it reads, since a group reads at any of its members' positions)
        self.down, self.high = {}, {}
        self.up = {}                             # group id -> the highest ``high`` of the groups it reads
        self.seen = 0                            # values seen so far (positions)
        self.group, self.deps = {}, {}           # id(value) -> its group id; -> group ids it reads

    def find(self, g):
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def of(self, v):
        g = self.group.get(id(v))
        return None if g is None else self.find(g)

    def _entry(self, a):
        return {self.group[id(a)]} if id(a) in self.group else self.deps.get(id(a), set())

    def see(self, v):
        self.seen += 1
        self.deps[id(v)] = set().union(*[self._entry(a) for a in v.args]) if v.args else set()

    def new(self, key):
        g = len(self.parent)
        self.parent[g], self.members[g], self.key[g], self.reads[g] = g, [], key, set()
        self.span[g] = (self.seen, self.seen)
        self.down[g], self.high[g], self.up[g] = set(), self.seen, -1
        return g

    def add(self, v, g):
        for a in v.args:
            if self.of(a) != g:
                entry = self._entry(a)
                self.reads[g] |= entry
                for h in entry:
                    h = self.find(h)
                    self.down[h].add(g)
                    self.up[g] = max(self.up[g], self.high[h])
        self.group[id(v)] = g
        self.members[g].append(v)
        self.span[g] = (self.span[g][0], self.seen)
        self._raise(g)

    def _raise(self, g):
        """g has a member at the latest position: so has every group that reads it, directly or not (``high``)."""
        stack, done = [g], set()
        while stack:
            x = self.find(stack.pop())
            if x in done or (x != g and self.high[x] >= self.seen):   # (raised already, and those reading it)
                continue
            done.add(x)
            self.high[x] = self.seen
            if x != g:
                self.up[x] = self.seen
            stack.extend(self.down[x])

    def merge(self, gs):
        g, *rest = gs
        for h in rest:
            self.parent[h] = g
            self.members[g].extend(self.members.pop(h))
            self.reads[g] |= self.reads.pop(h)
            self.down[g] |= self.down.pop(h)
            self.high[g] = max(self.high[g], self.high.pop(h))
            self.up[g] = max(self.up[g], self.up.pop(h))
            self.span[g] = (min(self.span[g][0], self.span[h][0]), max(self.span[g][1], self.span[h][1]))
        return g

    def _reaches(self, readers, inside, targets):
        """Whether an input of ``readers`` from outside the groups ``inside`` depends on one of ``targets``."""
        if not targets:
            return False
        stack, seen = [], set()
        for m in readers:
            stack.extend(x for a in m.args if self.of(a) not in inside for x in self._entry(a))
        # a group on a path from a target has a member after the target's first, or reads from one that has
        # (``high``): the rest need no look. (Its own members may all come before: a group that a path enters
        # at a late member and leaves at an early one.)
        earliest = min(self.span[t][0] for t in targets)
        while stack:
            x = self.find(stack.pop())
            if x in targets:
                return True
            if x not in seen and self.high[x] >= earliest:
                seen.add(x)
                if self.up[x] >= earliest:       # (else none of the groups it reads needs a look)
                    stack.extend(self.reads[x])
        return False

    def can_join(self, v, chosen, g) -> bool:
        """v may join the groups ``chosen`` + g as one group: no path leaves it and comes back."""
        s = set(chosen) | {g}
        if self._reaches([v], s, s):
            return False
        old = [m for h in chosen for m in self.members[h]]
        return not (self._reaches(self.members[g], s, set(chosen)) or self._reaches(old, s, {g}))


def fusable(v) -> bool:
    """Whether v may join a kernel: an elementwise (or row-wise) op of rank >= 2 on floats, its inputs broadcasting
    to it."""
    if v.shape is None or len(v.shape) < 2 or not v.op.pure or v.dtype.kind != "f":
        return False
    index = getattr(v.op, "index_arg", None)    # an integer column (a row's target class), read once per row
    if index is not None:
        t = v.args[index]
        if t.shape != tuple(v.shape[:-1]) + (1,) or t.dtype.kind not in "iu":
            return False
    args = [a for i, a in enumerate(v.args) if i != index]
    if row_rule(v.op, v.ndim) is not None:      # along the row: inputs of its own shape (a pick: its rows)
        return all(a.dtype == v.dtype and (a.shape == v.shape or index is not None and a.ndim == v.ndim
                                           and a.shape[:-1] == v.shape[:-1]) for a in args)
    if scalar_rule(v.op) is None:
        return False
    for a in args:
        if is_literal(a):
            continue
        if a.shape is None or a.dtype != v.dtype or a.ndim > v.ndim:
            return False
        if a.ndim and a.shape[-1] not in (1, v.shape[-1]):
            return False
        if any(s not in (1, t) for s, t in zip(a.shape[:-1], v.shape[len(v.shape) - a.ndim:-1])):
            return False
    return True
