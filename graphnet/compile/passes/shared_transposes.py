"""A weight used transposed by several products is transposed once."""
from ...ops import MatMul, Transpose
from ..ir import Value, clone, finish


def shared_transposes(prog):
    """x_i @ W.T for several x_i -> one view W.T, made once, that every product reads (no transposing per use,
    as a weight used at every time step would be)."""
    p = clone(prog)
    uses = {}
    for v in p.values:
        if isinstance(v.op, MatMul) and v.op.tb and not v.op.ta and len(v.args[1].shape) == 2:
            uses.setdefault(v.args[1].id, []).append(v)
    new, changed = [], False
    for users in uses.values():
        if len(users) < 2:
            continue
        w = users[0].args[1]
        wt = Value(Transpose((1, 0)), (w,), (w.shape[1], w.shape[0]), w.dtype, w.src)
        new.append(wt)
        for u in users:
            u.op, u.args = MatMul(False, False), (u.args[0], wt)
        changed = True
    return finish(p, new, {}) if changed else p
