"""A new batch size bound from numbers alone: ``bind()``'s arguments as functions of B, then one call.

A generic signature's code is one text (``template.py``). What differs between sizes are its arguments: the
numbers of its prelude (arena sizes, view offsets and ends, reshapes), the numbers in its functions (row blocks),
constants that depend on B (a mean's 1/B), ops whose attributes do. Laid out once against a reference layout
(the probe's, the largest size seen), every segment keeps one offset for every size no larger than it
(``plan_memory(reference=...)``), so each argument is an affine integer, a mean's scale m / (a + b·B), a filled
array of an affine shape, an op with such attributes, or the same object at every size. The arguments are fitted
from the reference-laid code at the first two sizes and must give the probe's own arguments exactly, or the
signature binds through the slower path (a memory plan and code per size). A size above the reference's, or a
program with a dimension that shrinks as B grows, takes that path too: its layout is not the reference's.
"""
from __future__ import annotations

import copy
import threading

import numpy as np

from .emit import Emitted, _count
from .generic import NotGeneric, _Affine, _at, _Form, _ratio, _Seq, fit


class _Scalar(_Form):
    """A 0-d array of a dtype holding a value that depends on B (a constant written into generated code)."""
    __slots__ = ("form", "dtype")

    def __init__(self, form, dtype):
        self.form, self.dtype = form, dtype

    def at(self, B):
        return np.asarray(self.form.at(B), self.dtype)


class _Op(_Form):
    """An op whose attributes depend on B: a copy of it with the attributes at B."""
    __slots__ = ("op", "attrs")

    def __init__(self, op, attrs):
        self.op, self.attrs = op, attrs

    def at(self, B):
        op = copy.copy(self.op)
        op.__dict__.update(self.attrs.at(B))
        return op


def fit_argument(x1, x2, B1, B2):
    """One form for an argument of ``bind`` seen at B1 and B2 (NotGeneric when there is none)."""
    if x1 is x2:
        return x1
    if (type(x1) is np.ndarray and type(x2) is np.ndarray and x1.ndim == x2.ndim == 0 and x1.dtype == x2.dtype
            and x1.dtype.kind == "f" and x1 != x2):
        dtype = x1.dtype
        return _Scalar(_ratio(float(x1), float(x2), B1, B2, cast=lambda r: float(np.asarray(r, dtype))), dtype)
    if isinstance(x1, (np.ndarray, np.generic, int, float, str, tuple, list, dict)) or x1 is None:
        return fit(x1, x2, B1, B2)
    if type(x1) is type(x2) and hasattr(x1, "__dict__"):
        attrs = fit(vars(x1), vars(x2), B1, B2)
        return _Op(x1, attrs) if isinstance(attrs, _Form) else x1
    raise NotGeneric(f"{x1!r} and {x2!r} differ")


def same(a, b) -> bool:
    """Whether two arguments of ``bind`` are the same (arrays by dtype, shape and values; ops by attributes)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float, str, np.generic, np.dtype)):
        return bool(a == b)
    if hasattr(a, "__dict__"):
        try:
            return not isinstance(fit(vars(a), vars(b), 0, 1), _Form)
        except NotGeneric:
            return False
    return False


def _shrinks(form) -> bool:
    """Whether a shape's form has a dimension that gets smaller as B grows."""
    if isinstance(form, _Affine):
        return form.b < 0
    return isinstance(form, _Seq) and any(_shrinks(x) for x in form.items)


class Binder:
    """``bind()``'s arguments at any batch size up to ``limit``: fitted at B1 and B2, checked at the probe."""

    def __init__(self, generic, template, probe, B3, emitted, reference):
        """``probe``: the executable at B3 whose layouts are ``reference`` (keyed by the generic program's
        Value.id); ``emitted``: [(B, Emitted laid out against them, not run)] at the first two sizes."""
        if any(_shrinks(shape) for _, _, shape, _ in generic.entries):
            raise NotGeneric("a dimension gets smaller as the batch grows: no layout serves the smaller sizes")
        (B1, e1), (B2, e2) = emitted
        a1, a2, a3 = (template.arguments(e.code, e.own_args) for e in (e1, e2, probe))
        if a1 is None or a2 is None or a3 is None or not a1.keys() == a2.keys() == a3.keys():
            raise NotGeneric("the code laid out against the probe's layout is not one text at every size")
        self.constant, self.forms = {}, {}
        for k in a1:
            form = fit_argument(a1[k], a2[k], B1, B2)
            if not same(_at(form, B3), a3[k]):
                raise NotGeneric(f"bind's argument {k} at B={B3} is {a3[k]!r}, not {_at(form, B3)!r}")
            (self.forms if isinstance(form, _Form) else self.constant)[k] = form
        self.limit, self.template, self.reference = B3, template, reference
        self.arrays_bytes = dict(probe.arrays_bytes)
        self.copy_in = list(e2._copy_in)
        self.layouts = dict(probe.layouts)

    def arguments(self, B: int) -> dict:
        args = dict(self.constant)
        for k, form in self.forms.items():
            args[k] = form.at(B)
        return args


class Bound(Emitted):
    """An executable bound from its signature's numbers: the shared compiled code, this size's arguments, its
    own arrays. What describes it as a program (``program``, ``code``, ``schedule``, the memory statistics) is
    made when first asked for, by ``describe()`` (the program at B laid out against the reference)."""

    def __init__(self, binder, B, stats, train, describe):
        self.B, self.train, self.n_bindings = B, train, 1
        self._describe, self._described = describe, None
        self._stats, self._pending_stats = dict(stats), lambda: self._full()._pending_stats()
        template = binder.template
        self._bind_args = binder.arguments(B)
        self._bind_fn = template.compiled(f"<graphnet plan {next(_count)}>")
        self.filename = template.filename
        self.arrays_bytes, self._copy_in = binder.arrays_bytes, binder.copy_in
        self._stats.update(code_shared=True, numbers_only=True, bytes_preallocated=dict(binder.arrays_bytes),
                           memory=dict(binder.layouts))
        self._main = self._bind_fn(**self._bind_args)
        self._owner = threading.get_ident()
        self._bindings = threading.local()

    def _full(self):
        if self._described is None:
            self._described = self._describe()
        return self._described

    program = property(lambda self: self._full().program)
    code = property(lambda self: self._full().code)
    linemap = property(lambda self: self._full().linemap)
    schedule = property(lambda self: self._full().schedule)
    fwd = property(lambda self: self._full().fwd)
    bwd = property(lambda self: self._full().bwd)


def fit_binder(fam, ref, B_ref, reference):
    """Give the signature ``fam`` the numbers that bind every size up to B_ref against the layout ``reference``
    of the executable ``ref`` at B_ref. Without them (``stats()['not_bound']`` says why) a new size plans its
    memory and makes its code; a signature that had them keeps its former ones."""
    try:
        emitted = [(b, laid_out(fam, b, reference)) for b in fam.fitted_at]
        fam.binder, fam.unbound = Binder(fam.generic, fam.template, ref, B_ref, emitted, reference), None
    except Exception as e:
        fam.unbound = f"{type(e).__name__}: {e}"


def laid_out(fam, B, reference):
    """The signature's program at B laid out against a reference layout: its code and arguments, not run."""
    return Emitted(fam.generic.at(B), fam.stats, train=fam.train, order=fam.order, reference=reference, run=False)
