"""Plan: a module compiled at one level, with executables cached per input signature and modes.

``forward``/``backward`` check the run-time inputs against the graph (arity, types, shapes), pick or build
the executable for their signature (shapes, dtypes, the modules' modes), and run it. What a plan keeps is
bounded: at most ``max_executables`` executables holding at most ``max_bytes`` of preallocated arrays (each
thread's counted), the least recently used dropped first (the newest is always kept). Several threads may
call one plan at once: each runs the shared compiled code in arrays of its own, and a thread's ``backward``
pairs with that thread's last ``forward``.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict

import numpy as np

from .. import module as _module
from ..debug import active as _debug_active, check_finite_enabled, on_error
from ..errors import GraphnetError, InputError, InputShapeError, ShapeError, fmt_shape
from ..hooks import need
from ..node import Input, shapes_agree
from .binder import Bound, fit_binder, laid_out
from .emit import Emitted
from .generic import Generic
from .signature import Family, batch_size, feature_of, gc_paused, nbytes
from .template import CodeTemplate

LEVELS = (0, 1, 2)


class Plan:
    max_executables = 16            # executables kept per plan (least recently used dropped first)
    max_bytes = 256 * 2 ** 20       # and the preallocated arrays they hold, every thread's binding counted

    def __init__(self, module, level: int = 2, backend: str = "numpy"):
        from ..gmodule import gModule
        from .numba_backend import resolve_backend
        from ..module import Module
        if not isinstance(module, Module):
            raise InputError(f"gn.compile takes a module (a gModule or an nn module), got {type(module).__name__}")
        if level not in LEVELS:
            raise InputError(f"gn.compile: level must be one of {LEVELS}, got {level!r}")
        self.module = module
        self.level = level
        self.backend = resolve_backend(backend, "gn.compile")   # "numpy" or "numba"
        self.graph = module if isinstance(module, gModule) else None
        self._cache = OrderedDict()   # (input signature, modes, checking) -> executable, most recent last
        self._lock = threading.RLock()   # compiling and the cache's order: one thread at a time
        self._runs = threading.local()   # .last: this thread's (executable, arrays given, state, outputs)
        self._latest = None           # the last run of any thread: for .code, .stats() and drawings
        self._recent = None           # ([(shape, dtype)] of the last checked arrays, mode epoch, executable)
        self._modes = (None, None)    # (mode epoch, the module's mode key then)
        self._by_modes = {}           # mode key -> the last call's (shapes, epoch, executable) in those modes
        self._families = OrderedDict()   # feature signature -> Family: what is known across batch sizes
        self._counts = {"compiles": 0, "batch_sizes_bound": 0, "executables_dropped": 0}

    @property
    def _last(self):
        """This thread's last run, else the last run of any thread (None before the first)."""
        return getattr(self._runs, "last", None) or self._latest

    def _ran(self, last):
        self._runs.last = self._latest = last

    # --- input checks --------------------------------------------------------------------------------------
    def _input_names(self, n):
        if self.graph is not None:
            return [i.display_name() for i in self.graph.inputs]
        return [f"input {i}" for i in range(n)]

    def _check(self, arrays):
        g = self.graph
        n_in = len(g.inputs) if g is not None else self.module.arity
        who = self.module.label()
        if n_in is not None and len(arrays) != n_in:
            names = ", ".join(self._input_names(n_in))
            raise InputError(f"{who} takes {n_in} input array{'s' * (n_in != 1)} ({names}), got {len(arrays)}")
        names = self._input_names(len(arrays))
        out = []
        for i, (x, name) in enumerate(zip(arrays, names)):
            out.append(_as_array(x, f"{who}: input {i} ('{name}')", self.module.dtype))
        if g is not None:
            for x, node in zip(out, g.inputs):
                want = node.shape
                if want is not None and not shapes_agree(want, x.shape):
                    raise InputShapeError(f"{who}: input '{node.display_name()}' must have shape {fmt_shape(want)}"
                                          f", got an array of shape {x.shape} (declared at {node.site})", node)
        return out

    def _prepare(self, arrays):
        """The checked arrays and their executable. Arrays of exactly the shapes and dtypes of the last call in
        the same modes passed the same checks then: one comparison, not the checks again (they cost more than a
        tiny plan). After a mode switch, the modes are read again and the last call in those modes is the
        candidate: switching back and forth stays on this path."""
        recent, epoch = self._recent, _module._mode_epoch
        if recent is not None and not check_finite_enabled():
            shapes = [(x.shape, x.dtype) if type(x) is np.ndarray else None for x in arrays]
            if recent[1] != epoch:
                recent = self._by_modes.get(self._mode_key())
            if recent is not None and shapes == recent[0]:
                if recent[1] != epoch:
                    self._recent = (recent[0], epoch, recent[2])
                return arrays, recent[2]
        xs = self._check(arrays)
        exe = self._executable(xs)
        self._recent = ([(x.shape, x.dtype) for x in xs], epoch, exe)
        if len(self._by_modes) >= 8:
            self._by_modes.clear()
        self._by_modes[self._mode_key()] = self._recent
        return xs, exe

    def _mode_key(self):
        """The modes and dtypes of the module and those inside it, read again only after some module changed."""
        epoch, key = self._modes
        if epoch != _module._mode_epoch:
            epoch = _module._mode_epoch
            key = self.module.mode_key()
            self._modes = (epoch, key)
        return key

    def _executable(self, arrays):
        checking = check_finite_enabled()       # checked node by node: the reference interpreter runs
        B = batch_size(arrays)
        feature = (tuple(feature_of(x, B) for x in arrays), self._mode_key(), checking)
        with self._lock:
            exe = self._cache.get((feature, B))
            if exe is not None:
                self._cache.move_to_end((feature, B))
                return exe
            exe = self._cache[(feature, B)] = self._make(feature, B, arrays)
            while len(self._cache) > 1 and (len(self._cache) > self.max_executables or
                                            self._bytes_kept() > self.max_bytes):
                self._cache.popitem(last=False)
                self._counts["executables_dropped"] += 1
            return exe

    def _bytes_kept(self):
        return sum(nbytes(exe) for exe in self._cache.values())

    def _make(self, feature, B, arrays):
        """The executable for batch size B: bound from the signature's generic program when there is one, else
        compiled (and, at the signature's second batch size, the generic program sought)."""
        fam = self._families.pop(feature, None) or Family()
        self._families[feature] = fam                 # most recently used last
        while len(self._families) > self.max_executables:
            self._families.popitem(last=False)
        can_generalize = self.level > 0 and not feature[2] and B is not None and B >= 2
        if can_generalize and fam.generic:
            return self._bind(fam, B)
        exe = self._compile([(x.shape, x.dtype) for x in arrays], feature[2], arrays)
        if can_generalize and fam.generic is None and hasattr(exe, "program"):
            if fam.sample is None:
                fam.sample = (B, exe.program, exe.code)
            else:
                self._generalize(fam, feature, B, exe)
        return exe

    def _generalize(self, fam, feature, B, exe):
        """Fit the programs at the signature's two batch sizes, check the fit against a third; on any mismatch
        the signature keeps compiling per batch size (``stats()['not_generic']`` says why)."""
        B1, p1, code1 = fam.sample
        B3 = B1 + B
        signature = [((B3,) + shape if batched else shape, np.dtype(dtype)) for _, shape, dtype, batched in feature[0]]
        try:
            generic = Generic(p1, B1, exe.program, B)
            probe = self._compile(signature, False, [np.empty(0)] * len(signature))
            fam.generic = generic.check(probe.program, B3)
            fam.stats, fam.train, fam.random = dict(exe.stats), exe.train, exe.random
            fam.template = CodeTemplate(code1, exe.code)
            if fam.template.arguments(probe.code, probe._bind_args) is None:
                fam.template.ok = False             # the code is not one text across sizes: each size compiles it
            at = {id(v): i for i, v in enumerate(exe.program.values)}   # the generic program's order is this one's
            fam.order = tuple([at[id(v)] for v in vals] for vals in (exe.fwd, exe.bwd))
        except Exception as e:                   # no generic program (a probe that fails included): compile per size
            fam.generic, fam.reason = False, f"{type(e).__name__}: {e}"
        fam.sample = None
        if fam.generic and fam.template.ok:
            fam.fitted_at = (B1, B)
            ids = {u.id: g[0].id for u, g in zip(probe.program.values, fam.generic.entries)}
            fit_binder(fam, probe, B3, {fn: lay.rekeyed(ids) for fn, lay in probe.lays.items()})

    def _bind(self, fam, B):
        """A new batch size of a generic signature: bind()'s arguments from the signature's numbers when B is
        no larger than its reference layout's size; else the concrete program, its memory plan and code (no
        pass), whose layout then becomes the reference for every size up to B."""
        t0 = time.perf_counter()
        binder = fam.binder
        with gc_paused():
            if binder is not None and B <= binder.limit:   # numbers and arrays only
                exe = Bound(binder, B, fam.stats, fam.train, lambda: laid_out(fam, B, binder.reference))
            else:
                exe = Emitted(fam.generic.at(B), fam.stats, train=fam.train, template=fam.template,
                              order=fam.order)
                if binder is not None and fam.unbound is None:
                    fit_binder(fam, exe, B, exe.lays)
        exe.random = fam.random
        exe.record(bind_seconds=time.perf_counter() - t0)
        self._counts["batch_sizes_bound"] += 1
        return exe

    def _compile(self, signature, interpret, arrays):
        try:
            t0 = time.perf_counter()
            with gc_paused():
                exe = self._build(signature, interpret=interpret)
            if isinstance(getattr(exe, "stats", None), dict):
                exe.stats["compile_seconds"] = time.perf_counter() - t0   # lowering and autodiff included
        except ShapeError as e:
            if isinstance(e, InputError):
                raise
            shapes = ", ".join(str(x.shape) + " " + str(x.dtype) for x in arrays)
            raise InputShapeError(f"{e}\n  with inputs of shapes {shapes}", e.node) from None
        # draws random numbers (or has effects): running its forward again is not the same forward
        exe.random = any(not v.op.pure for v in exe.program.values)
        self._counts["compiles"] += 1
        return exe

    def _graph_for(self, signature):
        """The gModule to lower: the module itself, or a one-node graph around a plain module."""
        if self.graph is not None:
            return self.graph
        from ..gmodule import one_node_graph
        return one_node_graph(self.module, [Input(shape) for shape, _ in signature])

    def _build(self, signature, interpret=False):
        from .lower import lower
        from .interp import Interpreter
        prog = lower(self._graph_for(signature), signature)
        if self.level == 0 or interpret:
            return Interpreter(prog)
        from .pipeline import build_executable
        return build_executable(prog, self.level, backend=self.backend)

    # --- running -------------------------------------------------------------------------------------------
    def forward(self, *arrays):
        """Outputs for these input arrays: one array, or a list for several outputs."""
        with _debug_errors(self.graph, arrays):
            return self._forward(arrays)

    def _forward(self, arrays):
        xs, exe = self._prepare(arrays)
        outs, state = exe.forward(xs)
        self._ran((exe, arrays, state, outs))
        return outs[0] if len(outs) == 1 else list(outs)

    def backward(self, *grad_outputs):
        """Gradients w.r.t. the inputs of this thread's last forward; parameter gradients accumulate into
        ``.grad``."""
        last = getattr(self._runs, "last", None)
        with _debug_errors(self.graph, last[1] if last else None):
            return self._backward(last, grad_outputs)

    def _backward(self, last, grad_outputs):
        if last is None or last[3] is None:
            raise InputError(f"{self.module.label()}: backward() needs a forward() first (in this thread)")
        exe, _, state, outs = last
        if len(grad_outputs) != len(outs):
            raise InputError(f"{self.module.label()}: backward takes one gradient per output ({len(outs)}), "
                             f"got {len(grad_outputs)}")
        gs = []
        for i, (g, o) in enumerate(zip(grad_outputs, outs)):
            g = _as_array(g, f"{self.module.label()}: gradient of output {i}", o.dtype)
            if g.shape != o.shape:
                raise InputShapeError(f"{self.module.label()}: gradient of output {i} must have the output's shape "
                                      f"{o.shape}, got {g.shape}")
            gs.append(g)
        res = exe.backward(state, gs)
        return res[0] if len(res) == 1 else res

    def run_forward(self, inputs):
        return self.forward(*_as_list(inputs))

    def run_backward(self, inputs, grad_outputs):
        """nngraph's ``backward(inputs, grads)``: the gradient of the function this thread's last forward
        computed. ``inputs`` are that forward's when they are the same arrays, views of the same memory, or equal
        copies; then its state (dropout masks included) is used as it is. Other inputs run forward again on them
        first, unless the plan draws random numbers: a new forward would draw new masks, and the gradient would
        belong to a function nobody saw, so that is refused."""
        arrays = _as_list(inputs)
        last = getattr(self._runs, "last", None)
        if last is None or last[3] is None:
            self.forward(*arrays)
        else:
            differs = _first_difference(last[1], arrays)
            if differs is not None:
                if getattr(last[0], "random", False):
                    raise InputError(f"{self.module.label()}: backward(inputs, ...) was given inputs other than "
                                     f"the last forward's ({differs}); its dropout masks belong to that forward, "
                                     f"and a new forward would draw new ones. Call forward(inputs) first, or "
                                     f"pass the same inputs (views or equal copies are fine)")
                self.forward(*arrays)  # deterministic: the gradient at the inputs given
        return self.backward(*_as_list(grad_outputs))

    @property
    def code(self) -> str:
        if self._last is None:
            raise InputError("plan.code is known once the plan has run (it is compiled per input signature)")
        return self._last[0].code

    def _repr_svg_(self):
        return need("repr_svg")(self)

    def stats(self) -> dict:
        """The last run's executable's statistics, and the plan's: ``compiles`` (lowering, passes and code; a
        probe size included), ``batch_sizes_bound`` (batch sizes made from a generic program, no pass run),
        executables kept (at most ``executables_bound``, holding at most ``bytes_bound`` of arrays:
        ``bytes_kept``; least recently used dropped first) and dropped, feature
        signatures seen and how many are generic in the batch size (``not_generic``: why the others are not;
        ``not_bound``: why a generic one plans memory and makes code per size instead of binding numbers)."""
        last = self._last
        if last is None:
            raise InputError("plan.stats() is known once the plan has run (it is compiled per input signature)")
        exe = last[0]
        out = dict(getattr(exe, "stats", {}) or {"nodes": len(exe.fwd) + len(exe.bwd)})
        fams = list(self._families.values())
        out.update(self._counts, executables=len(self._cache), executables_bound=self.max_executables,
                   bytes_kept=self._bytes_kept(), bytes_bound=self.max_bytes,
                   signatures=len(fams), signatures_generic=sum(1 for f in fams if f.generic),
                   not_generic=[f.reason for f in fams if f.reason],
                   not_bound=[f.unbound for f in fams if f.unbound])
        return out


