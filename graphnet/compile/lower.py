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


def lower(module, signature, wrt_inputs=None, seeded=None) -> Program:
    """IR of ``module`` on inputs of ``signature`` [(shape, dtype)], with gradients of float inputs and params.

    ``wrt_inputs``: which inputs want a gradient (default: every float input); ``seeded``: which outputs
    backward starts from (default: every float output).
    """
    b = Builder()
    args = [b(Arg(i, shape, dtype)) for i, (shape, dtype) in enumerate(signature)]
    out = module.lower(b, *args)
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    params = [(v.op.param, v) for v in b.values if isinstance(v.op, Param)]
    if wrt_inputs is None:
        wrt_inputs = [is_float(a) for a in args]
    wrt = [a for a, w in zip(args, wrt_inputs) if w] + [v for _, v in params]
    seeds, grads = differentiate(b, outputs, wrt, seeded)
    by_id = dict(zip([id(w) for w in wrt], grads))
    return Program(values=b.values, args=args, outputs=outputs, seeds=seeds, params=params,
                   input_grads=[by_id.get(id(a)) if w else None for a, w in zip(args, wrt_inputs)],
                   param_grads=[by_id.get(id(v)) for _, v in params])


__all__ = ["Program", "lower", "Value"]


def clone(prog: Program) -> Program:
    """A copy of the program with fresh Value objects (passes mutate the copy, never their input)."""
    m = {}
    for v in prog.values:
        nv = Value.__new__(Value)
        nv.op, nv.shape, nv.dtype, nv.src, nv.id = v.op, v.shape, v.dtype, v.src, v.id
        nv.args = tuple(m[id(a)] for a in v.args)
        m[id(v)] = nv

    def f(v):
        return None if v is None else m[id(v)]
    return Program(values=[m[id(v)] for v in prog.values], args=[f(a) for a in prog.args],
                   outputs=[f(o) for o in prog.outputs], seeds=[f(s) for s in prog.seeds],
                   params=[(p, f(v)) for p, v in prog.params], input_grads=[f(g) for g in prog.input_grads],
                   param_grads=[f(g) for g in prog.param_grads], meta=dict(prog.meta))


def substitute(prog: Program, sub: dict) -> Program:
    """Rewire every use of a value in ``sub`` (Value.id -> Value) to its replacement, then drop dead values."""
    return prune(rewire(prog, sub))


def rewire(prog: Program, sub: dict) -> Program:
    """Every use of a value in ``sub`` (Value.id -> Value) now uses its replacement (in place)."""
    def r(v):
        while v is not None and v.id in sub:
            v = sub[v.id]
        return v
    for v in prog.values:
        v.args = tuple(r(a) for a in v.args)
    prog.outputs = [r(o) for o in prog.outputs]
    prog.input_grads = [r(g) for g in prog.input_grads]
    prog.param_grads = [r(g) for g in prog.param_grads]
    return prog


def roots(prog: Program) -> list:
    return [v for v in prog.outputs + prog.input_grads + prog.param_grads if v is not None]


def prune(prog: Program) -> Program:
    """Keep only values that some output or wanted gradient needs (and impure ones that ran before)."""
    # arguments and parameters stay even when no output needs them: the program's signature names them
    keep = _ancestors(prog.values, roots(prog) + prog.args + [v for _, v in prog.params]
                      + [v for v in prog.values if not v.op.pure])
    keep_ids = {id(v) for v in keep}
    prog.values = keep
    prog.seeds = [s if s is not None and id(s) in keep_ids else None for s in prog.seeds]
    return prog
