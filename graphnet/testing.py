"""Gradient checking: analytic gradients of a compiled module against central finite differences."""
from __future__ import annotations

import numpy as np


def rel_error(a, n) -> float:
    """max |a - n| relative to the larger of the two magnitudes (1 for tiny gradients)."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), 1.0)
    return float(np.abs(a - n).max(initial=0.0) / scale)


def gradcheck(module, arrays, level: int = 0, eps: float = 1e-6, seed: int = 0, check_params: bool = True,
              reseed: int | None = None):
    """Compare ``module``'s gradients with central differences of L = sum_i <g_i, out_i>, random g_i.

    The module is switched to float64. Returns {name: relative error} for every float input and parameter.
    ``reseed``: for random modules (Dropout while training), ``gn.manual_seed(reseed)`` before every run, so
    that every run draws the same mask and L is a deterministic function of the inputs.
    """
    from .compile import compile
    from .module import manual_seed

    def run(*xs):
        if reseed is not None:
            manual_seed(reseed)
        o = plan.forward(*xs)
        return o if isinstance(o, list) else [o]

    module.float64()
    plan = compile(module, level=level)
    # copies: finite differences perturb these in place, and one array given twice must not move twice
    arrays = [np.array(a, np.float64 if np.asarray(a).dtype.kind == "f" else None, copy=True) for a in arrays]
    outs = run(*arrays)
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
        return sum(float(np.sum(g * np.asarray(v, np.float64))) for g, v in zip(gs, run(*arrays)))

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


def lowered_ops(module, arrays) -> set:
    """The primitive op classes in ``module``'s joint forward+backward program for these input arrays."""
    from .compile.lower import lower
    from .gmodule import gModule
    from .node import Input
    arrays = [np.asarray(a) for a in arrays]
    if isinstance(module, gModule):
        graph = module
    else:
        xs = [Input(a.shape) for a in arrays]
        y = module(*xs)
        graph = gModule(xs, list(y) if y.is_multi else [y])
    prog = lower(graph, [(a.shape, a.dtype) for a in arrays])
    return {type(v.op) for v in prog.values}
