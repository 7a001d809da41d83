"""What a plan compiles per and keeps across batch sizes: feature signatures, their families, the bytes kept.

A feature signature is what a compiled program depends on besides the batch size: each input's rank, its sizes
but a batch dimension, its dtype and whether its first dimension is the batch (the first input's first
dimension). A family follows one feature signature across batch sizes (see ``generic.py``).
"""
from __future__ import annotations

import contextlib
import gc
import threading


class Family:
    """One feature signature (ranks, non-batch sizes, dtypes, modes) across batch sizes: a compiled program
    waiting for a second size (``sample``), then the generic program, or False when there is none."""

    def __init__(self):
        self.sample, self.generic, self.reason, self.template, self.order = None, None, None, None, None
        self.binder, self.unbound, self.fitted_at = None, None, None   # bind()'s arguments per size or why
        # there are none; the sizes they are fitted at
        self.stats, self.train, self.random = {}, False, False


_gc_state = {"depth": 0, "was": True}
_gc_lock = threading.Lock()


@contextlib.contextmanager
def gc_paused():
    """The cyclic garbage collector paused while a plan is built: building allocates many objects that live
    on or die by reference counting, and the collections they trigger would scan the whole heap again and
    again (half of a new batch size's cost). Nested and concurrent pauses resume it once, as it was."""
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["was"] = gc.isenabled()
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            if _gc_state["depth"] == 0 and _gc_state["was"]:
                gc.enable()


def nbytes(exe):
    """Bytes of preallocated arrays an executable holds: one set per thread that ran it."""
    return sum(getattr(exe, "arrays_bytes", {}).values()) * getattr(exe, "n_bindings", 1)


def batch_size(arrays):
    """The batch size: the first input's first dimension (None for a scalar first input)."""
    first = arrays[0] if arrays else None
    return first.shape[0] if first is not None and first.ndim else None


def feature_of(x, B):
    """What an input contributes to the feature signature: its rank, its sizes but a batch dimension, its dtype,
    and whether its first dimension is the batch."""
    batched = B is not None and x.ndim > 0 and x.shape[0] == B
    return x.ndim, x.shape[1:] if batched else x.shape, x.dtype.str, batched
