"""Batching: many small GEMMs that share an operand become one GEMM over stacked rows.

- ``stack_shared_matmuls``: MatMul(a_i, W) for several a_i of one shape, none depending on another's result
  (a Linear applied at every time step to inputs that do not depend on the recurrence, the decoder over all
  steps, the matching input-gradient GEMMs) -> one MatMul(Concat(a_i), W), each result a row slice of it.
- ``sum_of_gemms``: sum_i A_i^T B_i (weight gradients of a shared weight, one per use) -> [A_1; ...]^T [B_1; ...],
  and sum_i of column sums (bias gradients) -> one column sum over the stacked rows.

Both are algebra, not pattern matching on layers; values are reordered afterwards by a stable topological sort.
"""
from collections import defaultdict

from ...ops import AddN, Concat, MatMul, Slice, Sum
from ..ir import Value
from ..lower import clone, prune, rewire, substitute

MIN_GROUP = 2


def _toposort(values):
    """Stable topological order: each value as early as its original position allows, after its args."""
    pos = {v.id: i for i, v in enumerate(values)}
    users = defaultdict(list)
    indeg = {}
    for v in values:
        indeg[v.id] = len({a.id for a in v.args})
        for a in {a.id: a for a in v.args}.values():
            users[a.id].append(v)
    import heapq
    ready = [(pos[v.id], v.id, v) for v in values if indeg[v.id] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, _, v = heapq.heappop(ready)
        out.append(v)
        for u in users[v.id]:
            indeg[u.id] -= 1
            if indeg[u.id] == 0:
                heapq.heappush(ready, (pos[u.id], u.id, u))
    if len(out) != len(values):
        done = {v.id for v in out}
        left = [v for v in values if v.id not in done]
        missing = [a for v in left for a in v.args if a.id not in {u.id for u in values}]
        raise AssertionError(f"cycle introduced by batching: {len(left)} values stuck, e.g. {left[:3]}; "
                             f"args not in the program: {missing[:3]}")
    return out


def _users(values):
    users = defaultdict(list)
    for v in values:
        for a in v.args:
            users[a.id].append(v)
    return users


def _matmul_groups(values):
    groups = defaultdict(list)
    for v in values:
        op = v.op
        if isinstance(op, MatMul) and not op.ta and len(v.args[0].shape) == 2 and len(v.args[1].shape) == 2:
            groups[(op.tb, v.args[1].id, v.args[0].shape, v.args[0].dtype.str)].append(v)
    return groups


def stack_shared_matmuls(prog):
    p = clone(prog)
    # one group at a time, on the graph as the earlier merges left it, so that no merge closes a cycle
    for key in [k for k, m in _matmul_groups(p.values).items() if len(m) >= MIN_GROUP]:
        members = _matmul_groups(p.values).get(key, [])
        users = _users(p.values)
        chosen, tainted = [], set()
        for m in members:                      # in program order: only earlier members can be ancestors
            if m.args[0].id in tainted:
                continue
            chosen.append(m)
            tainted.add(m.id)
            stack = [m]
            while stack:                       # mark everything that depends on this member's result
                u = stack.pop()
                for w in users[u.id]:
                    if w.id not in tainted:
                        tainted.add(w.id)
                        stack.append(w)
        if len(chosen) < MIN_GROUP:
            continue
        rows = chosen[0].args[0].shape[0]
        first = chosen[0]
        stacked = Value(Concat(0), tuple(m.args[0] for m in chosen),
                        (rows * len(chosen), first.args[0].shape[1]), first.args[0].dtype, first.src)
        big = Value(MatMul(False, first.op.tb), (stacked, first.args[1]),
                    (rows * len(chosen), first.shape[1]), first.dtype, first.src)
        new, sub = [stacked, big], {}
        for i, m in enumerate(chosen):
            piece = Value(Slice(0, i * rows, rows), (big,), m.shape, m.dtype, m.src)
            new.append(piece)
            sub[m.id] = piece
        p.values = p.values + new
        p = rewire(p, sub)
        p.values = _toposort(p.values)
        p = prune(p)
    return p


def sum_of_gemms(prog):
    p = clone(prog)
    users = _users(p.values)
    rooted = {v.id for v in p.outputs + p.input_grads + p.param_grads if v is not None}

    def private(a):                  # used by this sum alone: safe to fold away
        return len(users[a.id]) == 1 and a.id not in rooted

    sub, inserted = {}, []
    for v in list(p.values):
        if not isinstance(v.op, AddN):
            continue
        gemms = [a for a in v.args if isinstance(a.op, MatMul) and a.op.ta and not a.op.tb and private(a)
                 and len(a.args[0].shape) == 2 and len(a.args[1].shape) == 2]
        sums = [a for a in v.args if isinstance(a.op, Sum) and a.op.axes in (0, (0,)) and not a.op.keepdims
                and len(a.args[0].shape) == 2 and private(a)]
        parts = [a for a in v.args if a not in gemms and a not in sums]
        if len(gemms) >= MIN_GROUP:
            A = Value(Concat(0), tuple(a.args[0] for a in gemms), _rows(gemms, 0), gemms[0].args[0].dtype, v.src)
            B = Value(Concat(0), tuple(a.args[1] for a in gemms), _rows(gemms, 1), gemms[0].args[1].dtype, v.src)
            parts.append(Value(MatMul(True, False), (A, B), v.shape, v.dtype, v.src))
            inserted += [A, B, parts[-1]]
        else:
            parts += gemms
        if len(sums) >= MIN_GROUP:
            X = Value(Concat(0), tuple(a.args[0] for a in sums), _rows(sums, 0), sums[0].args[0].dtype, v.src)
            parts.append(Value(Sum(0, False), (X,), v.shape, v.dtype, v.src))
            inserted += [X, parts[-1]]
        else:
            parts += sums
        if len(parts) != len(v.args):
            v.args = tuple(parts)
    if not inserted:
        return p
    for v in p.values:               # a one-argument sum is its argument
        if isinstance(v.op, AddN) and len(v.args) == 1:
            sub[v.id] = v.args[0]
    p.values = p.values + inserted
    p = rewire(p, sub)
    p.values = _toposort(p.values)
    return prune(p)


def _rows(vals, k):
    shapes = [a.args[k].shape for a in vals]
    return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
