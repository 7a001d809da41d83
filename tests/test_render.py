"""Rendering: the DOT text (labels, shapes, clusters, tooltips, colours, escaping, the red node), real `dot`
output, the backward drawing, summary tables and the gn.debug() flow."""
import html
import importlib
import os
import re
import shutil
from collections import Counter

import graphviz
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.compile.lower import lower
from graphnet.debug import debug
from graphnet.render import PALETTE, render, summary, to_dot

render_mod = importlib.import_module("graphnet.render")    # the module, even once gn.render (the function) exists

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
MAGIC = {"svg": b"<?xml", "png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF"}


def lstm_cell(H=2, n_in=3, shapes=True):
    """nngraph's LSTM cell, spelled as in API.md (the node names come from these local variables)."""
    x = gn.Input((None, n_in) if shapes else None, name="x")
    prev_c = gn.Input((None, H) if shapes else None, name="prev_c")
    prev_h = gn.Input((None, H) if shapes else None, name="prev_h")
    i2h = nn.Linear(n_in, 4 * H)(x)
    h2h = nn.Linear(H, 4 * H)(prev_h)
    preact = nn.CAddTable()(i2h, h2h)
    gates = nn.Sigmoid()(nn.Narrow(1, 0, 3 * H)(preact))
    in_transform = nn.Tanh()(nn.Narrow(1, 3 * H, H)(preact))
    in_gate = nn.Narrow(1, 0, H)(gates)
    forget_gate = nn.Narrow(1, H, H)(gates)
    out_gate = nn.Narrow(1, 2 * H, H)(gates)
    next_c = nn.CAddTable()(nn.CMulTable()(forget_gate, prev_c), nn.CMulTable()(in_gate, in_transform))
    next_h = nn.CMulTable()(out_gate, nn.Tanh()(next_c))
    return gn.gModule([x, prev_c, prev_h], [next_c, next_h])


def node_named(graph, name):
    return next(n for n in graph.order if n.display_name() == name)


def node_stmt(source, graph, name):
    """The DOT statement that draws the node called ``name``."""
    nid = f"n{node_named(graph, name).id}"
    m = re.search(rf"^\s*{nid} \[(.*?)\]$", source, re.M | re.S)
    assert m, f"no statement for {name} ({nid})"
    return m.group(1)


def red_svg_nodes(svg_text):
    """The text of each node group of an SVG drawn by dot that is filled red."""
    groups = re.findall(r'<g id="node\d+" class="node">(.*?)</g>', svg_text, re.S)
    return [g for g in groups if 'fill="red"' in g]


# --- the forward drawing -------------------------------------------------------------------------------------

def test_labels_show_name_module_and_shape():
    cell = lstm_cell()
    src = to_dot(cell).source
    i2h = node_stmt(src, cell, "i2h")
    assert "<B>i2h</B>" in i2h and "Linear(3 -&gt; 8)" in i2h and "(?, 8)" in i2h
    gates = node_stmt(src, cell, "gates")
    assert "Sigmoid" in gates and "(?, 6)" in gates
    assert re.search(r'n\d+ -> n\d+ \[label=" \(\?, 8\)"', src), "edges carry the shape of the value"
    assert "(?, 8)" not in to_dot(cell, show_shapes=False).source
    # named after the local variable that holds them, else after their module and id
    unnamed = next(n for n in cell.order if n.kind == "apply" and n.inputs == (node_named(cell, "preact"),)
                   and "0, 6" in n.op_label())
    assert unnamed.display_name() == f"Narrow_{unnamed.id}"
    assert f"<B>Narrow_{unnamed.id}</B><BR/>Narrow(1, 0, 6)" in src


def test_tooltip_is_the_line_that_built_the_node():
    cell = lstm_cell()
    src = to_dot(cell).source
    site = node_named(cell, "h2h").site
    assert f'tooltip="{site}"' in node_stmt(src, cell, "h2h")
    path, line = site.rsplit(":", 1)
    assert os.path.basename(path) == "test_render.py"
    with open(path) as f:
        assert "h2h = nn.Linear(" in f.readlines()[int(line) - 1]


