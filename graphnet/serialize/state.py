"""Optimizer state (any dict of JSON values and arrays): ``gn.save_state`` / ``gn.load_state``."""
from __future__ import annotations

from ..errors import FormatError
from .archive import DEFAULT_MAX_BYTES, STATE, VERSION, _check_source, _format_error, _load_checked, _table_entry, _write
from .schema import _Decoder, _Fail, _encode, _resolve


def save_state(obj, path) -> None:
    """Write ``obj.state_dict()`` (or the dict ``obj``) to ``path``: JSON for the values, npz for the arrays."""
    state = obj.state_dict() if callable(getattr(obj, "state_dict", None)) else obj
    if not isinstance(state, dict):
        raise FormatError(f"gn.save_state takes an object with state_dict() or a dict, got {type(obj).__name__}")
    arrays = []
    value = _encode(state, arrays=arrays, where="the state")
    named = [(f"a{i}", a) for i, a in enumerate(arrays)]
    doc = {"format": STATE, "version": VERSION, "state": value, "arrays": [_table_entry(k, a) for k, a in named]}
    _write(path, "state.json", doc, "arrays.npz", named)


def load_state(path, into=None, *, max_bytes: int = DEFAULT_MAX_BYTES):
    """The state dict saved by ``save_state``; with ``into``, also ``into.load_state_dict(state)``."""
    _check_source(path, "gn.load_state")
    try:
        doc, table, read_arrays = _load_checked(path, "state.json", "arrays.npz", STATE,
                                                ("format", "version", "state", "arrays"), max_bytes)
        dec = _Decoder(n_arrays=len(table))
        value = dec(doc["state"], "state.json: state")
        uses = sorted(i for i, _, _ in dec.arrays_used)
        if uses != list(range(len(table))):
            raise _Fail("state.json: each entry of arrays must be used exactly once by the state")
        for i, scalar, p in dec.arrays_used:
            if scalar and table[i][1] != ():
                raise _Fail(f"{p}: a scalar needs a 0-d array, arrays[{i}] has shape {table[i][1]}")
        arrays = read_arrays()
        state = _resolve(value, lambda r: arrays[r.index][()] if r.scalar else arrays[r.index])
    except _Fail as e:
        raise _format_error(path, e) from None
    if into is not None:
        into.load_state_dict(state)
    return state
