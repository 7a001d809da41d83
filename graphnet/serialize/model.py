"""Models: ``gn.save`` writes a module (graph.json + params.npz) and ``gn.load`` rebuilds it from the checked
document without drawing random numbers or importing anything."""
from __future__ import annotations

import math

import numpy as np

from .. import module as _module
from ..errors import FormatError
from ..node import APPLY, INPUT, Input
from .archive import DEFAULT_MAX_BYTES, MODEL, VERSION, _check_source, _format_error, _load_checked, _table_entry, _write
from .model_schema import _check_model, _drawing_attr
from .registry import _is_container, _kind_of, registry
from .schema import _Fail, _encode, _resolve


def save(obj, path) -> None:
    """Write ``obj`` to ``path`` (a zip of graph.json and params.npz): ``gn.load(path)`` rebuilds it.

    ``obj``: a module, or a checkpoint: a dict or list holding modules and JSON values (char-rnn's
    ``{"protos": {...}, "vocab": {...}, "opt": {...}}``); modules shared between entries are written once.
    """
    from ..gmodule import gModule
    if isinstance(obj, _module.Module):
        roots = [obj]
    elif isinstance(obj, (dict, list, tuple)):
        roots = _modules_in(obj)
    else:
        raise FormatError(f"gn.save takes a module (a gModule or an nn module), or a dict or list of modules and "
                          f"JSON values (a checkpoint), got {type(obj).__name__}")
    mods = list({id(m): m for r in roots for m in r.modules()}.values())
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
            graph = {"inputs": [nindex[id(n)] for n in m.declared_inputs],
                     "outputs": [_output_refs(spec, nindex) for spec in m.structure.outputs],
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
                     "n_outputs": n.n_outputs if n.kind == APPLY or n.is_table_input else None,
                     "shape": list(n.shape) if n.kind == INPUT and n.shape is not None else None,
                     "name": n.name, "attrs": dict(n.attrs), "site": str(n.site)} for n in nodes]
    root = 0 if isinstance(obj, _module.Module) else {"checkpoint": _encode(obj, modules=mindex, where="the checkpoint")}
    doc = {"format": MODEL, "version": VERSION, "root": root, "modules": entries, "nodes": node_entries,
           "arrays": [_table_entry(k, a) for k, a in arrays]}
    _write(path, "graph.json", doc, "params.npz", arrays)


def _modules_in(v, depth=0) -> list:
    if depth > 32:
        return []
    if isinstance(v, _module.Module):
        return [v]
    items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else ()
    return [m for x in items for m in _modules_in(x, depth + 1)]


def _output_refs(spec, nindex):
    """A gModule output as node indices: one index, or a (nested) list of them for a table."""
    return nindex[id(spec.node)] if spec.is_leaf else [_output_refs(e, nindex) for _, e in spec.entries]


def load(path, *, max_bytes: int = DEFAULT_MAX_BYTES):
    """The module (or checkpoint: the same dicts and lists) saved in ``path`` by ``gn.save``; a file that is not acceptable raises ``gn.FormatError``.

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
    root = spec["root"]
    return built_m[root] if isinstance(root, int) else _resolve(root, lambda r: built_m[r.index])


def _build_module(s, built_m, built_n, arrays, table, owner, guard):
    where, cls = s["where"], registry()[s["kind"]]
    if s["graph"]:
        ins, outs, name, site = s["graph"]
        nested = lambda v: [nested(x) for x in v] if isinstance(v, list) else built_n[v]  # noqa: E731
        m = _call(where, _pack, [built_n[j] for j in ins], nested(outs))
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
        if any(x.is_multi and not (x.kind == APPLY and x.n_outputs is None) for x in ins):
            raise _Fail(f"{where}.inputs: an input has several outputs; edges take one through an 'item' node")
        n = _call(where, built_m[s["module"]], *ins)
        if n.n_outputs is None:
            n.n_outputs = s["n_outputs"]
        elif n.n_outputs != s["n_outputs"]:
            raise _Fail(f"{where}.n_outputs: the file says {s['n_outputs']}, the module makes {n.n_outputs}")
    else:
        n = _call(where, ins[0].item, s["index"])
    if s["kind"] != APPLY and s["n_outputs"] is not None:     # an input table of known size
        _call(where, n.split, s["n_outputs"])
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
    from ..gmodule import gModule
    return gModule(ins, outs)
