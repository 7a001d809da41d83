"""Emit: a program becomes two straight-line Python functions over numpy calls, compiled once.

``forward(a0, a1, ...)`` returns (outputs, saved) and ``backward(saved, s0, s1, ...)`` returns the input
gradients, after adding each parameter's gradient into its ``.grad``. Each value is one line; a line->value
map lets a failure inside the generated code name the graph node and the file:line that built it.
"""
from __future__ import annotations

import itertools
import threading

import numpy as np

from ..errors import GraphnetError, InputError, node_error
from ..ops import Arg, Const, Param, Seed
from ..ops.leaf import GRAD_LOCK
from .memory import FRESH, WRITTEN, plan_memory
from .source import assemble

_count = itertools.count()


class Emitted:
    """A compiled plan for one signature: the generated source, its functions, and statistics."""

    def __init__(self, prog, stats=None, memory=None, train=False, template=None, order=None, reference=None,
                 run=True):
        """``reference``: function name -> a layout to take segments from (see ``plan_memory``); ``run``:
        False makes the code's text and arguments only (no Python compile, no arrays)."""
        self.program = prog
        self._order = order           # (positions of forward's values, of backward's), when known already
        self._stats, self._pending_stats = dict(stats or {}), None
        self.train = train
        self.n_bindings = 1           # sets of preallocated arrays made: this thread's, then one per thread
        self._emit(prog, memory or {}, template, reference or {}, run)

    @property
    def stats(self) -> dict:
        """Statistics of the plan; the memory ones computed on the first look (a new batch size needs none)."""
        if self._pending_stats is not None:
            pending, self._pending_stats = self._pending_stats, None
            self._stats.update(pending())
        self._stats["bindings"] = self.n_bindings
        return self._stats

    def record(self, **entries):
        """Add statistics without computing the pending ones."""
        self._stats.update(entries)

    def _emit(self, prog, memory, template, reference, run):
        if self._order is None:
            fwd, bwd = prog.forward_values(), prog.backward_values()
        else:
            fwd, bwd = ([prog.values[i] for i in positions] for positions in self._order)
        self.fwd, self.bwd = fwd, bwd
        env = {"np": np}
        pidx = {v.id: j for j, (_, v) in enumerate(prog.params)}
        for j, (p, _) in enumerate(prog.params):
            env[f"P{j}"] = p
        exprs, outs = {}, {}
        for v in fwd + bwd:
            exprs[v.id] = self._expr_of(v, env, pidx)
            outs[v.id] = self._out_of(v, env)

        read_later = {a.id for u in bwd for a in u.args}
        grads = [g for g in prog.input_grads + prog.param_grads if g is not None]
        read_later.update(g.id for g in grads)
        saved = [a for a in prog.args if a.id in read_later]
        saved += [v for v in fwd if v.id in read_later and not isinstance(v.op, Arg)]
        # constants: plan globals, named once (no line, no call per run)
        consts = {v.id: f"c{j}" for j, v in enumerate(u for u in fwd + bwd if isinstance(u.op, Const))}
        for v in fwd + bwd:
            if v.id in consts:
                env[consts[v.id]] = v.op.value
                exprs[v.id] = outs[v.id] = None
        saved = [v for v in saved if v.id not in consts]
        arg_names = {a.id: f"a{i}" for i, a in enumerate(prog.args)}
        arg_names.update(consts)
        seed_names = {s.id: f"s{i}" for i, s in enumerate(prog.seeds) if s is not None}

        functions, prelude = [], []   # the generated functions' lines; the arrays and views each binding makes
        env["_grad_lock"] = GRAD_LOCK
        self.schedule = []        # (function, value, variable name): the order values run in, and their buffers
        self.arrays_bytes, self.layouts, self.lays = {}, {}, {}

        def function(header, values, preset, keep, tail, unpack=(), fresh=()):
            """Emit one function: ``values`` in order, in arrays laid out by ``plan_memory`` (keep: live to the
            end; fresh: handed to the caller, so never in a preallocated array)."""
            fn = header.split("(")[0][4:]
            computed = {v.id for v in values if exprs.get(v.id) is not None}
            writable = {k for k in computed if outs.get(k) is not None}
            lay = plan_memory(values, preset, keep, fresh, computed, writable, prefix=f"_{fn[0].upper()}",
                              reference=reference.get(fn))
            self.lays[fn] = lay
            prelude.extend(f"{name} = np.empty({shape[0]}, '{np.dtype(dtype).name}')"
                           for name, (shape, dtype) in lay.arrays.items())
            prelude.extend(f"{name} = {view}" for name, (_, view) in lay.views.items())
            prelude.extend(f"{name} = {exprs_of_view(op, base)}" for name, (base, op) in lay.derived.items())
            self.arrays_bytes[fn] = lay.nbytes()
            self.layouts[fn] = {"arrays": len(lay.arrays), "bytes": lay.nbytes(), "in_place_writes": lay.in_place,
                                "stacks_written_in_place": lay.stacks_in_place}
            names = lay.names
            values_run = [v for v in lay.steps if not isinstance(v, list)]
            self.schedule.extend((fn, v, lay.buffer[v.id]) for v in values_run)
            lines = [(line, None) for line in unpack] + _lines(lay, exprs, outs)
            functions.append((header, lines + list(tail(lambda u: names[u.id]))))

        def exprs_of_view(op, base):
            ex = op.expr(base)
            if ex is None:
                k = f"op{len(env)}"
                env[k] = op
                ex = f"{k}.forward({base})"
            return ex

        n_args = ", ".join(f"a{i}" for i in range(len(prog.args)))
        if not self.train:            # a train step runs forward and backward as one function, below
            function(f"def forward({n_args}):", fwd, arg_names, prog.outputs + saved,
                     lambda nm: [(f"return ({', '.join(nm(o) for o in prog.outputs)},), "
                                  f"({''.join(nm(v) + ', ' for v in saved)})", None)], fresh=prog.outputs)

        def grad_tail(assign):
            def tail(nm):
                out = []
                for j, g in enumerate(prog.param_grads):
                    if g is not None:
                        out.append((f"    P{j}.grad {'[...] =' if assign else '+='} {nm(g)}", g))
                    elif assign:
                        out.append((f"    P{j}.grad[...] = 0", None))
                return [("with _grad_lock:", None)] + out if out else out
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
        saved_names = {v.id: f"w{i}" for i, v in enumerate(saved)}
        preset.update(saved_names)
        seeds = "".join(f", s{i}" for i in range(len(prog.seeds)))
        unpack = [f"({''.join(saved_names[v.id] + ', ' for v in saved)}) = saved"] if saved else []
        if not self.train:
            function(f"def backward(saved{seeds}):", bwd, preset, grads, backward_tail, unpack,
                     fresh=[g for g in prog.input_grads if g is not None])
        if self.train:
            # one function: forward, then backward, parameter gradients assigned (no zeroing pass needed);
            # the seeds (d loss / d loss) are ones
            ones = {}
            for i, sd in enumerate(prog.seeds):
                if sd is not None:
                    env[f"_one{i}"] = np.ones(sd.shape, sd.dtype)
                    ones[sd.id] = f"_one{i}"
            returned = prog.outputs if len(prog.outputs) > 1 else prog.outputs[:1]
            function(f"def step({n_args}):", fwd + bwd, {**arg_names, **ones}, grads + returned,
                     lambda nm: grad_tail(True)(nm) + [(
                         f"return ({', '.join(nm(o) for o in returned)},)" if len(returned) > 1
                         else f"return {nm(returned[0])}", None)],
                     fresh=returned)
        self.code, self.linemap, params = assemble(prelude, functions, env)
        self.filename = f"<graphnet plan {next(_count)}>"
        self.own_args = self._bind_args = {k: env[k] for k in params}   # own: for the code's own text
        self._copy_in = [g is not None and _is_view(g) for g in prog.input_grads]
        self._stats["bytes_preallocated"] = dict(self.arrays_bytes)
        self._stats["memory"] = dict(self.layouts)
        self._stats["batched_groups"] = prog.meta.get("batched_groups", 0)
        self._pending_stats = lambda: _memory_stats(self.lays, fwd + bwd)
        if not run:
            return
        self._bind_fn = self._from_template(template) if template is not None else None
        self._stats["code_shared"], self._stats["numbers_only"] = self._bind_fn is not None, False
        if self._bind_fn is None:
            ns = {}
            exec(compile(self.code, self.filename, "exec"), ns)
            self._bind_fn = ns["bind"]
        self._main = self._bind_fn(**self._bind_args)
        self._owner = threading.get_ident()      # the thread that runs the functions bound to _main's arrays
        self._bindings = threading.local()       # each other thread: its own arrays, the same code

    @staticmethod
    def _expr_of(v, env, pidx):
        op = v.op
        if isinstance(op, Param):
            return lambda args: f"P{pidx[v.id]}.data"
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

        two_d = len(v.shape) == 2 and all(a.shape is not None and len(a.shape) == 2 for a in v.args) \
            and hasattr(op, "expr_out_2d")

        def write(out, args, contiguous=False):
            # an op's faster form for 2-D operands and a C-contiguous output, where it has one (np.dot)
            line = op.expr_out_2d(out, k, *args) if two_d and contiguous else op.expr_out(out, k, *args)
            for name, obj in getattr(op, "plan_globals", lambda _: {})(line).items():   # generated kernels it calls
                env.setdefault(name, obj)
            return line
        return write

    def _from_template(self, template):
        """The template's compiled ``bind``, taking this code's literals, or None when this code is not the
        template's (then it is compiled as usual)."""
        args = template.arguments(self.code, self._bind_args)
        if args is None:
            return None
        self._bind_args = args
        bind = template.compiled(self.filename)
        self.filename = template.filename        # errors are found by the code's file name and line
        return bind

    # --- bindings: one set of preallocated arrays per thread, one compiled code ------------------------------
    def _bound(self):
        """The generated functions bound to this thread's arrays (made on the thread's first call)."""
        if threading.get_ident() == self._owner:
            return self._main
        fns = getattr(self._bindings, "fns", None)
        if fns is None:
            fns = self._bindings.fns = self._bind_fn(**self._bind_args)
            with GRAD_LOCK:
                self.n_bindings += 1
        return fns

    @property
    def _forward(self):
        return self._bound()[0]

    @property
    def _backward(self):
        return self._bound()[1]

    @property
    def _step(self):
        return self._bound()[2]

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


