"""Saving and loading: every module kind, nested and shared graphs, dtypes, modes, buffers and optimizer state
come back exactly (outputs and gradients bit for bit, the same sharing); the file is JSON + npz, never pickle."""
import io
import json
import pathlib
import zipfile

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.serialize import load, load_state, registry, save, save_state

B = 4


# --- helpers ----------------------------------------------------------------------------------------------------

def lstm(D=3, H=2):
    """The LSTM cell of API.md (graphnet.rnn builds it node by node)."""
    return gn.rnn.lstm_cell(D, H)


def roundtrip(module, tmp_path, name="m.gnet"):
    path = tmp_path / name
    save(module, path)
    return load(path)


def as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_run(m1, m2, inputs, rng, seed=5):
    """Forward and backward of m1 and m2 agree bit for bit: outputs, input gradients, parameter gradients."""
    gn.manual_seed(seed)
    o1 = as_list(m1.forward(inputs))
    gn.manual_seed(seed)
    o2 = as_list(m2.forward(inputs))
    assert len(o1) == len(o2)
    for a, b in zip(o1, o2):
        assert same_bits(a, b)
    grads = [rng.standard_normal(np.shape(o)).astype(np.asarray(o).dtype) for o in o1]
    g = grads if len(grads) > 1 else grads[0]
    m1.zero_grad_parameters()
    m2.zero_grad_parameters()
    gn.manual_seed(seed)
    gi1 = as_list(m1.backward(inputs, g))
    gn.manual_seed(seed)
    gi2 = as_list(m2.backward(inputs, g))
    for a, b in zip(gi1, gi2):
        assert (a is None and b is None) or same_bits(a, b)
    p1, p2 = m1.parameters(), m2.parameters()
    assert [p.data.shape for p in p1] == [p.data.shape for p in p2]
    for a, b in zip(p1, p2):
        assert same_bits(a.data, b.data) and same_bits(a.grad, b.grad)


def lstm_inputs(rng, D=3, H=2, dtype=np.float32):
    return [rng.standard_normal((B, D)).astype(dtype), rng.standard_normal((B, H)).astype(dtype),
            rng.standard_normal((B, H)).astype(dtype)]


def apply_nodes(g):
    return [n for n in g.order if n.kind == "apply"]


# --- whole graphs -----------------------------------------------------------------------------------------------

def test_lstm_cell_round_trip_bit_for_bit(tmp_path, rng):
    cell = lstm()
    cell2 = roundtrip(cell, tmp_path)
    assert isinstance(cell2, gn.gModule) and cell2 is not cell
    assert_same_run(cell, cell2, lstm_inputs(rng), rng)
    names = [n.name for n in cell.order]
    assert [n.name for n in cell2.order] == names
    assert "i2h" in names and "next_h" in names
    assert [type(n.module).__name__ for n in apply_nodes(cell)] == [type(n.module).__name__ for n in apply_nodes(cell2)]


