"""The IR's invariants: every pass leaves its input untouched and hands back a program that passes ``lint``;
``lint`` itself catches each kind of broken program; the pipeline reports every pass the same way."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.compile.ir import IRError, Value, clone, lint, toposort
from graphnet.compile.lower import lower
from graphnet.compile.numba_backend import numba_available
from graphnet.compile.passes import PIPELINE, passes_for
from graphnet.compile.pipeline import run_passes
from graphnet.nn.conv import SpatialConvolution, SpatialMaxPooling
from graphnet.rnn import stacked, unroll

F8, I8 = np.dtype("f8"), np.dtype("i8")
B, V, H, T = 3, 5, 4, 4


def _unrolled(kind):
    cell = stacked(kind, V, H, 2, vocab=V)
    k = 4 if kind == "lstm" else 2
    xs, ys, s0 = [gn.Input() for _ in range(T)], [gn.Input() for _ in range(T)], [gn.Input() for _ in range(k)]
    outs = unroll(cell, T)(*xs, *s0).split(k + T)
    loss = nn.CAddTable()([nn.ClassNLLCriterion()(outs[k + t], ys[t]) for t in range(T)])
    sig = [((B, V), F8)] * T + [((B,), I8)] * T + [((B, H), F8)] * k
    return gn.gModule(xs + ys + s0, [loss]).float64(), sig


def _mlp():
    x, y = gn.Input(), gn.Input()
    h = nn.Tanh()(nn.Linear(6, 8)(x))
    loss = nn.ClassNLLCriterion()(nn.LogSoftMax()(nn.Linear(8, 3)(h)), y)
    return gn.gModule([x, y], [loss, h]).float64(), [((5, 6), F8), ((5,), I8)]


def _convnet():
    x = gn.Input()
    h = SpatialMaxPooling(2, 2, 2, 2)(nn.ReLU()(SpatialConvolution(2, 3, 3, 3, 1, 1, 1, 1)(x)))
    out = nn.LogSoftMax()(nn.Linear(3 * 3 * 3, 4)(nn.View(-1, 27)(h)))
    return gn.gModule([x], [out]).float64(), [((2, 2, 6, 6), F8)]


GRAPHS = {"lstm": lambda: _unrolled("lstm"), "gru": lambda: _unrolled("gru"), "mlp": _mlp, "convnet": _convnet}


def _fingerprint(prog):
    """Everything a pass could change in place: each value's identity, op, arguments, shape and dtype, and the
    program's lists."""
    def ref(v):
        return None if v is None else (id(v), v.id)
    values = [(id(v), v.id, id(v.op), v.op.key(), tuple(ref(a) for a in v.args), v.shape, str(v.dtype))
              for v in prog.values]
    return (values, [ref(a) for a in prog.args], [ref(o) for o in prog.outputs], [ref(s) for s in prog.seeds],
            [(id(p), ref(v)) for p, v in prog.params], [ref(g) for g in prog.input_grads],
            [ref(g) for g in prog.param_grads], dict(prog.meta))


BACKENDS = ["numpy"] + (["numba"] if numba_available() else [])
CASES = [(b, k) for b in BACKENDS for k in range(len(passes_for(2, b)))]


@pytest.fixture(scope="module")
def programs():
    """Each graph lowered, then the program every pass of each backend's pipeline receives in a level-2
    compile."""
    out = {}
    for name, make in GRAPHS.items():
        for backend in BACKENDS:
            gn.manual_seed(0)
            model, sig = make()
            prog = lower(model, sig)
            inputs = []
            for p in passes_for(2, backend):
                inputs.append(prog)
                prog = p(prog)
            out[name, backend] = inputs
    return out


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("backend, k", CASES, ids=[f"{b}-{passes_for(2, b)[k].__name__}{k}" for b, k in CASES])
def test_every_pass_leaves_its_input_untouched_and_its_output_lints(programs, graph, backend, k):
    prog = programs[graph, backend][k]
    run = passes_for(2, backend)[k]
    before = _fingerprint(prog)
    out = run(prog)
    assert _fingerprint(prog) == before
    lint(out, after=run.__name__)
    assert out is prog or not {id(v) for v in out.values} & {id(v) for v in prog.values}   # a copy, not shared


