"""Saving and loading: a model (or an optimizer's state) is one zip file of JSON and npz, validated on load.

A model file holds ``graph.json`` (the modules, each as its class name in graphnet's own registry with its
JSON-typed constructor arguments; the nodes, each with its module and input edges; one table of arrays) and
``params.npz`` (the parameters and buffers, one .npy member per array). Shared modules and parameters are
written once and referred to by index, so sharing survives the round trip. Loading never unpickles anything
(pickle files are refused, not read), never imports or looks up a name found in the file outside the registry,
and checks everything it can before building: the zip, every JSON field's type, the references, the .npy
headers against the declared shapes and dtypes, and sizes, before any array is read.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile

import networkx as nx
import numpy as np

from . import module as _module
from .errors import FormatError
from .node import APPLY, INPUT, ITEM, Input

__all__ = ["save", "load", "save_state", "load_state", "registry", "VERSION"]

VERSION = 1
MODEL, STATE = "graphnet.model", "graphnet.state"
DEFAULT_MAX_BYTES = 2 << 30        # total of the arrays, uncompressed
MAX_JSON_BYTES = 64 << 20
MAX_ITEMS = 1 << 22                # nodes, modules, arrays, list entries
MAX_STR = 4096
MAX_DEPTH = 32
MAX_INT = 1 << 53
_NPY_HEADER_MAX = 1 << 16
_DATE = (1980, 1, 1, 0, 0, 0)      # fixed timestamps: the same model gives the same bytes
_DTYPES = {n: np.dtype(n) for n in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                    "uint8", "uint16", "uint32", "uint64", "bool")}
_FLOATS = ("float16", "float32", "float64")
_NODE_KINDS = (INPUT, APPLY, ITEM)
_LAYOUTS = {("graph.json", "params.npz"): "a model (read it with gn.load)",
            ("state.json", "arrays.npz"): "a saved state (read it with gn.load_state)"}


class _Fail(Exception):
    """A problem found at ``where`` (a member and a JSON path); ``load`` turns it into a FormatError."""


# ------------------------------------------------------------------------------------------------ registry

_REGISTRY = {}


def registry() -> dict:
    """{name: class}: every module class that a file may name (graphnet.nn's public concrete classes, gModule)."""
    if not _REGISTRY:
        from . import nn
        from .gmodule import gModule
        for name in sorted(n for n in dir(nn) if not n.startswith("_")):
            obj = getattr(nn, name)
            # abstract bases (Module, Criterion, Container) compute nothing: a file may not name them
            if isinstance(obj, type) and issubclass(obj, _module.Module) and obj.lower is not _module.Module.lower:
                _REGISTRY[name] = obj
        _REGISTRY["gModule"] = gModule
    return _REGISTRY


def _kind_of(m) -> str:
    for name, cls in registry().items():
        if type(m) is cls:
            return name
    raise FormatError(f"cannot save {m.label()}: {type(m).__module__}.{type(m).__qualname__} is not one of graphnet's "
                      f"own module classes (graphnet.nn), and a file names its modules only by that registry")


def _is_container(m) -> bool:
    return isinstance(getattr(m, "_members", None), list) and callable(getattr(m, "add", None))


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


# ----------------------------------------------------------------------------------------- zip and npz

def _write(path, doc_name, doc, npz_name, arrays):
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_STORED) as z:
        for key, a in arrays:
            f = io.BytesIO()
            np.lib.format.write_array(f, np.require(a, requirements="C"), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(key + ".npy", _DATE), f.getvalue())
    text = json.dumps(doc, indent=1, allow_nan=False).encode("utf-8")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo(doc_name, _DATE), text, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo(npz_name, _DATE), npz.getvalue(), compress_type=zipfile.ZIP_STORED)