def _first_difference(given, arrays):
    """None when ``arrays`` are the arrays ``given`` to a forward, views of the same memory or equal copies;
    else what differs, in words. Same objects cost nothing; same memory a few attribute reads; copies one
    comparison of their values."""
    if len(given) != len(arrays):
        return f"{len(arrays)} inputs, not {len(given)}"
    for i, (a, b) in enumerate(zip(given, arrays)):
        if a is b:
            continue
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"input {i} has shape {b.shape}, not {a.shape}"
        if a.dtype == b.dtype and a.strides == b.strides and (
                a.__array_interface__["data"][0] == b.__array_interface__["data"][0]):
            continue
        if not np.array_equal(a, b):
            return f"input {i} holds other values"
    return None


@contextlib.contextmanager
def _debug_errors(graph, arrays=None):
    try:
        yield
    except GraphnetError as e:
        if not _debug_active():
            raise
        raise on_error(e, graph, inputs=arrays) from e.__cause__


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _as_array(x, what, float_dtype):
    """x as a numeric numpy array: floats cast to the module's dtype, integers kept."""
    if isinstance(x, np.ma.MaskedArray):
        raise InputError(f"{what} is a masked array; graphnet takes plain arrays (use x.filled(value) to choose "
                         f"what the masked entries hold)")
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (np.generic, int, float)) and not isinstance(x, bool):
        arr = np.asarray(x)
    else:
        kind = "None" if x is None else type(x).__name__
        hint = " (use np.asarray(...))" if isinstance(x, (list, tuple)) else ""
        raise InputError(f"{what} is {kind}, not a numpy array{hint}")
    k = arr.dtype.kind
    if k == "f":
        return arr if arr.dtype == float_dtype else arr.astype(float_dtype)
    if k in "iu":
        return arr
    raise InputError(f"{what} has dtype {arr.dtype}; graphnet takes float or integer arrays")


