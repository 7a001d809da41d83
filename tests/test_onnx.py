"""gn.export_onnx: onnx.checker accepts every exported model, and onnxruntime's outputs equal graphnet's forward
(evaluation mode, float32, rtol 1e-4) at the export batch size and at another one; errors name the node."""
import sys

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn, ops
from graphnet.module import Module

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-4, 1e-5


def _floats(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def export_and_compare(model, make_inputs, tmp_path, batches=(4, 7)):
    """Export at the first batch size; run onnxruntime at each; returns (the model, op types, max difference)."""
    path = tmp_path / "model.onnx"
    exported = gn.export_onnx(model, path, inputs=make_inputs(batches[0]))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for batch in batches:
        arrays = make_inputs(batch)
        was_training = model.train
        model.evaluate()
        want = model.forward(arrays if len(arrays) > 1 else arrays[0])
        if was_training:
            model.training()
        want = want if isinstance(want, list) else [want]
        got = session.run(None, dict(zip(names, arrays)))
        assert len(got) == len(want)
        for w, o in zip(want, got):
            assert o.shape == w.shape and o.dtype == w.dtype
            np.testing.assert_allclose(o, w, rtol=RTOL, atol=ATOL)
            worst = max(worst, float(np.max(np.abs(o - w), initial=0.0)))
    return exported, {n.op_type for n in exported.graph.node}, worst


def _batch_dims(model):
    return [i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input]


def test_lstm_cell(tmp_path, rng):
    cell = gn.rnn.lstm_cell(5, 6)
    exported, kinds, _ = export_and_compare(
        cell, lambda n: [_floats(rng, n, 5), _floats(rng, n, 6), _floats(rng, n, 6)], tmp_path)
    assert [i.name for i in exported.graph.input] == ["x", "prev_c", "prev_h"]
    assert len(exported.graph.output) == 2 and _batch_dims(exported) == ["batch"] * 3
    assert {"Gemm", "Sigmoid", "Tanh", "Slice"} <= kinds


def test_unrolled_lstm_with_a_log_softmax_head_at_every_step(tmp_path, rng):
    T, V, H = 4, 7, 8
    step = gn.rnn.stacked("lstm", V, H, layers=2, vocab=V)
    net = gn.rnn.unroll(step, T, n_state=4)
    exported, kinds, _ = export_and_compare(
        net, lambda n: [_floats(rng, n, V) for _ in range(T)] + [_floats(rng, n, H) for _ in range(4)], tmp_path)
    outs = [o.name for o in exported.graph.output]
    assert outs[4:] == [f"logprobs_{t}" for t in range(1, T + 1)]
    assert "LogSoftmax" in kinds
    # the weights are shared over time: each parameter is stored once
    assert len(exported.graph.initializer) - _n_consts(exported) == len(net.parameters())


def _n_consts(model):
    return sum(t.name.startswith("const") for t in model.graph.initializer)


def test_gru_cell(tmp_path, rng):
    cell = gn.rnn.gru_cell(3, 5)
    export_and_compare(cell, lambda n: [_floats(rng, n, 3), _floats(rng, n, 5)], tmp_path)


def test_convnet_with_batchnorm_and_pooling(tmp_path, rng):
    bn = nn.BatchNormalization(4)
    bn.running_mean = rng.standard_normal(4).astype(np.float32)
    bn.running_var = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    net = nn.Sequential(
        nn.SpatialConvolution(2, 4, 3, 3, 1, 1, 1, 1), bn, nn.ReLU(),
        nn.SpatialMaxPooling(3, 3, 2, 2, 1, 1),
        nn.SpatialConvolution(4, 3, 2, 3, 2, 1, 0, 1, bias=False),
        nn.SpatialAveragePooling(2, 2, 1, 1, 1, 0, count_include_pad=False),
        nn.SpatialAveragePooling(2, 2),
        nn.Reshape(3), nn.Dropout(0.5), nn.Linear(3, 5), nn.LogSoftMax())
    exported, kinds, _ = export_and_compare(net, lambda n: [_floats(rng, n, 2, 9, 8)], tmp_path)
    assert {"Conv", "MaxPool", "AveragePool", "LogSoftmax"} <= kinds
    assert net.train and bn.train          # the modes are as they were before the export


def test_mlp_with_layer_norm(tmp_path, rng):
    net = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 16),
                        nn.ELU(0.7), nn.Linear(16, 3), nn.SoftMax())
    _, kinds, _ = export_and_compare(net, lambda n: [_floats(rng, n, 6)], tmp_path, batches=(1, 9))
    assert {"Gemm", "Softmax", "ReduceMean", "Elu"} <= kinds