def _members(source, names: dict, what: str) -> dict:
    """The members ``names`` ({name: byte limit}) of the zip ``source``, nothing more, each read with its limit."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                data = f.read()
            source = io.BytesIO(data)
        return _zip_members(zipfile.ZipFile(source), names, what)
    except _Fail:
        raise
    except OSError as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise _Fail(f"{what} cannot be read: {e}") from None
    except Exception as e:     # zipfile's and zlib's own errors on a damaged file: all mean "not acceptable"
        raise _Fail(f"{what} is not a graphnet zip file ({type(e).__name__}: {e})") from None


def _zip_members(z, names, what):
    infos = z.infolist()
    seen = [i.filename for i in infos]
    if len(seen) != len(set(seen)):
        raise _Fail(f"{what} names a member twice")
    for layout, other in _LAYOUTS.items():
        if set(seen) == set(layout) != set(names):
            raise _Fail(f"{what} holds {' and '.join(layout)}: it is {other}")
    missing = sorted(set(names) - set(seen))
    extra = sorted(set(seen) - set(names))
    if missing:
        raise _Fail(f"{what} lacks member{'s' * (len(missing) > 1)} {', '.join(repr(n) for n in missing[:8])}")
    if extra:
        raise _Fail(f"{what} holds unexpected member{'s' * (len(extra) > 1)} "
                    f"{', '.join(repr(n[:60]) for n in extra[:8])}")
    out = {}
    for info in infos:
        name, limit = info.filename, names[info.filename]
        where = f"{what}: member '{name}'"
        if info.flag_bits & 0x1:
            raise _Fail(f"{where} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Fail(f"{where} uses compression method {info.compress_type}; only stored and deflated are read")
        if info.file_size > limit:
            raise _Fail(f"{where} declares {info.file_size} bytes, more than the limit {limit}")
        try:
            with z.open(info) as f:
                data = f.read(limit + 1)
        except Exception as e:
            raise _Fail(f"{where} is corrupt or truncated ({type(e).__name__}: {e})") from None
        if len(data) > limit or len(data) != info.file_size:
            raise _Fail(f"{where} holds {len(data)} bytes but declares {info.file_size}")
        out[name] = data
    return out


def _parse_json(data: bytes, where: str):
    def pairs(items):
        d = {}
        for k, v in items:
            if k in d:
                raise _Fail(f"{where}: key {k[:40]!r} appears twice in one object")
            d[k] = v
        return d

    def constant(c):
        raise _Fail(f"{where}: {c} is not JSON (write non-finite numbers as {{\"float\": \"nan\"}})")

    def number(s):
        v = float(s)
        if not math.isfinite(v):
            raise _Fail(f"{where}: number {s[:40]} overflows")
        return v
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant,
                          parse_float=number)
    except _Fail:
        raise
    except UnicodeDecodeError as e:
        raise _Fail(f"{where} is not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise _Fail(f"{where} is not valid JSON: {e}") from None
    except (ValueError, RecursionError) as e:
        raise _Fail(f"{where} cannot be read: {type(e).__name__}: {e}") from None


def _array_table(doc, where, max_bytes, allowed=tuple(_DTYPES)):
    """The arrays table [(key, shape, dtype, sha256)], its total size bounded before anything is read."""
    table, keys, total = [], set(), 0
    for i, e in enumerate(_list(doc.get("arrays"), f"{where}: arrays")):
        p = f"{where}: arrays[{i}]"
        _obj(e, p, ("key", "shape", "dtype", "sha256"))
        key = _str(e["key"], f"{p}.key", 200)
        if not key or not all(c.isalnum() or c in "._-" for c in key) or not key.isascii() or key in keys:
            raise _Fail(f"{p}.key: {key[:40]!r} must be a new, non-empty name of letters, digits, '.', '_', '-'")
        keys.add(key)
        shape = tuple(_int(d, f"{p}.shape[{j}]", 0) for j, d in enumerate(_list(e["shape"], f"{p}.shape", 32)))
        dtype = _dtype(e["dtype"], f"{p}.dtype", allowed)
        sha = _str(e["sha256"], f"{p}.sha256", 64)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise _Fail(f"{p}.sha256: expected 64 lowercase hex digits")
        total += math.prod(shape) * dtype.itemsize
        if total > max_bytes:
            raise _Fail(f"{p}: the arrays declare more than {max_bytes} bytes in all (shape {shape}); pass a "
                        f"larger max_bytes= to load a model this big")
        table.append((key, shape, dtype, sha))
    return table


def _read_arrays(data: bytes, table, where):
    """The arrays of the npz ``data``, each .npy header checked against ``table`` before its data is read."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        limits = {key + ".npy": _NPY_HEADER_MAX + math.prod(shape) * dt.itemsize for key, shape, dt, _ in table}
        members = _zip_members(z, limits, where)
    except _Fail:
        raise
    except Exception as e:
        raise _Fail(f"{where} is not an npz archive ({type(e).__name__}: {e})") from None
    out = []
    for key, shape, dtype, sha in table:
        raw = members[key + ".npy"]
        p = f"{where}: '{key}.npy'"
        f = io.BytesIO(raw)
        try:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version} is not read")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            hshape, _, hdtype = read(f, max_header_size=_NPY_HEADER_MAX)
        except Exception as e:
            raise _Fail(f"{p}: not a valid .npy header ({type(e).__name__}: {e})") from None
        if hdtype.hasobject or hdtype.fields is not None or hdtype.subdtype is not None:
            raise _Fail(f"{p}: dtype {hdtype} is refused: graphnet reads plain numeric arrays only (an object "
                        f"array would need pickle, which graphnet never reads)")
        if hdtype != dtype or tuple(hshape) != shape:
            raise _Fail(f"{p}: the header says shape {tuple(hshape)} dtype {hdtype}, graph.json declares shape "
                        f"{shape} dtype {dtype}")
        if len(raw) - f.tell() != math.prod(shape) * dtype.itemsize:
            raise _Fail(f"{p}: {len(raw) - f.tell()} data bytes, expected {math.prod(shape) * dtype.itemsize}")
        try:
            a = np.load(io.BytesIO(raw), allow_pickle=False)
        except Exception as e:
            raise _Fail(f"{p}: cannot be read ({type(e).__name__}: {e})") from None
        a = np.array(a, dtype=dtype, order="C", copy=True)
        if _sha(a) != sha:
            raise _Fail(f"{p}: the data does not match its sha256 in graph.json (a damaged or edited file)")
        out.append(a)
    return out


