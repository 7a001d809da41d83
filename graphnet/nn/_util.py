"""Small helpers shared by the module files."""
from __future__ import annotations

import numbers

from ..errors import ShapeError, build_error, node_error  # noqa: F401 (build_error: the nn files import it from here)


def fail(b, message, cls=ShapeError):
    """An error (ShapeError unless told) about the graph node being lowered on builder ``b``."""
    return node_error(cls, message, b.src, context=reversed(b._src[:-1]))


def check_int(name, value, lo=None, module=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise build_error(f"{module}: {name} must be an int, got {value!r}")
    if lo is not None and value < lo:
        raise build_error(f"{module}: {name} must be >= {lo}, got {value}")
    return int(value)


def check_float(name, value, module=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise build_error(f"{module}: {name} must be a number, got {value!r}")
    return float(value)