def _mixed_graph():
    words, feats = gn.Input(name="words"), gn.Input(name="feats")
    emb = nn.LookupTable(11, 4)(words)                                   # (B, 3, 4)
    first, second, third = nn.SplitTable(1)(emb).split(3)                # three (B, 4)
    joined = nn.JoinTable(1)(first, nn.CMaxTable()(second, third))       # (B, 8)
    f = nn.Narrow(1, -5, -1)(nn.Padding(1, 2, 0.5)(feats))               # (B, 5) from (B, 3) + 2
    grid = nn.Reshape(2, 4)(joined)                                      # (B, 2, 4): the batch kept
    grid = nn.Contiguous()(nn.Transpose(1, 2)(grid))                     # (B, 4, 2)
    pooled = nn.CAddTable()(nn.Sum(2)(grid), nn.Max(2)(grid))           # (B, 4)
    rep = nn.Replicate(3, 1)(nn.Select(1, 0)(grid))                      # (B, 3, 2)
    flat = nn.View(-1, 6)(rep)
    acts = [nn.HardTanh(-0.5, 0.5), nn.LeakyReLU(0.1), nn.SoftPlus(2.0, 3.0), nn.Threshold(0.1, -1.0),
            nn.Square(), nn.Abs(), nn.Sigmoid(), nn.MulConstant(0.5), nn.AddConstant(2.0)]
    h = flat
    for a in acts:
        h = a(h)
    h = nn.Power(1.5)(nn.Sqrt()(nn.Exp()(nn.Log()(h))))
    out = nn.JoinTable(1)(nn.CDivTable()(pooled, nn.AddConstant(3.0)(nn.Abs()(pooled))), f, h,
                          nn.CMinTable()(pooled, nn.CSubTable()(pooled, pooled)))
    return gn.gModule([words, feats], [out, nn.Unsqueeze(1)(nn.Squeeze()(nn.Mean(1, True)(f)))])


def test_graph_mixing_table_shape_and_pointwise_modules(tmp_path, rng):
    net = _mixed_graph()
    exported, kinds, _ = export_and_compare(
        net, lambda n: [rng.integers(0, 11, (n, 3)), _floats(rng, n, 3)], tmp_path, batches=(3, 8))
    assert {"Gather", "Concat", "Pad", "Expand", "Transpose", "Reshape", "ReduceMax", "Clip", "Where",
            "Identity"} <= kinds
    assert [i.name for i in exported.graph.input] == ["words", "feats"]


def test_plain_module_and_loss(tmp_path, rng):
    export_and_compare(nn.Linear(4, 2), lambda n: [_floats(rng, n, 4)], tmp_path)
    x, t = gn.Input(name="scores"), gn.Input(name="target")
    loss = nn.ClassNLLCriterion()(nn.LogSoftMax()(x), t)
    smooth = nn.SmoothL1Criterion()(x, nn.Identity()(x))
    net = gn.gModule([x, t], [loss, smooth, x])
    exported, kinds, _ = export_and_compare(net, lambda n: [_floats(rng, n, 5) * 3, rng.integers(0, 5, n)], tmp_path)
    assert "GatherElements" in kinds
    # an input passed through is copied under a name of its own: one tensor, one name
    assert [o.name for o in exported.graph.output] == ["loss", "smooth", "scores_2"]