def _sha(a) -> str:
    return hashlib.sha256(np.asarray(a).tobytes()).hexdigest()


def _table_entry(key, a):
    a = np.asarray(a)
    name = a.dtype.name
    if name not in _DTYPES or a.dtype != _DTYPES[name]:
        raise FormatError(f"cannot save array '{key}' of dtype {a.dtype}: graphnet saves "
                          f"{', '.join(_DTYPES)} (native byte order)")
    return {"key": key, "shape": list(a.shape), "dtype": name, "sha256": _sha(a)}


def _check_source(source, who):
    """A path, or a binary file object open for reading; anything else is refused before it is touched."""
    if isinstance(source, (str, os.PathLike)):
        return
    if isinstance(source, io.TextIOBase) or not all(callable(getattr(source, a, None)) for a in ("read", "seek")):
        raise FormatError(f"{who} takes a path or a binary file object (open(path, 'rb'), io.BytesIO), got "
                          f"{'a text file' if isinstance(source, io.TextIOBase) else type(source).__name__}")


def _load_checked(source, doc_name, npz_name, fmt, keys, max_bytes):
    """(the JSON document, its arrays table, a function reading the arrays): zip, format, version, keys checked."""
    what = f"'{os.fspath(source)}'" if isinstance(source, (str, os.PathLike)) else "the file"
    npz_limit = max_bytes + MAX_ITEMS + (1 << 20)
    parts = _members(source, {doc_name: MAX_JSON_BYTES, npz_name: npz_limit}, what)
    doc = _parse_json(parts[doc_name], doc_name)
    if not isinstance(doc, dict):
        raise _Fail(f"{doc_name}: expected an object, got {_what(doc)}")
    f = doc.get("format")
    if f != fmt:
        other = {MODEL: "a model (read it with gn.load)", STATE: "a saved state (read it with gn.load_state)"}
        raise _Fail(f"{doc_name}: format is {_what(f)}, expected {fmt!r}"
                    + (f"; this file is {other[f]}" if isinstance(f, str) and f in other else ""))
    v = doc.get("version")
    if type(v) is not int or v != VERSION:
        raise _Fail(f"{doc_name}: version {_what(v)} is not supported; this graphnet reads version {VERSION}"
                    + ("; a newer graphnet wrote it" if type(v) is int and v > VERSION else ""))
    _obj(doc, doc_name, keys)
    table = _array_table(doc, doc_name, max_bytes)
    return doc, table, lambda: _read_arrays(parts[npz_name], table, npz_name)


