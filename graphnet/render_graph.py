"""The forward graph drawn: modules as nodes, nested gModules as clusters, shapes on nodes and edges."""
from __future__ import annotations

from .compile.ir import Builder
from .errors import GraphnetError, RenderError, fmt_shape
from .gmodule import gModule
from .node import APPLY, INPUT, ITEM
from .render import PALETTE, _BLUE, _INPUT_SHAPE, _html_title, _label, _mark_failed, _text, contains, family
from .render_backward import signature


class _Forward:
    """Draws nodes into a Digraph; nested gModules become clusters. Edges are emitted at the root, since an
    edge written inside a cluster would pull both of its ends into that cluster."""

    def __init__(self, dot, show_shapes, expand_nested, highlight, rankdir="TB", known=None):
        self.dot, self.shapes, self.expand, self.hl = dot, show_shapes, expand_nested, highlight
        self.known = known or {}                   # id(node) -> its shape for given input arrays
        self.input_shape = _INPUT_SHAPE[rankdir]
        self.edges = []
        self.families = {}
        self.clusters = 0

    def draw(self, order, ins, outs):
        self._graph(self.dot, order, ins, outs, prefix="", sources=None, top=True)
        for tail, head, attrs in self.edges:
            self.dot.edge(tail, head, **attrs)

    def _graph(self, sub, order, ins, outs, prefix, sources, top=False):
        """Draw one graph level into ``sub``; returns the dot ids of its outputs. ``sources``: for a nested
        graph, the outer dot ids that feed its inputs."""
        port = {}
        out_ids = {id(o): k for k, o in enumerate(outs)}
        with sub.subgraph() as rank:          # inputs side by side at the top
            rank.attr(rank="same")
            for k, n in enumerate(ins):
                port[id(n)] = nid = f"{prefix}n{n.id}"
                rank.node(nid, **self._attrs(n, "input", out_ids, top))
                if k:                         # keeps the inputs in their declared order, left to right
                    rank.edge(port[id(ins[k - 1])], nid, style="invis")
                if sources is not None:
                    tail, outer = sources[k]
                    self.edges.append((tail, nid, self._edge_attrs(outer, n, k)))
        for n in order:
            if id(n) in port:
                continue
            nid = f"{prefix}n{n.id}"
            srcs = [self._src(port, p) for p in n.inputs]
            if n.kind == APPLY and self.expand and isinstance(n.module, gModule):
                port[id(n)] = self._cluster(sub, n, nid, srcs)
                continue
            port[id(n)] = nid
            if n.kind == ITEM:
                sub.node(nid, **self._attrs(n, "item", out_ids, top))
                tail = self._src(port, n.inputs[0], n.index)
                self.edges.append((tail, nid, {"arrowhead": "none", "style": "dashed",
                                               "tooltip": _text(f"output {n.index} of {n.inputs[0].display_name()}")}))
                continue
            kind = "input" if n.kind == INPUT else self._family(n)
            sub.node(nid, **self._attrs(n, kind, out_ids, top))
            for k, (p, s) in enumerate(zip(n.inputs, srcs)):
                self.edges.append((s, nid, self._edge_attrs(p, n, k)))
        return [self._src(port, o) for o in outs]

    @staticmethod
    def _src(port, node, index=0):
        """The dot id holding ``node``'s value; an expanded nested graph has one per output."""
        p = port[id(node)]
        return p[index] if isinstance(p, list) else p

    def _cluster(self, sub, n, nid, srcs):
        self.clusters += 1
        g = n.module
        with sub.subgraph(name=f"cluster_{self.clusters}") as c:
            red = id(n) in self.hl
            c.attr(label=_html_title(f"{n.display_name()}: {g.label()}"), style="rounded,filled",
                   fillcolor="#ffd6d6" if red else PALETTE["graph"], color="red" if red else "#999999",
                   tooltip=_text(n.site), fontsize="12")
            return self._graph(c, g.order, g.inputs, g.outputs, prefix=nid + "_", sources=list(zip(srcs, n.inputs)))

    def _family(self, n):
        key = (id(n.module), tuple(p.shape if isinstance(p.shape, tuple) else None for p in n.inputs))
        if key not in self.families:
            self.families[key] = family(n.module, key[1])
        return self.families[key]

    def _attrs(self, n, kind, out_ids, top):
        shape = self.known.get(id(n), n.shape)
        dim = [fmt_shape(shape) if self.shapes and shape is not None else ""]
        out = top and id(n) in out_ids
        if out:
            dim.append(f"output {out_ids[id(n)]}")
        op = n.op_label()
        if kind == "item":
            attrs = {"label": _label(n.display_name(), dim=dim), "shape": "ellipse", "style": "filled",
                     "fillcolor": "#ffffff", "fontsize": "10", "margin": "0.02"}
        else:
            attrs = {"label": _label(n.display_name(), "" if op == n.display_name() else op, dim=dim),
                     "fillcolor": PALETTE.get(kind, "#ffffff")}
        if kind == "input":
            attrs.update(shape=self.input_shape, style="filled,bold", color=_BLUE)
        elif kind == "graph":
            attrs.update(shape="box3d", style="filled")
        if out:
            attrs.update(peripheries="2", color=_BLUE, penwidth="1.5")
        attrs["tooltip"] = _text(n.site)
        attrs.update(n.attrs)                      # the user's .annotate(...) styling
        if id(n) in self.hl or (kind == "graph" and any(contains(n.module, h) for h in self.hl.values())):
            _mark_failed(attrs)                    # a collapsed nested graph holding the failing node: red too
        return attrs

    def _edge_attrs(self, p, n, k):
        attrs = {"tooltip": _text(f"input {k} of {n.display_name()}")}
        shape = self.known.get(id(p), p.shape)
        if self.shapes and shape is not None and not isinstance(shape, list):
            attrs["label"] = _text(" " + fmt_shape(shape))
        return attrs