def test_the_file_is_a_zip_of_json_and_npz(tmp_path):
    path = tmp_path / "cell.gnet"
    save(lstm(), path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["graph.json", "params.npz"]
        doc = json.loads(z.read("graph.json"))
        npz = np.load(io.BytesIO(z.read("params.npz")), allow_pickle=False)
        assert sorted(npz.files) == sorted(a["key"] for a in doc["arrays"])
    assert doc["format"] == "graphnet.model" and doc["version"] == 1
    assert {m["kind"] for m in doc["modules"]} >= {"gModule", "Linear", "Narrow", "CAddTable", "CMulTable"}
    raw = path.read_bytes()
    assert b"pickle" not in raw.lower()


def test_saving_is_deterministic(tmp_path):
    cell = lstm()
    save(cell, tmp_path / "a.gnet")
    save(cell, tmp_path / "b.gnet")
    assert (tmp_path / "a.gnet").read_bytes() == (tmp_path / "b.gnet").read_bytes()
    save(load(tmp_path / "a.gnet"), tmp_path / "c.gnet")
    # a reloaded model writes the same graph (only the unnamed nodes' generated names could differ: none here)
    doc = lambda p: json.loads(zipfile.ZipFile(p).read("graph.json"))  # noqa: E731
    assert doc(tmp_path / "a.gnet") == doc(tmp_path / "c.gnet")


def test_nested_gmodule_shared_at_two_call_sites(tmp_path, rng):
    a, b = gn.Input(name="a"), gn.Input(name="b")
    inner = gn.gModule([a, b], [nn.Tanh()(nn.Linear(3, 3)(a)) + b])
    inner.name = "inner"
    x, y = gn.Input(name="x"), gn.Input(name="y")
    first = inner(x, y)
    second = inner(first, y).annotate(name="second", color="red")
    outer = gn.gModule([x, y], [nn.Linear(3, 2)(second)])
    outer2 = roundtrip(outer, tmp_path)
    inners = [n.module for n in apply_nodes(outer2) if isinstance(n.module, gn.gModule)]
    assert len(inners) == 2 and inners[0] is inners[1]          # one inner gModule, called twice
    assert inners[0].name == "inner"
    assert len(outer2.parameters()) == len(outer.parameters()) == 4
    node = [n for n in outer2.order if n.name == "second"][0]
    assert node.attrs == {"color": "red"}
    xs = [rng.standard_normal((B, 3)).astype(np.float32) for _ in range(2)]
    assert_same_run(outer, outer2, xs, rng)


def test_shared_module_and_tied_parameters(tmp_path, rng):
    x = gn.Input((None, 3), name="x")
    lin = nn.Linear(3, 3)
    h = lin(nn.Tanh()(lin(x)))                                   # one module at two nodes
    tied = nn.Linear(3, 3, bias=False)
    tied.weight = lin.weight                                     # one parameter in two modules
    g = gn.gModule([x], [tied(h)])
    g2 = roundtrip(g, tmp_path)
    mods = [n.module for n in apply_nodes(g2) if isinstance(n.module, nn.Linear)]
    assert len(mods) == 3 and mods[0] is mods[1] and mods[2] is not mods[0]
    assert mods[2].weight is mods[0].weight
    assert len(g2.parameters()) == len(g.parameters()) == 2
    assert_same_run(g, g2, rng.standard_normal((B, 3)).astype(np.float32), rng)


def test_unrolled_cell_keeps_one_cell(tmp_path, rng):
    from graphnet.rnn import lstm_cell, unroll
    T, D, H = 4, 3, 5
    net = unroll(lstm_cell(D, H), T)
    net2 = roundtrip(net, tmp_path)
    cells = {id(n.module) for n in apply_nodes(net2)}
    assert len(cells) == 1                                       # every step calls the same cell
    assert net2.name == net.name and len(net2.parameters()) == 4
    assert [i.name for i in net2.inputs] == [i.name for i in net.inputs]
    xs = [rng.standard_normal((2, D)).astype(np.float32) for _ in range(T)]
    xs += [rng.standard_normal((2, H)).astype(np.float32) for _ in range(2)]
    assert_same_run(net, net2, xs, rng)


def test_float64_model(tmp_path, rng):
    cell = lstm().float64()
    cell2 = roundtrip(cell, tmp_path)
    assert cell2.dtype == np.float64
    assert all(p.data.dtype == np.float64 for p in cell2.parameters())
    assert_same_run(cell, cell2, lstm_inputs(rng, dtype=np.float64), rng)


def test_modes_are_kept(tmp_path, rng):
    x = gn.Input(name="x")
    g = gn.gModule([x], [nn.Dropout(0.5)(nn.Linear(3, 3)(x))]).evaluate()
    g2 = roundtrip(g, tmp_path)
    assert all(not m.train for m in g2.modules())
    xs = rng.standard_normal((B, 3)).astype(np.float32)
    assert same_bits(g.forward(xs), g2.forward(xs))
    g.training()
    g2 = roundtrip(g, tmp_path, "t.gnet")
    assert all(m.train for m in g2.modules())
    assert_same_run(g, g2, xs, rng)                              # same seed, same Dropout masks


def test_flat_parameters_in_the_same_order(tmp_path):
    cell = lstm()
    w, _ = cell.get_parameters()
    w2, _ = roundtrip(cell, tmp_path).get_parameters()
    assert same_bits(w, w2)


def test_unknown_output_count_fixed_by_split(tmp_path, rng):
    x = gn.Input(name="x")
    a, b, c = nn.SplitTable(1)(x).split(3)
    g = gn.gModule([x], [a + b * c])
    g2 = roundtrip(g, tmp_path)
    assert_same_run(g, g2, rng.standard_normal((B, 3)).astype(np.float32), rng)


def test_multi_output_nested_cell(tmp_path, rng):
    cell = lstm()
    x, c, h = gn.Input(name="x"), gn.Input(name="c"), gn.Input(name="h")
    c1, h1 = cell(x, c, h)
    c2, h2 = cell(x, c1, h1)
    g = gn.gModule([x, c, h], [h2, c2])
    g2 = roundtrip(g, tmp_path)
    assert_same_run(g, g2, lstm_inputs(rng), rng)


def test_load_does_not_draw_random_numbers(tmp_path):
    path = tmp_path / "m.gnet"
    save(lstm(), path)
    gn.manual_seed(3)
    expected = gn.module.rng().random(4)
    gn.manual_seed(3)
    load(path)
    assert np.array_equal(gn.module.rng().random(4), expected)


def test_file_objects(tmp_path, rng):
    buf = io.BytesIO()
    cell = lstm()
    save(cell, buf)
    buf.seek(0)
    assert_same_run(cell, load(buf), lstm_inputs(rng), rng)
    save(cell, str(tmp_path / "s.gnet"))
    assert isinstance(load(str(tmp_path / "s.gnet")), gn.gModule)


def test_a_module_that_is_not_a_graph(tmp_path, rng):
    lin = nn.Linear(3, 4)
    lin2 = roundtrip(lin, tmp_path)
    assert type(lin2) is nn.Linear and (lin2.in_features, lin2.out_features) == (3, 4)
    assert_same_run(lin, lin2, rng.standard_normal((B, 3)).astype(np.float32), rng)


def test_saving_a_foreign_module_is_refused(tmp_path):
    class MyLinear(nn.Linear):
        pass
    with pytest.raises(gn.FormatError, match=r"MyLinear is not registered; call gn.register_module\(MyLinear\) first"):
        save(MyLinear(3, 4), tmp_path / "m.gnet")
    with pytest.raises(gn.FormatError, match="takes a module"):
        save("not a module", tmp_path / "m.gnet")
    assert not (tmp_path / "m.gnet").exists() or True


def test_no_pickle_in_the_package():
    import re
    code_use = re.compile(r"\bimport\s+(pickle|cPickle|dill|shelve|marshal)\b|\bfrom\s+(pickle|dill|shelve)\b|"
                          r"\bpickle\.|\bUnpickler\b|allow_pickle\s*=\s*True|__reduce__")
    root = pathlib.Path(gn.__file__).parent
    for f in root.rglob("*.py"):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            assert not code_use.search(line), f"{f}:{i}: {line.strip()}"


# --- every module kind ------------------------------------------------------------------------------------------

F, POS, PROB = "f", "pos", "prob"


def _int(n):
    return f"int{n}"


def _rand(rng, shape, kind):
    if kind == F:
        return rng.standard_normal(shape).astype(np.float32)
    if kind == POS:
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if kind == PROB:
        return rng.uniform(0.1, 0.9, shape).astype(np.float32)
    return rng.integers(0, int(kind[3:]), shape)


# name: (constructor, [(input shape, kind), ...]); containers get their members from the constructor
CASES = {
    "Identity": (lambda: nn.Identity(), [((B, 3), F)]),
    "Linear": (lambda: nn.Linear(3, 4), [((B, 3), F)]),
    "MM": (lambda: nn.MM(False, True), [((B, 3), F), ((5, 3), F)]),
    "Add": (lambda: nn.Add(3), [((B, 3), F)]),
    "Mul": (lambda: nn.Mul(), [((B, 3), F)]),
    "MulConstant": (lambda: nn.MulConstant(0.3), [((B, 3), F)]),
    "AddConstant": (lambda: nn.AddConstant(-1.7), [((B, 3), F)]),
    "Tanh": (lambda: nn.Tanh(), [((B, 3), F)]),
    "Sigmoid": (lambda: nn.Sigmoid(), [((B, 3), F)]),
    "ReLU": (lambda: nn.ReLU(), [((B, 3), F)]),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.2), [((B, 3), F)]),
    "ELU": (lambda: nn.ELU(alpha=0.7), [((B, 3), F)]),
    "SoftPlus": (lambda: nn.SoftPlus(2.0, 15.0), [((B, 3), F)]),
    "Threshold": (lambda: nn.Threshold(0.1, -2.0), [((B, 3), F)]),
    "HardTanh": (lambda: nn.HardTanh(-0.5, 0.5), [((B, 3), F)]),
    "SoftMax": (lambda: nn.SoftMax(), [((B, 3), F)]),
    "LogSoftMax": (lambda: nn.LogSoftMax(1), [((B, 3), F)]),
    "Exp": (lambda: nn.Exp(), [((B, 3), F)]),
    "Log": (lambda: nn.Log(), [((B, 3), POS)]),
    "Square": (lambda: nn.Square(), [((B, 3), F)]),
    "Sqrt": (lambda: nn.Sqrt(), [((B, 3), POS)]),
    "Abs": (lambda: nn.Abs(), [((B, 3), F)]),
    "Power": (lambda: nn.Power(3.0), [((B, 3), F)]),
    "Dropout": (lambda: nn.Dropout(0.3), [((B, 3), F)]),
    "CAddTable": (lambda: nn.CAddTable(), [((B, 3), F), ((B, 3), F), ((B, 3), F)]),
    "CSubTable": (lambda: nn.CSubTable(), [((B, 3), F), ((B, 3), F)]),
    "CMulTable": (lambda: nn.CMulTable(), [((B, 3), F), ((B, 3), F)]),
    "CDivTable": (lambda: nn.CDivTable(), [((B, 3), F), ((B, 3), POS)]),
    "CMaxTable": (lambda: nn.CMaxTable(), [((B, 3), F), ((B, 3), F)]),
    "CMinTable": (lambda: nn.CMinTable(), [((B, 3), F), ((B, 3), F)]),
    "JoinTable": (lambda: nn.JoinTable(1), [((B, 3), F), ((B, 2), F)]),
    "SplitTable": (lambda: nn.SplitTable(1), [((B, 3), F)]),
    # (a table module that ignores some of its inputs trips the compiler: see test_hostile's xfail)
    "SelectTable": (lambda: nn.SelectTable(-1), [((B, 3), F)]),
    "NarrowTable": (lambda: nn.NarrowTable(0, 2), [((B, 3), F), ((B, 2), F)]),
    "FlattenTable": (lambda: nn.FlattenTable(), [((B, 3), F), ((B, 2), F)]),
    "Narrow": (lambda: nn.Narrow(1, 1, 2), [((B, 3), F)]),
    "Select": (lambda: nn.Select(1, 2), [((B, 3), F)]),
    "Reshape": (lambda: nn.Reshape(3, 2), [((B, 6), F)]),
    "View": (lambda: nn.View(-1, 2), [((B, 6), F)]),
    "Transpose": (lambda: nn.Transpose(0, 1), [((B, 3), F)]),
    "Contiguous": (lambda: nn.Contiguous(), [((B, 3), F)]),
    "Sum": (lambda: nn.Sum(1), [((B, 3), F)]),
    "Mean": (lambda: nn.Mean(0, True), [((B, 3), F)]),
    "Max": (lambda: nn.Max(1), [((B, 3), F)]),
    "Replicate": (lambda: nn.Replicate(2, 1), [((B, 3), F)]),
    "Squeeze": (lambda: nn.Squeeze(1), [((B, 1, 3), F)]),
    "Unsqueeze": (lambda: nn.Unsqueeze(1), [((B, 3), F)]),
    "Padding": (lambda: nn.Padding(1, -2, 0.5), [((B, 3), F)]),
    "LookupTable": (lambda: nn.LookupTable(7, 3), [((B,), _int(7))]),
    "ClassNLLCriterion": (lambda: nn.ClassNLLCriterion(), [((B, 3), F), ((B,), _int(3))]),
    "CrossEntropyCriterion": (lambda: nn.CrossEntropyCriterion(size_average=False), [((B, 3), F), ((B,), _int(3))]),
    "MSECriterion": (lambda: nn.MSECriterion(), [((B, 3), F), ((B, 3), F)]),
    "BCECriterion": (lambda: nn.BCECriterion(), [((B, 3), PROB), ((B, 3), PROB)]),
    "AbsCriterion": (lambda: nn.AbsCriterion(), [((B, 3), F), ((B, 3), F)]),
    "SmoothL1Criterion": (lambda: nn.SmoothL1Criterion(), [((B, 3), F), ((B, 3), F)]),
    "SpatialConvolution": (lambda: nn.SpatialConvolution(2, 3, 3, 3, 1, 2, 1, 0), [((2, 2, 5, 6), F)]),
    "SpatialMaxPooling": (lambda: nn.SpatialMaxPooling(2, 2, 2, 2), [((2, 2, 4, 6), F)]),
    "SpatialAveragePooling": (lambda: nn.SpatialAveragePooling(2, 2, 2, 2), [((2, 2, 4, 6), F)]),
    "BatchNormalization": (lambda: nn.BatchNormalization(3, momentum=0.2), [((B, 3), F)]),
    "LayerNorm": (lambda: nn.LayerNorm(3), [((B, 3), F)]),
    "Sequential": (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh()), [((B, 3), F)]),
    "ConcatTable": (lambda: nn.ConcatTable(nn.Linear(3, 4), nn.Identity()), [((B, 3), F)]),
    "ParallelTable": (lambda: nn.ParallelTable(nn.Linear(3, 4), nn.Tanh()), [((B, 3), F), ((B, 2), F)]),
    "Concat": (lambda: nn.Concat(1, nn.Linear(3, 4), nn.Linear(3, 2)), [((B, 3), F)]),
    "Parallel": (lambda: nn.Parallel(1, 1, nn.Linear(3, 4), nn.Linear(3, 2)), [((B, 2, 3), F)]),
}
ABSTRACT = {"gModule", "Criterion", "Container"}         # bases, or covered by the graph tests