def _format_error(source, e):
    name = f"'{os.fspath(source)}'" if isinstance(source, (str, os.PathLike)) else "file"
    return FormatError(f"cannot load {name}: {e}")


# ---------------------------------------------------------------------------------------------- models

def save(module, path) -> None:
    """Write ``module`` to ``path`` (a zip of graph.json and params.npz): ``gn.load(path)`` rebuilds it."""
    from .gmodule import gModule
    if not isinstance(module, _module.Module):
        raise FormatError(f"gn.save takes a module (a gModule or an nn module), got {type(module).__name__}")
    mods = module.modules()
    mindex = {id(m): i for i, m in enumerate(mods)}
    nodes = sorted({id(n): n for m in mods if isinstance(m, gModule) for n in m.order}.values(), key=lambda n: n.id)
    nindex = {id(n): i for i, n in enumerate(nodes)}
    arrays, aindex = [], {}

    def array(key, a, shared_id=None):
        if shared_id is not None and shared_id in aindex:
            return aindex[shared_id]
        arrays.append((key, np.asarray(a)))
        if shared_id is not None:
            aindex[shared_id] = len(arrays) - 1
        return len(arrays) - 1

    entries = []
    for i, m in enumerate(mods):
        kind = _kind_of(m)
        where = f"{m.label()} (module {i})"
        graph = None
        args, kwargs = getattr(m, "_config", ((), {}))
        members = []
        if isinstance(m, gModule):
            args, kwargs = (), {}
            graph = {"inputs": [nindex[id(n)] for n in m.inputs], "outputs": [nindex[id(n)] for n in m.outputs],
                     "name": m.name, "site": str(m.site)}
        elif _is_container(m):
            args = tuple(a for a in args if not isinstance(a, _module.Module))
            members = [mindex[id(c)] for c in m.submodules()]
        elif m.submodules():
            raise FormatError(f"cannot save {where}: it holds sub-modules that its constructor arguments do not "
                              f"describe")
        params = {k: array(f"m{i}.{k}", p.data, id(p)) for k, p in m._params.items()}
        bufs = getattr(m, "buffers", None)
        buffers = {k: array(f"m{i}.{k}", np.asarray(b)) for k, b in (bufs() if callable(bufs) else {}).items()}
        entries.append({"kind": kind, "args": _encode(list(args), modules=mindex, where=where),
                        "kwargs": {k: _encode(v, modules=mindex, where=where) for k, v in kwargs.items()},
                        "members": members, "graph": graph, "params": params, "buffers": buffers,
                        "train": bool(m.train), "dtype": np.dtype(m.dtype).name})
    for n in nodes:
        for k, v in n.attrs.items():
            try:
                _drawing_attr(k, str(v), f"node '{n.display_name()}' (built at {n.site}): attrs")
            except _Fail as e:
                raise FormatError(f"cannot save {e}; gn.load would refuse it") from None
    node_entries = [{"kind": n.kind, "module": mindex[id(n.module)] if n.kind == APPLY else None,
                     "inputs": [nindex[id(p)] for p in n.inputs], "index": n.index,
                     "n_outputs": n.n_outputs if n.kind == APPLY else None,
                     "shape": list(n.shape) if n.kind == INPUT and n.shape is not None else None,
                     "name": n.name, "attrs": dict(n.attrs), "site": str(n.site)} for n in nodes]
    doc = {"format": MODEL, "version": VERSION, "root": 0, "modules": entries, "nodes": node_entries,
           "arrays": [_table_entry(k, a) for k, a in arrays]}
    _write(path, "graph.json", doc, "params.npz", arrays)


def load(path, *, max_bytes: int = DEFAULT_MAX_BYTES):
    """The module saved in ``path`` by ``gn.save``; a file that is not acceptable raises ``gn.FormatError``.

    ``max_bytes`` bounds the total size of the arrays (refused before anything is allocated).
    """
    _check_source(path, "gn.load")
    try:
        doc, table, read_arrays = _load_checked(path, "graph.json", "params.npz", MODEL,
                                                ("format", "version", "root", "modules", "nodes", "arrays"), max_bytes)
        spec = _check_model(doc, table)
        arrays = read_arrays()
        return _build(spec, table, arrays)
    except _Fail as e:
        raise _format_error(path, e) from None