def test_pipeline_reports_every_pass_with_its_nodes_and_seconds():
    model, sig = _mlp()
    prog, done = run_passes(lower(model, sig), 2, check=True)
    assert [name for name, _, _ in done] == [p.__name__ for p in passes_for(2)]
    assert done[-1][1] == len(prog.values) and all(sec >= 0 for _, _, sec in done)
    assert len(passes_for(1)) < len(passes_for(2)) and passes_for(0) == []


def test_a_pass_for_another_backend_runs_only_there():
    for backend in ("numpy", "numba"):
        names = [s.name for s in PIPELINE if s.backends is None or backend in s.backends]
        assert [p.__name__ for p in passes_for(2, backend)] == names
    assert "fuse" not in [p.__name__ for p in passes_for(2, "numpy")]
    assert "batch_rows" not in [p.__name__ for p in passes_for(2, "numba")]
    assert all(s.why for s in PIPELINE)            # each entry says why it sits where it does


def _small():
    model, sig = _mlp()
    return lower(model, sig)


def test_lint_accepts_a_lowered_program():
    assert lint(_small()) is not None


@pytest.mark.parametrize("breakage, message", [
    ("duplicate_id", "two values with id"),
    ("arg_outside", "not a value of the program"),
    ("arg_after_use", "placed after its use"),
    ("wrong_shape", "rule gives"),
    ("wrong_dtype", "dtype"),
    ("output_outside", "output"),
    ("wrong_arity", "arguments"),
])
def test_lint_names_what_is_broken(breakage, message):
    p = clone(_small())
    v = next(v for v in p.values if len(v.args) == 2 and v.shape)
    if breakage == "duplicate_id":
        p.values[-1].id = p.values[0].id
    elif breakage == "arg_outside":
        stranger = Value(v.args[0].op, v.args[0].args, v.args[0].shape, v.args[0].dtype, None)
        v.args = (stranger,) + v.args[1:]
    elif breakage == "arg_after_use":
        p.values.remove(v.args[1])
        p.values.append(v.args[1])
    elif breakage == "wrong_shape":
        v.shape = tuple(s + 1 for s in v.shape)
    elif breakage == "wrong_dtype":
        v.dtype = np.dtype("f4") if v.dtype == F8 else F8
    elif breakage == "output_outside":
        p.outputs[0] = Value(p.outputs[0].op, p.outputs[0].args, p.outputs[0].shape, p.outputs[0].dtype, None)
    elif breakage == "wrong_arity":
        v.args = v.args[:1]
    with pytest.raises(IRError, match=message) as e:
        lint(p, after="a test")
    assert "after a test" in str(e.value)


def test_toposort_is_stable_and_refuses_a_cycle():
    p = _small()
    shuffled = p.values[::-1]
    order = toposort(shuffled)
    pos = {v.id: i for i, v in enumerate(order)}
    assert all(pos[a.id] < pos[v.id] for v in order for a in v.args)
    assert toposort(p.values) == p.values                     # already in order: unchanged
    q = clone(p)
    v = next(v for v in q.values if v.args)
    v.args = (q.values[-1],) + v.args[1:]                      # reads a value that depends on it
    with pytest.raises(IRError, match="no topological order"):
        toposort(q.values)


def test_debug_lints_every_pass(monkeypatch):
    from graphnet.compile import pipeline
    seen = []
    monkeypatch.setattr(pipeline, "CHECK_IR", False)
    monkeypatch.setattr(pipeline, "lint", lambda prog, after=None: seen.append(after))
    model, _ = _mlp()
    gn.compile(model).forward(np.zeros((5, 6)), np.zeros(5, np.int64))
    assert seen == []
    with gn.debug():
        gn.compile(model).forward(np.zeros((5, 6)), np.zeros(5, np.int64))
    assert seen == ["lowering"] + [p.__name__ for p in passes_for(2)]


def test_toposort_is_networkx_lexicographical_order_by_position():
    import networkx as nx
    model, sig = _unrolled("gru")
    values = lower(model, sig).values
    shuffled = values[len(values) // 2:] + values[:len(values) // 2]
    pos = {v.id: i for i, v in enumerate(shuffled)}
    g = nx.DiGraph()
    g.add_nodes_from(pos)
    g.add_edges_from((a.id, v.id) for v in shuffled for a in v.args)
    assert [v.id for v in toposort(shuffled)] == list(nx.lexicographical_topological_sort(g, key=pos.__getitem__))