class TrainStep(Plan):
    """``step(*arrays)``: zero the gradients, run forward and backward as one plan, return the loss (a float).

    The model's first output is a scalar loss, the one backward starts from. Any further outputs (the states an
    unrolled net carries to its next window, say) are computed in the same plan and returned after the loss,
    ``loss, *others = step(*arrays)``, with no gradient of their own. No input gradients are computed.
    """

    def __init__(self, model, level: int = 2, backend: str = "numpy"):
        super().__init__(model, level, backend)
        if self.graph is not None and not self.graph.outputs:
            raise InputError(f"compile_train_step needs a model whose first output is a scalar loss; "
                             f"{model.label()} has no outputs")

    def _build(self, signature, interpret=False):
        from .lower import lower
        from .pipeline import build_executable
        graph = self._graph_for(signature)
        n_out = len(graph.outputs) if hasattr(graph, "outputs") else 1
        prog = lower(graph, signature, wrt_inputs=[False] * len(signature),
                     seeded=[True] + [False] * (n_out - 1))
        out = prog.outputs[0]
        if out.shape != ():
            raise InputError(f"compile_train_step: the model's first output must be a scalar loss, got shape "
                             f"{out.shape}")
        # the seed d loss / d loss stays a seed (the step passes 1): passes tell gradients apart by it
        return build_executable(prog, max(self.level, 0), train=True, backend=self.backend)

    def __call__(self, *arrays):
        with _debug_errors(self.graph, arrays):
            xs, exe = self._prepare(arrays)
            if exe.train is False:
                raise InputError("internal: train step built without a step function")
            res = exe.step(xs)
        self._ran((exe, arrays, None, None))        # for .code and .stats(); backward() is not for a step
        if isinstance(res, tuple):
            return (float(res[0]),) + tuple(np.asarray(r) for r in res[1:])
        return float(res)

    def forward(self, *arrays):
        raise InputError("a train step runs forward and backward as one function: call step(*arrays); for the "
                         "outputs alone, gn.compile(model).forward(*arrays)")

    def backward(self, *grad_outputs):
        raise InputError("a train step runs backward itself: call step(*arrays)")


def compile_train_step(model, level: int = 2, backend: str = "numpy") -> TrainStep:
    """A function ``step(*arrays) -> loss`` that zeroes the gradients and runs forward+backward as one plan.
    ``backend``: "numpy", "numba" (elementwise groups as fused kernels) or "auto" (numba when it imports)."""
    return TrainStep(model, level, backend)


def compile(module, level: int = 2, backend: str = "numpy") -> Plan:
    """Compile ``module``: level 0 is the reference interpreter; 2 runs every optimization pass. ``backend``:
    "numpy", "numba" (elementwise groups as fused kernels) or "auto" (numba when it imports)."""
    return Plan(module, level, backend)