def _check_model(doc, table):
    """Every field's type and every reference of a model document; the order to build it in."""
    n_arr = len(table)
    mods = _list(doc["modules"], "graph.json: modules")
    nodes = _list(doc["nodes"], "graph.json: nodes")
    if not mods:
        raise _Fail("graph.json: modules: the list is empty")
    root = _index(doc["root"], len(mods), "graph.json: root", "modules")
    reg = registry()
    deps = nx.DiGraph()                 # an edge u -> v: u must be built before v
    use_param, use_buffer = {}, {}
    specs = []
    for i, e in enumerate(mods):
        p = f"graph.json: modules[{i}]"
        _obj(e, p, ("kind", "args", "kwargs", "members", "graph", "params", "buffers", "train", "dtype"))
        kind = _str(e["kind"], f"{p}.kind", 100)
        if kind not in reg:
            raise _Fail(f"{p}.kind: unknown module kind {kind[:60]!r}; a file may name only graphnet's own module "
                        f"classes (graphnet.nn and gModule)")
        dec = _Decoder(n_modules=len(mods))
        args = dec(_list(e["args"], f"{p}.args", 1024), f"{p}.args")
        if not isinstance(e["kwargs"], dict):
            raise _Fail(f"{p}.kwargs: expected an object, got {_what(e['kwargs'])}")
        for k in e["kwargs"]:
            if not k.isidentifier():
                raise _Fail(f"{p}.kwargs: {k[:40]!r} is not an argument name")
        kwargs = {k: dec(v, f"{p}.kwargs.{k}") for k, v in e["kwargs"].items()}
        members = [_index(j, len(mods), f"{p}.members[{k}]", "modules")
                   for k, j in enumerate(_list(e["members"], f"{p}.members"))]
        deps.add_node(("m", i))
        for j in dec.modules_used + members:
            deps.add_edge(("m", j), ("m", i))
        if members and not callable(getattr(reg[kind], "add", None)):
            raise _Fail(f"{p}.members: {kind} is not a container; expected []")
        graph = None
        if kind == "gModule":
            if args or kwargs or members:
                raise _Fail(f"{p}: a gModule is described by its graph: args, kwargs and members must be empty")
            g = _obj(e["graph"], f"{p}.graph", ("inputs", "outputs", "name", "site"))
            ins = [_index(j, len(nodes), f"{p}.graph.inputs[{k}]", "nodes")
                   for k, j in enumerate(_list(g["inputs"], f"{p}.graph.inputs"))]
            outs = [_index(j, len(nodes), f"{p}.graph.outputs[{k}]", "nodes")
                    for k, j in enumerate(_list(g["outputs"], f"{p}.graph.outputs"))]
            graph = (ins, outs, _opt_str(g["name"], f"{p}.graph.name"), _str(g["site"], f"{p}.graph.site"))
            for j in ins + outs:
                deps.add_edge(("n", j), ("m", i))
        elif e["graph"] is not None:
            raise _Fail(f"{p}.graph: only a gModule has a graph; expected null for {kind}")
        params = _name_map(e["params"], f"{p}.params", n_arr)
        buffers = _name_map(e["buffers"], f"{p}.buffers", n_arr)
        for k, a in params.items():
            use_param.setdefault(a, []).append(f"{p}.params.{k}")
        for k, a in buffers.items():
            use_buffer.setdefault(a, []).append(f"{p}.buffers.{k}")
        specs.append({"kind": kind, "args": args, "kwargs": kwargs, "members": members, "graph": graph,
                      "params": params, "buffers": buffers, "train": _bool(e["train"], f"{p}.train"),
                      "dtype": _dtype(e["dtype"], f"{p}.dtype", _FLOATS), "where": f"{p} ({kind})"})
    for a, (key, _, dt, _) in enumerate(table):
        users = use_param.get(a, []) + use_buffer.get(a, [])
        if not users:
            raise _Fail(f"graph.json: arrays[{a}] ('{key}') is not used by any module")
        if a in use_buffer and len(users) > 1:
            raise _Fail(f"graph.json: arrays[{a}] ('{key}') is a buffer and is used more than once: "
                        f"{', '.join(users[:4])}")
        if a in use_param and dt.kind != "f":
            raise _Fail(f"graph.json: arrays[{a}] ('{key}') is a parameter of dtype {dt}; parameters are float")
    node_specs = [_check_node(e, i, len(nodes), len(mods), deps) for i, e in enumerate(nodes)]
    _check_edges(node_specs)
    for i, s in enumerate(specs):
        if s["graph"]:
            _check_graph_io(s, i, node_specs)
    try:
        cycle = nx.find_cycle(deps)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join(f"{'modules' if k == 'm' else 'nodes'}[{j}]" for (k, j), _ in cycle)
        raise _Fail(f"graph.json: the references form a cycle: {path} -> back to the start")
    used = nx.ancestors(deps, ("m", root)) | {("m", root)}
    unused = [k for k in deps.nodes if k not in used]
    if unused:
        k, j = min(unused)
        raise _Fail(f"graph.json: {'modules' if k == 'm' else 'nodes'}[{j}] is not part of the root module "
                    f"(modules[{root}])")
    order = list(nx.lexicographical_topological_sort(deps, key=lambda k: (k[0] != "m", k[1])))
    return {"modules": specs, "nodes": node_specs, "root": root, "order": order}


