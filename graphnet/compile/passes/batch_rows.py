"""Row batching: k independent applications of one row-wise op become one application on stacked rows.

An op that works row by row along dim 0 (``Op.row_pattern``: elementwise ops, softmax along the last dim, class
picking, ``x @ W``) applied to k inputs of one shape, none depending on another's result, is computed once on
the inputs stacked by rows; each result is a row slice of the one output. Stacking is free when the inputs are
already the row slices of one array, in order (a previous batch's output): so a chain of such ops (the head
``log_softmax(h_t @ W + b)`` at every time step, the derivatives of the gates at every step in backward) is
batched link by link, one call per link instead of one per time step.

On a backend that fuses elementwise ops into kernels (``batch_rows_around_kernels``), an elementwise value read
only by values that stay one per step (a recurrence's) is left per step: there it is computed inside the kernel
its reader runs in, at no call of its own, where batched it would cost a pass over memory and the stacks
copying its inputs and results.

All algebra on the IR, not pattern matching on layers.
"""
from collections import defaultdict

from ...ops import Slice
from ..ir import Value, clone, finish, gradient_ids, resolve
from .fusion_groups import fusable
from .stacking import Stacks, best_order, new_values

MAX_ROUNDS = 16


def _pattern(v, patterns):
    """(``Op.row_pattern`` of v, what else a group must share: op, dtypes) or None, cached by value id (ops,
    shapes and dtypes do not change under rewriting); None for no rows."""
    pat = patterns.get(v.id, False)
    if pat is False:
        pat = None
        if v.args and v.op.pure and v.shape and v.shape[0] and all(a.shape is not None for a in v.args):
            pat = v.op.row_pattern(*[a.shape for a in v.args])
            pat = (pat, (v.op.key(), v.dtype.str, tuple(a.dtype.str for a in v.args))) \
                if pat is not None and any(pat) else None
        patterns[v.id] = pat
    return pat


def _candidates(values, fwd, patterns):
    """Groups of values that one batched application could compute, keyed by what must be equal."""
    groups = defaultdict(list)
    for v in values:
        cached = _pattern(v, patterns)
        if cached is None:
            continue
        pattern, same = cached
        key = (same, v.id in fwd, pattern, tuple([a.shape if r else a.id for a, r in zip(v.args, pattern)]))
        groups[key].append(v)
    return [g for g in groups.values() if len(g) > 1]


class _Ancestry:
    """Ancestor sets as bitmasks, one bit per candidate member, kept exact while values are merged.

    One per phase: a forward value never depends on a backward one, and a group is all forward or all backward,
    so each phase tracks its own values and its own members' bits (half the width, a quarter of the work)."""

    def __init__(self, values, members):
        self.bit, self.anc, self.members = {}, {}, members
        self.users = defaultdict(list)        # Value.id -> the values of this phase reading it
        self.replaced = {}                    # id of a row slice of a batched value -> the member it replaced
        for v in values:
            self.add(v)

    def add(self, v):
        anc, bit, users = self.anc, self.bit, self.users
        m = 0
        for a in v.args:
            users[a.id].append(v)
            up, own = anc.get(a.id, 0), bit.get(a.id, 0)
            if up:
                m = m | up if m else up       # shared, not copied, where one argument brings it all
            if own:
                m |= own
        anc[v.id] = m
        if v.id in self.members:
            bit[v.id] = 1 << len(bit)

    def merged(self, chosen, big):
        """Every value downstream of a chosen member now also depends on the batched value (and its inputs).
        Downstream is walked, not searched for: through the readers of each value, and from a row slice of a
        batched value on to the readers of the member it replaced; not past a value that depends on all of it
        already (ancestry only grows along an edge, so everything below does too)."""
        add, anc, users, replaced = self.anc[big.id], self.anc, self.users, self.replaced
        todo, seen = [u for c in chosen for u in users.get(c.id, ())], set()
        while todo:
            v = todo.pop()
            if v.id in seen:
                continue
            seen.add(v.id)
            grown = anc[v.id] | add
            if grown == anc[v.id]:
                continue                      # depends on all of it already: so does everything below it
            anc[v.id] = grown
            todo += users.get(v.id, ())
            r = replaced.get(v.id)
            if r is not None:
                todo += users.get(r.id, ())


