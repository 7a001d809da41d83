"""graphnet's errors, and the one place that writes their text.

Every user mistake raises a subclass of ``GraphnetError`` (itself a ``ValueError``) whose message names the
node, its op, the shapes involved and the file:line where the node was built.
"""
from __future__ import annotations

import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class GraphnetError(ValueError):
    """Base of all graphnet errors. ``node`` is the graph node at fault, when there is one."""

    def __init__(self, message: str, node=None):
        super().__init__(message)
        self.node = node


class GraphError(GraphnetError):
    """A graph that cannot be built or packed."""


class ShapeError(GraphnetError):
    """Shapes that do not fit an op."""


class InputError(GraphnetError):
    """Run-time inputs that do not fit the graph."""


class InputShapeError(InputError, ShapeError):
    """A run-time input whose shape does not fit the graph (both an InputError and a ShapeError)."""


class FormatError(GraphnetError):
    """A file that ``gn.load`` cannot accept."""


class RenderError(GraphnetError):
    """A graph that cannot be drawn (most often: graphviz's ``dot`` is not installed)."""


class ShapeMismatch(Exception):
    """Raised by an op's shape rule; the builder turns it into a ShapeError that names the node."""


def caller_site() -> str:
    """file:line of the innermost frame outside the graphnet package (where the user built something)."""
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_PKG_DIR + os.sep):
            return f"{_short(fn)}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith(".." + os.sep + "..") else rel


def fmt_shape(shape) -> str:
    if shape is None:
        return "(?)"
    if isinstance(shape, list):
        return "[" + ", ".join(fmt_shape(s) for s in shape) + "]"
    dims = ["?" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def describe(node) -> str:
    """One line naming a graph node: its name, module, shape and the file:line that built it."""
    if node is None:
        return ""
    name = node.display_name()
    what = node.op_label()
    return f"node '{name}' ({what}, output shape {fmt_shape(node.shape)}) built at {node.site}"


def node_error(cls, message: str, node=None, context=None):
    """Build an error of class ``cls`` whose text ends with the node (and enclosing nodes) it concerns."""
    lines = [message]
    if node is not None:
        lines.append("  at " + describe(node))
    for outer in context or ():
        if outer is not node:
            lines.append("  inside " + describe(outer))
    return cls("\n".join(lines), node)


def build_error(message) -> GraphError:
    """A GraphError about a module being made or configured, ending with the user's file:line."""
    return GraphError(f"{message} (at {caller_site()})")
