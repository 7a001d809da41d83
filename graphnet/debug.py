"""``gn.debug()``: on an error, draw the graph with the failing node in red and say where the drawing is.

While a ``debug`` block is active, the places where errors leave graphnet (module calls while building, plans
while running) pass each GraphnetError through ``on_error``. It writes an SVG of the graph (or, while a graph
is being built, of what the failing node depends on) with that node filled red, and returns an error of the
same class whose message ends with "graph with the failing node in red: PATH". A failed drawing never hides
the original error: the error comes back with a note saying why there is no drawing.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile

_state = {"depth": 0, "check_finite": False, "dir": None}
_tmpdir = None                      # made once per process, when no directory was given


def active() -> bool:
    return _state["depth"] > 0


def check_finite_enabled() -> bool:
    return active() and _state["check_finite"]


@contextlib.contextmanager
def debug(check_finite: bool = False, directory=None):
    """Within this block, errors name the failing node and end with the path of an SVG showing it in red.

    check_finite: also stop at the first op that makes a NaN or an Inf. directory: where the drawings go
    (default: a temporary directory). The returned error also has ``.drawing``, the path of the file.
    """
    saved = dict(_state)
    _state.update(depth=saved["depth"] + 1, check_finite=check_finite,
                  dir=os.fspath(directory) if directory is not None else None)
    try:
        yield
    finally:
        _state.update(saved)


def on_error(err, graph=None, inputs=None):
    """Called where an error leaves graphnet (plans, module calls) while debug is active: returns the error,
    its message extended with the failing node's inputs and their shapes, then the path of an SVG of
    ``graph`` (a gModule, or None: the failing node's ancestors) with the failing node drawn red.

    inputs: the arrays the graph ran on, when known: the shapes shown are then theirs, not the symbolic ones.
    """
    if getattr(err, "_debug_seen", False):            # already handled by an inner call
        return err
    node = getattr(err, "node", None)
    known = _known_shapes(graph, inputs)
    text = str(err) + _inputs_line(node, known)
    try:
        drawn = _draw(node, graph, known)
    except Exception as e:                            # never let a drawing failure hide the error
        return _with_message(err, f"{text}\n  (gn.debug could not draw the graph: {type(e).__name__}: {e})", None)
    if drawn is None:
        return _with_message(err, text, None)
    path, what = drawn
    return _with_message(err, f"{text}\n  {what}: {path}", path)


def _known_shapes(graph, inputs) -> dict:
    """id(node) -> shape for the arrays the graph ran on; empty when they are not known or do not fit."""
    if graph is None or inputs is None:
        return {}
    from .render_graph import _shapes_for
    try:
        return _shapes_for(graph, inputs, partial=True)
    except Exception:                                 # the inputs that caused the error may well not fit
        return {}


def _inputs_line(node, known) -> str:
    """'its inputs: 'i2h' (4, 8), 'h2h' (4, 8)': what flows into the failing node."""
    if node is None or not getattr(node, "inputs", None):
        return ""
    from .errors import fmt_shape
    parts = [f"'{p.display_name()}' {fmt_shape(known.get(id(p), p.shape))}" for p in node.inputs]
    return "\n  its inputs: " + ", ".join(parts)


def _draw(node, graph, known=None):
    # by name from the submodule: once graphnet/__init__ exports gn.render, ``graphnet.render`` is that function
    from .render import ancestors_to_dot, contains, dot_available, failure_to_dot, write
    if graph is not None and (node is None or contains(graph, node)):
        dot = failure_to_dot(graph, node, known)
        what = "graph with the failing node in red" if node is not None else "graph (no single node at fault)"
    elif node is not None:
        dot = ancestors_to_dot(node)
        what = "graph with the failing node in red"
    else:
        return None
    base = _new_path(node)
    if dot_available():
        path = base + ".svg"
        write(dot, path, "svg")
    else:
        path = base + ".dot"
        write(dot, path, "dot")
        what = (f"(graphviz's dot is not installed, so this drawing is DOT source, not SVG: apt-get install "
                f"graphviz / brew install graphviz / conda install graphviz)\n  {what}")
    return path, what


def _new_path(node) -> str:
    """A fresh file name (without suffix) in the debug directory, named after the failing node."""
    global _tmpdir
    directory = _state["dir"]
    if directory is None:
        if _tmpdir is None or not os.path.isdir(_tmpdir):
            _tmpdir = tempfile.mkdtemp(prefix="graphnet-debug-")
        directory = _tmpdir
    os.makedirs(directory, exist_ok=True)
    name = "graph"
    if node is not None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.display_name())[:40] or "node"
    k = 1
    while any(os.path.exists(os.path.join(directory, f"graphnet-error-{name}-{k}{s}")) for s in (".svg", ".dot")):
        k += 1
    return os.path.abspath(os.path.join(directory, f"graphnet-error-{name}-{k}"))


def _with_message(err, message, path):
    """An error of the same class as ``err``, same node and traceback, with a new message."""
    node = getattr(err, "node", None)
    try:
        new = type(err)(message, node)
    except Exception:
        new = type(err).__new__(type(err))
        new.__dict__.update(err.__dict__)
        new.args = (message,)
    new.node = node
    new.drawing = path
    new._debug_seen = True
    new.__cause__ = err.__cause__
    return new.with_traceback(err.__traceback__)


# Once graphnet/__init__ exports gn.debug (the function above), the package attribute ``graphnet.debug`` is that
# function, and code that reaches this module as ``from . import debug`` gets the function: give it the
# module's interface too, so ``debug.active()`` and ``debug.on_error(...)`` work either way.
debug.active = active
debug.check_finite_enabled = check_finite_enabled
debug.on_error = on_error
