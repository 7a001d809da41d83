"""The module classes a file may name: graphnet's own (graphnet.nn, gModule) and those the user registers.

A file names a module's class by a short name. Loading looks that name up here and nowhere else: it never
imports a module or a class named in a file, so a file can only build what the program has declared.
"""
from __future__ import annotations

from .. import module as _module
from ..errors import FormatError
from ..errors import build_error

_REGISTRY = {}
_USER = {}


def _own() -> dict:
    if not _REGISTRY:
        from .. import nn
        from ..gmodule import gModule
        for name in sorted(n for n in dir(nn) if not n.startswith("_")):
            obj = getattr(nn, name)
            # abstract bases (Module, Criterion, Container) compute nothing: a file may not name them
            if isinstance(obj, type) and issubclass(obj, _module.Module) and _computes(obj):
                _REGISTRY[name] = obj
        _REGISTRY["gModule"] = gModule
    return _REGISTRY


def _computes(cls) -> bool:
    return cls.lower is not _module.Module.lower or callable(getattr(cls, "update_output", None))


def registry() -> dict:
    """{name: class}: every module class that a file may name (graphnet.nn's concrete classes, gModule, and the
    classes registered with ``gn.register_module``)."""
    return {**_own(), **_USER}


def register_module(cls, name: str | None = None):
    """Let ``gn.save``/``gn.load`` handle the module class ``cls`` under ``name`` (default: its class name).

    Usable as a decorator. Its constructor arguments are saved as JSON values and given back to it on load, its
    parameters as arrays. Registering the same class again is harmless; another class under a taken name is
    refused."""
    if not (isinstance(cls, type) and issubclass(cls, _module.Module)):
        raise build_error(f"gn.register_module takes a gn.Module subclass, got {cls!r}")
    if not _computes(cls):
        raise build_error(f"gn.register_module({cls.__name__}): it defines neither lower(b, *xs) nor update_output")
    name = cls.__name__ if name is None else name
    if not isinstance(name, str) or not name.isidentifier():
        raise build_error(f"gn.register_module: the name must be an identifier, got {name!r}")
    taken = registry().get(name)
    if taken is not None and taken is not cls:
        raise build_error(f"gn.register_module: the name {name!r} is taken by {taken.__module__}."
                         f"{taken.__qualname__}; register {cls.__qualname__} under another name")
    _USER[name] = cls
    return cls


def _kind_of(m) -> str:
    for name, cls in registry().items():
        if type(m) is cls:
            return name
    raise FormatError(f"cannot save {m.label()}: {type(m).__module__}.{type(m).__qualname__} is not registered; "
                      f"call gn.register_module({type(m).__name__}) first (a file names its modules only by the "
                      f"registry, and loading needs the same registration)")


def _is_container(m) -> bool:
    return isinstance(getattr(m, "_members", None), list) and callable(getattr(m, "add", None))