def test_inputs_and_outputs_drawn_distinctly():
    cell = lstm_cell()
    src = to_dot(cell).source
    assert "shape=invhouse" in node_stmt(src, cell, "x")
    assert "shape=invhouse" not in node_stmt(src, cell, "i2h")
    for name, k in (("next_c", 0), ("next_h", 1)):
        stmt = node_stmt(src, cell, name)
        assert "peripheries=2" in stmt and f"output {k}" in stmt
    assert "peripheries=2" not in node_stmt(src, cell, "preact")
    assert "shape=box" in node_stmt(to_dot(cell, rankdir="LR").source, cell, "x")


def test_colours_follow_the_op_family_and_are_stable():
    cell = lstm_cell()
    src = to_dot(cell).source
    expect = {"i2h": "linalg", "gates": "activation", "preact": "arith", "in_gate": "shape"}
    for name, fam in expect.items():
        assert f'fillcolor="{PALETTE[fam]}"' in node_stmt(src, cell, name), name
    assert to_dot(cell).source == src
    fills = lambda g: re.findall(r'fillcolor="([^"]+)"', to_dot(g).source)
    assert fills(lstm_cell()) == fills(cell), "a rebuilt cell gets the same colours"
    assert render_mod.family(nn.CrossEntropyCriterion()) == "nnet"
    assert render_mod.family(nn.SoftMax()) == "nnet"


def test_annotate_attributes_are_applied():
    x = gn.Input((None, 3), name="x")
    y = nn.Tanh()(x).annotate(name="y", color="purple", fontsize="20")
    g = gn.gModule([x], [y])
    stmt = node_stmt(to_dot(g).source, g, "y")
    assert "color=purple" in stmt and "fontsize=20" in stmt


def test_nested_gmodule_is_a_cluster_or_one_box():
    cell = lstm_cell()
    x, c0, h0 = gn.Input((None, 3), name="x0"), gn.Input((None, 2), name="c0"), gn.Input((None, 2), name="h0")
    c1, h1 = cell(x, c0, h0)
    c2, h2 = cell(x, c1, h1)
    step = gn.gModule([x, c0, h0], [c2, h2])
    src = to_dot(step).source
    clusters = re.findall(r"subgraph cluster_\d+ \{", src)
    assert len(clusters) == 2
    assert src.count("gModule(3 -&gt; 2)") >= 2
    gates = node_named(cell, "gates")
    assert len(re.findall(rf"^\s*n\d+_n{gates.id} \[", src, re.M)) == 2, "the shared cell is drawn once per call"
    flat = to_dot(step, expand_nested=False).source
    assert "cluster" not in flat and "shape=box3d" in flat and f"n{gates.id}" not in flat


def test_escaping_lets_any_name_draw(tmp_path):
    x = gn.Input((None, 3), name="<in>")
    weird = 'a<b>"c{d}|\\e&'
    y = nn.Tanh()(x).annotate(name=weird)
    g = gn.gModule([x], [y])
    src = to_dot(g).source
    assert "a&lt;b&gt;&quot;c{d}|\\e&amp;" in src
    if shutil.which("dot"):
        svg = (tmp_path / "weird.svg")
        render(g, svg)
        text = svg.read_text()
        assert "a&lt;b&gt;&quot;c{d}|\\e&amp;" in text and "&lt;in&gt;" in text


def test_highlight_fills_the_node_red():
    cell = lstm_cell()
    src = to_dot(cell, highlight=node_named(cell, "gates")).source
    assert 'fillcolor=red' in node_stmt(src, cell, "gates")
    assert src.count("fillcolor=red") == 1


@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_dot_writes_real_files(tmp_path, fmt):
    cell = lstm_cell()
    for which in ("forward", "backward"):
        path = tmp_path / f"lstm_{which}.{fmt}"
        assert render(cell, path, which=which) == path
        assert path.read_bytes().startswith(MAGIC[fmt])


