"""Programs generic in the batch size: compiled at two sizes, every integer that differs fitted as a + b·B.

The batch size B reaches an optimized program in many places: shapes, the row blocks k·B the batching passes
slice, reshape targets, dropout-mask shapes, constants made by folding. Rather than teach every pass a symbolic
B, two programs compiled at sizes B1 and B2 are compared value by value: the same ops in the same order on the
same arguments, every attribute and shape equal except integers, and each integer pair fitted as a + b·B with
integer a and b (constant arrays may differ only in shape, when one value fills them). A third program, compiled
at B3, must then be exactly the generic one instantiated at B3, or the fit is rejected: anything that is not
provably affine in B (a float such as 1/B folded into an op, a structure that changes with B, a quadratic size)
is refused, and that signature keeps compiling per batch size. Instantiating at a new B builds a concrete
program in one walk, no pass run; a size that the signature's numbers bind needs not even that (``binder.py``).
"""
from __future__ import annotations

import copy

import numpy as np

from ..ops import Param
from .ir import Value
from .lower import Program


class NotGeneric(Exception):
    """Two programs that are not one program generic in B (the message says where)."""


class _Form:
    """A value that depends on B."""

    def at(self, B):
        raise NotImplementedError


class _Affine(_Form):
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b

    def at(self, B):
        return self.a + self.b * B


class _Seq(_Form):
    __slots__ = ("kind", "items")

    def __init__(self, kind, items):
        self.kind, self.items = kind, items

    def at(self, B):
        return self.kind(_at(x, B) for x in self.items)


class _Dict(_Form):
    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items

    def at(self, B):
        return {k: _at(x, B) for k, x in self.items.items()}


class _Filled(_Form):
    """An array of a shape depending on B, every entry ``fill``."""
    __slots__ = ("shape", "fill", "dtype")

    def __init__(self, shape, fill, dtype):
        self.shape, self.fill, self.dtype = shape, fill, dtype

    def at(self, B):
        return np.full(_at(self.shape, B), self.fill, self.dtype)


def _at(x, B):
    return x.at(B) if isinstance(x, _Form) else x


def fit(x1, x2, B1: int, B2: int):
    """One form for ``x1`` (seen at batch size B1) and ``x2`` (at B2): ``x1`` itself when they are equal."""
    if type(x1) is not type(x2):
        raise NotGeneric(f"{x1!r} and {x2!r} differ in kind")
    if isinstance(x1, (int, np.integer)) and not isinstance(x1, (bool, np.bool_)):
        if x1 == x2:
            return x1
        b, r = divmod(int(x2) - int(x1), B2 - B1)
        if r:
            raise NotGeneric(f"{x1} at B={B1} and {x2} at B={B2} are not a + b·B with integers a, b")
        return _Affine(int(x1) - b * B1, b)
    if isinstance(x1, float) and x1 != x2:
        return _ratio(x1, x2, B1, B2)
    if isinstance(x1, (tuple, list)):
        if len(x1) != len(x2):
            raise NotGeneric(f"{x1!r} and {x2!r} differ in length")
        items = [fit(a, b, B1, B2) for a, b in zip(x1, x2)]
        return _Seq(type(x1), items) if any(isinstance(x, _Form) for x in items) else x1
    if isinstance(x1, dict):
        if x1.keys() != x2.keys():
            raise NotGeneric(f"attributes {sorted(x1)} and {sorted(x2)} differ")
        items = {k: fit(x1[k], x2[k], B1, B2) for k in x1}
        return _Dict(items) if any(isinstance(x, _Form) for x in items.values()) else x1
    if isinstance(x1, np.ndarray):
        if x1.dtype == x2.dtype and x1.shape == x2.shape and np.array_equal(x1, x2):
            return x1
        if x1.dtype == x2.dtype and x1.size and x2.size and _filled(x1) and _filled(x2) and (
                x1.flat[0] == x2.flat[0]):
            return _Filled(fit(x1.shape, x2.shape, B1, B2), x1.flat[0], x1.dtype)
        raise NotGeneric(f"constant arrays of shapes {x1.shape} and {x2.shape} differ in their values")
    if x1 is x2:
        return x1
    try:
        if bool(x1 == x2):
            return x1
    except (TypeError, ValueError):
        pass
    raise NotGeneric(f"{x1!r} and {x2!r} differ")


class _Ratio(_Form):
    """m / q(B) for an integer m and q affine in B, computed as graphnet computes a mean's scale: (1 / q) * m."""
    __slots__ = ("m", "q")

    def __init__(self, m, q):
        self.m, self.q = m, q

    def at(self, B):
        r = 1.0 / self.q.at(B)
        return r if self.m == 1 else r * self.m