def _lines(lay, exprs, outs):
    """The function's statements, read from its layout: a value written into its array (``expr_out``), or
    computed into a variable of its own; variables nothing reads any more freed."""
    out = []
    for v in lay.steps:
        if isinstance(v, list):
            out.append((f"del {', '.join(v)}", None))
            continue
        kind, name = lay.place[v.id], lay.names[v.id]
        args = [lay.names[a.id] for a in v.args] + lay.written_with.get(v.id, [])
        if kind in WRITTEN:
            out.append((outs[v.id](name, args, name in lay.contiguous), v))
        elif kind == FRESH:
            out.append((f"{name} = {exprs[v.id](args)}", v))
    return out


def _memory_stats(lays, values):
    """Bytes: one buffer per value (views and inputs excluded) vs the plan's own peak, read from its layouts:
    the arenas, preallocated for the plan's life, and the most its fresh arrays hold at once (made at their
    line, freed by ``del``; what forward leaves alive, its outputs and saved values, lives on through
    backward)."""
    arenas = sum(lay.nbytes() for lay in lays.values())
    live, held, peak = {}, 0, 0                # held: the bytes in ``live``, kept as it changes
    for lay in lays.values():                  # in the order the functions run: forward, backward (or step)
        for step in lay.steps:
            if isinstance(step, list):
                for name in step:
                    held -= live.pop(name, 0)
            elif lay.place[step.id] == FRESH:
                name = lay.names[step.id]
                held += _nbytes(step) - live.get(name, 0)
                live[name] = _nbytes(step)
                peak = max(peak, held)
    sizes = [_nbytes(v) for v in values]
    return {"bytes_one_buffer_per_node": sum(sizes), "bytes_peak_planned": arenas + peak,
            "buffers": sum(1 for b in sizes if b)}


def _nbytes(v):
    """Bytes of the array a value makes (0 for a view or an input: it makes none)."""
    if _is_view(v) or v.shape is None:
        return 0
    n = v.dtype.itemsize
    for d in v.shape:
        n *= d
    return n


def _line_of(linemap, v):
    for k, u in linemap.items():
        if u is v:
            return k
    return 1


def _is_view(v):
    """Whether the value may share memory with an input, a seed or another value."""
    return getattr(v.op, "view", False) or isinstance(v.op, (Arg, Seed, Param))