def test_dot_source_file_and_bad_suffix(tmp_path):
    cell = lstm_cell()
    path = str(tmp_path / "lstm.dot")
    assert render(cell, path) == path
    assert open(path).read().startswith("digraph")
    with pytest.raises(gn.RenderError, match=r"\.svg, \.png, \.pdf, \.dot"):
        render(cell, str(tmp_path / "lstm.jpeg"))
    with pytest.raises(gn.RenderError, match="which must be"):
        to_dot(cell, which="sideways")


def test_without_dot_only_dot_files_work(tmp_path, monkeypatch):
    cell = lstm_cell()
    monkeypatch.setenv("PATH", str(tmp_path))          # no `dot` anywhere on PATH
    assert shutil.which("dot") is None
    render(cell, str(tmp_path / "ok.dot"))
    assert (tmp_path / "ok.dot").exists()
    for fmt in ("svg", "png", "pdf"):
        with pytest.raises(gn.RenderError, match="apt-get install graphviz") as e:
            render(cell, str(tmp_path / f"no.{fmt}"))
        assert "brew install graphviz" in str(e.value) and "conda install graphviz" in str(e.value)
        assert not (tmp_path / f"no.{fmt}").exists()
        assert isinstance(e.value.__cause__, graphviz.ExecutableNotFound)


@needs_dot
def test_dot_rejecting_the_source_is_a_render_error():
    with pytest.raises(gn.RenderError, match=r"graphviz's dot failed \(1\): .*syntax error"):
        render_mod._run_dot("digraph { a -> }", "svg")


@needs_dot
def test_svg_text_and_gmodule_methods():
    cell = lstm_cell()
    assert "<svg" in render_mod.svg_text(cell)
    assert "<svg" in cell._repr_svg_()
    assert cell.to_dot().source == to_dot(cell).source
    assert cell.summary() == summary(cell)


def test_a_plain_module_draws_and_other_objects_are_refused(tmp_path):
    src = to_dot(nn.Linear(3, 4)).source
    assert "Linear(3 -&gt; 4)" in src
    with pytest.raises(gn.RenderError, match="not a str"):
        render("lstm", str(tmp_path / "x.svg"))
    with pytest.raises(gn.RenderError, match="rankdir"):
        to_dot(nn.Linear(3, 4), rankdir="up")


def test_inputs_give_every_node_its_shape():
    cell = lstm_cell(shapes=False)
    assert "(4, 8)" not in to_dot(cell).source
    arrays = [np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((4, 2))]
    src = to_dot(cell, inputs=arrays).source
    assert "(4, 8)" in node_stmt(src, cell, "i2h") and "(4, 6)" in node_stmt(src, cell, "gates")
    assert re.search(r'n\d+ -> n\d+ \[label=" \(4, 8\)"', src), "edges carry the shape too"
    # a nested cell called twice: its inner nodes get shapes in both clusters
    x, c0, h0 = gn.Input(name="x0"), gn.Input(name="c0"), gn.Input(name="h0")
    c1, h1 = cell(x, c0, h0)
    c2, h2 = cell(x, c1, h1)
    step = gn.gModule([x, c0, h0], [c2, h2])
    gates = node_named(cell, "gates")
    nested = re.findall(rf"^\s*n\d+_n{gates.id} \[(.*?)\]$", to_dot(step, inputs=arrays).source, re.M | re.S)
    assert len(nested) == 2 and all("(4, 6)" in stmt for stmt in nested)
    with pytest.raises(gn.RenderError, match="do not fit i2h"):
        to_dot(cell, inputs=[np.zeros((4, 5)), np.zeros((4, 2)), np.zeros((4, 2))])


