"""Drawing graphs with graphviz: the forward graph, the backward graph the compiler makes, and a summary table.

A pure function of the graph: nothing here changes a node, a module or a gModule. Labels are HTML-like, every
piece of user text escaped, so any node name draws. Colours come from the primitive ops a module lowers to
(``Op.family``: one place for that fact): a Linear lowers to a matmul, so it is drawn as linear algebra.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import graphviz
import numpy as np

from .compile.ir import Builder
from .compile.lower import lower
from .errors import GraphnetError, RenderError, fmt_shape
from .gmodule import gModule
from .module import Module
from .node import APPLY, INPUT, ITEM, Input
from .ops import Arg, Leaf, Op, Param, Seed

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = ("graphviz's `dot` program is not installed; install it with `apt-get install graphviz` "
                "(Debian/Ubuntu), `brew install graphviz` (macOS) or `conda install graphviz`, or render to a "
                ".dot file")

# Fill colour per op family (ColorBrewer pastels). Red is kept for the failing node alone.
PALETTE = {
    "linalg": "#a6cee3", "activation": "#fdbf6f", "arith": "#b2df8a", "shape": "#e8e8e8", "reduce": "#cab2d6",
    "nnet": "#ffff99", "random": "#fccde5", "grad": "#d9d2e9", "misc": "#ffffff", "graph": "#f2f2f2",
    "input": "#deebf7", "saved": "#fff2b3", "param": "#eeeeee",
}
# When a module lowers to ops of several families, the first in this list names it (Linear: matmul + add).
_PRIORITY = ("nnet", "linalg", "reduce", "activation", "random", "arith", "shape", "grad", "misc")
_FONT = "Helvetica"
_FAIL = {"style": "filled,bold", "fillcolor": "red", "fontcolor": "white", "color": "#7f0000", "penwidth": "3"}
_BLUE = "#2b5797"           # inputs, outputs, seeds and gradient results: where data enters and leaves
_INPUT_SHAPE = {"TB": "invhouse", "BT": "house", "LR": "box", "RL": "box"}   # houses point along the flow


# --- public entry points -------------------------------------------------------------------------------------

def render(obj, path, which: str = "forward", rankdir: str = "TB", show_shapes: bool = True,
           expand_nested: bool = True, **options):
    """Draw ``obj`` (a gModule, a module, or a compiled plan) into ``path``; the format comes from the suffix
    (svg, png, pdf, dot). Returns ``path``."""
    fmt = _format_of(path)
    opts = dict(which=which, rankdir=rankdir, show_shapes=show_shapes, expand_nested=expand_nested, **options)
    dot = to_dot(obj, **opts) if isinstance(obj, Module) else plan_to_dot(obj, **opts)
    write(dot, path, fmt)
    return path


def to_dot(module, which: str = "forward", rankdir: str = "TB", show_shapes: bool = True,
           expand_nested: bool = True, highlight=None, inputs=None, title: str | None = None) -> graphviz.Digraph:
    """The graph as a ``graphviz.Digraph``.

    which: "forward" (the graph of modules) or "backward" (the VJP ops the compiler generates, with the seeds
    and the forward values they read). highlight: a node (or list of nodes) drawn red. inputs: arrays that
    fix the signature of the backward drawing (default: the declared Input shapes, None read as 1, float64).
    """
    if which not in ("forward", "backward"):
        raise RenderError(f"render: which must be 'forward' or 'backward', got {which!r}")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise RenderError(f"render: rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")
    graph = _as_graph(module)
    dot = _digraph(rankdir, title or graph.label())
    hl = _highlight_set(highlight)
    if which == "forward":
        _Forward(dot, show_shapes, expand_nested, hl, rankdir).draw(graph.order, graph.inputs, graph.outputs)
    else:
        _draw_backward(dot, graph, inputs, hl, title)
    return dot


def ancestors_to_dot(node, rankdir: str = "TB", show_shapes: bool = True, expand_nested: bool = True,
                     highlight=None) -> graphviz.Digraph:
    """The nodes ``node`` depends on (a graph still being built, with no gModule yet), ``node`` drawn red."""
    seen, stack = {}, [node]
    while stack:
        n = stack.pop()
        if id(n) not in seen:
            seen[id(n)] = n
            stack.extend(n.inputs)
    order = sorted(seen.values(), key=lambda n: n.id)   # ids grow as nodes are made: a topological order
    dot = _digraph(rankdir, f"'{node.display_name()}' and the nodes it depends on")
    hl = _highlight_set(node if highlight is None else highlight)
    _Forward(dot, show_shapes, expand_nested, hl, rankdir).draw(order, [n for n in order if n.kind == INPUT], [])
    return dot


def plan_to_dot(plan, **options) -> graphviz.Digraph:
    """A compiled plan, fused groups as clusters: the hook for the compiler's drawing (not drawn yet)."""
    from .compile.plan import Plan
    if not isinstance(plan, Plan):
        raise RenderError(f"gn.render draws a gModule, a module or a compiled plan, not a {type(plan).__name__}")
    raise NotImplementedError("drawing a compiled plan comes with the compiler's fused groups; "
                              "draw the module instead: gn.render(plan.module, path)")