def _check_node(e, i, n_nodes, n_mods, deps):
    p = f"graph.json: nodes[{i}]"
    _obj(e, p, ("kind", "module", "inputs", "index", "n_outputs", "shape", "name", "attrs", "site"))
    kind = e["kind"]
    if kind not in _NODE_KINDS:
        raise _Fail(f"{p}.kind: expected one of {', '.join(_NODE_KINDS)}, got {_what(kind)}")
    ins = [_index(j, n_nodes, f"{p}.inputs[{k}]", "nodes") for k, j in enumerate(_list(e["inputs"], f"{p}.inputs"))]
    name = _opt_str(e["name"], f"{p}.name")
    if name == "":
        raise _Fail(f"{p}.name: an empty name; write null for a node without one")
    attrs = e["attrs"]
    if not isinstance(attrs, dict) or len(attrs) > 64:
        raise _Fail(f"{p}.attrs: expected an object of at most 64 graphviz attributes, got {_what(attrs)}")
    for k, v in attrs.items():
        _drawing_attr(k, _str(v, f"{p}.attrs.{k[:40]}"), f"{p}.attrs")
    spec = {"kind": kind, "inputs": ins, "name": name, "attrs": dict(attrs), "site": _str(e["site"], f"{p}.site"),
            "where": p, "module": None, "index": None, "n_outputs": None, "shape": None}
    for k in {INPUT: ("module", "index", "n_outputs"), APPLY: ("index", "shape"),
              ITEM: ("module", "n_outputs", "shape")}[kind]:
        if e[k] is not None:
            raise _Fail(f"{p}.{k}: a node of kind '{kind}' has no {k}; expected null")
    deps.add_node(("n", i))
    for j in ins:
        deps.add_edge(("n", j), ("n", i))
    if kind == INPUT:
        if ins:
            raise _Fail(f"{p}.inputs: an input node has no inputs")
        if e["shape"] is not None:
            spec["shape"] = tuple(None if d is None else _int(d, f"{p}.shape[{k}]", 0)
                                  for k, d in enumerate(_list(e["shape"], f"{p}.shape", 32)))
    elif kind == APPLY:
        spec["module"] = _index(e["module"], n_mods, f"{p}.module", "modules")
        deps.add_edge(("m", spec["module"]), ("n", i))
        if not ins:
            raise _Fail(f"{p}.inputs: a module is applied to at least one node")
        if e["n_outputs"] is not None:
            spec["n_outputs"] = _int(e["n_outputs"], f"{p}.n_outputs", 0, MAX_ITEMS)
    else:
        if len(ins) != 1:
            raise _Fail(f"{p}.inputs: an item node has exactly one input (the multi-output node), got {len(ins)}")
        spec["index"] = _int(e["index"], f"{p}.index", 0, MAX_ITEMS)
    return spec


