"""User modules: torch7-style numpy modules run as opaque steps inside compiled plans, compositions over the
builder, registration for save/load, and checkpoints (dicts of modules and JSON values) — with char-rnn's OneHot
written as in its Lua source."""
import importlib

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn, ops
from graphnet.testing import gradcheck

_registry_module = importlib.import_module("graphnet.serialize.registry")


class OneHot(gn.Module):
    """char-rnn's util/OneHot.lua: y = eye(output_size)[x] for integer x (0-based here)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size
        self._eye = None

    def update_output(self, x):
        if self._eye is None:
            self._eye = np.eye(self.output_size)
        return self._eye.astype(self.dtype)[x.astype(np.int64)]


class Bilinear(gn.Module):
    """y = x * w + z^2, with a parameter w: every method of the torch7 protocol."""

    def __init__(self, n):
        super().__init__()
        self.weight = gn.Parameter(np.linspace(0.5, 1.5, n))

    def update_output(self, x, z):
        return x * self.weight.data + z ** 2

    def update_grad_input(self, x, z, grad_output):
        return [grad_output * self.weight.data, 2 * z * grad_output]

    def acc_grad_parameters(self, x, z, grad_output):
        self.weight.grad += (grad_output * x).sum(0)


class Swish(gn.Module):
    """y = x * sigmoid(x), as a composition over the builder: shapes and the gradient follow from the ops."""

    def lower(self, b, x):
        return b(ops.Mul(), x, b(ops.Sigmoid(), x))


@pytest.fixture
def registered():
    saved = dict(_registry_module._USER)
    yield gn.register_module
    _registry_module._USER.clear()
    _registry_module._USER.update(saved)


def test_numpy_module_is_gradient_checked_at_levels_0_and_2(rng):
    for level in (0, 2):
        errs = gradcheck(Bilinear(4), [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))], level=level)
        assert set(errs) == {"input 0", "input 1", "param 0 (weight)"} and max(errs.values()) < 1e-7
    errs = gradcheck(Swish(), [rng.standard_normal((3, 4))], level=2)
    assert max(errs.values()) < 1e-7


def test_numpy_module_inside_a_graph_agrees_across_levels(rng):
    x, z = gn.Input(), gn.Input()
    layer = Bilinear(4)
    h = nn.Tanh()(layer(nn.Linear(4, 4)(x), z))
    g = gn.gModule([x, z], [layer(h, h)]).float64()   # the module applied twice: its gradients add up
    xs = [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]
    errs = gradcheck(g, xs, level=2)
    assert max(errs.values()) < 1e-7
    outs = [gn.compile(g, level=lv).forward(*xs) for lv in (0, 2)]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12)


def test_wrong_shapes_and_missing_methods_name_the_node():
    class Wrong(gn.Module):
        def update_output(self, x):
            return x if x.sum() == 0 else x[:, :1]        # the probe (zeros) passes, real data does not

    x = gn.Input()
    y = Wrong()(x).annotate(name="wrong")
    g = gn.gModule([x], [y])
    with pytest.raises(gn.InputError, match=r"Wrong.update_output returned an array of shape \(2, 1\); expected "
                                            r"\(2, 3\)[\s\S]*node 'wrong'.*test_custom_modules.py:\d+"):
        g.forward(np.ones((2, 3)))

    class BadGrad(gn.Module):
        def update_output(self, x):
            return 2 * x

        def update_grad_input(self, x, grad_output):
            return grad_output[:1]

    with pytest.raises(gn.InputError, match=r"BadGrad.update_grad_input returned, for input 0, an array of shape "
                                            r"\(1, 3\); expected \(2, 3\)"):
        BadGrad().backward(np.ones((2, 3)), np.ones((2, 3)))

    class Nothing(gn.Module):
        pass

    with pytest.raises(gn.GraphError, match=r"Nothing defines neither lower\(b, \*xs\).*nor update_output.*"
                                            r"test_custom_modules.py:\d+"):
        Nothing()(gn.Input())


def _char_rnn(vocab, H):
    """char-rnn's LSTM.lua for one layer: OneHot input, LSTM cell, Linear + LogSoftMax head."""
    x, prev_c, prev_h = gn.Input(), gn.Input(), gn.Input()
    inp = OneHot(vocab)(x)
    all_input_sums = nn.CAddTable()(nn.Linear(vocab, 4 * H)(inp), nn.Linear(H, 4 * H)(prev_h))
    n1, n2, n3, n4 = nn.SplitTable(1)(nn.Reshape(4, H)(all_input_sums)).split(4)
    in_gate, forget_gate, out_gate = nn.Sigmoid()(n1), nn.Sigmoid()(n2), nn.Sigmoid()(n3)
    in_transform = nn.Tanh()(n4)
    next_c = nn.CAddTable()(nn.CMulTable()(forget_gate, prev_c), nn.CMulTable()(in_gate, in_transform))
    next_h = nn.CMulTable()(out_gate, nn.Tanh()(next_c))
    logsoft = nn.LogSoftMax()(nn.Linear(H, vocab)(next_h))
    return gn.gModule([x, prev_c, prev_h], [next_c, next_h, logsoft])