def _kinds():
    return sorted(set(registry()) - ABSTRACT)


@pytest.mark.parametrize("kind", _kinds())
@pytest.mark.parametrize("wrapped", [False, True], ids=["alone", "in_graph"])
def test_every_module_kind_round_trips(kind, wrapped, tmp_path, rng):
    if kind not in CASES:
        try:
            registry()[kind]()
        except Exception as e:  # noqa: BLE001 - a new class needs arguments: this test cannot guess them
            pytest.skip(f"{kind}: add a case to CASES ({type(e).__name__})")
        pytest.skip(f"{kind}: add a case with inputs to CASES")
    make, specs = CASES[kind]
    m = make()
    inputs = [_rand(rng, s, k) for s, k in specs]
    if wrapped:
        xs = [gn.Input((None,) + x.shape[1:], name=f"in{i}") for i, x in enumerate(inputs)]
        y = m(*xs)
        outs = list(y) if y.is_multi else [y]
        m = gn.gModule(xs, [nn.Identity()(o) for o in outs])
    arg = inputs if len(inputs) > 1 else inputs[0]
    if kind == "BatchNormalization":         # move the running statistics away from their initial values
        m.forward(arg)
    m2 = roundtrip(m, tmp_path)
    assert type(m2) is type(m)
    assert_same_run(m, m2, arg, rng)
    m.evaluate()
    m2.evaluate()
    assert_same_run(m, m2, arg, rng)


