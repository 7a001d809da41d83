"""Emit: a program becomes two straight-line Python functions over numpy calls, compiled once.

``forward(a0, a1, ...)`` returns (outputs, saved) and ``backward(saved, s0, s1, ...)`` returns the input
gradients, after adding each parameter's gradient into its ``.grad``. Each value is one line; a line->value
map lets a failure inside the generated code name the graph node and the file:line that built it.
"""
from __future__ import annotations

import itertools
import re
import numpy as np

from ..errors import GraphnetError, InputError, node_error
from ..ops import Arg, Const, Param, Seed
from .memory import plan_memory

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
        env = {"np": np}
        pidx = {id(v): j for j, (_, v) in enumerate(prog.params)}
        for j, (p, _) in enumerate(prog.params):
            env[f"P{j}"] = p
        exprs, outs = {}, {}
        for v in fwd + bwd:
            exprs[id(v)] = self._expr_of(v, env, pidx)
            outs[id(v)] = self._out_of(v, env)

        read_later = {id(a) for u in bwd for a in u.args}
        grads = [g for g in prog.input_grads + prog.param_grads if g is not None]
        read_later.update(id(g) for g in grads)
        saved = [a for a in prog.args if id(a) in read_later]
        saved += [v for v in fwd if id(v) in read_later and not isinstance(v.op, Arg)]
        # constants: plan globals, named once (no line, no call per run)
        consts = {id(v): f"c{j}" for j, v in enumerate(u for u in fwd + bwd if isinstance(u.op, Const))}
        for v in fwd + bwd:
            if id(v) in consts:
                env[consts[id(v)]] = v.op.value
                exprs[id(v)] = outs[id(v)] = None
        saved = [v for v in saved if id(v) not in consts]
        arg_names = {id(a): f"a{i}" for i, a in enumerate(prog.args)}
        arg_names.update(consts)
        seed_names = {id(s): f"s{i}" for i, s in enumerate(prog.seeds) if s is not None}

        src, linemap = [], {}
        self.schedule = []        # (function, value, variable name): the order values run in, and their buffers

        self.arrays_bytes, self.layouts = {}, {}

        def function(header, values, preset, keep, tail, prelude=(), fresh=()):
            """Emit one function: ``values`` in order, in arrays laid out by ``plan_memory`` (keep: live to the
            end; fresh: handed to the caller, so never in a preallocated array)."""
            fn = header.split("(")[0][4:]
            lay = plan_memory(values, preset, keep, fresh, exprs, outs, prefix=f"_{fn[0].upper()}")
            for name, (shape, dtype) in lay.arrays.items():
                env[name] = np.empty(shape, dtype)
            for name, (base, view) in lay.views.items():
                env[name] = view(env[base])
            for name, (base, op) in lay.derived.items():
                env[name] = op.forward(env[base])
            self.arrays_bytes[fn] = lay.nbytes()
            self.layouts[fn] = {"arrays": len(lay.arrays), "bytes": lay.nbytes(), "in_place_writes": lay.in_place,
                                "stacks_written_in_place": lay.stacks_in_place}
            names = lay.names
            self.schedule.extend((fn, v, lay.buffer[id(v)]) for _, v in lay.lines)
            src.append(header)
            src.extend("    " + line for line in prelude)
            for line, v in lay.lines:
                if line is None:
                    continue
                linemap[len(src) + 1] = v
                src.append("    " + line)
            for line, v in tail(lambda u: names[id(u)]):
                if v is not None:
                    linemap[len(src) + 1] = v
                src.append("    " + line)

        n_args = ", ".join(f"a{i}" for i in range(len(prog.args)))
        function(f"def forward({n_args}):", fwd, arg_names, prog.outputs + saved,
                 lambda nm: [(f"return ({', '.join(nm(o) for o in prog.outputs)},), "
                              f"({''.join(nm(v) + ', ' for v in saved)})", None)], fresh=prog.outputs)

        def grad_tail(assign):
            def tail(nm):
                out = []
                for j, g in enumerate(prog.param_grads):
                    if g is not None:
                        out.append((f"P{j}.grad {'[...] =' if assign else '+='} {nm(g)}", g))
                    elif assign:
                        out.append((f"P{j}.grad[...] = 0", None))
                return out
            return tail

        def backward_tail(nm):
            rets = []
            for a, g in zip(prog.args, prog.input_grads):
                if g is not None:
                    rets.append(nm(g))
                elif a.dtype.kind == "f":
                    k = f"z{len(env)}"
                    env[k] = (a.shape, a.dtype)
                    rets.append(f"np.zeros(*{k})")
                else:
                    rets.append("None")
            return grad_tail(False)(nm) + [(f"return [{', '.join(rets)}]", None)]

        preset = {**seed_names, **consts}
        saved_names = {id(v): f"w{i}" for i, v in enumerate(saved)}
        preset.update(saved_names)
        seeds = "".join(f", s{i}" for i in range(len(prog.seeds)))
        unpack = [f"({''.join(saved_names[id(v)] + ', ' for v in saved)}) = saved"] if saved else []
        function(f"def backward(saved{seeds}):", bwd, preset, grads, backward_tail, unpack,
                 fresh=[g for g in prog.input_grads if g is not None])
        if self.train:
            # one function: forward, then backward, parameter gradients assigned (no zeroing pass needed);
            # the seeds (d loss / d loss) are ones
            ones = {}
            for i, sd in enumerate(prog.seeds):
                if sd is not None:
                    env[f"_one{i}"] = np.ones(sd.shape, sd.dtype)
                    ones[id(sd)] = f"_one{i}"
            returned = prog.outputs if len(prog.outputs) > 1 else prog.outputs[:1]
            function(f"def step({n_args}):", fwd + bwd, {**arg_names, **ones}, grads + returned,
                     lambda nm: grad_tail(True)(nm) + [(
                         f"return ({', '.join(nm(o) for o in returned)},)" if len(returned) > 1
                         else f"return {nm(returned[0])}", None)],
                     fresh=returned)
        self.code = "\n".join(src) + "\n"
        self.linemap = linemap
        self.filename = f"<graphnet plan {next(_count)}>"
        exec(compile(_bind_globals(_direct_calls(self.code, env), env), self.filename, "exec"), env)
        self._forward, self._backward = env["forward"], env["backward"]
        self._step = env.get("step")
        self._copy_in = [g is not None and _is_view(g) for g in prog.input_grads]
        self.stats.update(_memory_stats(fwd, bwd, saved, prog))
        self.stats["bytes_preallocated"] = dict(self.arrays_bytes)
        self.stats["memory"] = dict(self.layouts)
        self.stats["batched_groups"] = prog.meta.get("batched_groups", 0)

    @staticmethod
    def _expr_of(v, env, pidx):
        op = v.op
        if isinstance(op, Param):
            return lambda args: f"P{pidx[id(v)]}.data"
        if isinstance(op, (Arg, Seed)):
            return None

        def make(args):
            ex = op.expr(*args)
            if ex is None:
                k = f"op{len(env)}"
                env[k] = op
                ex = f"{k}.forward({', '.join(args)})"
            return ex
        return make

    @staticmethod
    def _out_of(v, env):
        """A builder of the statements writing v into a given array, or None when its op has no such form."""
        op = v.op
        if isinstance(op, (Arg, Seed, Param)) or v.shape is None:
            return None
        for name, obj in getattr(op, "plan_globals", dict)().items():   # a generated kernel it calls
            env.setdefault(name, obj)
        dtype = np.dtype(v.dtype)

        def k(c):                      # a constant as a 0-d array of v's dtype, named once per plan
            name = f"k_{dtype.name}_{repr(float(c)).replace('.', 'p').replace('-', 'm')}"
            env.setdefault(name, np.asarray(c, dtype))
            return name
        try:
            if op.expr_out("o", k, *["x"] * len(v.args)) is None:
                return None
        except (TypeError, ValueError):
            return None
        return lambda out, args: op.expr_out(out, k, *args)

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


