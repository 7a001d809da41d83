"""Module and Parameter: calling a module on nodes makes nodes; parameters, dtype and modes live here."""
from __future__ import annotations

import functools
import inspect

import numpy as np

from . import hooks
from .errors import GraphError, GraphnetError, InputError, caller_site, node_error
from .node import APPLY, Node
from .ops.leaf import draw_from
from .ops.opaque import lower_opaque

DEFAULT_DTYPE = np.dtype(np.float32)
_MODE_ATTRS = frozenset(("train", "_dtype"))     # what plans compile for, besides shapes and dtypes of inputs
_rng = np.random.default_rng()
_ERRORS_SHOWN = hooks.errors_shown(GraphnetError)    # a call's errors, through gn.debug when it is on
_mode_epoch = 0             # bumped by every change of a module's mode or dtype, anywhere (see mode_version)


def mode_version() -> int:
    """A counter bumped whenever some module's mode or dtype changes. Plans compare it with the value they saw
    last to know when to read their own modules' modes again (a cheap check per call); what they compile for
    is keyed on those modes, not on this counter, so a switch elsewhere compiles nothing."""
    return _mode_epoch


def _bump():
    global _mode_epoch
    _mode_epoch += 1


def manual_seed(seed: int) -> None:
    """Make every later initialisation and Dropout mask reproducible."""
    global _rng
    _rng = np.random.default_rng(int(seed))


def rng() -> np.random.Generator:
    """The generator behind initialisation and Dropout (reset by ``manual_seed``)."""
    return _rng


draw_from(rng)