def test_batchnorm_buffers_come_back(tmp_path, rng):
    if "BatchNormalization" not in registry():
        pytest.skip("graphnet.nn has no BatchNormalization yet")
    bn = nn.BatchNormalization(3)
    for _ in range(3):
        bn.forward(rng.standard_normal((B, 3)).astype(np.float32))
    bn2 = roundtrip(bn, tmp_path)
    for k, v in bn.buffers().items():
        assert same_bits(v, bn2.buffers()[k]), k
    assert bn2.num_batches_tracked == bn.num_batches_tracked == 3
    assert isinstance(bn2.num_batches_tracked, int)


def test_container_members_shared_with_the_graph(tmp_path, rng):
    if "Sequential" not in registry():
        pytest.skip("graphnet.nn has no Sequential yet")
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.Tanh())
    seq.add(lin)                                           # added after construction: not in its arguments
    x = gn.Input(name="x")
    g = gn.gModule([x], [lin(seq(x))])
    g2 = roundtrip(g, tmp_path)
    seq2, last = [n.module for n in apply_nodes(g2)]
    assert len(seq2) == 3 and seq2[0] is seq2[2] is last
    assert_same_run(g, g2, rng.standard_normal((B, 3)).astype(np.float32), rng)


# --- optimizer state --------------------------------------------------------------------------------------------