def _direct_calls(code, env):
    """The code with ``np.f(`` calls bound to globals ``_np_f`` (one lookup instead of two per call; lines keep
    their numbers, so the line -> value map still holds). ``plan.code`` shows the readable form."""
    def bind(m):
        env.setdefault(f"_np_{m.group(1)}", getattr(np, m.group(1)))
        return f"_np_{m.group(1)}("
    return re.sub(r"\bnp\.([A-Za-z_]\w*)\(", bind, code)


def _bind_globals(code, env):
    """Each function takes the plan's globals it reads (arrays, views, constants, numpy functions) as keyword
    defaults, bound once when it is defined: local lookups in the hot path instead of global ones. Headers stay
    one line each, so line numbers hold."""
    lines = code.split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("def ")] + [len(lines)]
    for i, j in zip(starts, starts[1:]):
        used = set(re.findall(r"\b[A-Za-z_]\w*\b", "\n".join(lines[i + 1:j])))
        names = sorted(n for n in used if n in env and not n.startswith("__"))
        if not names:
            continue
        head = lines[i]
        params = head[head.index("(") + 1:head.rindex(")")]
        binds = ", ".join(f"{n}={n}" for n in names)
        lines[i] = f"{head[:head.index('(')]}({params + ', ' if params else ''}*, {binds}):"
    return "\n".join(lines)


def _memory_stats(fwd, bwd, saved, prog):
    """Bytes: one buffer per value (views and inputs excluded) vs the peak live at once under this plan."""
    def nbytes(v):
        if _is_view(v) or v.shape is None:
            return 0
        n = v.dtype.itemsize
        for d in v.shape:
            n *= d
        return n
    order = fwd + bwd
    root = {}
    for v in order:                            # a view keeps its base's buffer alive
        root[id(v)] = root.get(id(v.args[0]), id(v.args[0])) if getattr(v.op, "view", False) and v.args else id(v)
    end = {}
    for i, v in enumerate(order):
        for a in v.args:
            end[root.get(id(a), id(a))] = i
    for v in prog.outputs + saved:
        end[root.get(id(v), id(v))] = max(end.get(root.get(id(v), id(v)), 0), len(fwd) - 1)
    for g in prog.input_grads + prog.param_grads:
        if g is not None:
            end[root.get(id(g), id(g))] = len(order)
    live, peak, delta = 0, 0, [0] * (len(order) + 2)
    for i, v in enumerate(order):
        b = nbytes(v)
        if b:
            delta[i] += b
            delta[min(end.get(id(v), i), len(order)) + 1] -= b
    for d in delta:
        live += d
        peak = max(peak, live)
    naive = sum(nbytes(v) for v in order)
    return {"bytes_one_buffer_per_node": naive, "bytes_peak_planned": peak,
            "buffers": sum(1 for v in order if nbytes(v))}


def _line_of(linemap, v):
    for k, u in linemap.items():
        if u is v:
            return k
    return 1


def _is_view(v):
    """Whether the value may share memory with an input, a seed or another value."""
    return getattr(v.op, "view", False) or isinstance(v.op, (Arg, Seed, Param))