def test_to_networkx_carries_op_name_shape_and_site():
    cell = lstm_cell()
    g = render_mod.to_networkx(cell)
    assert g.number_of_nodes() == len(cell.order)
    i2h = g.nodes["i2h"]
    assert i2h["op"] == "Linear(3 -> 8)" and i2h["name"] == "i2h" and i2h["shape"] == (None, 8)
    assert i2h["site"] == node_named(cell, "i2h").site and i2h["module"] == "Linear"
    assert g.nodes["x"]["kind"] == "input"
    assert set(g.predecessors("preact")) == {"i2h", "h2h"}
    assert g.edges["h2h", "preact"]["pos"] == 1
    # the method on gModule gives the same nodes, edges and attributes it records
    h = cell.to_networkx()
    assert set(h.nodes) == set(g.nodes) and set(h.edges) == set(g.edges)
    for attr in ("op", "shape", "site"):
        assert h.nodes["gates"][attr] == g.nodes["gates"][attr]
    # two nodes with one name stay two nodes
    x = gn.Input((None, 2), name="x")
    a = nn.Tanh()(x).annotate(name="same")
    b = nn.Sigmoid()(a).annotate(name="same")
    dup = render_mod.to_networkx(gn.gModule([x], [b]))
    assert dup.number_of_nodes() == 3 and f"same#{b.id}" in dup


# --- the backward drawing ------------------------------------------------------------------------------------

def test_backward_shows_vjp_ops_seeds_and_saved_values():
    cell = lstm_cell()
    src = to_dot(cell, which="backward").source
    prog = lower(cell, [((1, 3), np.float64), ((1, 2), np.float64), ((1, 2), np.float64)])
    bwd = prog.backward_values()
    ops = Counter(render_mod._op_text(v.op) for v in bwd if not isinstance(v.op, gn.ops.Seed))
    assert len(ops) >= 5
    for text, k in ops.items():                    # every VJP op the compiler generated is drawn, once
        assert src.count(f"[label=<<B>{html.escape(text)}</B>") == k, text
    assert "MatMul(ta)" in src, "a weight gradient is a transposed product"
    assert "∂L/∂next_c" in src and "∂L/∂next_h" in src and "seed" in src
    assert "= ∂L/∂x" in src and "= ∂L/∂prev_c" in src and "= ∂L/∂i2h.weight" in src
    assert "∂ gates" in src and "∂ i2h" in src, "each VJP is grouped under the forward node it belongs to"
    assert "saved: gates" in src and "saved: in_transform" in src and "saved: x" in src
    # exactly the forward values that the backward ops read are drawn as saved notes
    read = {id(a) for v in bwd for a in v.args} - {id(v) for v in bwd}
    assert src.count("shape=note") == len(read)
    n_ops = sum(not isinstance(v.op, gn.ops.Seed) for v in bwd)
    assert f"{n_ops} gradient ops; kept from forward: 6 activations, 3 inputs, 2 parameters" in src
    assert "saved: preact" not in src, "preact is not needed by backward"


def test_backward_signature_from_arrays_or_declared_shapes(rng):
    cell = lstm_cell(shapes=False)
    unshaped = to_dot(cell, which="backward").source          # no shapes yet: module-level gradients, sizes '?'
    assert "module gradients" in unshaped and "(?)" in unshaped and "MatMul" not in unshaped
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal((4, 2))]
    src = to_dot(cell, which="backward", inputs=arrays).source
    assert "(4, 8)" in src
    assert "(1, 8)" in to_dot(lstm_cell(), which="backward").source, "None is drawn as 1"


# --- the compiled plan ------------------------------------------------------------------------------------------

def plan_stmt(source, fn, value):
    """The DOT statement that draws ``value`` in the cluster of function ``fn``."""
    m = re.search(rf"^\s*{fn}_v{value.id} \[(.*?)\]$", source, re.M | re.S)
    assert m, f"no statement for {value} in {fn}"
    return m.group(1)


def cluster(source, fn):
    """The body of the cluster drawing function ``fn``."""
    m = re.search(rf"subgraph cluster_{fn} \{{(.*?)\n\t\}}", source, re.S)
    assert m, fn
    return m.group(1)