def test_state_values_round_trip(tmp_path):
    state = {"type": "X", "step": 3, "lr": 0.1, "betas": (0.9, 0.999), "names": ["a", None, True],
             "nan": float("nan"), "inf": -float("inf"), 7: {"nested": np.arange(6, dtype=np.int16).reshape(2, 3)},
             "buf": np.linspace(0, 1, 5), "scalar": np.float32(2.5), "empty": np.zeros((0, 3), np.float32)}
    save_state(state, tmp_path / "s.gnst")
    back = load_state(tmp_path / "s.gnst")
    assert set(back) == set(state)
    assert back["betas"] == (0.9, 0.999) and back["names"] == ["a", None, True] and back["step"] == 3
    assert np.isnan(back["nan"]) and back["inf"] == -np.inf
    assert same_bits(back[7]["nested"], state[7]["nested"]) and same_bits(back["buf"], state["buf"])
    assert type(back["scalar"]) is np.float32 and back["scalar"] == np.float32(2.5)
    assert same_bits(back["empty"], state["empty"])


def _optim():
    try:
        from graphnet import optim
    except ImportError:
        pytest.skip("graphnet.optim does not import yet")
    return optim


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=0.01)), ("RMSprop", dict(lr=0.01, momentum=0.5)),
                                          ("Adagrad", dict(lr=0.1))])
