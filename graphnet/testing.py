"""Gradient checking: analytic gradients of a compiled module against central finite differences."""
from __future__ import annotations

import numpy as np




def rel_error(a, n) -> float:
    """max |a - n| relative to the larger of the two magnitudes (1 for tiny gradients)."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), 1.0)
    return float(np.abs(a - n).max(initial=0.0) / scale)


def gradcheck(module, arrays, level: int = 0, eps: float = 1e-6, seed: int = 0, check_params: bool = True):
    """Compare ``module``'s gradients with central differences of L = sum_i <g_i, out_i>, random g_i.

    The module is switched to float64. Returns {name: relative error} for every float input and parameter.
    """
    from .compile import compile
    module.float64()
    plan = compile(module, level=level)
    arrays = [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in arrays]
    outs = plan.forward(*arrays)
    outs = outs if isinstance(outs, list) else [outs]
    rng = np.random.default_rng(seed)
    gs = [rng.standard_normal(np.shape(o)) for o in outs]
    params = module.parameters() if check_params else []
    for p in params:
        p.grad[...] = 0
    gin = plan.backward(*gs)
    gin = gin if isinstance(gin, list) else [gin]
    analytic = {f"input {i}": g for i, g in enumerate(gin) if arrays[i].dtype.kind == "f"}
    analytic.update({f"param {j} ({p.name})": p.grad.copy() for j, p in enumerate(params)})

    def loss():
        o = plan.forward(*arrays)
        o = o if isinstance(o, list) else [o]
        return sum(float(np.sum(g * np.asarray(v, np.float64))) for g, v in zip(gs, o))

    numeric = {}
    targets = [(f"input {i}", a) for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    targets += [(f"param {j} ({p.name})", p.data) for j, p in enumerate(params)]
    for name, x in targets:
        num = np.zeros(x.shape)
        flat = x.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            up = loss()
            flat[k] = old - eps
            down = loss()
            flat[k] = old
            num.reshape(-1)[k] = (up - down) / (2 * eps)
        numeric[name] = num
    return {k: rel_error(analytic[k], numeric[k]) for k in numeric}
