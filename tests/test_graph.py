"""Building graphs: nodes, sugar, naming, multi-output nodes, sharing, nesting, and build-time errors."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn


def _line_of(text):
    import inspect
    frame = inspect.currentframe().f_back
    src = inspect.getsource(frame.f_code).splitlines()
    start = frame.f_code.co_firstlineno
    for i, line in enumerate(src):
        if text in line:
            return start + i
    raise AssertionError(text)


def test_sugar_builds_the_table_modules(rng):
    a, b = gn.Input(), gn.Input()
    cases = {"add": (a + b, nn.CAddTable), "sub": (a - b, nn.CSubTable), "mul": (a * b, nn.CMulTable),
             "div": (a / b, nn.CDivTable), "mm": (a @ b, nn.MM), "neg": (-a, nn.MulConstant),
             "scale": (2 * a, nn.MulConstant), "shift": (a + 1, nn.AddConstant), "narrow": (a[:, 1:3], nn.Narrow),
             "select": (a[:, 1], nn.Select), "abs": (abs(a), nn.Abs), "pow": (a ** 3, nn.Power)}
    for name, (node, cls) in cases.items():
        assert isinstance(node.module, cls), name
    x, y = rng.standard_normal((2, 4)), rng.uniform(1, 2, (2, 4))
    g = gn.gModule([a, b], [a + b, a - b, a * b, a / b, -a, 3 - a, 2 / b, a[:, 1:3], a[:, -2:], a[:, 1:-1],
                            a[:, 2], abs(a), b ** 3])
    outs = g.float64().forward([x, y])
    want = [x + y, x - y, x * y, x / y, -x, 3 - x, 2 / y, x[:, 1:3], x[:, -2:], x[:, 1:-1], x[:, 2], np.abs(x), y ** 3]
    for o, w in zip(outs, want):
        np.testing.assert_allclose(o, w, rtol=1e-12)


def test_names_come_from_local_variables_and_annotate():
    x = gn.Input()
    hidden = nn.Tanh()(nn.Linear(3, 4)(x))
    out = nn.Sigmoid()(hidden).annotate(name="prob", color="blue")
    gn.gModule([x], [out])
    assert x.name == "x" and hidden.name == "hidden" and out.name == "prob"
    assert out.attrs == {"color": "blue"}
    lone = nn.Tanh()(gn.Input())
    assert lone.display_name().startswith("Tanh_")


def test_every_node_records_where_it_was_built():
    x = gn.Input()
    y = nn.Linear(3, 4)(x)
    here = _line_of("y = nn.Linear(3, 4)(x)")
    assert y.site.endswith(f"test_graph.py:{here}")


def test_multi_output_nodes_unpack_and_split(rng):
    x, c, h = gn.Input(), gn.Input(), gn.Input()
    inner_x, inner_h = gn.Input(), gn.Input()
    cell = gn.gModule([inner_x, inner_h], [nn.Tanh()(inner_x + inner_h), inner_x * inner_h])
    pair = cell(x, h)
    a, b = pair                        # tuple unpacking
    assert (a, b) == pair.split(2)     # the same nodes
    assert pair[1] is b
    with pytest.raises(gn.GraphError, match="split\\(3\\)"):
        pair.split(3)
    parts = nn.SplitTable(1)(nn.Reshape(3, 2)(c)).split(3)
    g = gn.gModule([x, h, c], [a, b, nn.JoinTable(1)(parts)])
    xs = [rng.standard_normal((2, 2)) for _ in range(2)] + [rng.standard_normal((2, 6))]
    o = g.float64().forward(xs)
    np.testing.assert_allclose(o[0], np.tanh(xs[0] + xs[1]))
    np.testing.assert_allclose(o[2], xs[2].reshape(2, 3, 2).transpose(0, 2, 1).reshape(2, 6)
                               .reshape(2, 2, 3).transpose(0, 2, 1).reshape(2, 6) if False else
                               np.concatenate([xs[2].reshape(2, 3, 2)[:, i] for i in range(3)], 1))


def test_shared_module_gradients_add_up(rng):
    x = gn.Input()
    lin = nn.Linear(3, 3, bias=False)
    g = gn.gModule([x], [lin(lin(x))]).float64()
    assert len(g.parameters()) == 1
    xv = rng.standard_normal((2, 3))
    g.zero_grad_parameters()
    g.forward(xv)
    g.backward(xv, np.ones((2, 3)))
    W = lin.weight.data
    h = xv @ W.T
    gy = np.ones((2, 3))
    want = gy.T @ h + (gy @ W).T @ xv           # both uses contribute
    np.testing.assert_allclose(lin.weight.grad, want, rtol=1e-12)


def test_get_parameters_gives_views(rng):
    x = gn.Input()
    g = gn.gModule([x], [nn.Linear(2, 3)(nn.Linear(3, 2)(x))])
    w, dw = g.get_parameters()
    assert w.size == 3 * 2 + 2 + 2 * 3 + 3
    w[:] = 0.5
    assert all((p.data == 0.5).all() for p in g.parameters())
    g.forward(rng.standard_normal((1, 3)).astype(np.float32))
    g.backward(rng.standard_normal((1, 3)).astype(np.float32), np.ones((1, 3), np.float32))
    assert np.array_equal(dw, np.concatenate([p.grad.ravel() for p in g.parameters()]))
    w2, _ = g.get_parameters()
    assert w2 is w                                # already flat: the same buffers


def test_dtype_modes_and_seed(rng):
    x = gn.Input()
    drop = nn.Dropout(0.5)
    g = gn.gModule([x], [drop(x)])
    xv = np.ones((4, 100), np.float32)
    gn.manual_seed(3)
    a = g.forward(xv)
    gn.manual_seed(3)
    b = g.forward(xv)
    assert np.array_equal(a, b) and set(np.unique(a)) <= {0.0, 2.0}
    g.evaluate()
    assert np.array_equal(g.forward(xv), xv)
    g.training()
    assert g.forward(xv.astype(np.float64)).dtype == np.float32
    assert g.float64().forward(xv).dtype == np.float64


def test_build_time_shape_errors_name_node_shapes_and_line():
    x = gn.Input((None, 5), name="x")
    with pytest.raises(gn.ShapeError) as e:
        y = nn.Linear(3, 4)(x)  # noqa: F841
    msg = str(e.value)
    assert "Linear(3 -> 4)" in msg and "(?, 5)" in msg
    assert f"test_graph.py:{_line_of('y = nn.Linear(3, 4)(x)')}" in msg
    with pytest.raises(gn.ShapeError, match="do not broadcast"):
        nn.CAddTable()(gn.Input((2, 3)), gn.Input((2, 4)))
    with pytest.raises(gn.ShapeError, match="outside dim 1 of size 5"):
        nn.Narrow(1, 3, 4)(x)
    with pytest.raises(gn.ShapeError, match="must match except in dim 1"):
        nn.JoinTable(1)(gn.Input((2, 3)), gn.Input((3, 3)))


@pytest.mark.parametrize("make,match", [
    (lambda x: nn.Linear(3, 4)(nn.Linear(3, 4)), "is a Module .* did you forget to call it"),
    (lambda x: nn.Tanh()(np.zeros(3)), "arrays are given at run time"),
    (lambda x: nn.Tanh()(), "called with no input nodes"),
    (lambda x: nn.Tanh()(x, x), "takes 1 input node, got 2"),
    (lambda x: nn.CSubTable()(x), "takes 2 input nodes, got 1"),
    (lambda x: gn.gModule([x], [nn.Linear(3, 4)]), "is a Module"),
    (lambda x: gn.gModule([x], [nn.Tanh()(gn.Input(name="stray"))]), "not in gModule's inputs"),
    (lambda x: gn.gModule([x, gn.Input(name="extra")], [nn.Tanh()(x)]), "is not used by any output"),
    (lambda x: gn.gModule([x, x], [nn.Tanh()(x)]), "listed twice"),
    (lambda x: gn.gModule([nn.Tanh()(x)], [x]), "must be gn.Input"),
    (lambda x: gn.gModule([x], []), "at least one output"),
    (lambda x: [n for n in nn.Tanh()(x)], "single output and cannot be unpacked"),
    (lambda x: nn.Tanh()(x)[0:2:2], "no step"),
    (lambda x: nn.Linear(-1, 3), "in_features must be >= 1"),
    (lambda x: nn.Dropout(1.5), "p must be in"),
    (lambda x: bool(x), "no truth value"),
    (lambda x: nn.HardTanh(1, -1), "min_value <= max_value"),
])
def test_graph_errors_guess_the_mistake(make, match):
    x = gn.Input(name="x")
    with pytest.raises(gn.GraphError, match=match):
        make(x)


def test_run_time_errors_name_the_input_and_node(rng):
    x = gn.Input((None, 3), name="x")
    h = gn.Input(name="h")
    y = nn.Linear(3, 4)(x) + h
    g = gn.gModule([x, h], [y])
    with pytest.raises(gn.InputError, match="takes 2 input arrays \\(x, h\\), got 1"):
        g.forward([np.ones((2, 3))])
    with pytest.raises(gn.InputError, match="input 'x' must have shape \\(\\?, 3\\)"):
        g.forward([np.ones((2, 4)), np.ones((2, 4))])
    with pytest.raises(gn.ShapeError, match="do not broadcast") as e:
        g.forward([np.ones((2, 3)), np.ones((2, 5))])
    assert isinstance(e.value, gn.InputError) and "node 'y'" in str(e.value)
    with pytest.raises(gn.InputError, match="list, not a numpy array"):
        g.forward([[1, 2, 3], np.ones((1, 4))])
    with pytest.raises(gn.InputError, match="dtype <U1"):
        g.forward([np.array([["a", "b", "c"]]), np.ones((1, 4))])
    t = gn.Input()
    nll = gn.gModule([x, t], [nn.ClassNLLCriterion()(nn.LogSoftMax()(x), t)])
    with pytest.raises(gn.InputError, match="target class 3 is out of range for 3 classes"):
        nll.forward([np.ones((2, 3)), np.array([0, 3])])
    with pytest.raises(gn.InputError, match="integer indices"):
        nll.forward([np.ones((2, 3)), np.array([0.0, 1.0])])


def test_a_multi_output_node_slices_like_a_tuple():
    a, b, c = gn.Input(), gn.Input(), gn.Input()
    inner = gn.gModule([a, b, c], [nn.Tanh()(a), nn.Sigmoid()(b), nn.Exp()(c)])
    x, y, z = gn.Input(), gn.Input(), gn.Input()
    out = inner(x, y, z)
    first_two = out[:2]
    assert isinstance(first_two, tuple) and first_two == (out[0], out[1])
    assert out[1:] == tuple(out)[1:]
    g = gn.gModule([x, y, z], list(first_two))
    r = g.forward([np.ones((1, 2))] * 3)
    np.testing.assert_allclose(r[0], np.tanh(1.0), rtol=1e-6)
