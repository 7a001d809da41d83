"""Drawing graphs with graphviz: the forward graph, the backward graph the compiler makes, a compiled plan, and
a summary table and a networkx view.

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

def render(obj, path, which: str | None = None, rankdir: str = "TB", show_shapes: bool = True,
           expand_nested: bool = True, **options):
    """Draw ``obj`` (a gModule, a module, or a compiled plan) into ``path``; the format comes from the suffix
    (svg, png, pdf, dot). which: for a module "forward" (default) or "backward"; for a plan, the generated
    function to draw ("forward", "backward", "step"; default: all it runs). Returns ``path``."""
    fmt = _format_of(path)
    write(_any_to_dot(obj, which=which, rankdir=rankdir, show_shapes=show_shapes, expand_nested=expand_nested,
                      **options), path, fmt)
    return path


def _any_to_dot(obj, **options) -> graphviz.Digraph:
    if isinstance(obj, Module):
        return to_dot(obj, **options)
    from .compile.plan import Plan
    if isinstance(obj, Plan):
        return plan_to_dot(obj, **options)
    raise RenderError(f"gn.render draws a gModule, a module or a compiled plan, not a {type(obj).__name__}")


def to_dot(module, which: str | None = "forward", rankdir: str = "TB", show_shapes: bool = True,
           expand_nested: bool = True, highlight=None, inputs=None, title: str | None = None) -> graphviz.Digraph:
    """The graph as a ``graphviz.Digraph``.

    which: "forward" (the graph of modules) or "backward" (the VJP ops the compiler generates, with the seeds
    and the forward values they read). highlight: a node (or list of nodes) drawn red. inputs: arrays whose
    shapes the drawing shows (forward: every node's shape for them; backward: the signature, by default the
    declared Input shapes with None read as 1, float64).
    """
    which = which or "forward"
    if which not in ("forward", "backward"):
        raise RenderError(f"render: which must be 'forward' or 'backward', got {which!r}")
    _check_rankdir(rankdir)
    graph = _as_graph(module)
    dot = _digraph(rankdir, title or graph.label())
    hl = _highlight_set(highlight)
    if which == "forward":
        known = _shapes_for(graph, inputs) if inputs is not None and show_shapes else {}
        _Forward(dot, show_shapes, expand_nested, hl, rankdir, known).draw(graph.order, graph.inputs, graph.outputs)
    else:
        _draw_backward(dot, graph, inputs, hl, title)
    return dot


def failure_to_dot(graph, node, known=None) -> graphviz.Digraph:
    """gn.debug's drawing: ``graph`` with ``node`` red; ``known``: id(node) -> shape for the arrays it ran on
    (as far as they fit, see ``_shapes_for(partial=True)``)."""
    dot = _digraph("TB", graph.label())
    _Forward(dot, True, True, _highlight_set(node), "TB", known).draw(graph.order, graph.inputs, graph.outputs)
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


def svg_text(obj, **options) -> str:
    """A gModule's forward graph, or a plan, as SVG text."""
    return _run_dot(_any_to_dot(obj, **options).source, "svg").decode("utf-8")


def repr_svg(obj):
    """Jupyter's ``_repr_svg_``: the SVG text, or None (Jupyter then shows the text repr) when it cannot be
    drawn, e.g. without graphviz's ``dot``."""
    try:
        return svg_text(obj)
    except RenderError:
        return None


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


def _check_rankdir(rankdir):
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise RenderError(f"render: rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")


def _highlight_set(highlight) -> dict:
    """id(node) -> node for the nodes to draw red."""
    if highlight is None:
        return {}
    items = highlight if isinstance(highlight, (list, tuple, set)) else [highlight]
    return {id(n): n for n in items}


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


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


# --- the backward graph --------------------------------------------------------------------------------------