def svg_text(module, **options) -> str:
    """The forward graph as SVG text (Jupyter's ``_repr_svg_``)."""
    return _run_dot(to_dot(module, **options).source, "svg").decode("utf-8")


def dot_available() -> bool:
    return shutil.which("dot") is not None


def write(dot: graphviz.Digraph, path, fmt: str | None = None) -> None:
    """Write ``dot`` to ``path`` as DOT source, or through graphviz's ``dot`` as svg/png/pdf."""
    fmt = fmt or _format_of(path)
    data = dot.source.encode("utf-8") if fmt == "dot" else _run_dot(dot.source, fmt)
    with open(path, "wb") as f:
        f.write(data)


def contains(graph, node) -> bool:
    """True when ``node`` is in ``graph`` or in a gModule nested in it."""
    if node in graph.graph:
        return True
    return any(n.kind == APPLY and isinstance(n.module, gModule) and contains(n.module, node) for n in graph.order)


# --- output --------------------------------------------------------------------------------------------------

def _format_of(path) -> str:
    fmt = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    fmt = "dot" if fmt == "gv" else fmt
    if fmt not in FORMATS:
        raise RenderError(f"render: cannot tell the format of {os.fspath(path)!r} from its suffix; use one of "
                          + ", ".join("." + f for f in FORMATS))
    return fmt