def _is_chain(values, groups):
    """Per group: whether its every member depends on the first (the steps of a recurrence). Found with one bit
    per group, not one per member: such a group batches nothing, and its T members would widen every value's
    ancestry by T bits."""
    bit = {g[0].id: 1 << k for k, g in enumerate(groups)}
    anc = {}
    for v in values:
        m = 0
        for a in v.args:
            m |= anc.get(a.id, 0) | bit.get(a.id, 0)
        if m:
            anc[v.id] = m
    return [all(anc.get(m.id, 0) & bit[g[0].id] for m in g[1:]) for g in groups]


def _per_step(groups, chains, values):
    """The ids of the groups' elementwise values to leave per step on a fusing backend.

    A value is on a recurrence when it depends on a step of one of ``chains`` (the recurrences' groups) and a
    later step depends on it, or is a step itself: it is computed once per step whatever is batched. A value
    stays per step when it is read only by values on a recurrence, elementwise values in no group, or values
    staying per step themselves: the steps' kernels compute it at no call of its own. It must read a value on a
    recurrence or an elementwise one that may stay too (through column slices): a bias added to a block of a
    batched product is batched, as per step fusion would group it with its siblings across the steps, not with
    its reader. Found by growing the set from the recurrences back until it stops."""
    bit = {m.id: 1 << k for k, g in enumerate(chains) for m in g}
    down, up, users = {}, defaultdict(int), defaultdict(list)
    for v in values:
        m = bit.get(v.id, 0)
        for a in v.args:
            m |= down.get(a.id, 0)
            users[a.id].append(v)
        down[v.id] = m
    for v in reversed(values):
        m = up[v.id] | bit.get(v.id, 0)
        for a in v.args:
            up[a.id] |= m
    stays = {v.id for v in values if down[v.id] & (up[v.id] | bit.get(v.id, 0))}
    grouped = {m.id for g in groups for m in g}

    def columns(v):
        return isinstance(v.op, Slice) and v.ndim and v.op.dim % v.ndim == v.ndim - 1

    def per_step_reader(u):
        if columns(u):
            return all(per_step_reader(x) for x in users.get(u.id, ()))
        return u.id in stays or (fusable(u) and u.id not in grouped)

    def per_step_input(a):
        return a.id in stays or a.id in maybe or (columns(a) and per_step_input(a.args[0]))

    left = [v for v in values if v.id in grouped and v.id not in stays and users.get(v.id) and fusable(v)]
    maybe = {m.id for m in left}
    kept, grew = set(), True
    while grew:
        grew = False
        for m in reversed(left):              # readers first (program order): most settle in one sweep
            if m.id not in kept and any(per_step_input(a) for a in m.args) \
                    and all(per_step_reader(u) for u in users[m.id]):
                stays.add(m.id)
                kept.add(m.id)
                grew = True
    return kept