# graphviz attributes that make a drawing follow a link or read a file: a file may style its nodes, not these
_LINK_ATTRS = {"target", "image", "imagepath", "shapefile", "fontpath", "fontnames", "stylesheet"}


def _drawing_attr(k, v, path):
    if not k.isidentifier():
        raise _Fail(f"{path}: {k[:40]!r} is not a graphviz attribute name")
    low = k.lower()
    if low in _LINK_ATTRS or low.endswith("url") or low.endswith("href"):
        raise _Fail(f"{path}.{k}: a saved drawing attribute may not be a link or a file ({k} is refused)")
    if v.strip().startswith("<"):
        raise _Fail(f"{path}.{k}: an HTML-like graphviz value (starting with '<') is refused: it can embed images "
                    f"and links")


def _check_edges(node_specs):
    """Edges take single outputs; an item node takes output ``index`` of a multi-output node, once."""
    multi = [s["kind"] == APPLY and s["n_outputs"] != 1 for s in node_specs]
    items = set()
    for s in node_specs:
        p = s["where"]
        if s["kind"] == APPLY:
            for k, j in enumerate(s["inputs"]):
                if multi[j]:
                    raise _Fail(f"{p}.inputs[{k}]: nodes[{j}] has several outputs; an edge takes one of them "
                                f"through an 'item' node")
        elif s["kind"] == ITEM:
            j, n = s["inputs"][0], node_specs[s["inputs"][0]]["n_outputs"]
            if not multi[j]:
                raise _Fail(f"{p}.inputs[0]: nodes[{j}] is not a node with several outputs")
            if n is not None and s["index"] >= n:
                raise _Fail(f"{p}.index: output {s['index']} of nodes[{j}], which has {n} outputs")
            if (j, s["index"]) in items:
                raise _Fail(f"{p}: output {s['index']} of nodes[{j}] is listed twice")
            items.add((j, s["index"]))


def _check_graph_io(s, i, node_specs):
    ins, outs, _, _ = s["graph"]
    p = f"graph.json: modules[{i}].graph"
    for k, j in enumerate(ins):
        if node_specs[j]["kind"] != INPUT:
            raise _Fail(f"{p}.inputs[{k}]: nodes[{j}] is a '{node_specs[j]['kind']}' node; a gModule's inputs "
                        f"are input nodes")
    for k, j in enumerate(outs):
        if node_specs[j]["kind"] == APPLY and node_specs[j]["n_outputs"] != 1:
            raise _Fail(f"{p}.outputs[{k}]: nodes[{j}] has several outputs; list its 'item' nodes instead")
    for what, lst in (("inputs", ins), ("outputs", outs)):
        if len(set(lst)) != len(lst):
            raise _Fail(f"{p}.{what}: a node is listed twice")


class _NoDraws:
    """Stands in for graphnet's generator while modules are rebuilt from a file. Their initial values are
    overwritten by the file's, so nothing is drawn (the user's random stream is left as it was), and a module
    may not ask for more values than the file declares for it: a file cannot make load allocate at will."""

    def __init__(self):
        self.budget, self.where = 0, ""

    def _take(self, size):
        shape = () if size is None else tuple(size) if isinstance(size, (tuple, list)) else (size,)
        n = math.prod(int(d) for d in shape)
        if n > self.budget:
            raise _Fail(f"{self.where}: its arguments make {n} initial values, more than its arrays in the file "
                        f"hold")
        self.budget -= n
        return shape

    def uniform(self, low=0.0, high=1.0, size=None):
        return np.zeros(self._take(size))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return np.zeros(self._take(size), dtype)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return np.zeros(self._take(size))

    def random(self, size=None, dtype=np.float64, out=None):
        return np.zeros(self._take(size), dtype)


def _build(spec, table, arrays):
    mods, nodes = spec["modules"], spec["nodes"]
    built_m, built_n, owner = {}, {}, {}
    guard, saved_rng = _NoDraws(), _module._rng
    _module._rng = guard
    try:
        for k, i in spec["order"]:
            if k == "m":
                built_m[i] = _build_module(mods[i], built_m, built_n, arrays, table, owner, guard)
            else:
                built_n[i] = _build_node(nodes[i], built_m, built_n)
    finally:
        _module._rng = saved_rng
    _module._bump()
    return built_m[spec["root"]]


