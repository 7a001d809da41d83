"""Module and Parameter: calling a module on nodes makes nodes; parameters, dtype and modes live here."""
from __future__ import annotations

import functools

import numpy as np

from .errors import GraphError, GraphnetError, caller_site
from .node import APPLY, Node
from .ops.leaf import draw_from

DEFAULT_DTYPE = np.dtype(np.float32)
_rng = np.random.default_rng()
_mode_version = 0


def mode_version() -> int:
    """Bumped whenever a module's mode or dtype changes: compiled plans key on it."""
    return _mode_version


def _bump():
    global _mode_version
    _mode_version += 1


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
        object.__setattr__(self, key, value)

    # --- what subclasses define ----------------------------------------------------------------------------
    def lower(self, b, *xs):
        raise NotImplementedError(f"{type(self).__name__} does not define lower()")

    def num_outputs(self, *shapes) -> int | None:
        """Outputs made from inputs of these shapes (None: not known until split)."""
        return 1

    def label(self) -> str:
        """Short text for drawings and messages, e.g. ``Linear(3 -> 8)``."""
        return type(self).__name__

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        return self.label()

    # --- building ------------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        try:
            if kwargs:
                raise GraphError(f"{self.label()} takes its input nodes as positional arguments, got keyword "
                                 f"argument{'s' * (len(kwargs) > 1)} {', '.join(map(repr, kwargs))} (at "
                                 f"{caller_site()}): {type(self).__name__}(...)(x)")
            return self._apply(args)
        except GraphnetError as e:
            from .debug import active, on_error
            if not active():
                raise
            raise on_error(e) from None

    def _apply(self, args):
        from .compile.ir import Builder
        site = caller_site()
        nodes = _as_nodes(self, args, site)
        if not nodes:
            raise GraphError(f"{self.label()} was called with no input nodes (at {site}); a graph starts at "
                             f"gn.Input(): {type(self).__name__}(...)(gn.Input())")
        if self.arity is not None and len(nodes) != self.arity:
            raise GraphError(f"{self.label()} takes {self.arity} input node{'s' * (self.arity != 1)}, "
                             f"got {len(nodes)} (at {site})")
        shapes = [n.shape for n in nodes]
        n_out = self.num_outputs(*shapes)
        node = Node(APPLY, module=self, inputs=nodes, n_outputs=n_out, site=site)
        if n_out is not None and all(s is not None for s in shapes):   # else: shapes known at run time
            b = Builder()
            vals = [b.placeholder(s) for s in shapes]
            b.push(node)
            out = self.lower(b, *vals)
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

    # --- modes and dtype -----------------------------------------------------------------------------------
    def training(self):
        _bump()
        for m in self.modules():
            object.__setattr__(m, "train", True)
        return self

    def evaluate(self):
        _bump()
        for m in self.modules():
            object.__setattr__(m, "train", False)
        return self

    def _set_dtype(self, dtype):
        dtype = np.dtype(dtype)
        _bump()
        for m in self.modules():
            object.__setattr__(m, "_dtype", dtype)
            for p in m._params.values():
                if p.data.dtype != dtype:
                    p.data = p.data.astype(dtype)
                    p.grad = p.grad.astype(dtype)
        return self

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
        from .compile import DEFAULT_LEVEL, compile
        key = DEFAULT_LEVEL
        if key not in self._plans:
            self._plans[key] = compile(self, level=key)
        return self._plans[key]

    def forward(self, inputs):
        """Outputs for these inputs: one array, or a list for several outputs."""
        return self._plan().run_forward(inputs)

    def backward(self, inputs, grad_outputs):
        """Gradients w.r.t. the inputs (one array, or a list); parameter gradients accumulate into ``.grad``."""
        return self._plan().run_backward(inputs, grad_outputs)

    updateOutput = forward


def _as_nodes(module, args, site):
    """The call's arguments as a flat list of nodes; a multi-output node stands for its outputs."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    nodes = []
    for i, a in enumerate(args):
        if isinstance(a, Node):
            if a.is_multi:
                if a.n_outputs is None:
                    raise GraphError(f"node '{a.display_name()}' ({a.op_label()}) has an unknown number of "
                                     f"outputs; unpack it with .split(k) before passing it to {module.label()} "
                                     f"(at {site})", a)
                nodes.extend(a.split(a.n_outputs))
            else:
                nodes.append(a)
        elif isinstance(a, Module):
            raise GraphError(f"argument {i} of {module.label()} is a Module ({a.label()}), not a Node — did you "
                             f"forget to call it: {type(a).__name__}(...)(x)? (at {site})")
        elif isinstance(a, (list, tuple)):
            raise GraphError(f"argument {i} of {module.label()} is a nested list; pass nodes, or one list of "
                             f"nodes (at {site})")
        else:
            kind = type(a).__name__
            hint = (" — arrays are given at run time to forward(), not when building"
                    if hasattr(a, "shape") else "")
            raise GraphError(f"argument {i} of {module.label()} is a {kind}, not a Node{hint} (at {site})")
    return nodes