def test_plan_shows_schedule_variables_reuse_and_saved_values():
    cell = lstm_cell().float64()
    plan = gn.compile(cell)
    plan.forward(np.zeros((1, 3)), np.zeros((1, 2)), np.zeros((1, 2)))
    exe = plan._last[0]
    src = render_mod.plan_to_dot(plan).source
    assert "subgraph cluster_forward" in src and "subgraph cluster_backward" in src
    seen, reused = {}, 0
    for fn, v, var in exe.schedule:               # each value: its place in the schedule and its variable
        k = seen[fn] = seen.get(fn, 0) + 1
        stmt = plan_stmt(src, fn, v)
        assert f"<B>{var} = " in stmt and f">#{k} · " in stmt, (fn, k, stmt)
        assert f"{fn}_v{v.id} [" in cluster(src, fn)
        earlier = [u for f, u, w in exe.schedule[:exe.schedule.index((fn, v, var))] if f == fn and w == var]
        assert ("reused" in stmt) == (bool(earlier) and not getattr(v.op, "view", False)), stmt
        reused += "reused" in stmt
    assert reused >= 5, "a small LSTM reuses buffers"
    # forward values that backward reads: gold in forward, a note in backward with a dashed edge
    bwd = [v for f, v, _ in exe.schedule if f == "backward"]
    in_bwd = {id(v) for v in bwd}
    saved = {id(a): a for v in bwd for a in v.args if id(a) not in in_bwd
             and not isinstance(a.op, gn.ops.Seed)}
    assert cluster(src, "backward").count("shape=note") == len(saved) >= 8
    # the gates' value (the last value their node made in forward) is kept for backward
    gates = [v for f, v, _ in exe.schedule if f == "forward" and v.src is node_named(cell, "gates")][-1]
    assert id(gates) in saved and 'color="#b8860b"' in plan_stmt(src, "forward", gates)
    assert re.search(r"saved: gates</B>.*?forward #\d+", cluster(src, "backward"))
    assert src.count('style=dashed') == sum(1 for v in bwd for a in v.args if id(a) in saved)
    # what enters and leaves: inputs and seeds in order, outputs and the gradients returned
    assert re.findall(r"<B>(x|prev_c|prev_h)</B><BR/>input", src) == ["x", "prev_c", "prev_h"]
    assert re.findall(r"<B>(∂L/∂next_[ch])</B><BR/>seed", src) == ["∂L/∂next_c", "∂L/∂next_h"]
    for text in ("output 0: next_c", "output 1: next_h", "= ∂L/∂x", "= ∂L/∂prev_c", "= ∂L/∂i2h.weight"):
        assert text in src, text
    st = exe.stats
    assert f"{st['nodes']} values ({st['nodes_lowered']} before passes); {st['buffers']} arrays; peak " \
           f"{st['bytes_peak_planned']:,} bytes live" in src
    assert f"plan of {cell.label()}, level 2".replace(">", "&gt;") in src


def test_plan_signature_from_inputs_last_run_or_declared_shapes(rng):
    plan = gn.compile(lstm_cell(shapes=False).float64())
    with pytest.raises(gn.RenderError, match="inputs="):
        render_mod.plan_to_dot(plan)
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal((4, 2))]
    assert "(4, 8)" in render_mod.plan_to_dot(plan, inputs=arrays).source
    assert plan._last is None, "drawing a plan does not run it"
    plan.forward(*[a[:2] for a in arrays])
    src = render_mod.plan_to_dot(plan).source
    assert "(2, 8)" in src and "(4, 8)" not in src, "the last run's signature"
    declared = gn.compile(lstm_cell().float64())
    assert "(1, 8)" in render_mod.plan_to_dot(declared).source, "declared shapes, None drawn as 1"
    assert declared._last is None