def _build_module(s, built_m, built_n, arrays, table, owner, guard):
    where, cls = s["where"], registry()[s["kind"]]
    if s["graph"]:
        ins, outs, name, site = s["graph"]
        m = _call(where, _pack, [built_n[j] for j in ins], [built_n[j] for j in outs])
        m.name, m.site = name, site
    else:
        guard.where = where
        guard.budget = sum(math.prod(table[a][1]) for a in list(s["params"].values()) + list(s["buffers"].values()))
        ref = lambda r: built_m[r.index]  # noqa: E731
        m = _call(where, cls, *_resolve(s["args"], ref), **_resolve(s["kwargs"], ref))
        for j in s["members"]:
            _call(where, m.add, built_m[j])
    if sorted(m._params) != sorted(s["params"]):
        raise _Fail(f"{where}: the file has parameters {sorted(s['params'])}, the module has {sorted(m._params)}")
    for key, a in s["params"].items():
        p = m._params[key]
        if a in owner:                                  # shared with a module built before: the same object
            if owner[a].shape != p.shape:
                raise _Fail(f"{where}.params.{key}: shared array {table[a][0]} has shape {owner[a].shape}, the "
                            f"module expects {p.shape}")
            setattr(m, key, owner[a])
            continue
        if arrays[a].shape != p.shape:
            raise _Fail(f"{where}.params.{key}: array '{table[a][0]}' has shape {arrays[a].shape}, {s['kind']} "
                        f"built from its arguments expects {p.shape}")
        p.data, p.grad = arrays[a], np.zeros_like(arrays[a])
        owner[a] = p
    _set_buffers(m, s, arrays, table)
    object.__setattr__(m, "train", s["train"])
    object.__setattr__(m, "_dtype", s["dtype"])
    return m


def _set_buffers(m, s, arrays, table):
    where = s["where"]
    bufs = getattr(m, "buffers", None)
    have = bufs() if callable(bufs) else {}
    if sorted(have) != sorted(s["buffers"]):
        raise _Fail(f"{where}: the file has buffers {sorted(s['buffers'])}, the module has {sorted(have)}")
    for key, a in s["buffers"].items():
        cur, new = getattr(m, key, None), arrays[a]
        if isinstance(cur, np.ndarray) and new.shape == cur.shape:
            setattr(m, key, new)
        elif isinstance(cur, (bool, int, float)) and new.ndim == 0:
            setattr(m, key, type(cur)(new.item()))
        else:
            raise _Fail(f"{where}.buffers.{key}: array '{table[a][0]}' of shape {new.shape} does not fit "
                        f"{type(cur).__name__} {getattr(cur, 'shape', '')}")


def _build_node(s, built_m, built_n):
    where, ins = s["where"], [built_n[j] for j in s["inputs"]]
    if s["kind"] == INPUT:
        n = _call(where, Input, s["shape"], s["name"])
    elif s["kind"] == APPLY:
        if any(x.is_multi for x in ins):
            raise _Fail(f"{where}.inputs: an input has several outputs; edges take one through an 'item' node")
        n = _call(where, built_m[s["module"]], *ins)
        if n.n_outputs is None:
            n.n_outputs = s["n_outputs"]
        elif n.n_outputs != s["n_outputs"]:
            raise _Fail(f"{where}.n_outputs: the file says {s['n_outputs']}, the module makes {n.n_outputs}")
    else:
        n = _call(where, ins[0].item, s["index"])
    n.name, n.site, n.attrs = s["name"], s["site"], dict(s["attrs"])
    return n


def _call(where, f, *args, **kwargs):
    """f(*args, **kwargs), any error from graphnet or Python (bad arguments) reported as the file's fault."""
    try:
        return f(*args, **kwargs)
    except _Fail:
        raise
    except Exception as e:      # the arguments or the wiring came from the file: the file is at fault
        raise _Fail(f"{where}: refused: {type(e).__name__}: {e}") from None


def _pack(ins, outs):
    # no Node in this frame's locals: gModule names unnamed nodes after its caller's local variables
    from .gmodule import gModule
    return gModule(ins, outs)


# ---------------------------------------------------------------------------------- optimizer state

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