class Parameter:
    """A learnable array: ``data`` and its gradient ``grad`` (same shape, accumulated by backward)."""
    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name: str = ""):
        self.data = np.array(data, copy=True, order="C")    # its own memory, never the caller's array
        self.grad = np.zeros_like(self.data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Parameter({self.name or '?'}, shape={self.data.shape}, dtype={self.data.dtype})"


def flatten_parameters(params):
    """One flat data vector and one flat grad vector; each parameter's data and grad become views into them.

    Already flat (the same views, in order, over one buffer)? Then the existing buffers are returned.
    """
    params = list(params)
    if not params:
        return np.zeros(0, DEFAULT_DTYPE), np.zeros(0, DEFAULT_DTYPE)
    base_w, base_g = params[0].data.base, params[0].grad.base
    if _views_in_order(params, base_w, "data") and _views_in_order(params, base_g, "grad"):
        return base_w, base_g
    dtype = np.result_type(*[p.data.dtype for p in params])
    total = sum(p.data.size for p in params)
    w, g = np.empty(total, dtype), np.empty(total, dtype)
    offset = 0
    for p in params:
        n = p.data.size
        w[offset:offset + n] = p.data.ravel()
        g[offset:offset + n] = p.grad.ravel()
        p.data = w[offset:offset + n].reshape(p.data.shape)
        p.grad = g[offset:offset + n].reshape(p.grad.shape)
        offset += n
    return w, g


def _views_in_order(params, base, attr) -> bool:
    """True when each parameter's ``attr`` array is the next contiguous stretch of the flat vector ``base``."""
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return False
    at = base.ctypes.data
    for p in params:
        a = getattr(p, attr)
        if a.base is not base or not a.flags.c_contiguous or a.ctypes.data != at:
            return False
        at += a.nbytes
    return at == base.ctypes.data + base.nbytes


class Module:
    """Base of everything that can be called on nodes.

    A subclass says how many inputs it takes (``arity``; None: any number), how many outputs it makes
    (``num_outputs``) and what it computes as primitives (``lower(b, *xs)``, building on an IR builder).
    Shapes, forward and gradients all follow from ``lower``.
    """
    arity: int | None = 1

    def __init_subclass__(cls, **kw):
        # Record the constructor's arguments (of the most derived class) so a module can be described and
        # rebuilt from a registry of graphnet's classes (serialization, summaries) without pickling it.
        super().__init_subclass__(**kw)
        if "update_output" in cls.__dict__ and "arity" not in cls.__dict__:
            cls.arity = _positional_count(cls.update_output)     # a numpy module takes what its method takes
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recorded(self, *args, **kwargs):
            if "_config" not in self.__dict__:
                object.__setattr__(self, "_config", (args, kwargs))
            init(self, *args, **kwargs)
        cls.__init__ = recorded

    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "train", True)
        object.__setattr__(self, "_dtype", DEFAULT_DTYPE)
        object.__setattr__(self, "_plans", {})

    def __setattr__(self, key, value):
        if "_params" not in self.__dict__:
            raise GraphError(f"{type(self).__name__}.__init__ must call super().__init__() before setting "
                             f"attributes")
        if isinstance(value, Parameter):
            if not value.name:
                value.name = key
            self._params[key] = value
        elif isinstance(value, Module):
            self._children[key] = value
        elif key in _MODE_ATTRS:
            _bump()                    # set by hand (``dropout.train = False``): plans read the modes again
        object.__setattr__(self, key, value)

    # --- what subclasses define ----------------------------------------------------------------------------
    def lower(self, b, *xs):
        """The module as primitives on builder ``b`` (see the README's "Custom modules"). A module that defines
        ``update_output`` instead (torch7-style numpy) runs as one opaque step."""
        if not callable(getattr(self, "update_output", None)):
            raise node_error(GraphError, f"{type(self).__name__} defines neither lower(b, *xs) nor "
                                         f"update_output(*inputs): graphnet cannot compute it", b.src)
        try:
            return lower_opaque(self, b, *xs)
        except GraphnetError:
            raise
        except Exception as e:      # the shape probe: update_output on zeros of the compiled input shapes
            shapes = ", ".join(str(x.shape) for x in xs)
            raise node_error(GraphError, f"{type(self).__name__}.update_output failed on zeros of shapes "
                                         f"{shapes}: {type(e).__name__}: {e}", b.src) from e

    def num_outputs(self, *shapes) -> int | None:
        """Outputs made from inputs of these shapes (None: not known until split)."""
        return 1

    def table_outputs(self) -> int | None:
        """Outputs made from a table whose size is not known until compile time (None: not known either)."""
        return 1 if type(self).num_outputs is Module.num_outputs else None

    def label(self) -> str:
        """Short text for drawings and messages, e.g. ``Linear(3 -> 8)``."""
        return type(self).__name__

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        return self.label()

    # --- building ------------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        with _ERRORS_SHOWN:
            if kwargs:
                raise GraphError(f"{self.label()} takes its input nodes as positional arguments, got keyword "
                                 f"argument{'s' * (len(kwargs) > 1)} {', '.join(map(repr, kwargs))} (at "
                                 f"{caller_site()}): {type(self).__name__}(...)(x)")
            return self._apply(args)

    def _apply(self, args):
        site = caller_site()
        if type(self).lower is Module.lower and not callable(getattr(self, "update_output", None)):
            raise GraphError(f"{type(self).__name__} defines neither lower(b, *xs) (a composition of primitives) "
                             f"nor update_output(*inputs) (numpy, torch7-style), so it cannot be called on nodes "
                             f"(at {site})")
        nodes = _as_nodes(self, args, site)
        if not nodes:
            raise GraphError(f"{self.label()} was called with no input nodes (at {site}); a graph starts at "
                             f"gn.Input(): {type(self).__name__}(...)(gn.Input())")
        deferred = any(n.is_multi for n in nodes)      # a table whose size is known once shapes are
        if self.arity is not None and len(nodes) != self.arity and not deferred:
            raise GraphError(f"{self.label()} takes {self.arity} input node{'s' * (self.arity != 1)}, "
                             f"got {len(nodes)} (at {site})")
        shapes = [n.shape for n in nodes]
        n_out = self.table_outputs() if deferred else self.num_outputs(*shapes)
        node = Node(APPLY, module=self, inputs=nodes, n_outputs=n_out, site=site)
        if n_out is not None and not deferred and all(s is not None for s in shapes):   # else: at compile time
            out = lower_on_shapes(self, shapes, node)
            node.shape = [v.shape for v in out] if n_out != 1 else out.shape
        return node

    # --- parameters ----------------------------------------------------------------------------------------
    def modules(self):
        """This module and every module inside it, each once, in a fixed order."""
        seen, out = set(), []

        def visit(m):
            if id(m) in seen:
                return
            seen.add(id(m))
            out.append(m)
            for c in m.submodules():
                visit(c)
        visit(self)
        return out

    def submodules(self):
        return list(self._children.values())

    def parameters(self) -> list:
        seen, out = set(), []
        for m in self.modules():
            for p in m._params.values():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def zero_grad_parameters(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    zero_grad = zero_grad_parameters

    def get_parameters(self):
        """(flat_w, flat_g): every parameter and gradient as views into two flat vectors."""
        return flatten_parameters(self.parameters())

    # --- clones (torch7) ------------------------------------------------------------------------------------
    def clone(self, *names: str) -> "Module":
        """A deep copy. With names (torch7's 'weight', 'bias', 'gradWeight', 'gradBias', or any parameter's
        name as in ``m.name = gn.Parameter(...)``, and 'grad' + its capitalised name), the copy shares those
        parameters' data / gradients with this module: ``m.clone('weight', 'bias', 'gradWeight', 'gradBias')``
        is a copy that trains the same weights (as unrolled time steps do)."""
        from .clone import clone_module
        return clone_module(self, names)

    # --- modes and dtype -----------------------------------------------------------------------------------
    # A mode (train) and a dtype belong to a module; ``training()``, ``evaluate()`` and the dtype verbs set them on
    # the module and the modules inside it. A plan compiles per tuple of its modules' modes (``mode_key``) and
    # keeps what it compiled, so switching back and forth compiles once per mode.
    def training(self):
        return self._set_modes(train=True)

    def evaluate(self):
        return self._set_modes(train=False)

    def _set_modes(self, **attrs):
        for m in self.modules():
            m.__dict__.update(attrs)
        _bump()
        return self

    #: attributes, besides the mode and the dtype, whose values change what a module lowers to (a criterion's
    #: reduction, say); plans key on them too, so setting one at any time takes effect at the next run
    compile_attrs: tuple = ()

    def mode_key(self) -> tuple:
        """What this module and the modules inside it compile differently for: each one's mode, dtype and
        ``compile_attrs``."""
        return tuple([(m.__dict__["train"], m.__dict__["_dtype"], *[getattr(m, a) for a in m.compile_attrs])
                      for m in self.modules()])

    def _set_dtype(self, dtype):
        dtype = np.dtype(dtype)
        for m in self.modules():
            for p in m._params.values():
                if p.data.dtype != dtype:
                    p.data = p.data.astype(dtype)
                    p.grad = p.grad.astype(dtype)
        return self._set_modes(_dtype=dtype)

    def float32(self):
        return self._set_dtype(np.float32)

    def float64(self):
        return self._set_dtype(np.float64)

    def type(self, dtype):
        return self._set_dtype(dtype)

    @property
    def dtype(self):
        return self._dtype

    # --- running (nngraph's verbs) -------------------------------------------------------------------------
    def _plan(self):
        key = hooks.need("default_level")
        plan = self._plans.get(key)
        if plan is None:                   # two threads may get here: both use the plan stored first
            plan = self._plans.setdefault(key, hooks.need("compile")(self, level=key))
        return plan

    def forward(self, inputs, *more):
        """Outputs for these inputs: one array, or a list for several outputs (nested where the graph's outputs
        are tables). ``inputs``: one array, a list (tables as nested lists), or a dict by input name;
        ``forward(input, target)`` is ``forward([input, target])`` (torch7's criterions)."""
        inputs = [inputs, *more] if more else inputs
        io = self._structure(inputs)
        if io is None:
            outs = self._plan().run_forward(inputs)
            object.__setattr__(self, "_out_shapes", [np.shape(o) for o in as_list(outs)])
            return outs
        flat = as_list(self._plan().run_forward(io.flatten_inputs(inputs)))
        object.__setattr__(self, "_out_shapes", [np.shape(o) for o in flat])
        return io.nest_outputs(flat)

    def backward(self, inputs, grad_outputs):
        """Gradients w.r.t. the inputs (one array, or a list; nested as the inputs were given); parameter
        gradients accumulate into ``.grad``. A scalar output takes a size-1 gradient too."""
        if self.__dict__.get("_out_shapes") is None:
            self.forward(inputs)        # run_backward would: this way the outputs' shapes are known here too
        io = self._structure(inputs)
        if io is None:
            return self._plan().run_backward(inputs, self._scalar_grads(as_list(grad_outputs)))
        flat_g = self._scalar_grads(io.flatten_grads(grad_outputs))
        res = self._plan().run_backward(io.flatten_inputs(inputs), flat_g)
        return io.nest_input_grads(as_list(res), inputs)

    def _structure(self, inputs):
        """How run-time values map onto the plan's flat lists (None: one array per input and output)."""
        if isinstance(inputs, dict):
            raise InputError(f"{self.label()}: inputs by name need a gModule (its inputs have names)")
        return None

    def _scalar_grads(self, grads):
        """A gradient of size 1 for an output that is a scalar (a loss) is that scalar, as torch7 allows."""
        shapes = self.__dict__.get("_out_shapes")
        if shapes is None or len(shapes) != len(grads):
            return grads
        return [np.reshape(g, ()) if s == () and np.size(g) == 1 and np.ndim(g) > 0 else g
                for g, s in zip(grads, shapes)]

    updateOutput = forward


def lower_on_shapes(module, shapes, node=None):
    """``module`` lowered on a scratch IR builder (registered by the compiler) over placeholders of these
    shapes: its output value(s), whose shapes are what it makes. Build-time shape inference is this, so shapes
    at build time come from the very code that compiles. ``node``: the graph node it is for (named in errors)."""
    b = hooks.need("builder")()
    vals = [b.placeholder(s) for s in shapes]
    if node is not None:
        b.push(node)
    return module.lower(b, *vals)


def call_arguments(args) -> tuple:
    """What a module was called on: ``m(a, b)`` and ``m([a, b])`` alike (torch7 passes tables as lists)."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else tuple(args)


def not_a_node(value, where, site, hint="") -> GraphError:
    """The error for ``value`` given where a node belongs (``where``: 'argument 1 of Linear(3 -> 4)'), naming the
    likely slip: a module not called on its input, or an array given while building (arrays come at run time)."""
    if isinstance(value, Module):
        return GraphError(f"{where} is a Module ({value.label()}), not a Node — did you forget to call it: "
                          f"{type(value).__name__}(...)(x)? (at {site})")
    if hasattr(value, "shape"):
        hint = " — arrays are given at run time to forward(), not when building"
    return GraphError(f"{where} is a {type(value).__name__}, not a Node{hint} (at {site})")


def _as_nodes(module, args, site):
    """The call's arguments as a flat list of nodes; a multi-output node stands for its outputs."""
    nodes = []
    for i, a in enumerate(call_arguments(args)):
        if isinstance(a, Node):
            nodes.extend(_table_entries(module, a, site))
        elif isinstance(a, (list, tuple)):
            raise GraphError(f"argument {i} of {module.label()} is a nested list; pass nodes, or one list of "
                             f"nodes (at {site})")
        else:
            raise not_a_node(a, f"argument {i} of {module.label()}", site)
    return nodes


def _table_entries(module, a, site):
    """A node as the arrays it stands for: itself, a multi-output node's outputs (nested tables flattened), or
    a multi-output node whose count is known only at compile time (kept whole: lowering expands it)."""
    if not a.is_multi:
        return [a]
    if a.n_outputs is None:
        if a.can_be_table:
            raise GraphError(f"table '{a.display_name()}' has no known size; give it one with .split(n) before "
                             f"passing it whole to {module.label()} (at {site})", a)
        return [a]
    return [leaf for item in a.split(a.n_outputs) for leaf in _table_entries(module, item, site)]


def _positional_count(method) -> int | None:
    """How many inputs ``method(self, *inputs)`` takes (None: any number)."""
    kinds = [p.kind for p in inspect.signature(method).parameters.values()][1:]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    return sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds)


def as_list(x) -> list:
    """A module's output(s) as a list: one value, or the values of a multi-output module."""
    return list(x) if isinstance(x, (list, tuple)) else [x]