class Primitives(Module):
    """A user's module over primitives that graphnet's own modules reach only in backward graphs, and a constant
    as long as the batch (``ramp``: a different value per row, which no dynamic batch can hold)"""
    def __init__(self, ramp=False):
        super().__init__()
        self.ramp = ramp

    def lower(self, b, x):
        big = b(ops.Compare("gt"), x, b.const(0.25, x.dtype))
        y = b(ops.Cast(np.float32), b(ops.Mul(), b(ops.Cast(np.float64), x), big))
        rows = np.arange(x.shape[0])[:, None] if self.ramp else np.ones((x.shape[0], 1))
        return b(ops.Add(), y, b.const(rows * np.ones(x.shape[1:]), x.dtype))


def test_primitives_reached_through_a_users_lower(tmp_path, rng):
    exported, kinds, _ = export_and_compare(Primitives(), lambda n: [_floats(rng, n, 3)], tmp_path)
    assert {"Greater", "Cast", "Expand"} <= kinds
    with pytest.raises(gn.GraphError, match="Const.*no ONNX form"):
        gn.export_onnx(Primitives(ramp=True), tmp_path / "m.onnx", inputs=[_floats(rng, 2, 3)])


class NumpyCube(ops.Unary):
    """y = x^3 computed by numpy: an op of the user's with no ONNX form"""
    def fn(self, x): return x ** 3


class Cube(Module):
    def lower(self, b, x):
        return b(NumpyCube(), x)


def test_an_op_without_onnx_form_names_the_node(tmp_path):
    x = gn.Input(name="x")
    cubed = Cube()(nn.Tanh()(x))                                   # the line the error points at
    line = sys._getframe().f_lineno - 1
    net = gn.gModule([x], [nn.Linear(3, 2)(cubed)])
    with pytest.raises(gn.GraphError, match=rf"NumpyCube.*no ONNX form(.|\n)*'cubed'(.|\n)*test_onnx.py:{line}"):
        gn.export_onnx(net, tmp_path / "m.onnx", inputs=[np.zeros((2, 3), np.float32)])
    assert not (tmp_path / "m.onnx").exists()


def test_input_errors(tmp_path):
    cell = gn.rnn.gru_cell(3, 4)
    with pytest.raises(gn.InputError, match=r"takes 2 input array\(s\) \(x, prev_h\), got 1"):
        gn.export_onnx(cell, tmp_path / "m.onnx", inputs=[np.zeros((2, 3))])
    with pytest.raises(gn.InputError, match=r"first dimension is the batch, and they differ"):
        gn.export_onnx(cell, tmp_path / "m.onnx", inputs=[np.zeros((2, 3)), np.zeros((3, 4))])
    with pytest.raises(gn.InputError, match="must be a float or integer numpy array, got list"):
        gn.export_onnx(cell, tmp_path / "m.onnx", inputs=[[1.0, 2.0, 3.0], np.zeros((3, 4))])


def test_batch_size_baked_into_the_graph_is_refused(tmp_path):
    x = gn.Input(name="x")
    net = gn.gModule([x], [nn.View(2, 6)(x)])                      # only a batch of 4 (4 * 3 = 2 * 6) fits
    with pytest.raises(gn.GraphError, match="does not take a batch of 5"):
        gn.export_onnx(net, tmp_path / "m.onnx", inputs=[np.zeros((4, 3), np.float32)])


def test_missing_onnx_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)                 # import onnx now raises ImportError
    with pytest.raises(gn.InputError, match=r"pip install 'graphnet\[onnx\]'"):
        gn.export_onnx(nn.Linear(2, 2), tmp_path / "m.onnx", inputs=[np.zeros((1, 2), np.float32)])
