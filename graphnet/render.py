"""Drawing graphs with graphviz: the forward graph, the backward graph the compiler makes, a compiled plan, and
a summary table and a networkx view. This module holds the entry points and the pieces every drawing shares;
``render_graph``, ``render_backward`` and ``render_plan`` draw each kind.

A pure function of the graph: nothing here changes a node, a module or a gModule. Labels are HTML-like, every
piece of user text escaped, so any node name draws. Colours come from the primitive ops a module lowers to
(``Op.family``: one place for that fact): a Linear lowers to a matmul, so it is drawn as linear algebra.
"""
from __future__ import annotations

import html
import os
import re
import shutil

import graphviz
from .compile.ir import Builder
from .errors import RenderError, fmt_shape
from .gmodule import gModule, one_node_graph
from .module import Module
from .node import APPLY, INPUT, ITEM, Input
from .ops import Leaf

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
    from .render_backward import _draw_backward
    from .render_graph import _Forward, _shapes_for
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
    from .render_graph import _Forward
    dot = _digraph("TB", graph.label())
    _Forward(dot, True, True, _highlight_set(node), "TB", known).draw(graph.order, graph.inputs, graph.outputs)
    return dot


def ancestors_to_dot(node, rankdir: str = "TB", show_shapes: bool = True, expand_nested: bool = True,
                     highlight=None) -> graphviz.Digraph:
    """The nodes ``node`` depends on (a graph still being built, with no gModule yet), ``node`` drawn red."""
    from .render_graph import _Forward
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
    """DOT source laid out by graphviz's ``dot`` (the graphviz package pipes it), as ``fmt`` bytes."""
    try:
        return graphviz.pipe("dot", fmt, source.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound as e:
        raise RenderError(INSTALL_HINT) from e
    except graphviz.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace").strip()
        raise RenderError(f"graphviz's dot failed ({e.returncode}): {detail}") from None


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
    return one_node_graph(module, [Input(name=f"input{i}") for i in range(module.arity)])


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


def plan_to_dot(plan, **options) -> graphviz.Digraph:
    """A compiled plan as a ``graphviz.Digraph`` (see ``render_plan.plan_to_dot`` for the options)."""
    from .render_plan import plan_to_dot as draw
    return draw(plan, **options)


def _op_text(op) -> str:
    from .render_backward import _op_text as text
    return text(op)


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
