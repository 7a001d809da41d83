"""Clones as in torch7: ``m.clone()`` is an independent deep copy; ``m.clone('weight', 'gradWeight', ...)``
shares the named parameters' data and/or gradients; ``clone_many_times(m, n)`` shares them all.

A parameter whose data and gradient are both shared is the same ``Parameter`` object in the clone, so that
``parameters()`` of a model holding several clones counts it once and every clone's backward accumulates into
one ``.grad``. Sharing only one of the two makes a new ``Parameter`` over the same array.
"""
from __future__ import annotations

import copy

from .errors import build_error


def _grad_name(key: str) -> str:
    return "grad" + key[:1].upper() + key[1:]


def clone_module(module, names=()):
    """A deep copy of ``module`` sharing the parameters named in ``names`` (see the module docstring)."""
    mods = module.modules()
    keys = {k for m in mods for k in m._params}
    known = keys | {_grad_name(k) for k in keys}
    for n in names:
        if not isinstance(n, str) or n not in known:
            raise build_error(f"{module.label()}.clone({', '.join(map(repr, names))}): {n!r} names no parameter "
                             f"of it; its parameters are {', '.join(sorted(keys)) or 'none'} (and their gradients "
                             f"{', '.join(_grad_name(k) for k in sorted(keys)) or 'none'})")
    memo = {}
    for m in mods:
        memo[id(m._plans)] = {}               # compiled plans belong to the original; the copy compiles its own
        if m.__dict__.get("_out_shapes") is not None:
            memo[id(m._out_shapes)] = None     # what the original last ran on is not the copy's
        for key, p in m._params.items():
            data, grad = key in names, _grad_name(key) in names
            if data and grad:
                memo[id(p)] = p
            elif data or grad:
                q = copy.copy(p)
                q.data = p.data if data else p.data.copy()
                q.grad = p.grad if grad else p.grad.copy()
                memo[id(p)] = q
    return copy.deepcopy(module, memo)


def clone_many_times(module, n: int) -> list:
    """n clones of ``module`` that share all its parameters and gradients (torch7's g_cloneManyTimes)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise build_error(f"clone_many_times(module, n): n must be an int >= 0, got {n!r}")
    names = {k for m in module.modules() for k in m._params}
    names |= {_grad_name(k) for k in names}
    return [clone_module(module, tuple(sorted(names))) for _ in range(n)]
