"""The checks of a model document: every field's type and every reference, before anything is built."""
from __future__ import annotations

import networkx as nx

from ..node import APPLY, INPUT, ITEM
from .archive import _FLOATS
from .registry import registry
from .schema import (MAX_ITEMS, _Decoder, _Fail, _bool, _dtype, _index, _int, _list, _name_map, _obj, _opt_str, _str,
                     _what)

_NODE_KINDS = (INPUT, APPLY, ITEM)


def _check_model(doc, table):
    """Every field's type and every reference of a model document; the order to build it in."""
    n_arr = len(table)
    mods = _list(doc["modules"], "graph.json: modules")
    nodes = _list(doc["nodes"], "graph.json: nodes")
    if isinstance(doc["root"], dict):          # a checkpoint: JSON values and references to modules
        _obj(doc["root"], "graph.json: root", ("checkpoint",))
        dec = _Decoder(n_modules=len(mods))
        root = dec(doc["root"]["checkpoint"], "graph.json: root.checkpoint")
        roots = dec.modules_used
    else:
        if not mods:
            raise _Fail("graph.json: modules: the list is empty")
        root = _index(doc["root"], len(mods), "graph.json: root", "modules")
        roots = [root]
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
                        f"classes (graphnet.nn and gModule) and classes registered with gn.register_module")
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
            outs = _output_refs(g["outputs"], len(nodes), f"{p}.graph.outputs", 0)
            graph = (ins, outs, _opt_str(g["name"], f"{p}.graph.name"), _str(g["site"], f"{p}.graph.site"))
            for j in ins + _leaves(outs):
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
    used = {("m", r) for r in roots}
    for r in roots:
        used |= nx.ancestors(deps, ("m", r))
    unused = [k for k in deps.nodes if k not in used]
    if unused:
        k, j = min(unused)
        raise _Fail(f"graph.json: {'modules' if k == 'm' else 'nodes'}[{j}] is not part of the root module "
                    f"(modules[{', '.join(map(str, roots))}])")
    order = list(nx.lexicographical_topological_sort(deps, key=lambda k: (k[0] != "m", k[1])))
    return {"modules": specs, "nodes": node_specs, "root": root, "order": order}


def _output_refs(v, n_nodes, path, depth):
    """A gModule's outputs: node indices, nested lists of them where an output is a table."""
    if depth > 8:
        raise _Fail(f"{path}: tables nested more than 8 deep")
    if isinstance(v, list):
        return [_output_refs(x, n_nodes, f"{path}[{k}]", depth + 1) for k, x in enumerate(_list(v, path))]
    return _index(v, n_nodes, path, "nodes")


def _leaves(v) -> list:
    return [j for x in v for j in _leaves(x)] if isinstance(v, list) else [v]


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
    for k in {INPUT: ("module", "index"), APPLY: ("index", "shape"),
              ITEM: ("module", "shape")}[kind]:
        if e[k] is not None:
            raise _Fail(f"{p}.{k}: a node of kind '{kind}' has no {k}; expected null")
    deps.add_node(("n", i))
    for j in ins:
        deps.add_edge(("n", j), ("n", i))
    if kind != APPLY and e["n_outputs"] is not None:       # an input table (or an entry that is a table): its size
        spec["n_outputs"] = _int(e["n_outputs"], f"{p}.n_outputs", 1, MAX_ITEMS)
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
    tables = {s["inputs"][0] for s in node_specs if s["kind"] == ITEM}
    multi = [(s["kind"] == APPLY and s["n_outputs"] != 1) or (s["kind"] != APPLY and i in tables)
             for i, s in enumerate(node_specs)]
    items = set()
    for s in node_specs:
        p = s["where"]
        if s["kind"] == APPLY:
            for k, j in enumerate(s["inputs"]):
                # a whole table reaches a module only when its size is known at compile time (n_outputs null)
                if multi[j] and not (node_specs[j]["kind"] == APPLY and node_specs[j]["n_outputs"] is None):
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
    outs = _leaves(outs)
    for k, j in enumerate(outs):
        if node_specs[j]["kind"] == APPLY and node_specs[j]["n_outputs"] != 1:
            raise _Fail(f"{p}.outputs[{k}]: nodes[{j}] has several outputs; list its 'item' nodes instead")
    for what, lst in (("inputs", ins), ("outputs", outs)):
        if len(set(lst)) != len(lst):
            raise _Fail(f"{p}.{what}: a node is listed twice")