def _shapes_for(graph, inputs, partial: bool = False) -> dict:
    """id(node) -> output shape (a list for several outputs) when the graph runs on ``inputs`` arrays: each
    module's shape rule applied node by node, as when nodes are built; nested gModules' nodes included.
    partial: at a node the shapes do not fit, stop and return the shapes known so far (its inputs' among them)."""
    known = {}

    def walk(g, ins):                          # ins: one placeholder-like (shape, dtype) per input of g
        vals = dict(zip(map(id, g.inputs), ins))
        for n in g.order:
            if n.kind == INPUT:
                known[id(n)] = vals[id(n)][0]
                continue
            if n.kind == ITEM:
                parent = vals[id(n.inputs[0])]
                vals[id(n)] = parent[n.index]
            elif isinstance(n.module, gModule):
                outs = walk(n.module, [vals[id(p)] for p in n.inputs])
                vals[id(n)] = outs if n.is_multi else outs[0]
            else:
                b = Builder()
                try:
                    out = n.module.lower(b, *[b.placeholder(*vals[id(p)]) for p in n.inputs])
                except GraphnetError as e:
                    if partial:
                        raise _Stop() from e
                    raise RenderError(f"render: the inputs given do not fit {n.display_name()} "
                                      f"({n.op_label()}, built at {n.site}): {e}", n) from e
                vals[id(n)] = [(v.shape, v.dtype) for v in out] if isinstance(out, (list, tuple)) else \
                    (out.shape, out.dtype)
            v = vals[id(n)]
            known[id(n)] = [x[0] for x in v] if isinstance(v, list) else v[0]
        return [vals[id(o)] for o in g.outputs]

    try:
        walk(graph, signature(graph, inputs, "render"))
    except _Stop:
        pass
    return known


class _Stop(Exception):
    """Shape inference reached a node its inputs do not fit."""