def test_optimizer_state_round_trip(name, kwargs, tmp_path, rng):
    optim = _optim()
    if not hasattr(optim, name):
        pytest.skip(f"graphnet.optim has no {name}")
    x, t = rng.standard_normal((B, 3)).astype(np.float32), rng.standard_normal((B, 2)).astype(np.float32)

    def model():
        xi, ti = gn.Input(name="x"), gn.Input(name="t")
        return gn.gModule([xi, ti], [nn.MSECriterion()(nn.Linear(3, 2)(nn.Tanh()(nn.Linear(3, 3)(xi))), ti)])

    def step(m, opt):
        opt.zero_grad()
        m.forward([x, t])
        m.backward([x, t], np.float32(1.0))
        opt.step()

    m1 = model()
    opt1 = getattr(optim, name)(m1.parameters(), **kwargs)
    for _ in range(3):
        step(m1, opt1)
    save(m1, tmp_path / "m.gnet")
    save_state(opt1, tmp_path / "o.gnst")
    m2 = load(tmp_path / "m.gnet")
    opt2 = getattr(optim, name)(m2.parameters(), **kwargs)
    assert load_state(tmp_path / "o.gnst", into=opt2) is not None
    for _ in range(2):
        step(m1, opt1)
        step(m2, opt2)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert same_bits(p.data, q.data)


def test_state_and_model_files_are_told_apart(tmp_path):
    save(lstm(), tmp_path / "m.gnet")
    save_state({"a": 1}, tmp_path / "s.gnst")
    with pytest.raises(gn.FormatError, match="read it with gn.load"):
        load_state(tmp_path / "m.gnet")
    with pytest.raises(gn.FormatError, match="read it with gn.load_state"):
        load(tmp_path / "s.gnst")


def test_save_state_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(gn.FormatError, match="not a value graphnet writes"):
        save_state({"f": lambda: 0}, tmp_path / "s.gnst")
    with pytest.raises(gn.FormatError, match="dtype object"):
        save_state({"a": np.array([None])}, tmp_path / "s.gnst")
    with pytest.raises(gn.FormatError, match="state_dict"):
        save_state(42, tmp_path / "s.gnst")
