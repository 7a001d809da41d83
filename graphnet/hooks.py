"""What the lower layers call in the layers above them, registered by those layers rather than imported.

graphnet's lower layers import only downwards (``errors`` -> ``ops``, ``hooks`` -> ``node``, ``module`` ->
``nn``, ``gmodule`` -> ``compile`` -> ``render*``; README "How it works"). Yet a few things they do need the
layers above: calling a module infers shapes by lowering it on the compiler's IR builder, ``forward`` compiles
a plan, ``a + b`` on nodes builds ``nn.CAddTable``, a gModule draws itself, errors pass through ``gn.debug``.
Those layers register what they offer here (``graphnet/__init__`` does it once, after importing them), so the
arrows of imports all point one way and each lower layer can be imported, and tested, without the ones above.
"""
from __future__ import annotations

from .errors import GraphError

_provided: dict = {}


def provide(**services) -> None:
    """Register what an upper layer offers: ``provide(builder=Builder, compile=compile, ...)``."""
    _provided.update(services)


def need(name: str):
    """What was registered under ``name``; a clear error when the layer that offers it is not loaded."""
    try:
        return _provided[name]
    except KeyError:
        raise GraphError(f"graphnet's '{name}' is not registered: the layer that offers it was not loaded "
                         f"(import graphnet, which loads every layer)") from None


class errors_shown:
    """A ``with`` block whose errors of class ``kind`` leave it as ``debug_view`` shows them. Stateless, so one
    instance serves every call (a plain class: building calls it once per node, cheaper than a generator)."""
    __slots__ = ("kind",)

    def __init__(self, kind):
        self.kind = kind

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is None or not issubclass(kind, self.kind):
            return False
        shown = debug_view(err)
        if shown is err:
            return False                # the error goes on as it was
        raise shown from None


def debug_view(err):
    """The error to raise where it leaves graphnet: under ``gn.debug()``, ``err`` with a drawing of the graph
    (see graphnet/debug.py); otherwise ``err`` itself."""
    active, on_error = _provided.get("debug_active"), _provided.get("debug_on_error")
    if active is None or not active():
        return err
    return on_error(err)
