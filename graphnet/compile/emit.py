"""Emit: a program becomes two straight-line Python functions over numpy calls, compiled once.

``forward(a0, a1, ...)`` returns (outputs, saved) and ``backward(saved, s0, s1, ...)`` returns the input
gradients, after adding each parameter's gradient into its ``.grad``. Each value is one line; a line->value
map lets a failure inside the generated code name the graph node and the file:line that built it.
"""
from __future__ import annotations

import itertools
import numpy as np

from ..errors import GraphnetError, InputError, node_error
from ..ops import Arg, Param, Seed

_count = itertools.count()


class Emitted:
    """A compiled plan for one signature: the generated source, its functions, and statistics."""

    def __init__(self, prog, stats=None, memory=None, train=False):
        self.program = prog
        self.stats = dict(stats or {})
        self.train = train
        self._emit(prog, memory or {})

    def _emit(self, prog, memory):
        fwd, bwd = prog.forward_values(), prog.backward_values()
        self.fwd, self.bwd = fwd, bwd
        names, env, lines, linemap = {}, {"np": np}, [], {}
        inplace = memory.get("inplace", {})
        for i, a in enumerate(prog.args):
            names[id(a)] = f"a{i}"
        for i, s in enumerate(prog.seeds):
            if s is not None:
                names[id(s)] = f"s{i}"
        pidx = {id(v): j for j, (_, v) in enumerate(prog.params)}
        for j, (p, _) in enumerate(prog.params):
            env[f"P{j}"] = p

        def name(v):
            return names[id(v)]

        def body(values, out):
            for v in values:
                op = v.op
                if isinstance(op, (Arg, Seed)):
                    continue
                var = names.setdefault(id(v), f"v{v.id}")
                if isinstance(op, Param):
                    code = f"P{pidx[id(v)]}.data"
                else:
                    args = [name(a) for a in v.args]
                    ex = op.expr(*args)
                    target = inplace.get(id(v))
                    if target is not None and hasattr(op, "expr_out"):
                        ex = op.expr_out(name(target), *args)
                    if ex is None:
                        k = f"op{len(env)}"
                        env[k] = op
                        ex = f"{k}.forward({', '.join(args)})"
                    code = ex
                out.append((f"{var} = {code}", v))

        f_lines, b_lines = [], []
        body(fwd, f_lines)
        read_later = {id(a) for u in bwd for a in u.args}
        read_later.update(id(g) for g in prog.input_grads + prog.param_grads if g is not None)
        saved = [v for v in fwd if id(v) in read_later and not isinstance(v.op, Arg)]
        saved_args = [a for a in prog.args if id(a) in read_later]
        body(bwd, b_lines)

        src = [f"def forward({', '.join(f'a{i}' for i in range(len(prog.args)))}):"]
        for text, v in f_lines:
            linemap[len(src) + 1] = v
            src.append("    " + text)
        outs = ", ".join(name(o) for o in prog.outputs)
        saved = saved_args + saved
        sv = ", ".join(name(v) for v in saved)
        src.append(f"    return ({outs},), ({sv}{',' if saved else ''})")
        seeds = ", ".join(f"s{i}" for i in range(len(prog.seeds)))
        src.append(f"def backward(saved{', ' if seeds else ''}{seeds}):")
        if saved:
            src.append(f"    ({sv},) = saved")
        for text, v in b_lines:
            linemap[len(src) + 1] = v
            src.append("    " + text)
        for j, g in enumerate(prog.param_grads):
            if g is not None:
                linemap[len(src) + 1] = g
                src.append(f"    P{j}.grad += {name(g)}")
        rets = []
        for a, g in zip(prog.args, prog.input_grads):
            if g is not None:
                rets.append(name(g))
            elif a.dtype.kind == "f":
                k = f"z{len(env)}"
                env[k] = (a.shape, a.dtype)
                rets.append(f"np.zeros(*{k})")
            else:
                rets.append("None")
        src.append(f"    return [{', '.join(rets)}]")
        if self.train:
            # one function: forward, then backward, parameter gradients assigned (no zeroing pass needed)
            src.append(f"def step({', '.join(f'a{i}' for i in range(len(prog.args)))}):")
            for text, v in f_lines + b_lines:
                linemap[len(src) + 1] = v
                src.append("    " + text)
            for j, g in enumerate(prog.param_grads):
                linemap[len(src) + 1] = g
                src.append(f"    P{j}.grad[...] = {name(g) if g is not None else 0}")
            src.append(f"    return {name(prog.outputs[0])}")
        self.code = "\n".join(src) + "\n"
        self.filename = f"<graphnet plan {next(_count)}>"
        self.linemap = linemap
        exec(compile(self.code, self.filename, "exec"), env)
        self._forward, self._backward = env["forward"], env["backward"]
        self._step = env.get("step")
        self._copy_in = [g is not None and _is_view(g) for g in prog.input_grads]

    # --- running -------------------------------------------------------------------------------------------
    def forward(self, arrays):
        try:
            outs, saved = self._forward(*arrays)
        except GraphnetError:
            raise
        except Exception as e:
            raise self._wrap(e) from e
        return [np.asarray(o) for o in outs], saved

    def backward(self, saved, grads):
        try:
            res = self._backward(saved, *grads)
        except GraphnetError:
            raise
        except Exception as e:
            raise self._wrap(e) from e
        return [np.array(r, copy=True) if c else (None if r is None else np.asarray(r))
                for r, c in zip(res, self._copy_in)]

    def step(self, arrays):
        try:
            return self._step(*arrays)
        except GraphnetError:
            raise
        except Exception as e:
            raise self._wrap(e) from e

    def _wrap(self, e):
        tb, v = e.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                v = self.linemap.get(tb.tb_lineno, v)
            tb = tb.tb_next
        if v is None:
            return e
        return node_error(InputError, f"while executing {v.op!r} (plan line: "
                                      f"{self.code.splitlines()[_line_of(self.linemap, v) - 1].strip()}): "
                                      f"{type(e).__name__}: {e}", v.src)


def _line_of(linemap, v):
    for k, u in linemap.items():
        if u is v:
            return k
    return 1


def _is_view(v):
    """Whether the value may share memory with an input, a seed or another value."""
    return getattr(v.op, "view", False) or isinstance(v.op, (Arg, Seed, Param))
