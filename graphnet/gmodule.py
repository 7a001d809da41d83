"""gModule: a graph of nodes packed into a module (nngraph's ``nn.gModule``).

Packing validates the graph, keeps it as a networkx.DiGraph in a fixed topological order, and names unnamed
nodes after the local variables that hold them in the caller (nngraph's annotateNodes). Lowering a gModule
inlines its graph: each node's module lowers in turn, so nested gModules disappear into primitives.
"""
from __future__ import annotations

import os
import sys

import networkx as nx

from . import hooks
from .errors import GraphError, ShapeError, caller_site, fmt_shape, node_error
from .module import Module, not_a_node
from .node import APPLY, INPUT, ITEM, Node, shapes_agree
from .tables import Structure, input_spec, is_table, output_spec

_ERRORS_SHOWN = hooks.errors_shown(GraphError)       # packing's errors, through gn.debug when it is on
_HERE = {os.path.abspath(__file__), os.path.abspath(sys.modules[Module.__module__].__file__)}


class gModule(Module):
    """A module made of a graph: ``gModule(inputs, outputs)`` with lists of nodes (or single nodes)."""

    def __init__(self, inputs, outputs):
        super().__init__()
        with _ERRORS_SHOWN:
            self._pack(inputs, outputs)

    def _pack(self, inputs, outputs):
        site = caller_site()
        declared = _input_list(inputs, site)
        out_specs = [output_spec(o, f"outputs[{i}]", lambda v, where: _not_a_node(v, where, site))
                     for i, o in enumerate(outputs if isinstance(outputs, (list, tuple)) else [outputs])]
        in_specs = [input_spec(n) for n in declared]
        ins = [leaf for spec in in_specs for leaf in spec.leaves()]
        outs = [leaf for spec in out_specs for leaf in spec.leaves()]
        if not declared:
            raise GraphError(f"gModule needs at least one input node (at {site})")
        if not outs:
            raise GraphError(f"gModule needs at least one output node (at {site})")
        _no_duplicates(declared, "input", site)
        _no_duplicates(outs, "output", site)

        graph = nx.DiGraph()
        declared_ids = set(map(id, declared))
        stack = list(outs)
        reached_from = {id(o): o for o in outs}
        while stack:
            n = stack.pop()
            if n in graph and graph.nodes[n].get("done"):
                continue
            graph.add_node(n, done=True)
            if n.kind == INPUT and id(n) not in declared_ids:
                out = reached_from[id(n)]
                raise GraphError(f"output '{out.display_name()}' depends on input node '{n.display_name()}' "
                                 f"(built at {n.site}), which is not in gModule's inputs; add it to the inputs "
                                 f"list (at {site})", n)
            for pos, p in enumerate(n.inputs):
                if n.kind == APPLY and p.is_table_input:
                    raise GraphError(f"input '{p.display_name()}' is used as a table (its entries are unpacked "
                                     f"with split or [k]) and as one array by {n.op_label()} (built at {n.site}); "
                                     f"give that module the entries it needs (at {site})", p)
                graph.add_edge(p, n, pos=pos)
                if id(p) not in reached_from:
                    reached_from[id(p)] = reached_from[id(n)]
                    stack.append(p)
        unused = [n for n in declared if n not in graph]
        if unused:
            names = ", ".join(f"'{n.display_name()}' (built at {n.site})" for n in unused)
            raise GraphError(f"gModule input {names} is not used by any output; remove it from the inputs or "
                             f"connect it (at {site})", unused[0])

        self.inputs = ins               # the flat leaves: one array each at run time (a table's entries)
        self.outputs = outs
        self.declared_inputs = declared
        self.structure = Structure("gModule", in_specs, out_specs)
        self.graph = graph
        self.order = list(nx.lexicographical_topological_sort(graph, key=lambda n: n.id))
        self.arity = len(ins)
        self.site = site
        self.name = None
        _name_from_locals(self, graph)

    # --- module protocol -----------------------------------------------------------------------------------
    def num_outputs(self, *shapes):
        return len(self.outputs)

    def _structure(self, inputs):
        io = self.structure
        nested = isinstance(inputs, dict) or (isinstance(inputs, (list, tuple)) and any(map(is_table, inputs)))
        return None if io.flat and not nested else io       # flat lists go straight to the plan

    def label(self):
        return f"{self.name or 'gModule'}({len(self.inputs)} -> {len(self.outputs)})"

    def submodules(self):
        seen, out = set(), []
        for n in self.order:
            if n.kind == APPLY and id(n.module) not in seen:
                seen.add(id(n.module))
                out.append(n.module)
        return out

    def nodes(self):
        """The graph's nodes in the order they run."""
        return list(self.order)

    def lower(self, b, *xs):
        env = {}
        for node, x in zip(self.inputs, xs):
            _check_declared(b, node, x)
            env[node] = x
        for node in self.order:
            if node in env or node.kind == INPUT:
                continue
            if node.kind == ITEM:
                whole = env.get(node.inputs[0])
                if whole is None:               # an entry of an input table that is itself a table
                    continue
                if node.index >= len(whole):
                    raise node_error(GraphError, f"output {node.index} of {node.inputs[0].op_label()}, which made "
                                                 f"{len(whole)} outputs", node)
                env[node] = whole[node.index]
                continue
            env[node] = lower_node(b, node, env)
        res = []
        for o in self.outputs:
            res.extend(env[o]) if o.is_multi else res.append(env[o])
        return res[0] if len(res) == 1 else res

    # --- inspection (drawing lives in render.py, which registers these with graphnet.hooks) --------------
    def to_dot(self, **options):
        """A graphviz.Digraph of the graph (see gn.render for the options)."""
        return hooks.need("to_dot")(self, **options)

    def _repr_svg_(self):
        return hooks.need("repr_svg")(self)

    def summary(self) -> str:
        """A table: node, module, output shape, parameters, inputs; with totals."""
        return hooks.need("summary")(self)

    def to_networkx(self):
        """A networkx.DiGraph over node names, with attributes op, name, module, shape, site, kind."""
        return hooks.need("to_networkx")(self)