def _one_round(p, patterns, settled, fusing=False):
    """One round of batching. ``settled``: groups (the set of their members' ids) whose every member depends on
    one of them (a recurrence's T steps). Dependencies only grow under batching (a merged value's readers
    depend on all it merged), so while the group has these members, that one is first in program order and
    alone in any batch: the group is left out, this round and the next, and its members take no bit of the
    ancestry."""
    values = list(p.values)
    present = {v.id for v in values}
    fwd = {v.id for v in p.forward_values()}
    # stacks to share, by phase: a forward value may not read a stack that backward makes
    existing = {True: Stacks([v for v in values if v.id in fwd]), False: Stacks(values)}
    grad = gradient_ids(values)
    order = {v.id: i for i, v in enumerate(values)}
    every = _candidates(values, fwd, patterns)
    candidates = [g for g in every if frozenset([m.id for m in g]) not in settled]
    groups, graphs = [], {}
    for phase in (True, False):
        mine = [v for v in values if (v.id in fwd) == phase]
        own = [g for g in candidates if (g[0].id in fwd) == phase]
        for g, chain in zip(own, _is_chain(mine, own)):
            if chain:
                settled.add(frozenset([m.id for m in g]))
            else:
                groups.append(g)
    if fusing:
        chains = [g for g in every if frozenset([m.id for m in g]) in settled]
        per_step = _per_step(groups, chains, values)
        groups = [kept for kept in ([m for m in g if m.id not in per_step] for g in groups) if len(kept) > 1]
    for phase in (True, False):
        mine = [v for v in values if (v.id in fwd) == phase]
        graphs[phase] = _Ancestry(mine, {m.id for g in groups if (g[0].id in fwd) == phase for m in g})
    sub, new, n_merged = {}, [], 0

    def select(members, pattern):
        """The members one application can compute: same shared inputs, none depending on another."""
        fixed = [a for a, r in zip(members[0].args, pattern) if not r]
        chosen, mask, above = [], 0, 0
        graph = graphs[members[0].id in fwd]
        for m in members:
            if any(a is not f for a, f in zip((a for a, r in zip(m.args, pattern) if not r), fixed)):
                continue                      # a shared input was itself batched: next round
            if graph.anc[m.id] & mask or above & graph.bit[m.id]:
                continue                      # depends on a member already chosen, or one depends on it
            chosen.append(m)
            mask |= graph.bit[m.id]
            above |= graph.anc[m.id]
        return chosen, mask

    def merge(chosen, mask, pattern, ordered):
        chosen, stacks, copies = ordered
        first = chosen[0]
        graph = graphs[first.id in fwd]
        if (0 if first.op.view else len(chosen) - 1) - copies <= 0 and (copies or not first.op.view):
            return 0                          # no numpy call saved
        for j, r in enumerate(pattern):       # a stack cut from a larger one also waits for the rest of it
            if r and any(graph.anc.get(d.id, 0) & mask or graph.bit.get(d.id, 0) & mask
                         for y in new_values(stacks[j], present) for d in y.args if d.id in present):
                return 0
        args, made = [], []
        for j, r in enumerate(pattern):
            a = stacks[j] if r else first.args[j]
            for y in new_values(a, present):
                made.append(y)
                present.add(y.id)
            args.append(a)
        rows = first.shape[0]
        big = Value(first.op, tuple(args), (rows * len(chosen),) + tuple(first.shape[1:]), first.dtype, first.src)
        made.append(big)
        patterns[big.id] = None               # a batched value is not batched again
        for i, m in enumerate(chosen):
            piece = Value(Slice(0, i * rows, rows), (big,), m.shape, m.dtype, m.src)
            made.append(piece)
            sub[m.id] = piece
            graph.replaced[piece.id] = m
        for v in made:
            present.add(v.id)
            graph.add(v)
            if first.id in fwd:
                fwd.add(v.id)
        for phase in (True, False) if first.id in fwd else (False,):
            existing[phase].add(made)
        new.extend(made)
        graph.merged(chosen, big)
        return 1

    # earlier groups first, so that a chain of row-wise ops is batched link by link within one round
    for group in sorted(groups, key=lambda g: order[g[0].id]):
        pattern = patterns[group[0].id][0]
        for m in group:
            m.args = tuple(resolve(sub, a) for a in m.args)
        chosen, mask = select(group, pattern)
        if len(chosen) < 2:
            continue
        ordered = best_order(chosen, [j for j, r in enumerate(pattern) if r], existing[chosen[0].id in fwd], grad)
        n_merged += merge(chosen, mask, pattern, ordered)
    return finish(p, new, sub), n_merged


def batch_rows(prog, fusing=False):
    p = clone(prog)
    patterns, settled, merged = {}, set(), 0
    for _ in range(MAX_ROUNDS):
        p, n = _one_round(p, patterns, settled, fusing)
        merged += n
        if not n:
            break
    p.meta["batched_groups"] = p.meta.get("batched_groups", 0) + merged     # for plan.stats()
    return p


def batch_rows_around_kernels(prog):
    """``batch_rows`` for a backend that fuses elementwise ops: what the steps' kernels compute at no call of
    their own stays per step."""
    return batch_rows(prog, fusing=True)
