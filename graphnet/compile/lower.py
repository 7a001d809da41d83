"""Lowering: a module applied to inputs of one signature becomes primitive IR, then its joint gradient."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ops import Arg, Param
from .autodiff import differentiate, is_float
from .ir import Builder, Value


@dataclass
class Program:
    """The joint forward+backward IR of one module for one input signature."""
    values: list                    # every value, in a topological order
    args: list                      # one Arg value per graph input
    outputs: list                   # the graph's outputs
    seeds: list                     # one Seed per output (None for a non-float output)
    params: list                    # [(Parameter, Param value)]
    input_grads: list               # per input: its gradient value, or None
    param_grads: list               # per entry of params: its gradient value, or None
    meta: dict = field(default_factory=dict)

    def forward_values(self):
        """The values the outputs need, in order."""
        return _ancestors(self.values, self.outputs)

    def backward_values(self):
        """The values the gradients need that forward did not compute, in order."""
        fwd = {id(v) for v in self.forward_values()}
        targets = [g for g in self.input_grads + self.param_grads if g is not None]
        return [v for v in _ancestors(self.values, targets) if id(v) not in fwd]


def _ancestors(values, roots):
    need = {id(r) for r in roots}
    for v in reversed(values):
        if id(v) in need:
            need.update(id(a) for a in v.args)
    return [v for v in values if id(v) in need]


def lower(module, signature, wrt_inputs=None) -> Program:
    """IR of ``module`` on inputs of ``signature`` [(shape, dtype)], with gradients of float inputs and params.

    ``wrt_inputs``: which inputs want a gradient (default: every float input).
    """
    b = Builder()
    args = [b(Arg(i, shape, dtype)) for i, (shape, dtype) in enumerate(signature)]
    out = module.lower(b, *args)
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    params = [(v.op.param, v) for v in b.values if isinstance(v.op, Param)]
    if wrt_inputs is None:
        wrt_inputs = [is_float(a) for a in args]
    wrt = [a for a, w in zip(args, wrt_inputs) if w] + [v for _, v in params]
    seeds, grads = differentiate(b, outputs, wrt)
    by_id = dict(zip([id(w) for w in wrt], grads))
    return Program(values=b.values, args=args, outputs=outputs, seeds=seeds, params=params,
                   input_grads=[by_id.get(id(a)) if w else None for a, w in zip(args, wrt_inputs)],
                   param_grads=[by_id.get(id(v)) for _, v in params])


__all__ = ["Program", "lower", "Value"]
