"""Plan: a module compiled at one level, with one executable per input signature.

``forward``/``backward`` check the run-time inputs against the graph (arity, types, shapes), pick or build
the executable for their signature (shapes, dtypes, the modules' modes), and run it.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from .. import module as _module
from ..debug import active as _debug_active, check_finite_enabled, on_error
from ..errors import GraphnetError, InputError, InputShapeError, ShapeError, fmt_shape
from ..node import Input

LEVELS = (0, 1, 2)


class Plan:
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
        self._cache = {}
        self._last = None             # (executable, the arrays given, forward state)
        self._recent = None           # ([(shape, dtype)] of the last checked arrays, mode version, executable)

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
                if want is not None and (len(want) != x.ndim or
                                         any(w is not None and w != s for w, s in zip(want, x.shape))):
                    raise InputShapeError(f"{who}: input '{node.display_name()}' must have shape {fmt_shape(want)}"
                                          f", got an array of shape {x.shape} (declared at {node.site})", node)
        return out

    def _prepare(self, arrays):
        """The checked arrays and their executable. Arrays of exactly the last call's shapes and dtypes passed
        the same checks then: one comparison, not the checks again (they cost more than a tiny plan)."""
        recent = self._recent
        if recent is not None and recent[1] == _module.mode_version() and not check_finite_enabled():
            if [(x.shape, x.dtype) if type(x) is np.ndarray else None for x in arrays] == recent[0]:
                return arrays, recent[2]
        xs = self._check(arrays)
        exe = self._executable(xs)
        self._recent = ([(x.shape, x.dtype) for x in xs], _module.mode_version(), exe)
        return xs, exe

    def _executable(self, arrays):
        checking = check_finite_enabled()       # checked node by node: the reference interpreter runs
        key = (tuple((x.shape, x.dtype.str) for x in arrays), _module.mode_version(), checking)
        exe = self._cache.get(key)
        if exe is None:
            try:
                t0 = time.perf_counter()
                exe = self._build([(x.shape, x.dtype) for x in arrays], interpret=checking)
                if isinstance(getattr(exe, "stats", None), dict):
                    exe.stats["compile_seconds"] = time.perf_counter() - t0   # lowering and autodiff included
            except ShapeError as e:
                if isinstance(e, InputError):
                    raise
                shapes = ", ".join(str(x.shape) + " " + str(x.dtype) for x in arrays)
                raise InputShapeError(f"{e}\n  with inputs of shapes {shapes}", e.node) from None
            self._cache[key] = exe
        return exe

    def _graph_for(self, signature):
        """The gModule to lower: the module itself, or a one-node graph around a plain module."""
        if self.graph is not None:
            return self.graph
        from ..gmodule import gModule
        xs = [Input(shape) for shape, _ in signature]
        y = self.module(*xs)
        return gModule(xs, list(y) if y.is_multi else [y])

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
        self._last = (exe, arrays, state, outs)
        return outs[0] if len(outs) == 1 else list(outs)

    def backward(self, *grad_outputs):
        """Gradients w.r.t. the inputs of the last forward; parameter gradients accumulate into ``.grad``."""
        with _debug_errors(self.graph, self._last[1] if self._last else None):
            return self._backward(grad_outputs)

    def _backward(self, grad_outputs):
        if self._last is None:
            raise InputError(f"{self.module.label()}: backward() needs a forward() first")
        exe, _, state, outs = self._last
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
        arrays = _as_list(inputs)
        last = self._last
        if last is None or len(last[1]) != len(arrays) or any(a is not b for a, b in zip(last[1], arrays)):
            self.forward(*arrays)      # backward must follow the forward of the same inputs: make it so
        return self.backward(*_as_list(grad_outputs))

    @property
    def code(self) -> str:
        if self._last is None:
            raise InputError("plan.code is known once the plan has run (it is compiled per input signature)")
        return self._last[0].code

    def _repr_svg_(self):
        from ..render import repr_svg
        return repr_svg(self)

    def stats(self) -> dict:
        if self._last is None:
            raise InputError("plan.stats() is known once the plan has run (it is compiled per input signature)")
        exe = self._last[0]
        return dict(getattr(exe, "stats", {}) or {"nodes": len(exe.fwd) + len(exe.bwd)})


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
        self._last = (exe, arrays, None, None)      # for .code and .stats(); backward() is not for a step
        if isinstance(res, tuple):
            return (float(res[0]),) + tuple(np.asarray(r) for r in res[1:])
        return float(res)

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
