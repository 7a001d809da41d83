"""The JSON side of a saved file: limits, the value codec (tuples, dicts, non-finite floats, array and module
references as tagged objects) and the checks of every field's type, each failure naming its JSON path."""
from __future__ import annotations

import json
import math

import numpy as np

from .. import module as _module
from ..errors import FormatError

MAX_ITEMS = 1 << 22                # nodes, modules, arrays, list entries
MAX_STR = 4096
MAX_DEPTH = 32
MAX_INT = 1 << 53
_DTYPES = {n: np.dtype(n) for n in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                    "uint8", "uint16", "uint32", "uint64", "bool")}


class _Fail(Exception):
    """A problem found at ``where`` (a member and a JSON path); ``load`` turns it into a FormatError."""


# ---------------------------------------------------------------------------------------- values (JSON codec)

def _encode(v, arrays=None, modules=None, where="value", depth=0):
    """A Python value as JSON. Tuples, dicts (keys: strings or ints), non-finite floats, numpy arrays and
    scalars (into ``arrays``, when given) and modules (by index in ``modules``, when given) become tagged
    objects: {"tuple": [...]}, {"dict": [[k, v], ...]}, {"float": "nan"}, {"array": i}, {"module": i}."""
    if depth > MAX_DEPTH:
        raise FormatError(f"cannot save {where}: nested more than {MAX_DEPTH} deep")
    if arrays is not None and isinstance(v, (np.ndarray, np.generic)):
        arrays.append(np.asarray(v))
        return {"scalar" if isinstance(v, np.generic) else "array": len(arrays) - 1}
    if isinstance(v, np.generic) and v.dtype.kind in "biuf":
        v = v.item()
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, (list, tuple)):
        items = [_encode(x, arrays, modules, where, depth + 1) for x in v]
        return items if isinstance(v, list) else {"tuple": items}
    if isinstance(v, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in v):
            raise FormatError(f"cannot save {where}: dict keys must be strings or ints")
        return {"dict": [[k, _encode(x, arrays, modules, where, depth + 1)] for k, x in v.items()]}
    if modules is not None and isinstance(v, _module.Module) and id(v) in modules:
        return {"module": modules[id(v)]}
    raise FormatError(f"cannot save {where}: a {type(v).__name__} is not a value graphnet writes (JSON types, "
                      f"tuples{', numpy arrays' if arrays is not None else ''})")


