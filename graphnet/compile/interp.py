"""The reference interpreter (level 0): one loop over the program's values in topological order."""
from __future__ import annotations

import numpy as np

from ..debug import check_finite_enabled
from ..errors import GraphnetError, InputError, node_error
from ..ops import Arg, Param, Seed
from ..ops.leaf import GRAD_LOCK


def run_values(values, env):
    """Compute each value from its arguments into ``env`` (id -> array); errors name the graph node."""
    finite = check_finite_enabled()
    for v in values:
        if v.id in env:
            continue
        op = v.op
        if isinstance(op, Param):
            env[v.id] = op.param.data
            continue
        if isinstance(op, (Arg, Seed)):
            raise InputError(f"no value bound for {op!r}")
        try:
            env[v.id] = out = op.forward(*[env[a.id] for a in v.args])
            if finite and not np.all(np.isfinite(out)):
                bad = "NaN" if np.isnan(out).any() else "Inf"
                raise node_error(InputError, f"{op!r} produced {bad} (gn.debug(check_finite=True))", v.src)
        except GraphnetError:
            raise
        except Exception as e:          # numpy's own error: say which node of the user's graph failed
            shapes = ", ".join(str(tuple(env[a.id].shape)) for a in v.args)
            raise node_error(InputError, f"while executing {op!r} on inputs of shapes ({shapes}): "
                                         f"{type(e).__name__}: {e}", v.src) from e


class Interpreter:
    """Runs a Program value by value, keeping every forward value for backward."""

    def __init__(self, program):
        self.program = program
        self.fwd = program.forward_values()
        self.bwd = program.backward_values()

    def forward(self, arrays):
        p = self.program
        env = {a.id: x for a, x in zip(p.args, arrays)}
        run_values(self.fwd, env)
        return [env[o.id] for o in p.outputs], env

    def backward(self, env, grads):
        p = self.program
        env = dict(env)
        for s, g in zip(p.seeds, grads):
            if s is not None:
                env[s.id] = g
        run_values(self.bwd, env)
        with GRAD_LOCK:
            for (param, _), g in zip(p.params, p.param_grads):
                if g is not None:
                    param.grad += env[g.id]
        out = []
        for a, g in zip(p.args, p.input_grads):
            if g is not None:
                out.append(np.array(env[g.id], copy=True))
            elif a.dtype.kind == "f":
                out.append(np.zeros(a.shape, a.dtype))
            else:
                out.append(None)
        return out

    @property
    def code(self):
        lines = ["# forward"] + [repr(v) for v in self.fwd] + ["# backward"] + [repr(v) for v in self.bwd]
        return "\n".join(lines)