def test_char_rnn_one_hot_compiled_and_saved_in_a_checkpoint(tmp_path, rng, registered):
    registered(OneHot)
    vocab, H, B = 5, 3, 4
    rnn = _char_rnn(vocab, H).float64()
    crit = nn.ClassNLLCriterion()
    xs = [rng.integers(0, vocab, B), rng.standard_normal((B, H)), rng.standard_normal((B, H))]
    errs = gradcheck(rnn, xs, level=2)                   # the integer input has none; states and weights do
    assert max(errs.values()) < 1e-7 and "input 1" in errs
    ref = [gn.compile(rnn, level=0).forward(*xs), gn.compile(rnn, level=2).forward(*xs)]
    for a, b in zip(*ref):
        np.testing.assert_allclose(a, b, rtol=1e-12)

    checkpoint = {"protos": {"rnn": rnn, "criterion": crit}, "vocab": {"a": 0, "b": 1, "\n": 2},
                  "opt": {"rnn_size": H, "learning_rate": 2e-3, "seq_length": 50}, "epoch": 1.5,
                  "val_losses": [2.5, 2.25]}
    gn.save(checkpoint, tmp_path / "lm_lstm_epoch1.50.t7")
    back = gn.load(tmp_path / "lm_lstm_epoch1.50.t7")
    assert set(back) == set(checkpoint) and back["vocab"] == checkpoint["vocab"] and back["opt"] == checkpoint["opt"]
    assert back["val_losses"] == [2.5, 2.25] and back["epoch"] == 1.5
    assert type(back["protos"]["criterion"]) is nn.ClassNLLCriterion
    rnn2 = back["protos"]["rnn"]
    assert any(type(m) is OneHot for m in rnn2.modules())
    for a, b in zip(rnn.forward(xs), rnn2.forward(xs)):
        np.testing.assert_array_equal(a, b)

    _registry_module._USER.pop("OneHot")                 # a file never imports a class: unregistered is refused
    with pytest.raises(gn.FormatError, match=r"unknown module kind 'OneHot'.*gn.register_module"):
        gn.load(tmp_path / "lm_lstm_epoch1.50.t7")


def test_register_module_refuses_a_taken_name_and_unsaved_classes(tmp_path, registered):
    class Linear(gn.Module):
        def update_output(self, x):
            return x

    with pytest.raises(gn.GraphError, match=r"the name 'Linear' is taken"):
        registered(Linear)
    registered(Linear, "MyIdentity")
    assert _registry_module.registry()["MyIdentity"] is Linear
    with pytest.raises(gn.FormatError, match=r"takes a module .*, or a dict or list"):
        gn.save("text", tmp_path / "x.gnet")


def test_graph_with_table_input_round_trips(tmp_path, rng):
    x, s = gn.Input(name="x"), gn.Input(name="s")
    c, h = s.split(2)
    y = nn.Linear(3, 2)(x)
    g = gn.gModule([x, s], [y, nn.Identity()([c * y, h + y])]).float64()
    gn.save({"model": g, "step": 3}, tmp_path / "ck.gnet")
    back = gn.load(tmp_path / "ck.gnet")
    assert back["step"] == 3
    args = [rng.standard_normal((2, 3)), [rng.standard_normal((2, 2)), rng.standard_normal((2, 2))]]
    a, b = g.forward(args), back["model"].forward(args)
    np.testing.assert_array_equal(a[0], b[0])
    assert isinstance(b[1], list) and len(b[1]) == 2
    np.testing.assert_array_equal(a[1][1], b[1][1])
