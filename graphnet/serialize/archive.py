"""The zip side of a saved file: one JSON document and one npz of .npy members, written with fixed timestamps
and read back with every member, size, header and checksum checked before an array is allocated."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile

import numpy as np

from ..errors import FormatError
from .schema import _DTYPES, MAX_ITEMS, _dtype, _Fail, _int, _list, _obj, _str, _what

VERSION = 1
MODEL, STATE = "graphnet.model", "graphnet.state"
DEFAULT_MAX_BYTES = 2 << 30        # total of the arrays, uncompressed
MAX_JSON_BYTES = 64 << 20
_NPY_HEADER_MAX = 1 << 16
_DATE = (1980, 1, 1, 0, 0, 0)      # fixed timestamps: the same model gives the same bytes
_FLOATS = ("float16", "float32", "float64")
_LAYOUTS = {("graph.json", "params.npz"): "a model (read it with gn.load)",
            ("state.json", "arrays.npz"): "a saved state (read it with gn.load_state)"}


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
