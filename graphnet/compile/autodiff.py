"""Reverse-mode differentiation of IR into the same IR: one joint forward+backward graph."""
from __future__ import annotations

from ..ops import AddN, Seed


def is_float(v) -> bool:
    return v.dtype is not None and v.dtype.kind == "f"


def differentiate(b, outputs, wrt, seeded=None):
    """Build the backward graph on ``b``.

    ``seeded``: which outputs receive a gradient (default: every float one).
    Returns (seeds, grads): one Seed value per output (the incoming gradient, None for a non-float output)
    and, for each value in ``wrt``, its gradient value (None where no path leads from it to an output).
    Contributions to one value are summed once, by a single AddN.
    """
    forward = list(b.values)
    wanted = {w.id for w in wrt if is_float(w)}
    needs = set(wanted)                       # ids of values that depend on something in wrt
    for v in forward:
        if v.id not in needs and is_float(v) and any(a.id in needs for a in v.args):
            needs.add(v.id)

    seeds, contrib = [], {}
    for i, o in enumerate(outputs):
        s = b(Seed(i, o.shape, o.dtype)) if is_float(o) and (seeded is None or seeded[i]) else None
        seeds.append(s)
        if s is not None and o.id in needs:
            contrib.setdefault(o.id, []).append(s)

    total = {}
    for v in reversed(forward):
        parts = contrib.pop(v.id, None)
        if parts is None:
            continue
        b.push(v.src)
        try:
            g = parts[0] if len(parts) == 1 else b(AddN(), *parts)
            total[v.id] = g
            if not v.args:
                continue
            grads = v.op.vjp(b, g, v, *v.args)
        finally:
            b.pop()
        for a, ga in zip(v.args, grads):
            if ga is not None and a.id in needs:
                contrib.setdefault(a.id, []).append(ga)
    return seeds, [total.get(w.id) for w in wrt]
