"""A compiled plan drawn: one cluster per generated function, values in run order with their buffers."""
from __future__ import annotations

import graphviz
import numpy as np

from .errors import GraphnetError, RenderError, fmt_shape
from .ops import Arg, Param, Seed
from .render import (PALETTE, _BLUE, _check_rankdir, _digraph, _highlight_set, _html_title, _label, _mark_failed,
                     _n, _text)
from .render_backward import _op_text, signature


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


