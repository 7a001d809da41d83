"""A weight used transposed by several products is transposed once (and copied once, when many read it)."""
from ...ops import Contiguous, MatMul, Transpose
from ..ir import Value, clone, finish

# Products that read one transposed weight before it pays to copy it contiguous once. BLAS packs a transposed
# right operand more slowly than a plain one: about 0.3-0.4 ns more per weight entry and product (float32, up to
# 2x a 16-row product), while the transposing copy costs 0.6-7 ns per entry once. An unrolled recurrence reads
# its weight once per time step, far above this.
COPY_FROM_USES = 8


def shared_transposes(prog):
    """x_i @ W.T for several x_i -> one view W.T, made once, that every product reads (no transposing per use,
    as a weight used at every time step would be); read by ``COPY_FROM_USES`` products or more, a contiguous
    copy of W.T instead."""
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
        if len(users) >= COPY_FROM_USES:
            wt = Value(Contiguous(), (wt,), wt.shape, wt.dtype, w.src)
            new.append(wt)
        for u in users:
            u.op, u.args = MatMul(False, False), (u.args[0], wt)
        changed = True
    return finish(p, new, {}) if changed else p