def one_node_graph(module, inputs) -> gModule:
    """A gModule of one node: ``module`` applied to the Input nodes ``inputs``, its outputs (each entry of a
    multi-output node) the graph's outputs. A plain module is compiled, drawn and exported as this graph."""
    y = module(*inputs)
    return gModule(inputs, list(y) if y.is_multi else [y])


def _check_declared(b, node, x):
    want = node.shape
    if want is not None and x.shape is not None and not shapes_agree(want, x.shape):
        raise node_error(ShapeError, f"input '{node.display_name()}' is declared with shape {fmt_shape(want)}, "
                                     f"got {fmt_shape(x.shape)}", node, context=reversed(b._src))


def _input_list(arg, site):
    items = list(arg) if isinstance(arg, (list, tuple)) else [arg]
    for i, a in enumerate(items):
        if not isinstance(a, Node):
            raise _not_a_node(a, f"inputs[{i}]", site)
        if a.kind != INPUT:
            raise GraphError(f"gModule's inputs must be gn.Input() nodes; '{a.display_name()}' is made by "
                             f"{a.op_label()} (built at {a.site}). Cut the graph at a gn.Input() instead "
                             f"(at {site})", a)
    return items


def _not_a_node(a, where, site):
    if isinstance(a, Node):
        return GraphError(f"gModule {where} '{a.display_name()}' has an unknown number of outputs; unpack it with "
                          f".split(k) (at {site})", a)
    return not_a_node(a, f"gModule {where}", site,
                      "; gModule takes lists of nodes made by gn.Input() and by calling modules")


def _no_duplicates(nodes, what, site):
    seen = set()
    for n in nodes:
        if id(n) in seen:
            raise GraphError(f"gModule {what} '{n.display_name()}' is listed twice (at {site})", n)
        seen.add(id(n))


def _name_from_locals(gm, graph):
    """Name unnamed nodes after the caller's local variables that hold them (nngraph's annotateNodes)."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename) in _HERE:
        f = f.f_back
    if f is None:
        return
    for var, val in list(f.f_locals.items()):
        if isinstance(val, Node) and val.name is None and val in graph and not var.startswith("_"):
            val.name = var


def lower_node(b, node, env):
    """Lower one applied module: its inputs' values (tables of compile-time size expanded) -> its value(s)."""
    args = []
    for p in node.inputs:
        args.extend(env[p]) if p.is_multi else args.append(env[p])
    m = node.module
    if m.arity is not None and len(args) != m.arity:
        raise node_error(GraphError, f"{m.label()} takes {m.arity} input{'s' * (m.arity != 1)}, got a table of "
                                     f"{len(args)}", node)
    b.push(node)
    try:
        out = m.lower(b, *args)
    finally:
        b.pop()
    if node.is_multi and not isinstance(out, (list, tuple)):
        out = [out]
    if not node.is_multi and isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise node_error(GraphError, f"{m.label()} made {len(out)} outputs, but the graph uses it as one "
                                         f"value; unpack it with .split({len(out)})", node)
        out = out[0]
    if node.is_multi and node.n_outputs is not None and len(out) != node.n_outputs:
        raise node_error(GraphError, f"{node.op_label()} made {len(out)} outputs, but the graph uses it as "
                                     f"{node.n_outputs} (split({node.n_outputs}))", node)
    return out