def test_plan_functions_levels_and_train_steps():
    cell = lstm_cell().float64()
    plan = gn.compile(cell)
    only = render_mod.plan_to_dot(plan, which="backward").source
    assert "cluster_backward" in only and "cluster_forward" not in only
    assert "saved: x</B>" in only and "saved: gates</B>" in only
    with pytest.raises(gn.RenderError, match="which='sideways' is none of them"):
        render_mod.plan_to_dot(plan, which="sideways")
    # level 0 runs the reference interpreter: values in program order, no variables
    ref = render_mod.plan_to_dot(gn.compile(cell, level=0)).source
    assert "cluster_forward" in ref and "cluster_backward" in ref
    assert not re.search(r"<B>t\d+ = ", ref) and "reused" not in ref and "variables" not in ref
    assert re.search(r"<B>Sigmoid</B><BR/>gates<BR/><FONT[^>]*>#\d+ · \(1, 6\)", ref)
    # a train step runs one function: forward and backward together
    x, t = gn.Input((None, 3), name="x"), gn.Input((None, 2), name="t")
    loss = nn.MSECriterion()(nn.Linear(3, 2)(x), t)
    step = gn.compile_train_step(gn.gModule([x, t], [loss]).float64())
    src = render_mod.plan_to_dot(step).source
    assert "cluster_step" in src and "cluster_forward" not in src and "= ∂L/∂Linear" in src
    # a failing node's values drawn red
    red = render_mod.plan_to_dot(plan, highlight=node_named(cell, "gates")).source
    assert red.count("fillcolor=red") == sum(1 for f, v, _ in plan._executable(
        [np.zeros((1, 3)), np.zeros((1, 2)), np.zeros((1, 2))]).schedule if v.src is node_named(cell, "gates"))


@needs_dot
def test_plan_renders_and_shows_in_jupyter(tmp_path):
    plan = gn.compile(lstm_cell().float64())
    for fmt in ("svg", "png", "pdf"):
        path = tmp_path / f"plan.{fmt}"
        render(plan, path)
        assert path.read_bytes().startswith(MAGIC[fmt])
    assert "<svg" in render_mod.repr_svg(plan)
    assert render_mod.repr_svg(gn.compile(lstm_cell(shapes=False))) is None, "not drawable: Jupyter shows text"


# --- summary -------------------------------------------------------------------------------------------------

def test_summary_of_the_lstm_cell():
    text = summary(lstm_cell())
    lines = text.splitlines()
    assert lines[1].split() == ["node", "module", "output", "shape", "parameters", "inputs"]
    i2h = next(line for line in lines if line.startswith("i2h "))
    assert "Linear(3 -> 8)" in i2h and "(?, 8)" in i2h and " 32 " in i2h and i2h.endswith("x")
    preact = next(line for line in lines if line.startswith("preact "))
    assert preact.endswith("i2h, h2h")
    assert "total parameters: 56 in 4 arrays" in text
    assert "outputs: next_c, next_h" in text


def test_summary_counts_shared_parameters_once():
    cell = lstm_cell()
    x, c0, h0 = gn.Input((None, 3), name="x0"), gn.Input((None, 2), name="c0"), gn.Input((None, 2), name="h0")
    c1, h1 = cell(x, c0, h0)
    c2, h2 = cell(x, c1, h1)
    lin = nn.Linear(2, 2)
    out = lin(lin(h2))
    text = summary(gn.gModule([x, c0, h0], [c2, out]))
    assert "total parameters: 62 in 6 arrays" in text            # 56 + 6, each counted once
    assert text.count("shared with") == 2


# --- render never changes the graph ----------------------------------------------------------------------------

def snapshot(graph):
    nodes = [(n.id, n.kind, n.name, dict(n.attrs), n.shape, n.n_outputs, tuple(map(id, n.inputs)), n.site,
              tuple(n._items)) for n in graph.order]
    return nodes, sorted((a.id, b.id) for a, b in graph.graph.edges), [p.data.copy() for p in graph.parameters()]


