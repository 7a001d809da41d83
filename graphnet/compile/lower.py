"""Lowering: a module applied to inputs of one signature becomes primitive IR, then its joint gradient."""
from __future__ import annotations

from ..ops import Arg, Param
from .autodiff import differentiate, is_float
from .ir import Builder, Program, Value, collector_paused  # noqa: F401  (Program, Value: read from here too)


def lower(module, signature, wrt_inputs=None, seeded=None) -> Program:
    """IR of ``module`` on inputs of ``signature`` [(shape, dtype)], with gradients of float inputs and params.

    ``wrt_inputs``: which inputs want a gradient (default: every float input); ``seeded``: which outputs
    backward starts from (default: every float output).
    """
    with collector_paused():
        return _lower(module, signature, wrt_inputs, seeded)


def _lower(module, signature, wrt_inputs, seeded):
    b = Builder()
    args = [b(Arg(i, shape, dtype)) for i, (shape, dtype) in enumerate(signature)]
    out = module.lower(b, *args)
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    params = [(v.op.param, v) for v in b.values if isinstance(v.op, Param)]
    if wrt_inputs is None:
        wrt_inputs = [is_float(a) for a in args]
    wrt = [a for a, w in zip(args, wrt_inputs) if w] + [v for _, v in params]
    seeds, grads = differentiate(b, outputs, wrt, seeded)
    by_id = dict(zip([w.id for w in wrt], grads))
    return Program(values=b.values, args=args, outputs=outputs, seeds=seeds, params=params,
                   input_grads=[by_id.get(a.id) if w else None for a, w in zip(args, wrt_inputs)],
                   param_grads=[by_id.get(v.id) for _, v in params])
