"""The backward graph drawn: the VJP ops the compiler makes, grouped under the forward node they
differentiate, and the forward values they read."""
from __future__ import annotations

import numpy as np

from .compile.lower import lower
from .errors import GraphnetError, RenderError, fmt_shape
from .node import APPLY, INPUT
from .ops import Arg, Op, Param, Seed
from .render import PALETTE, _BLUE, _label, _mark_failed, _n, _text


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
        sig = signature(graph, inputs)
    except RenderError:
        if inputs is not None:
            raise
        return _draw_module_backward(dot, graph, hl, title)     # no shapes yet: nngraph's g.bg, sizes '?'
    try:
        prog = lower(graph, sig)
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


def _draw_module_backward(dot, graph, hl, title):
    """The backward graph at the level of modules, for a graph whose input shapes are not known yet: one
    gradient node per forward node, the edges reversed (nngraph's ``g.bg``), parameter gradients beside their
    module, sizes shown where known ('?' otherwise). With shapes (inputs=, declared, or after a run) the
    drawing shows the VJP ops themselves."""
    dot.attr(label=_label(title or f"backward of {graph.label()}",
                          f"{_n(sum(n.kind != INPUT for n in graph.order), 'module gradient')}",
                          dim=["sizes are known once it runs (or with inputs=[arrays]); double border: a "
                               "gradient backward returns"]))
    leaves = {id(n) for n in graph.inputs}
    for i, o in enumerate(graph.outputs):
        dot.node(f"s{i}", label=_label(f"∂L/∂{o.display_name()}", "seed", dim=[fmt_shape(o.shape)]),
                 shape="invhouse", style="filled,bold", fillcolor=PALETTE["input"], color=_BLUE)
        dot.edge(f"s{i}", f"g{o.id}")
    for n in reversed(graph.order):
        if n.kind == INPUT and id(n) not in leaves and n.is_multi:
            continue                   # a table input: its entries' gradients are drawn
        attrs = {"label": _label(f"∂ {n.display_name()}", "gradient of " + n.op_label(), dim=[fmt_shape(n.shape)]),
                 "fillcolor": PALETTE["grad"], "style": "filled", "tooltip": _text(f"built at {n.site}")}
        if id(n) in leaves:
            attrs.update(peripheries="2", color=_BLUE, penwidth="1.5")
        if id(n) in hl:
            _mark_failed(attrs)
        dot.node(f"g{n.id}", **attrs)
        for p in n.inputs:
            if not (p.kind == INPUT and p.is_multi):
                dot.edge(f"g{n.id}", f"g{p.id}")
        for key, prm in (n.module._params.items() if n.kind == APPLY else ()):
            dot.node(f"p{n.id}_{key}", label=_label(f"∂L/∂{n.display_name()}.{key}", "parameter gradient",
                                                   dim=[fmt_shape(prm.shape)]),
                     shape="note", style="filled", fillcolor=PALETTE["param"], peripheries="2", color=_BLUE)
            dot.edge(f"g{n.id}", f"p{n.id}_{key}")


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