def _run_dot(source: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError(INSTALL_HINT)
    done = subprocess.run([exe, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True)
    if done.returncode != 0:
        raise RenderError(f"graphviz's dot failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return done.stdout


# --- shared pieces -------------------------------------------------------------------------------------------

def _as_graph(module):
    """A gModule to draw: itself, or a plain module wrapped around fresh Input nodes."""
    if isinstance(module, gModule):
        return module
    if not isinstance(module, Module):
        raise RenderError(f"render draws a gModule or a module, not a {type(module).__name__}")
    if module.arity is None:
        raise RenderError(f"{module.label()} takes any number of inputs; call it on gn.Input() nodes and draw "
                          f"the gModule")
    xs = [Input(name=f"input{i}") for i in range(module.arity)]
    y = module(*xs)
    return gModule(xs, list(y) if y.is_multi else [y])


def _digraph(rankdir, title):
    dot = graphviz.Digraph(graph_attr={"rankdir": rankdir, "fontname": _FONT, "labelloc": "t", "fontsize": "16",
                                       "label": _html_title(title), "nodesep": "0.3", "ranksep": "0.35"},
                           node_attr={"fontname": _FONT, "fontsize": "11", "shape": "box",
                                      "style": "rounded,filled", "margin": "0.1,0.04", "penwidth": "1"},
                           edge_attr={"fontname": _FONT, "fontsize": "9", "fontcolor": "#555555",
                                      "color": "#555555", "arrowsize": "0.7"})
    return dot


def _highlight_set(highlight) -> dict:
    """id(node) -> node for the nodes to draw red."""
    if highlight is None:
        return {}
    items = highlight if isinstance(highlight, (list, tuple, set)) else [highlight]
    return {id(n): n for n in items}


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _html_title(text) -> str:
    return f"<<B>{_esc(text)}</B>>"


def _label(title, *lines, dim=()) -> str:
    """An HTML-like label: a bold title, plain lines, then smaller grey lines (shapes)."""
    parts = [f"<B>{_esc(title)}</B>"] + [_esc(s) for s in lines if s]
    parts += [f'<FONT POINT-SIZE="9" COLOR="#444444">{_esc(s)}</FONT>' for s in dim if s]
    return "<" + "<BR/>".join(parts) + ">"


def _mark_failed(attrs):
    """Fill a node red; its grey and blue label lines turn white to stay readable."""
    attrs.update(_FAIL)
    if attrs.get("label", "").startswith("<"):
        attrs["label"] = re.sub(r'COLOR="[^"]*"', 'COLOR="white"', attrs["label"])


def _text(s) -> str:
    """Plain (non-HTML) attribute text: backslashes and <...> taken literally."""
    return graphviz.escape(str(s))


def family(module, shapes=None) -> str:
    """The colour family of a module: from the primitive ops it lowers to (``Op.family``).

    ``shapes``: its input shapes when known; otherwise a few common ranks are tried (2-d first; a criterion's
    2-d prediction with a 1-d target), and a module that lowers on none of them is 'misc'.
    """
    if isinstance(module, gModule):
        return "graph"
    k = module.arity or 2
    tries = [tuple(shapes)] if shapes is not None and all(s is not None for s in shapes) else []
    tries += [((None,) * r,) * k for r in (2, 4, 1, 3)] + [((None, None),) + ((None,),) * (k - 1)]
    for ins in tries:
        b = Builder()
        try:
            module.lower(b, *[b.placeholder(s) for s in ins])
        except Exception:       # these shapes do not fit the module: try the next
            continue
        fams = {v.op.family for v in b.values if not isinstance(v.op, Leaf)}
        return min(fams, key=lambda f: _PRIORITY.index(f) if f in _PRIORITY else len(_PRIORITY), default="shape")
    return "misc"


# --- the forward graph ---------------------------------------------------------------------------------------

class _Forward:
    """Draws nodes into a Digraph; nested gModules become clusters. Edges are emitted at the root, since an
    edge written inside a cluster would pull both of its ends into that cluster."""

    def __init__(self, dot, show_shapes, expand_nested, highlight, rankdir="TB"):
        self.dot, self.shapes, self.expand, self.hl = dot, show_shapes, expand_nested, highlight
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
        dim = [fmt_shape(n.shape) if self.shapes and n.shape is not None else ""]
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
        shape = p.shape
        if self.shapes and shape is not None and not isinstance(shape, list):
            attrs["label"] = _text(" " + fmt_shape(shape))
        return attrs


# --- the backward graph --------------------------------------------------------------------------------------

def signature(graph, inputs=None):
    """[(shape, dtype)] per graph input: from ``inputs`` arrays, else declared shapes (None -> 1) in float64."""
    if inputs is not None:
        arrays = [np.asarray(a) for a in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
        if len(arrays) != len(graph.inputs):
            raise RenderError(f"render(which='backward'): {graph.label()} takes {len(graph.inputs)} inputs, "
                              f"got {len(arrays)} arrays in inputs=")
        return [(a.shape, a.dtype) for a in arrays]
    sig = []
    for n in graph.inputs:
        if n.shape is None:
            raise RenderError(f"render(which='backward') needs concrete shapes: input '{n.display_name()}' "
                              f"(built at {n.site}) declares none; give gn.Input(shape) or pass inputs=[arrays]", n)
        sig.append((tuple(1 if d is None else d for d in n.shape), np.dtype(np.float64)))
    return sig


def _draw_backward(dot, graph, inputs, hl, title):
    try:
        prog = lower(graph, signature(graph, inputs))
    except RenderError:
        raise
    except GraphnetError as e:
        raise RenderError(f"render(which='backward') could not lower {graph.label()}: {e}\n  pass inputs=[arrays] "
                          f"with the shapes and dtypes it runs on", e.node) from e
    bwd = prog.backward_values()
    in_bwd = {id(v) for v in bwd}
    names = {id(a): n.display_name() for a, n in zip(prog.args, graph.inputs)}    # what a reader calls a value
    names.update((id(v), f"{v.src.display_name()}.{p.name}" if v.src is not None else p.name) for p, v in prog.params)
    grad_of = {}                               # id(value) -> the inputs and parameters it is the gradient of
    for g, v in zip(prog.input_grads + prog.param_grads, prog.args + [v for _, v in prog.params]):
        if g is not None:
            grad_of.setdefault(id(g), []).append(names[id(v)])
    saved = list({id(a): a for v in bwd for a in v.args if id(a) not in in_bwd}.values())
    count = lambda kinds: sum(isinstance(a.op, kinds) for a in saved)
    dot.attr(label=_label(title or f"backward of {graph.label()}",
                          f"{sum(not isinstance(v.op, Seed) for v in bwd)} gradient ops; kept from forward: "
                          f"{len(saved) - count((Arg, Param))} activations, {count(Arg)} inputs, "
                          f"{count(Param)} parameters",
                          dim=["yellow notes: forward values kept for backward (dashed edges); "
                               "double border: a gradient backward returns"]))
    outputs_of = {id(v.src): v for v in prog.forward_values() if v.src is not None}   # last value of each node
    for a in saved:
        dot.node(f"v{a.id}", **_saved_attrs(a, names, outputs_of.get(id(a.src)) is a))

    groups = {}                                # the VJP ops of one forward node go in one cluster
    for v in bwd:
        groups.setdefault(v.src.id if v.src is not None else None, []).append(v)
    for key, vals in groups.items():
        if key is None:
            _backward_nodes(dot, vals, graph, grad_of, hl)
            continue
        src = vals[0].src
        with dot.subgraph(name=f"cluster_g{key}") as c:
            c.attr(label=_label(f"∂ {src.display_name()}", src.op_label()), style="rounded,filled",
                   fillcolor="#ffd6d6" if id(src) in hl else "#f7f7f7", color="#bbbbbb", fontsize="10",
                   tooltip=_text(src.site))
            _backward_nodes(c, vals, graph, grad_of, hl)
    for v in bwd:
        for a in v.args:
            dot.edge(f"v{a.id}", f"v{v.id}", **({} if id(a) in in_bwd else {"style": "dashed", "color": "#b8860b"}))


def _saved_attrs(a, names, is_output):
    """A forward value that backward reads: a parameter, a graph input, or an activation kept for backward."""
    shape = [fmt_shape(a.shape)]
    src = a.src
    if isinstance(a.op, Param):
        label, fill = _label(names[id(a)], "parameter", dim=shape), PALETTE["param"]
    elif isinstance(a.op, Arg):
        label, fill = _label(f"saved: {names[id(a)]}", "graph input", dim=shape), PALETTE["saved"]
    elif src is None:
        label, fill = _label("saved: constant", _op_text(a.op), dim=shape), PALETTE["saved"]
    else:
        what = src.op_label() if is_output else f"{_op_text(a.op)} in {src.op_label()}"
        label, fill = _label(f"saved: {src.display_name()}", what, dim=shape), PALETTE["saved"]
    tip = f"forward value kept for backward, made by {src.display_name()} built at {src.site}" if src is not None \
        else "forward value kept for backward"
    return {"label": label, "fillcolor": fill, "shape": "note", "style": "filled", "tooltip": _text(tip)}


def _backward_nodes(sub, vals, graph, grad_of, hl):
    for v in vals:
        shape = fmt_shape(v.shape)
        if isinstance(v.op, Seed):
            out = graph.outputs[v.op.index].display_name()
            attrs = {"label": _label(f"∂L/∂{out}", "seed", dim=[shape]), "shape": "invhouse",
                     "fillcolor": PALETTE["input"], "style": "filled,bold", "color": _BLUE}
        else:
            attrs = {"label": _label(_op_text(v.op), dim=[shape]), "fillcolor": PALETTE.get(v.op.family, "#ffffff")}
        if id(v) in grad_of:
            attrs["label"] = _label(_op_text(v.op), *[f"= ∂L/∂{n}" for n in grad_of[id(v)]], dim=[shape])
            attrs.update(peripheries="2", color=_BLUE, penwidth="1.5")
        src = v.src
        attrs["tooltip"] = _text(f"{_op_text(v.op)} in the backward of {src.display_name()} ({src.op_label()}), "
                                 f"built at {src.site}" if src is not None else _op_text(v.op))
        if src is not None and id(src) in hl:
            _mark_failed(attrs)
        sub.node(f"v{v.id}", **attrs)


def _op_text(op) -> str:
    """An op as a reader wants it: its name and the attributes that are set (``MatMul(tb)``)."""
    if type(op).__repr__ is not Op.__repr__:
        return repr(op)
    parts = []
    for k, v in op.attrs():
        if v is False or v is None:
            continue
        parts.append(k if v is True else f"{k}={v}")
    return f"{type(op).__name__}({', '.join(parts)})" if parts else type(op).__name__


# --- summary ---------------------------------------------------------------------------------------------------

def summary(module) -> str:
    """A table: node, module, output shape, parameters, inputs; parameters of a shared module counted once."""
    graph = _as_graph(module)
    rows, first_use, outs = [], {}, {id(o) for o in graph.outputs}
    for n in graph.order:
        params = "0"
        if n.kind == ITEM:
            params = ""
        elif n.kind == APPLY:
            count = sum(p.data.size for p in n.module.parameters())
            params = f"{count:,}"
            if count and id(n.module) in first_use:
                params += f" (shared with {first_use[id(n.module)]})"
            first_use.setdefault(id(n.module), n.display_name())
        name = n.display_name() + ("  [output]" if id(n) in outs else "")
        rows.append((name, n.op_label(), fmt_shape(n.shape), params, ", ".join(p.display_name() for p in n.inputs)))
    header = ("node", "module", "output shape", "parameters", "inputs")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]

    def line(r):
        return "  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    ps = graph.parameters()
    total = sum(p.data.size for p in ps)
    nbytes = sum(p.data.nbytes for p in ps)
    out = [graph.label(), line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    out += ["  ".join("-" * w for w in widths),
            f"total parameters: {total:,} in {len(ps)} arrays ({nbytes:,} bytes), each shared array counted once",
            f"nodes: {len(rows)}; inputs: {', '.join(n.display_name() for n in graph.inputs)}; "
            f"outputs: {', '.join(n.display_name() for n in graph.outputs)}"]
    return "\n".join(text.rstrip() for text in out)