def _ratio(x1, x2, B1, B2, cast=float):
    """The form m / q(B) that gives x1 at B1 and x2 at B2 exactly (a 1/N scale of a mean over the batch, maybe
    times a count of merged terms), else NotGeneric. ``cast``: how the value is stored (a float32 constant is
    the float32 nearest the scale)."""
    for m in range(1, 65):
        if not x1 or not x2:
            break
        q1, q2 = m / x1, m / x2
        if abs(q1 - round(q1)) > 1e-6 * abs(q1) or abs(q2 - round(q2)) > 1e-6 * abs(q2):
            continue
        try:
            form = _Ratio(m, fit(round(q1), round(q2), B1, B2))
        except NotGeneric:
            continue
        if isinstance(form.q, _Affine) and cast(form.at(B1)) == x1 and cast(form.at(B2)) == x2:
            return form
    raise NotGeneric(f"{x1!r} at B={B1} and {x2!r} at B={B2} are not m / (a + b·B)")


def _filled(a):
    return bool(np.all(a == a.flat[0]))


_LISTS = ("args", "outputs", "seeds", "input_grads", "param_grads")


class Generic:
    """A program generic in B: per value its op (or the form of its attributes), its shape's form, its args."""

    def __init__(self, p1: Program, B1: int, p2: Program, B2: int):
        if len(p1.values) != len(p2.values):
            raise NotGeneric(f"{len(p1.values)} values at B={B1}, {len(p2.values)} at B={B2}")
        pos1 = {id(v): i for i, v in enumerate(p1.values)}
        pos2 = {id(v): i for i, v in enumerate(p2.values)}
        self.entries = []
        for u, v in zip(p1.values, p2.values):
            where = [pos1[id(a)] for a in u.args]
            if type(u.op) is not type(v.op) or where != [pos2[id(a)] for a in v.args] or u.dtype != v.dtype:
                raise NotGeneric(f"value {len(self.entries)}: {u} at B={B1}, {v} at B={B2}")
            if isinstance(u.op, Param):
                attrs = u.op if u.op.param is v.op.param else _fail(u, v)
            else:
                attrs = fit(vars(u.op), vars(v.op), B1, B2)
            self.entries.append((u, attrs if isinstance(attrs, _Form) else None, fit(u.shape, v.shape, B1, B2),
                                 tuple(where)))
        self.lists = {}
        for name in _LISTS:
            a = [None if x is None else pos1[id(x)] for x in getattr(p1, name)]
            if a != [None if x is None else pos2[id(x)] for x in getattr(p2, name)]:
                raise NotGeneric(f"the programs' {name} differ")
            self.lists[name] = a
        self.params = [(p, pos1[id(v)]) for p, v in p1.params]
        if [p for p, _ in p1.params] != [p for p, _ in p2.params]:
            raise NotGeneric("the programs' parameters differ")
        self.meta = dict(p1.meta)

    def at(self, B: int) -> Program:
        """The concrete program at batch size B."""
        values = []
        for u, attrs, shape, where in self.entries:
            v = Value.__new__(Value)
            if attrs is None:
                v.op = u.op
            else:
                v.op = copy.copy(u.op)
                v.op.__dict__.update(attrs.at(B))
            v.args = tuple(values[k] for k in where)
            v.shape, v.dtype, v.src, v.id = _at(shape, B), u.dtype, u.src, u.id
            values.append(v)

        def pick(k):
            return None if k is None else values[k]
        lists = {name: [pick(k) for k in ks] for name, ks in self.lists.items()}
        return Program(values=values, params=[(p, values[k]) for p, k in self.params], meta=dict(self.meta),
                       **lists)

    def check(self, p3: Program, B3: int):
        """Raise NotGeneric unless ``p3`` (compiled at B3) is exactly this program at B3."""
        mine = self.at(B3)
        if len(mine.values) != len(p3.values):
            raise NotGeneric(f"{len(p3.values)} values at B={B3}, expected {len(mine.values)}")
        pos = {id(v): i for i, v in enumerate(p3.values)}
        for (_, _, _, where), u, v in zip(self.entries, mine.values, p3.values):
            if type(u.op) is not type(v.op) or u.shape != v.shape or u.dtype != v.dtype or (
                    where != tuple(pos[id(a)] for a in v.args)):
                raise NotGeneric(f"at B={B3}: {v}, expected {u}")
            if isinstance(u.op, Param):
                same = u.op.param is v.op.param
            else:                              # every attribute equal: fitted as constants
                same = u.op is v.op or not isinstance(fit(vars(u.op), vars(v.op), 0, 1), _Form)
            if not same:
                raise NotGeneric(f"at B={B3}: {v!r} has other attributes than {u!r}")
        for name, ks in self.lists.items():
            if ks != [None if x is None else pos[id(x)] for x in getattr(p3, name)]:
                raise NotGeneric(f"at B={B3}: the program's {name} differ")
        return self


def _fail(u, v):
    raise NotGeneric(f"{u} and {v} read different parameters")