def test_render_never_mutates(tmp_path):
    cell = lstm_cell()
    node_named(cell, "gates").annotate(color="blue")
    before = snapshot(cell)
    for which in ("forward", "backward"):
        render(cell, str(tmp_path / f"{which}.dot"), which=which, highlight=node_named(cell, "gates"))
    summary(cell)
    after = snapshot(cell)
    assert before[0] == after[0] and before[1] == after[1]
    assert all(np.array_equal(a, b) for a, b in zip(before[2], after[2]))


# --- gn.debug() --------------------------------------------------------------------------------------------------

def debug_drawing(err, tmp_path, suffix=".svg"):
    """The path at the end of a debug error message, checked to be a file in tmp_path."""
    msg = str(err)
    m = re.search(r"graph with the failing node in red: (\S+)$", msg)
    assert m, msg
    path = m.group(1)
    assert path.endswith(suffix) and os.path.isfile(path)
    assert os.path.dirname(path) == str(tmp_path)
    return path


@needs_dot
def test_debug_run_time_input_error_draws_the_input_red(tmp_path):
    cell = lstm_cell().float64()
    bad = [np.zeros((2, 4)), np.zeros((2, 2)), np.zeros((2, 2))]
    with pytest.raises(gn.InputError, match="input 'x' must have shape") as e:
        with debug(directory=tmp_path):
            cell.forward(bad)
    path = debug_drawing(e.value, tmp_path)
    red = red_svg_nodes(open(path).read())
    assert len(red) == 1 and ">x<" in red[0]
    assert e.value.drawing == path
    assert "declared at tests/test_render.py:" in str(e.value) and "its inputs" not in str(e.value)


@needs_dot
def test_debug_shape_error_in_lowering_names_the_linear(tmp_path):
    cell = lstm_cell(shapes=False)
    with pytest.raises(gn.ShapeError) as e:
        with debug(directory=tmp_path):
            cell.forward([np.zeros((2, 5)), np.zeros((2, 2)), np.zeros((2, 2))])
    assert "i2h" in str(e.value)
    red = red_svg_nodes(open(debug_drawing(e.value, tmp_path)).read())
    assert len(red) == 1 and ">i2h<" in red[0]


@needs_dot
def test_debug_build_time_error_draws_the_ancestors(tmp_path):
    with pytest.raises(gn.ShapeError, match="expects 3 features") as e:
        with debug(directory=tmp_path):
            z = gn.Input((None, 5), name="z")
            t = nn.Tanh()(z)
            nn.Linear(3, 4)(t)
    text = open(debug_drawing(e.value, tmp_path)).read()
    red = red_svg_nodes(text)
    assert len(red) == 1 and "Linear(3 &#45;&gt; 4)" in red[0]
    assert ">z<" in text and "Tanh" in text


@needs_dot
def test_debug_check_finite_draws_the_op_that_made_nan(tmp_path):
    x = gn.Input((None, 2), name="x")
    y = nn.Log()(x).annotate(name="logx")
    plan = gn.compile(gn.gModule([x], [y]).float64(), level=0)    # the reference interpreter checks
    with pytest.raises(gn.InputError, match="NaN") as e, np.errstate(invalid="ignore"):
        with debug(check_finite=True, directory=tmp_path):
            plan.forward(np.array([[1.0, -1.0]]))
    red = red_svg_nodes(open(debug_drawing(e.value, tmp_path)).read())
    assert len(red) == 1 and ">logx<" in red[0]


@needs_dot
def test_debug_error_in_backward_names_the_node_and_draws_it(tmp_path):
    x = gn.Input((None, 2), name="x")
    y = nn.Linear(2, 2)(x)
    r = nn.Sqrt()(y)                           # sqrt(0) = 0 forward; its derivative 1 / (2 sqrt(0)) is Inf
    g = gn.gModule([x], [r]).float64()
    for p in g.parameters():
        p.data[...] = 0.0
    with pytest.raises(gn.InputError) as e, np.errstate(divide="ignore"):
        with debug(check_finite=True, directory=tmp_path):
            g.forward(np.ones((1, 2)))         # finite: forward passes
            g.backward(np.ones((1, 2)), np.ones((1, 2)))
    msg = str(e.value)
    site = node_named(g, "r").site
    assert "produced Inf" in msg and "node 'r' (Sqrt, output shape (?, 2))" in msg and f"built at {site}" in msg
    assert "its inputs: 'y' (1, 2)" in msg                 # the shapes of the arrays given, not (?, 2)
    assert site.endswith(f":{_line_of('r = nn.Sqrt()(y)')}")
    red = red_svg_nodes(open(debug_drawing(e.value, tmp_path)).read())
    assert len(red) == 1 and ">r<" in red[0] and "Sqrt" in red[0]