def signature(graph, inputs=None, what="render(which='backward')"):
    """[(shape, dtype)] per graph input: from ``inputs`` arrays, else declared shapes (None -> 1) in float64."""
    if inputs is not None:
        arrays = [np.asarray(a) for a in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
        if len(arrays) != len(graph.inputs):
            raise RenderError(f"{what}: {graph.label()} takes {len(graph.inputs)} inputs, "
                              f"got {len(arrays)} arrays in inputs=")
        return [(a.shape, a.dtype) for a in arrays]
    if any(n.shape is None for n in graph.inputs):
        last = _last_run(graph)              # the arrays the module last ran on, where it has run
        if last is not None and len(last) == len(graph.inputs):
            return [(np.shape(a), np.asarray(a).dtype) for a in last]
    sig = []
    for n in graph.inputs:
        if n.shape is None:
            raise RenderError(f"{what} needs concrete shapes: input '{n.display_name()}' "
                              f"(built at {n.site}) declares none and the module has not run; give "
                              f"gn.Input(shape), run forward first, or pass inputs=[arrays]", n)
        sig.append((tuple(1 if d is None else d for d in n.shape), np.dtype(np.float64)))
    return sig


def _last_run(module):
    """The input arrays of the module's latest forward, or None."""
    for plan in getattr(module, "_plans", {}).values():
        last = getattr(plan, "_last", None)
        if last is not None and last[1] is not None:
            return list(last[1])
    return None


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
                          f"{_n(sum(not isinstance(v.op, Seed) for v in bwd), 'gradient op')}; kept from forward: "
                          f"{_n(len(saved) - count((Arg, Param)), 'activation')}, {_n(count(Arg), 'input')}, "
                          f"{_n(count(Param), 'parameter')}",
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
                   fillcolor="#ffd6d6" if id(src) in hl else "#f7f7f7", color="#bbbbbb", fontsize="10", labeljust="l",
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


# --- the compiled plan ----------------------------------------------------------------------------------------

_SAVED = "#b8860b"          # forward values kept for backward: their border and the dashed edges that read them


def plan_to_dot(plan, which: str | None = None, rankdir: str = "TB", show_shapes: bool = True,
                expand_nested: bool = True, inputs=None, highlight=None, title: str | None = None) -> graphviz.Digraph:
    """A compiled plan: a cluster per generated function, its values numbered in schedule order, each with the
    variable (buffer) that holds it; a variable seen again is a buffer reused. Gold: forward values kept for
    backward, and the dashed edges that read them. which: one function ("forward", "backward", "step"); default
    all that run. The signature drawn: ``inputs`` arrays, else the plan's last run, else the declared shapes.
    (Nested gModules are inlined by the compiler: ``expand_nested`` has no effect here.)"""
    _check_rankdir(rankdir)
    schedule, prog, stats = _plan_parts(plan, inputs)
    fns = list(dict.fromkeys(fn for fn, _, _ in schedule))
    if which is None:
        fns = ["step"] if "step" in fns else fns
    elif which in fns:
        fns = [which]
    else:
        raise RenderError(f"render: this plan's functions are {', '.join(fns)}; which={which!r} is none of them")
    graph = plan.graph
    names = _plan_names(prog, graph)
    title = title or f"plan of {plan.module.label()}, level {plan.level}"
    dot = _digraph(rankdir, title)
    dot.attr(label=_label(title, _plan_stats_line(stats),
                          dim=["clusters: the generated functions; #k: schedule order" +
                               ("; tN: the variable (buffer) holding the value, 'reused' when an earlier value in "
                                "it is dead" if any(var for _, _, var in schedule) else ""),
                               "gold border: kept by forward for backward (notes and dashed edges in backward); "
                               "double border: an output or a gradient the plan returns"]))
    in_bwd = {id(v) for f, v, _ in schedule if f == "backward"}
    saved = {id(a) for f, v, _ in schedule if f == "backward" for a in v.args if id(a) not in in_bwd}
    number = {}                                   # id(value) -> its place in forward's schedule
    for f, v, _ in schedule:
        if f == "forward":
            number[id(v)] = len(number) + 1
    dot.attr(remincross="false")                  # keeps the inputs (and seeds) in their order, left to right
    hl = _highlight_set(highlight)
    for fn in fns:
        entries = [(v, var) for f, v, var in schedule if f == fn]
        local = {id(v): f"{fn}_v{v.id}" for v, _ in entries}
        leaves = {id(a): a for v, _ in entries for a in v.args if id(a) not in local}
        with dot.subgraph(name=f"cluster_{fn}") as c:
            variables = len({var for _, var in entries if var is not None})
            c.attr(label=_html_title(f"{fn}(): {_n(len(entries), 'value')}" + (f", {_n(variables, 'variable')}"
                                                                                if variables else "")),
                   style="rounded", color="#999999", fontsize="12")
            _plan_leaves(c, fn, sorted(leaves.values(), key=_leaf_order), names, show_shapes, local, number)
            uses = {}
            for k, (v, var) in enumerate(entries, 1):
                uses[var] = uses.get(var, 0) + 1
                attrs = _plan_value_attrs(v, var, k, var is not None and uses[var] > 1, names, show_shapes,
                                          kept=fn == "forward" and id(v) in saved)
                if v.src is not None and id(v.src) in hl:
                    _mark_failed(attrs)
                c.node(local[id(v)], **attrs)
        for v, _ in entries:
            for a in v.args:
                from_forward = id(a) in leaves and not isinstance(a.op, Seed) and fn == "backward"
                dot.edge(local[id(a)], local[id(v)], **({"style": "dashed", "color": _SAVED} if from_forward else {}))
    return dot


def _plan_parts(plan, inputs):
    """Everything the plan drawing reads from the compiler, in this one place.

    Of a Plan: ``_check`` and ``_executable`` (the executable for given arrays, as ``forward`` gets it),
    ``_last[0]`` (that of the last run), ``graph``, ``module``, ``level``. Of an executable: ``program`` and,
    when it has them, ``schedule`` ([(function name, IR value, variable name)] in run order) and ``stats``
    (a dict). The level-0 interpreter has no schedule: its program's values are drawn in order, no variables.
    """
    from .compile.plan import Plan
    if not isinstance(plan, Plan):
        raise RenderError(f"gn.render draws a gModule, a module or a compiled plan, not a {type(plan).__name__}")
    last = getattr(plan, "_last", None)
    if inputs is None and last is not None:
        exe = last[0]
    else:
        if inputs is None:
            if plan.graph is None:
                raise RenderError(f"render: the plan of {plan.module.label()} has not run; pass inputs=[arrays] "
                                  f"to draw it for their shapes")
            inputs = [np.zeros(shape, dtype) for shape, dtype in signature(plan.graph, None, "render(plan)")]
        arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        try:
            exe = plan._executable(plan._check(arrays))
        except GraphnetError as e:
            raise RenderError(f"render: could not compile {plan.module.label()} to draw it: {e}\n  pass "
                              f"inputs=[arrays] with the shapes and dtypes it runs on", e.node) from e
    prog = exe.program
    schedule = getattr(exe, "schedule", None)
    if schedule is None:
        schedule = [(fn, v, None) for fn, vals in (("forward", prog.forward_values()),
                                                   ("backward", prog.backward_values()))
                    for v in vals if not isinstance(v.op, (Arg, Seed))]
    stats = getattr(exe, "stats", None)
    return list(schedule), prog, stats if isinstance(stats, dict) else {}


def _plan_names(prog, graph):
    """id(value) -> what a reader calls it: inputs, outputs, seeds, parameters and the gradients returned."""
    ins = [n.display_name() for n in graph.inputs] if graph is not None else [f"input{i}" for i in
                                                                               range(len(prog.args))]
    outs = [n.display_name() for n in graph.outputs] if graph is not None else [f"output{i}" for i in
                                                                                 range(len(prog.outputs))]
    names = {id(a): {"name": n} for a, n in zip(prog.args, ins)}
    for p, v in prog.params:
        names[id(v)] = {"name": f"{v.src.display_name()}.{p.name}" if v.src is not None else p.name}
    for k, s in enumerate(prog.seeds):
        if s is not None:
            names[id(s)] = {"name": f"∂L/∂{outs[k]}"}
    for k, o in enumerate(prog.outputs):
        names.setdefault(id(o), {}).setdefault("returns", []).append(f"output {k}: {outs[k]}")
    param_names = [names[id(v)]["name"] for _, v in prog.params]
    for g, n in zip(prog.input_grads + prog.param_grads, ins + param_names):
        if g is not None:
            names.setdefault(id(g), {}).setdefault("returns", []).append(f"= ∂L/∂{n}")
    return names


def _plan_stats_line(stats) -> str:
    parts = []
    if "nodes" in stats:
        parts.append(_n(stats['nodes'], "value") + (f" ({stats['nodes_lowered']} before passes)"
                                                   if "nodes_lowered" in stats else ""))
    if "buffers" in stats:
        parts.append(_n(stats['buffers'], "array"))
    if "bytes_peak_planned" in stats and "bytes_one_buffer_per_node" in stats:
        parts.append(f"peak {stats['bytes_peak_planned']:,} bytes live vs "
                     f"{stats['bytes_one_buffer_per_node']:,} with one buffer per value")
    return "; ".join(parts)


def _plan_value_attrs(v, var, k, reused, names, show_shapes, kept):
    info = names.get(id(v), {})
    op = info.get("name") if isinstance(v.op, Param) else _op_text(v.op)
    head = f"{var} = {op}" if var else op
    src = v.src.display_name() if v.src is not None else ""
    note = "view" if getattr(v.op, "view", False) else ("reused" if reused else "")
    dim = [" · ".join(x for x in (f"#{k}", fmt_shape(v.shape) if show_shapes else "", note) if x)]
    attrs = {"label": _label(head, src, *info.get("returns", []), dim=dim),
             "fillcolor": PALETTE.get(v.op.family, "#ffffff"),
             "tooltip": _text(f"#{k} {op}" + (f" in {src} ({v.src.op_label()}), built at {v.src.site}"
                                                           if v.src is not None else ""))}
    if info.get("returns"):
        attrs.update(peripheries="2", color=_BLUE, penwidth="1.5")
    if kept:
        attrs.update(color=_SAVED, penwidth="2.5")
    return attrs


def _leaf_order(a):
    """Graph inputs first, then output gradients, each in their order, then anything else."""
    kind = 1 if isinstance(a.op, Seed) else 0 if isinstance(a.op, Arg) else 2
    return (kind, getattr(a.op, "index", 0), a.id)


def _plan_leaves(sub, fn, leaves, names, show_shapes, local, number):
    """The values a function receives: graph inputs and output gradients (side by side, in order), and, in
    backward, the values forward saved for it (notes)."""
    with sub.subgraph() as rank:
        rank.attr(rank="same")
        prev = None
        for a in leaves:
            local[id(a)] = nid = f"{fn}_v{a.id}"
            dim = fmt_shape(a.shape) if show_shapes else ""
            name = names.get(id(a), {}).get("name")
            if isinstance(a.op, Arg) and (fn != "backward" or isinstance(a.op, Seed)):
                rank.node(nid, label=_label(name or _op_text(a.op), "seed" if isinstance(a.op, Seed) else "input",
                                            dim=[dim]),
                          shape="invhouse", fillcolor=PALETTE["input"], style="filled,bold", color=_BLUE,
                          tooltip=_text(name or _op_text(a.op)))
                if prev is not None:
                    rank.edge(prev, nid, style="invis")
                prev = nid
                continue
            what = name or (a.src.display_name() if a.src is not None else _op_text(a.op))
            where = f"forward #{number[id(a)]}" if id(a) in number else ("input" if isinstance(a.op, Arg) else "")
            sub.node(nid, label=_label(f"saved: {what}", dim=[" · ".join(x for x in (dim, where) if x)]),
                     shape="note", style="filled", fillcolor=PALETTE["saved"], color=_SAVED,
                     tooltip=_text(f"kept by forward for backward: {what}"))


# --- networkx ------------------------------------------------------------------------------------------------

def to_networkx(module):
    """The graph as a networkx.DiGraph keyed by node name (a repeated name gets ``#id``), with node attributes
    op (the module's label), name, module (its class), shape, site (file:line) and kind; edges carry pos
    (which input of the head they feed)."""
    import networkx as nx
    graph = _as_graph(module)
    g, key = nx.DiGraph(), {}
    for n in graph.order:
        name = n.display_name()
        key[id(n)] = k = name if name not in g else f"{name}#{n.id}"
        g.add_node(k, op=n.op_label(), name=name, module=type(n.module).__name__ if n.kind == APPLY else n.kind,
                   shape=n.shape, site=n.site, kind=n.kind)
    for n in graph.order:
        for pos, p in enumerate(n.inputs):
            g.add_edge(key[id(p)], key[id(n)], pos=pos)
    return g


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