class _Decoder:
    """Checks and decodes values written by ``_encode``; ``n_arrays``/``n_modules`` bound the references."""

    def __init__(self, n_arrays=None, n_modules=None):
        self.n_arrays, self.n_modules = n_arrays, n_modules      # None: that kind of reference is not allowed
        self.arrays_used, self.modules_used = [], []

    def __call__(self, v, path, depth=0):
        if depth > MAX_DEPTH:
            raise _Fail(f"{path}: nested more than {MAX_DEPTH} deep")
        if v is None or isinstance(v, (bool, float)):
            return v
        if isinstance(v, int):
            return _int(v, path)
        if isinstance(v, str):
            return _str(v, path)
        if isinstance(v, list):
            _len(v, path)
            return [self(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]
        if not isinstance(v, dict) or len(v) != 1:
            raise _Fail(f"{path}: expected a JSON scalar, a list or a tagged object such as {{\"tuple\": [...]}}, "
                        f"got {_what(v)}")
        (tag, x), = v.items()
        if tag == "tuple":
            return tuple(self(_list(x, f"{path}.tuple"), f"{path}.tuple", depth))
        if tag == "float":
            if x not in ("nan", "inf", "-inf"):
                raise _Fail(f"{path}.float: expected \"nan\", \"inf\" or \"-inf\", got {_what(x)}")
            return float(x)
        if tag == "dict":
            out = {}
            for i, pair in enumerate(_list(x, f"{path}.dict")):
                p = f"{path}.dict[{i}]"
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _Fail(f"{p}: expected a [key, value] pair, got {_what(pair)}")
                k = pair[0]
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise _Fail(f"{p}[0]: a key must be a string or an int, got {_what(k)}")
                if k in out:
                    raise _Fail(f"{p}[0]: key {k!r} appears twice")
                out[_str(k, p) if isinstance(k, str) else _int(k, p)] = self(pair[1], f"{p}[1]", depth + 1)
            return out
        if tag in ("array", "scalar") and self.n_arrays is not None:
            i = _index(x, self.n_arrays, f"{path}.{tag}", "arrays")
            self.arrays_used.append((i, tag == "scalar", f"{path}.{tag}"))
            return _Ref("array", i, tag == "scalar")
        if tag == "module" and self.n_modules is not None:
            i = _index(x, self.n_modules, f"{path}.module", "modules")
            self.modules_used.append(i)
            return _Ref("module", i)
        raise _Fail(f"{path}: unknown tag {tag!r} (a file holds data, never code or names to look up)")


class _Ref:
    """A reference to an array or a module, resolved once those are loaded or built."""
    __slots__ = ("what", "index", "scalar")

    def __init__(self, what, index, scalar=False):
        self.what, self.index, self.scalar = what, index, scalar


def _resolve(v, lookup):
    if isinstance(v, _Ref):
        return lookup(v)
    if isinstance(v, list):
        return [_resolve(x, lookup) for x in v]
    if isinstance(v, tuple):
        return tuple(_resolve(x, lookup) for x in v)
    if isinstance(v, dict):
        return {k: _resolve(x, lookup) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------------- JSON field checks

def _what(v) -> str:
    names = {type(None): "null", bool: "a boolean", int: "an int", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    text = json.dumps(v)[:40] if isinstance(v, (str, int, float)) else ""
    return names.get(type(v), type(v).__name__) + (f" ({text})" if text else "")


def _obj(v, path, keys):
    if not isinstance(v, dict):
        raise _Fail(f"{path}: expected an object with keys {', '.join(keys)}, got {_what(v)}")
    missing = [k for k in keys if k not in v]
    extra = [k for k in v if k not in keys]
    if missing:
        raise _Fail(f"{path}: missing key{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}")
    if extra:
        raise _Fail(f"{path}: unknown key{'s' * (len(extra) > 1)} {', '.join(repr(k[:40]) for k in extra)}")
    return v


def _list(v, path, max_len=MAX_ITEMS):
    if not isinstance(v, list):
        raise _Fail(f"{path}: expected a list, got {_what(v)}")
    return _len(v, path, max_len)


def _len(v, path, max_len=MAX_ITEMS):
    if len(v) > max_len:
        raise _Fail(f"{path}: {len(v)} entries, more than the limit {max_len}")
    return v


def _int(v, path, lo=-MAX_INT, hi=MAX_INT):
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Fail(f"{path}: expected an int, got {_what(v)}")
    if not lo <= v <= hi:
        raise _Fail(f"{path}: {v} is out of range [{lo}, {hi}]")
    return v


def _index(v, n, path, table):
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Fail(f"{path}: expected an index into {table}, got {_what(v)}")
    if not 0 <= v < n:
        raise _Fail(f"{path}: index {v} is out of range: {table} has {n} entries")
    return v


def _str(v, path, max_len=MAX_STR):
    if not isinstance(v, str):
        raise _Fail(f"{path}: expected a string, got {_what(v)}")
    if len(v) > max_len:
        raise _Fail(f"{path}: a string of {len(v)} characters, more than the limit {max_len}")
    return v


def _opt_str(v, path, max_len=MAX_STR):
    return None if v is None else _str(v, path, max_len)


def _bool(v, path):
    if not isinstance(v, bool):
        raise _Fail(f"{path}: expected true or false, got {_what(v)}")
    return v


def _name_map(v, path, n_arrays):
    """{attribute name: array index}."""
    if not isinstance(v, dict):
        raise _Fail(f"{path}: expected an object {{name: array index}}, got {_what(v)}")
    for k, i in v.items():
        if not k.isidentifier():
            raise _Fail(f"{path}: {k[:40]!r} is not an attribute name")
        _index(i, n_arrays, f"{path}.{k}", "arrays")
    return v


def _dtype(v, path, allowed):
    if not isinstance(v, str) or v not in allowed:
        raise _Fail(f"{path}: dtype {_what(v)} is not one of {', '.join(allowed)}")
    return _DTYPES[v]