def _line_of(text):
    """The line of this file that holds ``text``."""
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line and "_line_of" not in line)


@needs_dot
def test_debug_shows_the_shapes_of_the_arrays_it_ran_on(tmp_path):
    cell = lstm_cell(shapes=False).float64()
    arrays = [np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 2))]      # prev_c has 3 columns, not 2
    with pytest.raises(gn.ShapeError) as e:
        cell.forward(arrays)
    err = e.value
    assert "failing node" not in str(err) and "CMulTable" in str(err)
    with debug(directory=tmp_path):
        told = render_mod_debug().on_error(err, cell, inputs=arrays)
    msg = str(told)
    assert type(told) is type(err) and told.node is err.node
    # the failing product's inputs, with the shapes they had for these arrays, then the drawing
    assert re.search(r"its inputs: 'forget_gate' \(2, 2\), 'prev_c' \(2, 3\)\n  graph with the failing node in red: "
                     r"\S+\.svg$", msg), msg
    text = open(debug_drawing(told, tmp_path)).read()
    red = red_svg_nodes(text)
    assert len(red) == 1 and "CMulTable" in red[0]
    assert "(2, 8)" in text, "the drawing shows the shapes of the arrays, as far as they fit"


def render_mod_debug():
    return importlib.import_module("graphnet.debug")


def test_debug_without_dot_writes_dot_source(tmp_path, monkeypatch):
    cell = lstm_cell().float64()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(gn.InputError) as e:
        with debug(directory=tmp_path):
            cell.forward([np.zeros((2, 4)), np.zeros((2, 2)), np.zeros((2, 2))])
    msg = str(e.value)
    assert "dot is not installed, so this drawing is DOT source" in msg and "apt-get install graphviz" in msg
    path = debug_drawing(e.value, tmp_path, suffix=".dot")
    assert "fillcolor=red" in open(path).read()


def test_debug_never_hides_the_error(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("drawing exploded")
    monkeypatch.setattr(render_mod, "failure_to_dot", broken)
    cell = lstm_cell().float64()
    with pytest.raises(gn.InputError, match="input 'x' must have shape") as e:
        with debug(directory=tmp_path):
            cell.forward([np.zeros((2, 4)), np.zeros((2, 2)), np.zeros((2, 2))])
    assert "could not draw the graph: RuntimeError: drawing exploded" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_without_debug_errors_are_untouched(tmp_path):
    cell = lstm_cell().float64()
    with pytest.raises(gn.InputError) as e:
        cell.forward([np.zeros((2, 4)), np.zeros((2, 2)), np.zeros((2, 2))])
    assert "failing node" not in str(e.value)
    with debug(directory=tmp_path):
        cell.forward([np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2))])
    assert os.listdir(tmp_path) == []


def test_backward_drawing_takes_the_shapes_of_the_last_run(tmp_path):
    x, h = gn.Input(name="x"), gn.Input(name="h")          # no shapes declared
    g = gn.gModule([x, h], [nn.Tanh()(nn.Linear(3, 2)(x) + h)])
    before = to_dot(g, which="backward").source              # not run yet: module-level gradients, sizes '?'
    assert "module gradients" in before and "(4, 3)" not in before
    g.forward([np.zeros((4, 3)), np.zeros((4, 2))])
    src = to_dot(g, which="backward").source
    assert "(4, 2)" in src and "(4, 3)" in src
